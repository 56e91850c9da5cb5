"""``longvila-r1 data summary``: what a data directory holds, as the model will see it.

Counts per split and category, source frames per video, and token lengths of the prompts the model gets
(video tokens included) for a frame budget, so a user sees before training what ``num_frames`` costs.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from longvila_r1.data.processing import load_model_processing
from longvila_r1.data.qwen_vl import num_video_tokens, preprocess_video
from longvila_r1.data.qwen_vl_prompt import build_prompt
from longvila_r1.data.records import CATEGORIES, load_records
from longvila_r1.data.video import read_video

SPLIT_FILES = ("train.jsonl", "val.jsonl", "eval.jsonl")


@dataclass
class DataDirSummary:
    """Per-split statistics of a LongVideo-Reason directory (see :func:`summarize_data_dir`)."""

    data_dir: Path
    num_frames: int
    questions: dict[str, Counter] = field(default_factory=dict)
    videos: dict[str, int] = field(default_factory=dict)
    source_frames: list[int] = field(default_factory=list)
    video_tokens: list[int] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    sft_tokens: list[int] = field(default_factory=list)

    def format_table(self) -> str:
        """Plain-text report: a split x category table, then frame and token statistics."""
        header = ["split", "videos", "questions", *CATEGORIES]
        rows = [
            [split, str(self.videos[split]), str(sum(counts.values())), *(str(counts[c]) for c in CATEGORIES)]
            for split, counts in self.questions.items()
        ]
        widths = [max(len(row[k]) for row in [header, *rows]) for k in range(len(header))]
        table = [header, *rows]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in table]
        lines += [
            f"source frames per video: {_stats(self.source_frames)}",
            f"model input at num_frames={self.num_frames}: video tokens {_stats(self.video_tokens)}",
            f"prompt tokens (RL, video included): {_stats(self.prompt_tokens)}",
            f"prompt + reasoning tokens (CoT-SFT): {_stats(self.sft_tokens)}",
        ]
        return "\n".join(lines)


def summarize_data_dir(data_dir: str | Path, num_frames: int = 16, model_path: str = "tiny") -> DataDirSummary:
    """Read every split file of ``data_dir`` and measure its videos and prompts for ``model_path``.

    Example:
        >>> print(summarize_data_dir("outputs/demo/data").format_table())  # doctest: +SKIP
    """
    data_dir = Path(data_dir)
    tokenizer, processor = load_model_processing(model_path)
    summary = DataDirSummary(data_dir=data_dir, num_frames=num_frames)
    grids: dict[Path, object] = {}  # video -> patch grid, each video decoded once
    for name in SPLIT_FILES:
        path = data_dir / name
        if not path.is_file():
            continue
        records = load_records(path)
        split = path.stem
        summary.questions[split] = Counter(r.category for r in records)
        summary.videos[split] = len({r.videos for r in records})
        for record in records:
            video = record.video_path
            if video not in grids:
                clip = read_video(video, num_frames=num_frames)
                summary.source_frames.append(clip.num_source_frames)
                grids[video] = preprocess_video(clip.frames, processor)[1]
            grid = grids[video]
            common = {"video_grid_thw": grid, "merge_size": processor.merge_size}
            summary.video_tokens.append(num_video_tokens(grid, processor.merge_size))
            summary.prompt_tokens.append(len(build_prompt(tokenizer, record.problem, record.options, **common)))
            sft = build_prompt(tokenizer, record.problem, record.options, response=record.response(), **common)
            summary.sft_tokens.append(len(sft))
    if not summary.questions:
        raise FileNotFoundError(f"no split files ({', '.join(SPLIT_FILES)}) in {data_dir}")
    return summary


def _stats(values: list[int]) -> str:
    if not values:
        return "n/a"
    return f"min {min(values)}, median {statistics.median(values):g}, max {max(values)}"
