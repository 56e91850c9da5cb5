"""Subtitles for the with-subtitles evaluation setting: a small SRT parser and the lines shown with sampled frames.

VideoMME's with-subtitles protocol gives the model the subtitle lines on screen at the sampled frames' times, not
the whole transcript (which, for an hour of video, would outgrow any prompt). :func:`subtitles_at` picks those
lines, :func:`subtitle_prompt` prepends them to the question.

Example:
    >>> srt = "1\\n00:00:01,000 --> 00:00:04,000\\nHello <i>there</i>\\n\\n2\\n00:00:09,500 --> 00:00:11,000\\nBye\\n"
    >>> lines = parse_srt(srt)
    >>> [(line.start, line.end, line.text) for line in lines]
    [(1.0, 4.0, 'Hello there'), (9.5, 11.0, 'Bye')]
    >>> [line.text for line in subtitles_at(lines, [2.0, 6.0])]
    ['Hello there']
    >>> print(subtitle_prompt("What happens?", subtitles_at(lines, [2.0, 10.0])))
    This video's subtitles are listed below:
    Hello there
    Bye
    What happens?
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from longvila_r1.data.dataset import FrameSampling
from longvila_r1.data.records import VideoQARecord
from longvila_r1.data.video import VideoDecodeError, sampled_timestamps

log = logging.getLogger(__name__)

# "00:01:02,500 --> 00:01:04,000"; hours, milliseconds and the comma (some files use a dot) are optional.
_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:[,.](\d{1,3}))?"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}")
# HTML-like styling (<i>, <font color=...>) and ASS override blocks ({\an8}) are not part of what is said.
_STYLING = re.compile(r"<[^>]*>|\{\\[^}]*\}")
SUBTITLE_HEADER = "This video's subtitles are listed below:"


@dataclass(frozen=True)
class SubtitleLine:
    """One subtitle cue: shown from ``start`` to ``end`` seconds, ``text`` on one line."""

    start: float
    end: float
    text: str


def parse_srt(text: str) -> list[SubtitleLine]:
    """The cues of an SRT document, in file order; cues without a readable timing line or text are dropped.

    Tolerates a byte-order mark, Windows line ends, missing cue numbers, missing blank lines between cues,
    ``.`` instead of ``,`` before the milliseconds, and styling tags. Multi-line cue text is joined with spaces.

    Example:
        >>> parse_srt("00:00:00.5 --> 00:00:02.25\\n{\\\\an8}Top line\\nsecond part")
        [SubtitleLine(start=0.5, end=2.25, text='Top line second part')]
    """
    cues: list[tuple[float, float, list[str]]] = []
    current: list[str] | None = None
    for raw in text.lstrip("\ufeff").splitlines():
        timing = _TIMING.match(raw)
        if timing:
            if current and current[-1].isdigit():  # the next cue's number, when no blank line came before it
                current.pop()
            start, end = _seconds(timing.groups()[:4]), _seconds(timing.groups()[4:])
            current = []
            cues.append((start, max(start, end), current))
        elif not raw.strip():
            current = None  # a blank line ends the cue; the number of the next one is skipped with it
        elif current is not None:
            current.append(_STYLING.sub("", raw).strip())
    lines = (SubtitleLine(start, end, " ".join(t for t in texts if t)) for start, end, texts in cues)
    return [line for line in lines if line.text]


def load_srt(path: str | Path) -> list[SubtitleLine]:
    """:func:`parse_srt` of a file (UTF-8, with or without a byte-order mark; undecodable bytes replaced)."""
    return parse_srt(Path(path).read_text(encoding="utf-8-sig", errors="replace"))


def subtitles_at(lines: Sequence[SubtitleLine], times: Sequence[float], window_s: float = 0.0) -> list[SubtitleLine]:
    """The lines on screen within ``window_s`` seconds of any of ``times`` (the sampled frames' times).

    Each sampled frame covers ``[t - window_s, t + window_s]``; a line is kept when its ``[start, end]`` overlaps
    the span of at least one frame. ``window_s=0`` keeps the lines on screen at the frames' instants, as the
    VideoMME protocol does. Each line is returned once, in order of appearance.

    Args:
        lines: the video's subtitle lines.
        times: presentation times of the sampled frames, in seconds.
        window_s: half-width of each frame's span, in seconds.
    """
    if window_s < 0:
        raise ValueError(f"window_s must be >= 0, got {window_s}")
    spans = sorted((t - window_s, t + window_s) for t in times)
    kept = [line for line in lines if any(lo <= line.end and line.start <= hi for lo, hi in spans)]
    return sorted(kept, key=lambda line: (line.start, line.end))


def subtitle_prompt(problem: str, lines: Sequence[SubtitleLine]) -> str:
    """``problem`` preceded by the subtitle lines, one per line (unchanged when there are none).

    Repeated consecutive lines (a cue split across frames, or captions that repeat) are written once.
    """
    texts = [line.text for i, line in enumerate(lines) if i == 0 or line.text != lines[i - 1].text]
    if not texts:
        return problem
    return "\n".join([SUBTITLE_HEADER, *texts, problem])


def add_subtitles(
    records: Sequence[VideoQARecord],
    subtitle_root: str | Path,
    frames: FrameSampling,
    *,
    subtitle_pattern: str = "{videoID}.srt",
    window_s: float = 0.0,
) -> list[VideoQARecord]:
    """``records`` with the subtitles of their sampled frames put before each question (with-subtitles setting).

    The frames are those the dataset will sample with ``frames``: their times come from the video's frame index
    (no decoding). A record without a subtitle file keeps its question; so does one whose video cannot be read,
    which then fails in the dataset under its ``on_error`` policy. Both counts are logged.

    Args:
        records: the questions.
        subtitle_root: directory of the ``.srt`` files.
        frames: the frame sampling of the evaluation.
        subtitle_pattern: subtitle file of a record relative to ``subtitle_root``, a ``str.format`` pattern over
            the record's ``extra`` fields, ``id`` and ``video_stem`` (the video file name without suffix).
        window_s: half-width in seconds of each frame's span, see :func:`subtitles_at`.

    Example:
        >>> records = add_subtitles(load_videomme("q.parquet").records, "subtitle", FrameSampling(64))  # doctest: +SKIP
    """
    root = Path(subtitle_root)
    load, times = cache(load_srt), cache(_frame_times)
    out, missing, unreadable = [], 0, 0
    for record in records:
        path = root / _subtitle_name(record, subtitle_pattern)
        if not path.is_file():
            missing += 1
            out.append(record)
            continue
        try:
            shown = subtitles_at(load(path), times(record.video_path, frames), window_s)
        except VideoDecodeError:
            unreadable += 1
            out.append(record)
            continue
        out.append(replace(record, problem=subtitle_prompt(record.problem, shown)))
    if missing or unreadable:
        log.warning(
            "subtitles: %d of %d question(s) have no subtitle file under %s, %d an unreadable video",
            missing, len(records), root, unreadable,
        )  # fmt: skip
    return out


def _subtitle_name(record: VideoQARecord, pattern: str) -> str:
    fields = {**record.extra, "id": record.id, "video_stem": Path(record.videos).stem}
    try:
        return pattern.format_map(fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"subtitle_pattern {pattern!r} needs a field record {record.id!r} lacks ({exc})") from None


def _frame_times(video: Path, frames: FrameSampling) -> tuple[float, ...]:
    stamps = sampled_timestamps(video, frames.num_frames, frames.fps, frames.max_frames, frames.backend)
    return tuple(stamps.tolist())


def _seconds(groups: Sequence[str | None]) -> float:
    hours, minutes, seconds, fraction = groups
    # "1,5" means 1.5 s, as FFmpeg reads it: the digits are a decimal fraction, not a count of milliseconds.
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + float(f"0.{fraction or 0}")
