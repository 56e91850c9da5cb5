"""Checks on a synthetic set: which questions sparse frames can answer, and how far shortcuts get.

* :func:`evidence_coverage`: do ``num_frames`` uniformly sampled frames (the centre of each of ``num_frames``
  equal segments: :func:`longvila_r1.data.video.uniform_indices`, the training pipeline's sampler) hit every
  evidence span of a question? If not, the answer cannot be determined from those frames.
  :func:`determinable_fraction` averages it over records.
* :func:`question_only_baseline`: accuracy of answering the most frequent training letter of each template,
  without looking at the video or the options (near 25% means letters carry no signal).
* :func:`answer_text_baseline`: accuracy of picking, among the options, the text most often correct for that
  template in training (catches "the answer is always 2" or "always turned red").
* :func:`longest_option_rate`: how often the correct option is the single longest one (near 25% or below).

Example:
    >>> record = {"evidence": [[1.0, 1.5]]}  # frames 8-11; 4 of 128 frames are 16, 48, 80 and 112
    >>> evidence_coverage(record, 4, total_frames=128, fps=8.0), evidence_coverage(record, 128, 128, 8.0)
    (False, True)
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

Record = Mapping[str, Any]


def evidence_coverage(record: Record, num_frames: int, total_frames: int, fps: float) -> bool:
    """Whether uniformly sampled frames see every evidence span ``[start_s, end_s)`` of ``record``.

    Args:
        record: a synthetic record (its ``evidence`` field).
        num_frames: frames sampled from the video.
        total_frames: frames in the video.
        fps: frame rate, to turn the span seconds back into frames.
    """
    # The training pipeline's own sampler; imported here because ``longvila_r1.data.video`` imports torch, which
    # generator workers never need.
    from longvila_r1.data.video import uniform_indices

    frames = np.asarray(uniform_indices(total_frames, num_frames, short_video="fewer"))
    for start_s, end_s in record["evidence"]:
        low, high = round(start_s * fps), round(end_s * fps)
        if not np.any((frames >= low) & (frames < high)):
            return False
    return True


def determinable_fraction(records: Iterable[Record], num_frames: int, total_frames: int, fps: float) -> float:
    """Share of ``records`` whose evidence ``num_frames`` uniform frames fully see."""
    hits = [evidence_coverage(record, num_frames, total_frames, fps) for record in records]
    return float(np.mean(hits)) if hits else 0.0


def question_only_baseline(train: Sequence[Record], evaluation: Sequence[Record]) -> float:
    """Accuracy on ``evaluation`` of the most frequent ``train`` letter per template (overall for unseen ones)."""
    per_template: dict[str, Counter] = defaultdict(Counter)
    for record in train:
        per_template[record["template"]][record["answer"]] += 1
    overall = Counter(record["answer"] for record in train)

    def guess(template: str) -> str:
        counts = per_template.get(template) or overall
        return max(sorted(counts), key=lambda letter: counts[letter])

    return _mean(guess(record["template"]) == record["answer"] for record in evaluation)


def answer_text_baseline(train: Sequence[Record], evaluation: Sequence[Record]) -> float:
    """Accuracy on ``evaluation`` of picking the option text most often correct in ``train`` for its template."""
    correct: dict[str, Counter] = defaultdict(Counter)
    for record in train:
        correct[record["template"]][_answer_text(record)] += 1

    def guess(record: Record) -> str:
        counts = correct[record["template"]]
        return max(record["options"], key=lambda text: counts[text])  # ties -> the earliest option

    return _mean(guess(record) == _answer_text(record) for record in evaluation)


def longest_option_rate(records: Sequence[Record]) -> float:
    """Share of records whose correct option is strictly longer than every other option."""

    def longest(record: Record) -> bool:
        lengths = [len(text) for text in record["options"]]
        index = "ABCD".index(record["answer"])
        return all(lengths[index] > n for k, n in enumerate(lengths) if k != index)

    return _mean(longest(record) for record in records)


def _answer_text(record: Record) -> str:
    return record["options"]["ABCD".index(record["answer"])]


def _mean(values: Iterable[bool]) -> float:
    values = list(values)
    return float(np.mean(values)) if values else 0.0
