"""VideoMME from its public schema, as :class:`~longvila_r1.data.records.VideoQARecord` s the data module serves.

A VideoMME row (the official parquet, or the same rows as JSON / JSONL)::

    {"video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Humanity & History",
     "videoID": "fFjv93ACGo8", "question_id": "001-1", "task_type": "Counting Problem",
     "question": "When demonstrating ...?", "options": ["A. Apples.", "B. Candles.", "C. Berries.", "D. ..."],
     "answer": "C"}

becomes a record with ``problem`` = ``question``, the options without their ``"A. "`` labels, ``id`` =
``question_id`` and ``videos`` from ``video_pattern`` (default ``"{videoID}.mp4"``). VideoMME's ``duration`` is a
label, not seconds: it is kept as ``extra["duration_label"]``, which batches carry as the sample's duration, so
the metrics report ``acc/duration/short|medium|long``. Every other field (``task_type``, ``domain``,
``sub_category``, ...) stays in ``extra`` for the results breakdown.

Example:
    >>> records = load_videomme("videomme/test.parquet", video_root="videomme/data").records  # doctest: +SKIP
    >>> records[0].id, records[0].extra["duration_label"], records[0].extra["task_type"]  # doctest: +SKIP
    ('001-1', 'short', 'Counting Problem')
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any, Literal

from longvila_r1.data.records import (
    OPTIONAL_FIELDS,
    REQUIRED_FIELDS,
    LoadReport,
    RecordError,
    VideoQARecord,
    load_records_with_report,
)

VIDEOMME_DURATIONS = ("short", "medium", "long")
DURATION_LABEL = "duration_label"  # the extra key batches read a record's duration group from
DEFAULT_VIDEO_PATTERN = "{videoID}.mp4"
_REQUIRED = ("question", "options", "answer")
SCHEMA_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS


def videomme_record(
    row: Mapping[str, Any], video_root: str | Path | None = None, video_pattern: str = DEFAULT_VIDEO_PATTERN
) -> VideoQARecord:
    """One VideoMME row as a record (see the module docstring).

    Raises:
        RecordError: a missing field, a duration label other than short/medium/long, a video pattern naming a
            field the row lacks, or anything :class:`VideoQARecord` rejects.

    Example:
        >>> row = {"videoID": "abc", "duration": "long", "task_type": "OCR Problems", "question_id": "7-2",
        ...        "question": "What is written?", "options": ["A. yes", "B. no"], "answer": "B"}
        >>> r = videomme_record(row)
        >>> r.videos, r.options, r.answer, r.id, r.extra["duration_label"], r.category
        ('abc.mp4', ('yes', 'no'), 'B', '7-2', 'long', None)
    """
    if not isinstance(row, Mapping):
        raise RecordError(f"expected a JSON object, got {type(row).__name__}")
    for name in _REQUIRED:
        if row.get(name) is None:
            raise RecordError("missing required VideoMME field", field=name)
    try:
        videos = video_pattern.format_map(row)
    except (KeyError, IndexError, ValueError) as exc:
        raise RecordError(
            f"video_pattern {video_pattern!r} needs a field the row lacks ({exc})", field="videos"
        ) from None
    # Schema names (a stray "id" or "category" column) cannot go to extra: a record rejects the clash.
    extra = {key: value for key, value in row.items() if key not in (*_REQUIRED, "question_id", *SCHEMA_FIELDS)}
    label, seconds = row.get("duration"), None
    if isinstance(label, str):
        if label.lower() not in VIDEOMME_DURATIONS:
            raise RecordError(f"expected one of {VIDEOMME_DURATIONS} or seconds, got {label!r}", field="duration")
        extra[DURATION_LABEL] = label.lower()
    else:  # some re-packagings give seconds instead of the label
        seconds = label
    return VideoQARecord(
        problem=row["question"],
        answer=row["answer"],
        videos=videos,
        options=row["options"],
        id=row.get("question_id"),
        duration=seconds,
        extra=extra,
        video_root=None if video_root is None else str(video_root),
    )


def load_videomme(
    path: str | Path,
    video_root: str | Path | None = None,
    *,
    video_pattern: str = DEFAULT_VIDEO_PATTERN,
    on_error: Literal["raise", "skip"] = "raise",
    check_videos: bool = False,
) -> LoadReport:
    """Read VideoMME rows from ``.parquet``, ``.json`` or ``.jsonl`` as records, with the errors of skipped rows.

    Args:
        path: the question file (the official ``test-00000-of-00001.parquet``, or the same rows as JSON/JSONL).
        video_root: directory of the videos; defaults to the file's directory.
        video_pattern: video path of a row relative to ``video_root``, a ``str.format`` pattern over the row's
            fields, e.g. ``"{videoID}.mp4"`` or ``"data/{videoID}.mkv"``.
        on_error: ``"raise"`` the first :class:`RecordError` (located by file and row), or ``"skip"`` bad rows
            (logged with the count).
        check_videos: also require each video file to exist.

    Returns:
        A :class:`~longvila_r1.data.records.LoadReport`: ``records`` and the ``skipped`` errors.
    """
    convert = partial(videomme_record, video_pattern=video_pattern)
    return load_records_with_report(path, video_root, on_error=on_error, check_videos=check_videos, convert=convert)
