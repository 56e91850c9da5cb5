"""Benchmark question files, loaded as records: LongVideo-Reason-eval (the record format) and VideoMME.

Example:
    >>> report = load_benchmark("videomme", "videomme/test.parquet", video_root="videomme/data")  # doctest: +SKIP
    >>> records = with_ids(report.records, "videomme")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

from longvila_r1.data.records import LoadReport, VideoQARecord, load_records_with_report
from longvila_r1.evaluation.videomme import DEFAULT_VIDEO_PATTERN, load_videomme

BENCHMARKS = ("longvideo_reason", "videomme")


def load_benchmark(
    benchmark: str,
    path: str | Path,
    video_root: str | Path | None = None,
    *,
    video_pattern: str = DEFAULT_VIDEO_PATTERN,
    on_error: Literal["raise", "skip"] = "raise",
) -> LoadReport:
    """The questions of a benchmark file with the errors of skipped ones.

    Args:
        benchmark: ``"longvideo_reason"`` (LongVideo-Reason-eval: records with ``problem``, ``answer``,
            ``videos``, ``category``, see :mod:`longvila_r1.data.records`) or ``"videomme"`` (see
            :mod:`longvila_r1.evaluation.videomme`).
        path: the question file (``.json``, ``.jsonl`` or ``.parquet``).
        video_root: directory the video paths are relative to; defaults to the file's directory.
        video_pattern: VideoMME only: video path of a row, a pattern over its fields.
        on_error: ``"raise"`` or ``"skip"`` malformed questions.
    """
    if benchmark == "longvideo_reason":
        return load_records_with_report(path, video_root, on_error=on_error)
    if benchmark == "videomme":
        return load_videomme(path, video_root, video_pattern=video_pattern, on_error=on_error)
    raise ValueError(f"benchmark must be one of {BENCHMARKS}, got {benchmark!r}")


def with_ids(records: Sequence[VideoQARecord], prefix: str) -> list[VideoQARecord]:
    """``records`` where each one without an id gets ``"<prefix>-<position>"``, so every sample can be named in
    results and skipped on resume (positions are stable while the file is unchanged).

    Raises:
        ValueError: two records share an id (results could not tell them apart).

    Example:
        >>> rs = with_ids([VideoQARecord("Q?", "A", "v.mp4"), VideoQARecord("Q?", "B", "v.mp4", id="x")], "eval")
        >>> [r.id for r in rs]
        ['eval-0', 'x']
    """
    named = [
        record if record.id is not None else replace(record, id=f"{prefix}-{i}") for i, record in enumerate(records)
    ]
    seen: set[str] = set()
    for record in named:
        if record.id in seen:
            raise ValueError(f"duplicate question id {record.id!r}; results and resume need unique ids")
        seen.add(record.id)
    return named
