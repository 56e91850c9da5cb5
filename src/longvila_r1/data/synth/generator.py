"""Write a synthetic LongVideo-Reason set: mp4 videos, ``train/val/eval.jsonl`` and ``synth_config.json``.

Each video is a pure function of ``(seed, index)`` and the settings: its generator is
``np.random.SeedSequence([seed, index])``, split into independent children for the scene, the questions and
the background, so the output does not depend on the number of workers, and generating records without
rendering (:func:`video_records`, :func:`iter_corpus_text`) gives exactly the written questions.

Videos are split by index (train first, then val, then eval), so no video is shared across splits. The letter
of each correct option comes from a per-split schedule of shuffled ``ABCD`` blocks, so every split has each
letter a quarter of the time and the letter says nothing about the template.

Example:
    >>> summary = generate_dataset("/tmp/synth_demo", num_videos=10, frames=64, progress=False)  # doctest: +SKIP
    >>> print(summary.format_table())  # doctest: +SKIP
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from longvila_r1.data.synth.events import simulate_scene
from longvila_r1.data.synth.questions import CATEGORIES, make_questions
from longvila_r1.data.synth.render import render_frames
from longvila_r1.data.synth.scene import DIFFICULTIES, Scene
from longvila_r1.data.synth.summary import SPLITS, SynthSummary
from longvila_r1.data.video_writer import write_video

MIN_FRAMES = 32
MIN_SIZE = 32
# Mixed into the seed of the letter schedule so it never coincides with a video's own stream.
_SCHEDULE_TAG = 0x4C4554


def generate_dataset(
    output_dir: str | Path,
    num_videos: int = 200,
    frames: int = 128,
    seed: int = 0,
    difficulty: str = "easy",
    fps: float = 8.0,
    size: int = 64,
    questions_per_video: int = 4,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    workers: int = 0,
    progress: bool = True,
) -> SynthSummary:
    """Generate videos and questions into ``output_dir``.

    Args:
        output_dir: created if needed; receives ``videos/vid_00000.mp4``..., ``train.jsonl``, ``val.jsonl``,
            ``eval.jsonl`` and ``synth_config.json``.
        num_videos: number of videos.
        frames: frames per video (>= 32); events scale with it.
        seed: the same seed writes byte-identical JSONL and identical frames.
        difficulty: ``"easy"`` (2-3 objects, long events, 4 templates) or ``"hard"`` (4-6 residents, short
            events, 13 templates).
        fps: frame rate of the written videos (durations and the ``m:ss`` times in questions follow it).
        size: frame height and width in pixels (even, >= 32).
        questions_per_video: questions per video; categories rotate so each video covers them evenly.
        split_fractions: fractions of videos for train, val and eval (summing to 1).
        workers: processes for rendering and encoding; 0 or 1 runs in this process. Output is identical.
        progress: show a tqdm progress bar over videos.

    Returns:
        A :class:`SynthSummary` (``print(summary.format_table())`` for the CLI).
    """
    settings = synth_settings(num_videos, frames, seed, difficulty, fps, size, questions_per_video, split_fractions)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
    started = time.perf_counter()
    output_dir = Path(output_dir)
    (output_dir / "videos").mkdir(parents=True, exist_ok=True)
    jobs = [(str(output_dir), index, settings) for index in range(num_videos)]
    by_split: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    bar = tqdm(total=num_videos, desc=f"synth {difficulty}", unit="video", disable=not progress)
    with bar, _pool(workers) as pool:
        results = pool.imap(_write_video, jobs, chunksize=4) if pool is not None else map(_write_video, jobs)
        for index, records in enumerate(results):
            by_split[split_of(index, settings["split_sizes"])].extend(records)
            bar.update()
    for split, records in by_split.items():
        lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
        (output_dir / f"{split}.jsonl").write_text(lines, encoding="utf-8")
    config = {key: value for key, value in settings.items() if key != "split_sizes"}
    (output_dir / "synth_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    sizes = settings["split_sizes"]
    return SynthSummary(
        output_dir=output_dir,
        difficulty=difficulty,
        seed=seed,
        frames=frames,
        fps=float(fps),
        size=size,
        videos=dict(zip(SPLITS, sizes, strict=True)),
        categories={s: dict(Counter(r["category"] for r in recs)) for s, recs in by_split.items()},
        templates=dict(Counter(r["template"] for recs in by_split.values() for r in recs)),
        seconds=time.perf_counter() - started,
    )


def video_records(index: int, settings: dict[str, Any]) -> tuple[Scene, list[dict[str, Any]]]:
    """Simulate video ``index`` and write its question records (no rendering).

    Args:
        index: the video's index in the set.
        settings: from :func:`synth_settings`.

    Returns:
        The scene and the records (``id``, ``videos``, ``problem``, ``options``, ``answer``, ``reasoning``,
        ``category``, ``duration``, ``difficulty``, ``template``, ``evidence``).
    """
    seed, frames, count = settings["seed"], settings["frames"], settings["questions_per_video"]
    scene_seq, question_seq, _ = np.random.SeedSequence([seed, index]).spawn(3)
    scene = simulate_scene(
        np.random.default_rng(scene_seq), frames, settings["fps"], settings["size"], settings["difficulty"]
    )
    split = split_of(index, settings["split_sizes"])
    rank = index - sum(settings["split_sizes"][: SPLITS.index(split)])
    letters = letter_schedule(seed, SPLITS.index(split), rank * count, count)
    categories = [CATEGORIES[(index * count + j) % len(CATEGORIES)] for j in range(count)]
    questions = make_questions(scene, np.random.default_rng(question_seq), letters, categories)
    records = []
    for j, question in enumerate(questions):
        record = {
            "id": f"synth-{settings['difficulty']}-s{seed}-v{index:05d}-q{j}",
            "videos": video_name(index),
            "problem": question.pop("problem"),
            "options": question.pop("options"),
            "answer": question.pop("answer"),
            "reasoning": question.pop("reasoning"),
            "category": question.pop("category"),
            "duration": frames / settings["fps"],
        }
        records.append({**record, **question})
    return scene, records


def iter_corpus_text(
    seed: int,
    num_videos: int,
    difficulty: str | Sequence[str] = ("easy", "hard"),
    frames: int = 128,
    fps: float = 8.0,
    questions_per_video: int = 4,
) -> Iterator[str]:
    """Yield the problems, options and reasoning texts of a synthetic set without rendering any video.

    For training a tokenizer on exactly the text the models will read. ``difficulty`` may name one level or
    several (all levels by default).

    Example:
        >>> texts = list(iter_corpus_text(seed=0, num_videos=2, difficulty="easy"))
        >>> len(texts), texts[0]
        (48, 'Which object appeared first in the video?')
    """
    for level in [difficulty] if isinstance(difficulty, str) else difficulty:
        settings = synth_settings(num_videos, frames, seed, level, fps, 64, questions_per_video, (0.8, 0.1, 0.1))
        for index in range(num_videos):
            for record in video_records(index, settings)[1]:
                yield record["problem"]
                yield from record["options"]
                yield record["reasoning"]


def video_name(index: int) -> str:
    """Path of video ``index`` relative to the output directory."""
    return f"videos/vid_{index:05d}.mp4"


def split_sizes(num_videos: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Videos in train, val and eval: cumulative fractions rounded half up, so the sizes always add up.

    Example:
        >>> split_sizes(200, (0.8, 0.1, 0.1)), split_sizes(6, (0.5, 0.25, 0.25))
        ((160, 20, 20), (3, 2, 1))
    """
    train = int(np.floor(fractions[0] * num_videos + 0.5))
    train_val = int(np.floor((fractions[0] + fractions[1]) * num_videos + 0.5))
    return train, train_val - train, num_videos - train_val


def split_of(index: int, sizes: Sequence[int]) -> str:
    """The split of video ``index``: the first ``sizes[0]`` are train, the next val, the rest eval."""
    return "train" if index < sizes[0] else "val" if index < sizes[0] + sizes[1] else "eval"


def letter_schedule(seed: int, split: int, start: int, count: int) -> list[int]:
    """Correct-option indices for positions ``start .. start+count-1`` of a split: shuffled ``ABCD`` blocks."""
    letters = []
    for position in range(start, start + count):
        block, offset = divmod(position, 4)
        letters.append(int(np.random.default_rng([seed, _SCHEDULE_TAG, split, block]).permutation(4)[offset]))
    return letters


def render_video(index: int, settings: dict[str, Any]) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Records and rendered RGB frames (``uint8 [F, H, W, 3]``) of video ``index``, exactly as written."""
    scene, records = video_records(index, settings)
    render_seq = np.random.SeedSequence([settings["seed"], index]).spawn(3)[2]
    return records, render_frames(scene, np.random.default_rng(render_seq))


def _write_video(job: tuple[str, int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Worker: simulate, render and encode one video; returns its records."""
    output_dir, index, settings = job
    records, frames = render_video(index, settings)
    write_video(Path(output_dir) / video_name(index), frames, fps=settings["fps"])
    return records


@contextmanager
def _pool(workers: int) -> Iterator[Any]:
    """A process pool for ``workers > 1``, else ``None``.

    Forked on Linux: spawned workers re-import the caller's ``__main__``, which breaks scripts without an
    ``if __name__ == "__main__"`` guard, and workers only run numpy and PyAV, never torch, so forking next to
    a loaded torch is safe. Other platforms keep their default (spawn).
    """
    if workers <= 1:
        yield None
        return
    method = "fork" if sys.platform.startswith("linux") else None
    pool = multiprocessing.get_context(method).Pool(workers)
    try:
        yield pool
    finally:
        pool.terminate()
        pool.join()


def synth_settings(
    num_videos: int,
    frames: int,
    seed: int,
    difficulty: str,
    fps: float,
    size: int,
    questions_per_video: int,
    split_fractions: Sequence[float],
) -> dict[str, Any]:
    """Validate the generation arguments (messages name the argument) into the settings dict the per-video
    functions take (:func:`video_records`, :func:`render_video`); ``split_sizes`` is added.

    Example:
        >>> settings = synth_settings(10, 128, 0, "hard", 8.0, 64, 4, (0.8, 0.1, 0.1))
        >>> settings["split_sizes"], video_records(0, settings)[1][0]["videos"]
        ((8, 1, 1), 'videos/vid_00000.mp4')
    """

    def integer(name: str, value: Any, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        return int(value)

    integer("num_videos", num_videos, 1)
    integer("frames", frames, MIN_FRAMES)
    integer("seed", seed, 0)
    integer("questions_per_video", questions_per_video, 1)
    if integer("size", size, MIN_SIZE) % 2:
        raise ValueError(f"size must be even (H.264 needs even frame sides), got {size}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    fractions = tuple(float(f) for f in split_fractions)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"split_fractions must be 3 non-negative numbers (train, val, eval) summing to 1, got {split_fractions!r}"
        )
    return {
        "num_videos": int(num_videos),
        "frames": int(frames),
        "seed": int(seed),
        "difficulty": difficulty,
        "fps": float(fps),
        "size": int(size),
        "questions_per_video": int(questions_per_video),
        "split_fractions": list(fractions),
        "split_sizes": split_sizes(int(num_videos), fractions),
    }
