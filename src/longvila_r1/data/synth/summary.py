"""What a synthetic-set run wrote: videos and questions per split and category, timings, as a plain table.

Example:
    >>> summary = SynthSummary(
    ...     output_dir="out", difficulty="easy", seed=0, frames=128, fps=8.0, size=64,
    ...     videos={"train": 8, "val": 1, "eval": 1}, seconds=0.5,
    ...     categories={"train": {"temporal": 8}, "val": {"temporal": 1}, "eval": {"temporal": 1}},
    ... )
    >>> summary.questions["train"], summary.duration
    (8, 16.0)
    >>> print(summary.format_table().splitlines()[0])
    split  videos  questions  temporal  goal_purpose  spatial  plot_narrative
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from longvila_r1.data.synth.questions import CATEGORIES

SPLITS = ("train", "val", "eval")


@dataclass
class SynthSummary:
    """Counts and settings of one :func:`~longvila_r1.data.synth.generate_dataset` run.

    Attributes:
        output_dir: where ``videos/``, the JSONL splits and ``synth_config.json`` were written.
        difficulty / seed / frames / fps / size: the generation settings.
        videos: videos per split.
        categories: questions per split and category.
        templates: questions per template over all splits.
        seconds: wall-clock time of the run.
    """

    output_dir: str | Path
    difficulty: str
    seed: int
    frames: int
    fps: float
    size: int
    videos: dict[str, int]
    categories: dict[str, dict[str, int]]
    seconds: float
    templates: dict[str, int] = field(default_factory=dict)

    @property
    def questions(self) -> dict[str, int]:
        """Questions per split."""
        return {split: sum(self.categories.get(split, {}).values()) for split in SPLITS}

    @property
    def duration(self) -> float:
        """Seconds per video."""
        return self.frames / self.fps

    def format_table(self) -> str:
        """A plain-text table for the CLI: one row per split, then the settings and the timing."""
        header = ["split", "videos", "questions", *CATEGORIES]
        rows = [
            [split, str(self.videos.get(split, 0)), str(self.questions[split])]
            + [str(self.categories.get(split, {}).get(category, 0)) for category in CATEGORIES]
            for split in SPLITS
        ]
        rows.append(["total", str(sum(self.videos.values())), str(sum(self.questions.values()))])
        rows[-1] += [str(sum(self.categories.get(s, {}).get(c, 0) for s in SPLITS)) for c in CATEGORIES]
        widths = [max(len(row[k]) for row in [header, *rows]) for k in range(len(header))]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]
        ]
        per_video = 1000 * self.seconds / max(1, sum(self.videos.values()))
        lines += [
            f"difficulty {self.difficulty}, seed {self.seed}: {self.frames} frames per video "
            f"({self.duration:g} s at {self.fps:g} fps), {self.size}x{self.size} pixels",
            f"written to {self.output_dir} in {self.seconds:.1f} s ({per_video:.0f} ms per video)",
        ]
        if self.templates:
            lines.append("templates: " + ", ".join(f"{name} {count}" for name, count in sorted(self.templates.items())))
        return "\n".join(lines)
