"""torchmetrics for several sampled answers per question: mean sample accuracy, pass@k and majority vote.

These say how much an RL stage has to work with before it runs. GRPO can only reinforce answers the policy
samples: if the correct letter is sampled no more often than chance and the majority of ``k`` samples is no
better than greedy decoding, rewards carry little signal about the video and accuracy will not rise by
sharpening the policy. A ``pass@k`` well above ``sample_acc`` (and ``maj@k`` above greedy accuracy) is the
headroom RL can turn into greedy accuracy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torchmetrics import Metric

from longvila_r1.evaluation.answer import extract_answer


@dataclass(frozen=True)
class SampledAnswerScore:
    """How the ``k`` sampled answers of one question score: correct samples, any correct, majority correct."""

    hits: int
    passed: bool
    majority_correct: bool


def score_sampled_letters(letters: Sequence[str | None], answer: str) -> SampledAnswerScore:
    """Score one question's extracted letters (``None``: no answer) against its correct letter.

    The majority is the letter extracted most often; unanswered samples do not vote and a tie goes to the
    letter sampled first.

    Example:
        >>> score_sampled_letters(["A", "B", None, "B"], "B")
        SampledAnswerScore(hits=2, passed=True, majority_correct=True)
    """
    hits = sum(letter == answer for letter in letters)
    votes = Counter(letter for letter in letters if letter is not None)
    majority = votes.most_common(1)[0][0] if votes else None
    return SampledAnswerScore(hits=hits, passed=hits > 0, majority_correct=majority == answer)


class SampledAnswerMetrics(Metric):
    """Mean accuracy of ``k`` sampled answers per question, ``pass@k`` and ``maj@k`` (majority vote).

    ``pass@k`` counts a question as solved when any of its ``k`` samples is correct; ``maj@k`` when the letter
    extracted most often is correct (see :func:`score_sampled_letters`). States are sums reduced with ``sum``
    across processes, like :class:`~longvila_r1.evaluation.metrics.VideoQAMetrics`.

    Keys of :meth:`compute`: ``sample_acc``, ``pass@<k>``, ``maj@<k>``.

    Args:
        num_samples: ``k``, the samples per question every :meth:`update` must give.
        **kwargs: passed to :class:`torchmetrics.Metric`.

    Example:
        >>> metric = SampledAnswerMetrics(num_samples=3)
        >>> metric.update([["<answer>B</answer>", "<answer>A</answer>", "<answer>B</answer>"],
        ...                ["<answer>C</answer>", "<answer>D</answer>", "no answer"]], ["B", "D"])
        >>> {k: round(v.item(), 3) for k, v in metric.compute().items()}
        {'sample_acc': 0.5, 'pass@3': 1.0, 'maj@3': 0.5}
    """

    full_state_update = False

    def __init__(self, num_samples: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.num_samples = num_samples
        for name in ("questions", "correct_samples", "passed", "majority_correct"):
            self.add_state(name, default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self,
        responses: Sequence[Sequence[str]],
        answers: Sequence[str],
        options: Sequence[Sequence[str] | None] | None = None,
    ) -> None:
        """Score ``k`` responses per question.

        Args:
            responses: for each question, its ``k`` sampled texts.
            answers: correct letters.
            options: option texts of each question, to read answers given as text.
        """
        options = options or [None] * len(responses)
        for samples, answer, opts in zip(responses, answers, options, strict=True):
            if len(samples) != self.num_samples:
                raise ValueError(f"expected {self.num_samples} samples per question, got {len(samples)}")
            score = score_sampled_letters([extract_answer(text, opts) for text in samples], answer)
            self.questions += 1
            self.correct_samples += score.hits
            self.passed += int(score.passed)
            self.majority_correct += int(score.majority_correct)

    def compute(self) -> dict[str, torch.Tensor]:
        questions = self.questions.clamp(min=1)
        k = self.num_samples
        return {
            "sample_acc": self.correct_samples / (questions * k),
            f"pass@{k}": self.passed / questions,
            f"maj@{k}": self.majority_correct / questions,
        }
