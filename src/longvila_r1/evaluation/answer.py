"""Answer extraction and format checking for multiple-choice video QA responses.

Shared by the rewards and the metrics, so training and evaluation score a response the same way.

Example:
    >>> extract_answer("<think>the red square came first</think><answer> B </answer>")
    'B'
    >>> extract_answer("I think the answer is (c).")
    'C'
    >>> extract_answer("It is the blue circle.", options=["red square", "blue circle"])
    'B'
    >>> is_well_formatted("<think>...</think><answer>A</answer>")
    True
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_THINK_BLOCK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)
_ANSWER_TAG = re.compile(r"<answer>\s*(.*?)\s*(?:</answer>|$)", re.DOTALL | re.IGNORECASE)
_WELL_FORMATTED = re.compile(
    r"^\s*<think>(?P<think>(?:(?!</?think>|</?answer>).)+)</think>\s*<answer>\s*(?P<answer>[A-Za-z])\s*</answer>\s*$",
    re.DOTALL,
)
# Ordered from most to least explicit; the first pattern that matches decides.
_LETTER_PATTERNS = [
    re.compile(r"^\s*\(?([A-Za-z])\)?\s*(?:[.):]|$)"),  # "B", "(B)", "B.", "B)", "B: text"
    re.compile(r"\b(?:final\s+)?answer\s*(?:is|:)?\s*(?:option\s*)?\(?\b([A-Z])\b\)?", re.IGNORECASE),
    re.compile(r"\boption\s*\(?\b([A-Z])\b\)?", re.IGNORECASE),
    re.compile(r"\(([A-Za-z])\)"),
    re.compile(r"(?:^|\n)\s*([A-Z])[.)]\s"),
]

# Lower-case letters count only as a whole answer ("b") or in parentheses ("(b)"), never as a word ("a dog").
_LOWERCASE_OK = (_LETTER_PATTERNS[0], _LETTER_PATTERNS[3])


def strip_reasoning(text: str) -> str:
    """``text`` without its ``<think>...</think>`` blocks (an unclosed block runs to the end)."""
    return _THINK_BLOCK.sub(" ", text)


def extract_answer(text: str, options: Sequence[str] | None = None, num_options: int = 4) -> str | None:
    """The option letter a response chose, or ``None`` when it gives no answer.

    When the response has an ``<answer>`` tag, only the tag's content counts (a wrong or unreadable tagged
    answer cannot be rescued by a letter elsewhere); otherwise the text outside ``<think>`` is searched.
    Accepts ``B``, ``(B)``, ``B.``, ``B) text``, ``Answer: B``, ``the answer is B``, ``option B`` and, when
    ``options`` are given, the text of exactly one option. Letters beyond the options (``num_options``
    without options) are rejected.

    Args:
        text: the model's response.
        options: option texts in letter order, to match an answer given as text.
        num_options: number of valid letters when ``options`` is ``None``.
    """
    valid = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(options) if options else num_options]
    tagged = _ANSWER_TAG.search(text)
    candidate = tagged.group(1) if tagged else strip_reasoning(text)
    return _letter_in(candidate, valid) or _option_text_in(candidate, options)


def _letter_in(text: str, valid: str) -> str | None:
    for pattern in _LETTER_PATTERNS:
        match = pattern.search(text)
        if match and match.group(1).upper() in valid:
            if match.group(1).islower() and pattern not in _LOWERCASE_OK:
                continue
            return match.group(1).upper()
    return None


def _option_text_in(text: str, options: Sequence[str] | None) -> str | None:
    if not options:
        return None
    lowered = _normalise(text)
    hits = [i for i, option in enumerate(options) if _normalise(option) and _normalise(option) in lowered]
    # Keep only options not contained in another hit ("red" inside "red square").
    hits = [i for i in hits if not any(j != i and _normalise(options[i]) in _normalise(options[j]) for j in hits)]
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[hits[0]] if len(hits) == 1 else None


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split())


def is_well_formatted(text: str) -> bool:
    """``<think>`` non-empty reasoning ``</think>`` then ``<answer>`` one letter ``</answer>``, nothing else."""
    match = _WELL_FORMATTED.match(text)
    return bool(match and match.group("think").strip())
