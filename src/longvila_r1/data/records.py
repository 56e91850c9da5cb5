"""The video-QA record schema (LongVideo-Reason style), its validation, and JSON / JSONL / parquet I/O.

A record is ``{"problem": str, "answer": "B", "videos": "relative/path.mp4", ...}`` with optional
``reasoning`` (SFT target), ``category`` (eval breakdown), ``options``, ``id`` and ``duration``. Fields the
schema does not know (``difficulty``, ``template``, ``evidence``, ...) are kept in ``extra`` and written back
by :func:`save_records`, so a load/save round trip loses nothing.

Every validation failure is a :class:`RecordError` that says where it happened::

    train.jsonl line 12, field 'answer': expected a letter A-D, got 'E'
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

CATEGORIES = ("temporal", "goal_purpose", "spatial", "plot_narrative")
REQUIRED_FIELDS = ("problem", "answer", "videos")
OPTIONAL_FIELDS = ("reasoning", "category", "options", "id", "duration")
SUPPORTED_SUFFIXES = (".json", ".jsonl", ".parquet")

# "B", "b", "(B)", "B.", "B)" -> "B". Longer forms ("B. Running") are rejected: guessing there hides data bugs.
_LETTER = re.compile(r"^\(?\s*([A-Za-z])\s*\)?[.:]?$")
# An option already labelled with its own letter ("A. foo", "(A) foo"): the label is stripped so prompts that
# add "A. " themselves do not print it twice.
_OPTION_LABEL = re.compile(r"^\(?([A-Z])[.):]\s*")
_ANSWER_TAG = re.compile(r"<answer>.*?</answer>", re.DOTALL)

# Category spellings are matched on their word set, so "Goal & Purpose", "goal_and_purpose" and "Goal-Purpose
# reasoning" all reduce to {"goal", "purpose"}. Filler words are dropped before the lookup.
_CATEGORY_FILLER = frozenset({"and", "the", "reasoning", "question", "questions", "understanding"})
_CATEGORY_ALIASES = {
    "temporal": ("temporal",),
    "goal_purpose": ("goal purpose", "goal", "purpose"),
    "spatial": ("spatial",),
    "plot_narrative": ("plot narrative", "plot", "narrative"),
}
_CATEGORY_WORDS = {frozenset(words.split()): name for name, aliases in _CATEGORY_ALIASES.items() for words in aliases}


class RecordError(ValueError):
    """A malformed record or record file, located as precisely as the format allows.

    Attributes:
        reason: what is wrong, without the location prefix.
        path: the record file, or ``None`` for a record built in code.
        line: where in ``path``: the 1-based line for ``.jsonl`` (and for JSON syntax errors), the 0-based list
            index for ``.json``, the 0-based row for ``.parquet``; ``unit`` says which.
        unit: ``"line"``, ``"index"`` or ``"row"``.
        field: the offending field, or ``None`` when the whole record (or file) is at fault.

    Example:
        >>> str(RecordError("expected a letter A-D, got 'E'", path="train.jsonl", line=12, field="answer"))
        "train.jsonl line 12, field 'answer': expected a letter A-D, got 'E'"
    """

    def __init__(
        self,
        reason: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        unit: Literal["line", "index", "row"] = "line",
        field: str | None = None,
    ) -> None:
        self.reason, self.path, self.line, self.unit, self.field = reason, path, line, unit, field
        where = [Path(path).name] if path is not None else []
        if line is not None:
            where.append(f"{unit} {line}")
        prefix = " ".join(where)
        if field is not None:
            prefix = f"{prefix}, field {field!r}" if prefix else f"field {field!r}"
        super().__init__(f"{prefix}: {reason}" if prefix else reason)

    def located(self, path: str | Path, line: int | None, unit: Literal["line", "index", "row"]) -> RecordError:
        """Return the same error with its file location filled in."""
        return RecordError(self.reason, path=path, line=line, unit=unit, field=self.field)


def normalize_category(value: str | None) -> str | None:
    """Map a category spelling to one of :data:`CATEGORIES` (``None`` and blank stay ``None``).

    Raises:
        RecordError: for an unknown category (the message lists the valid ones) or a non-string.

    Example:
        >>> normalize_category("Goal & Purpose"), normalize_category("Temporal Reasoning")
        ('goal_purpose', 'temporal')
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise RecordError(f"expected a string, got {_describe(value)}", field="category")
    words = frozenset(re.split(r"[^a-z]+", value.lower().replace("&", " and "))) - _CATEGORY_FILLER - {""}
    if not words:
        return None
    if words not in _CATEGORY_WORDS:
        raise RecordError(f"unknown category {value!r}; expected one of {', '.join(CATEGORIES)}", field="category")
    return _CATEGORY_WORDS[words]


@dataclass(frozen=True)
class VideoQARecord:
    """One multiple-choice question about one video, validated and normalised on construction.

    Args:
        problem: the question text (surrounding whitespace stripped; must not be empty).
        answer: the correct option letter; ``"b"``, ``" B "``, ``"(B)"`` and ``"B."`` become ``"B"``.
        videos: the video path, relative to a video root (or absolute). A one-element list is accepted, as some
            datasets store it; several videos per record are not supported yet.
        reasoning: the chain of thought for CoT-SFT, with or without ``<think>``/``<answer>`` tags.
        category: an eval category, normalised by :func:`normalize_category`.
        options: the option texts in letter order (stored as a tuple; a leading ``"A. "`` label is stripped).
            When given, ``answer`` must index into them.
        id: a record id (ints are turned into strings).
        duration: the video duration in seconds.
        extra: every other field of the source record, kept for the round trip.
        video_root: the directory ``videos`` is relative to; set by the loaders, not serialised.

    Example:
        >>> r = VideoQARecord(problem="What happens first?", answer="(b)", videos=["clips/a.mp4"],
        ...                   options=["A. a dog runs", "B. a cat sits"], category="Temporal Reasoning")
        >>> r.answer, r.videos, r.options, r.category
        ('B', 'clips/a.mp4', ('a dog runs', 'a cat sits'), 'temporal')
        >>> r.response()
        '<answer>B</answer>'
    """

    problem: str
    answer: str
    videos: str
    reasoning: str | None = None
    category: str | None = None
    options: tuple[str, ...] | None = None
    id: str | None = None
    duration: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, hash=False)
    video_root: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # Frozen dataclass: normalised values are written with object.__setattr__, once, here.
        options = _check_options(self.options)
        values = {
            "problem": _check_text(self.problem, "problem"),
            "videos": _check_videos(self.videos),
            "reasoning": None if _is_blank(self.reasoning) else _check_text(self.reasoning, "reasoning"),
            "category": normalize_category(self.category),
            "options": options,
            "answer": _check_answer(self.answer, options),
            "id": _check_id(self.id),
            "duration": _check_duration(self.duration),
            "video_root": None if self.video_root is None else str(self.video_root),
        }
        if not isinstance(self.extra, dict):
            raise RecordError(f"expected a dict, got {_describe(self.extra)}", field="extra")
        clash = sorted(set(self.extra) & set(REQUIRED_FIELDS + OPTIONAL_FIELDS))
        if clash:
            raise RecordError(f"extra repeats schema fields {clash}", field="extra")
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_dict(cls, raw: Any, video_root: str | Path | None = None) -> VideoQARecord:
        """Build a record from a raw dict (as read from JSON); unknown keys go to ``extra``.

        Example:
            >>> VideoQARecord.from_dict({"problem": "Q?", "answer": "a", "videos": "v.mp4", "difficulty": 3}).extra
            {'difficulty': 3}
        """
        if not isinstance(raw, dict):
            raise RecordError(f"expected a JSON object, got {_describe(raw)}")
        for name in REQUIRED_FIELDS:
            if name not in raw:
                raise RecordError("missing required field", field=name)
        known = {k: raw[k] for k in REQUIRED_FIELDS + OPTIONAL_FIELDS if k in raw}
        extra = {k: v for k, v in raw.items() if k not in known}
        return cls(**known, extra=extra, video_root=None if video_root is None else str(video_root))

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict: schema fields (``None`` ones omitted), then ``extra``."""
        out: dict[str, Any] = {}
        for name in REQUIRED_FIELDS + OPTIONAL_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = list(value) if isinstance(value, tuple) else value
        out.update(self.extra)
        return out

    @property
    def video_path(self) -> Path:
        """The video path, resolved against ``video_root`` when the record knows it (else as stored)."""
        return self.resolve(self.video_root) if self.video_root is not None else Path(self.videos)

    def resolve(self, video_root: str | Path | None = None) -> Path:
        """The absolute video path under ``video_root`` (default: the record's own ``video_root``, else cwd)."""
        root = Path(video_root if video_root is not None else (self.video_root or "."))
        return (root / self.videos).expanduser().resolve()

    def response(self) -> str:
        """The CoT-SFT target: ``<think>reasoning</think><answer>X</answer>``.

        A reasoning that already contains ``<answer>...</answer>`` is used as is; one that already has its
        ``<think>`` block only gets the answer appended; no reasoning gives ``<answer>X</answer>``.
        """
        if self.reasoning is None:
            return f"<answer>{self.answer}</answer>"
        if _ANSWER_TAG.search(self.reasoning):
            return self.reasoning
        if "<think>" in self.reasoning:
            return f"{self.reasoning}<answer>{self.answer}</answer>"
        return f"<think>{self.reasoning}</think><answer>{self.answer}</answer>"


@dataclass
class LoadReport:
    """What :func:`load_records_with_report` read: the good records and the errors of the skipped ones.

    Example:
        >>> report = load_records_with_report("train.jsonl", on_error="skip")  # doctest: +SKIP
        >>> len(report.records), report.num_skipped, [str(e) for e in report.skipped[:3]]  # doctest: +SKIP
    """

    path: Path
    records: list[VideoQARecord] = field(default_factory=list)
    skipped: list[RecordError] = field(default_factory=list)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)


def load_records(
    path: str | Path,
    video_root: str | Path | None = None,
    *,
    on_error: Literal["raise", "skip"] = "raise",
    check_videos: bool = False,
) -> list[VideoQARecord]:
    """Read and validate the records of a ``.json``, ``.jsonl`` or ``.parquet`` file.

    Use :func:`load_records_with_report` to also get the errors of skipped records.

    Args:
        path: the record file. ``.json`` holds a list of objects or ``{"data": [...]}``.
        video_root: directory the ``videos`` paths are relative to; defaults to the file's directory.
        on_error: ``"raise"`` the first :class:`RecordError`, or ``"skip"`` malformed records (logged).
            File-level errors (unreadable JSON document, wrong top-level shape) always raise.
        check_videos: also require each video file to exist.

    Example:
        >>> records = load_records("data/train.jsonl", video_root="data/videos")  # doctest: +SKIP
        >>> records[0].resolve()  # doctest: +SKIP
        PosixPath('/abs/data/videos/clip_000.mp4')
    """
    return load_records_with_report(path, video_root, on_error=on_error, check_videos=check_videos).records


def load_records_with_report(
    path: str | Path,
    video_root: str | Path | None = None,
    *,
    on_error: Literal["raise", "skip"] = "raise",
    check_videos: bool = False,
    convert: Callable[[Any, Path], VideoQARecord] | None = None,
) -> LoadReport:
    """Like :func:`load_records`, returning a :class:`LoadReport` with ``records`` and ``skipped`` errors.

    ``convert(raw, video_root)`` turns one raw row into a record (default :meth:`VideoQARecord.from_dict`); a
    benchmark with its own schema (VideoMME) passes its converter and gets the same location and error handling.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    path = Path(path)
    root = Path(video_root) if video_root is not None else path.parent
    report = LoadReport(path=path)
    for raw, line, unit in _read_raw(path):
        try:
            if isinstance(raw, RecordError):
                raise raw
            record = convert(raw, root) if convert is not None else VideoQARecord.from_dict(raw, video_root=root)
            if check_videos and not record.resolve().is_file():
                raise RecordError(f"video file not found: {record.resolve()}", field="videos")
        except RecordError as err:
            located = err.located(path, line, unit)
            if on_error == "raise":
                raise located from None
            report.skipped.append(located)
            continue
        report.records.append(record)
    if report.skipped:
        log.warning("%s: skipped %d malformed record(s), first: %s", path, report.num_skipped, report.skipped[0])
    return report


def save_records(records: Sequence[VideoQARecord], path: str | Path) -> Path:
    """Write ``records`` as JSONL (one :meth:`VideoQARecord.to_dict` per line, UTF-8, non-ASCII kept).

    Example:
        >>> save_records(load_records("train.json"), "train.jsonl")  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
    return path


def _read_raw(path: Path) -> Iterator[tuple[Any, int, Literal["line", "index", "row"]]]:
    """Yield ``(raw record, location, unit)``; an unparsable JSONL line comes as a RecordError instead of a dict."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise RecordError(f"unsupported record file suffix {suffix!r}; expected one of {SUPPORTED_SUFFIXES}", path=path)
    if suffix == ".parquet":
        for row, raw in enumerate(_read_parquet(path)):
            yield raw, row, "row"
        return
    # utf-8-sig drops a byte-order mark, which json.loads would otherwise reject.
    text = path.read_text(encoding="utf-8-sig")
    if suffix == ".json":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as err:
            if not err.msg.startswith("Extra data"):
                raise RecordError(f"invalid JSON: {err.msg}", path=path, line=err.lineno) from None
            # Several top-level values: a JSONL file named .json, which is common enough to accept.
            yield from _jsonl_lines(text)
            return
        for index, raw in enumerate(_json_items(document, path)):
            yield raw, index, "index"
        return
    yield from _jsonl_lines(text)


def _jsonl_lines(text: str) -> Iterator[tuple[Any, int, Literal["line"]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line), number, "line"
        except json.JSONDecodeError as err:
            # Yielded, not raised, so the caller's skip/raise policy applies to it like to any bad record.
            yield RecordError(f"invalid JSON: {err.msg} (column {err.colno})"), number, "line"


def _json_items(document: Any, path: Path) -> list[Any]:
    if isinstance(document, dict) and isinstance(document.get("data"), list):
        return document["data"]
    if isinstance(document, list):
        return document
    raise RecordError(f'expected a list of records or {{"data": [...]}}, got {_describe(document)}', path=path)


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise ImportError(f"reading {path.name} needs pyarrow: pip install pyarrow") from err
    return pq.read_table(path).to_pylist()


def _describe(value: Any) -> str:
    return "null" if value is None else f"{value!r} ({type(value).__name__})"


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _check_text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise RecordError(f"expected a string, got {_describe(value)}", field=name)
    if not value.strip():
        raise RecordError("must not be empty", field=name)
    return value.strip()


def _check_videos(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise RecordError(
                f"expected one video path, got a list of {len(value)}; multi-video records are not supported yet",
                field="videos",
            )
        value = value[0]
    return _check_text(value, "videos")


def _check_options(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise RecordError(f"expected a list of strings, got {_describe(value)}", field="options")
    if not 1 <= len(value) <= 26:
        raise RecordError(f"expected 1 to 26 options, got {len(value)}", field="options")
    texts = [_check_text(v, "options") for v in value]
    labels = [_OPTION_LABEL.match(t) for t in texts]
    if all(m is not None and m.group(1) == chr(ord("A") + i) for i, m in enumerate(labels)):
        texts = [t[m.end() :].strip() or t for t, m in zip(texts, labels, strict=True)]
    return tuple(texts)


def _check_answer(value: Any, options: tuple[str, ...] | None) -> str:
    span = f"A-{chr(ord('A') + len(options) - 1)}" if options else "A-Z"
    if not isinstance(value, str):
        raise RecordError(f"expected a letter {span}, got {_describe(value)}", field="answer")
    match = _LETTER.match(value.strip())
    letter = match.group(1).upper() if match else None
    if letter is None or (options is not None and ord(letter) - ord("A") >= len(options)):
        raise RecordError(f"expected a letter {span}, got {value!r}", field="answer")
    return letter


def _check_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RecordError(f"expected a string or an int, got {_describe(value)}", field="id")
    return str(value)


def _check_duration(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise RecordError(f"expected a non-negative number of seconds, got {_describe(value)}", field="duration")
    return float(value)
