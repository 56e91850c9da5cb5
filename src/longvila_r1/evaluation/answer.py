"""Answer extraction and format checking for multiple-choice video QA responses.

Shared by the rewards and the metrics, so training and evaluation score a response the same way.

Example:
    >>> extract_answer("<think>the red square came first</think><answer> B </answer>")
    'B'
    >>> extract_answer("I think the answer is (c).")
    'C'
    >>> extract_answer("The answer is A. Wait, no: the answer is **D**.")
    'D'
    >>> extract_answer("It is the blue circle.", options=["red square", "blue circle"])
    'B'
    >>> extract_answer("Either A or B.") is None
    True
    >>> is_well_formatted("<think>...</think><answer>A</answer>")
    True
"""

from __future__ import annotations

import re
from collections.abc import Sequence

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

_THINK_BLOCK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)
# R1-style chat templates open <think> in the prompt, so the response only holds the closing tag.
_ORPHAN_THINK_END = re.compile(r"^.*</think>", re.DOTALL | re.IGNORECASE)
_ANSWER_TAG = re.compile(r"<answer>\s*(.*?)\s*(?:</answer>|$)", re.DOTALL | re.IGNORECASE)
# A closing tag cut short by the token budget ("B</ans") must not hide the letter before it.
_PARTIAL_TAG = re.compile(r"<[^<>]*$")
_MARKDOWN = re.compile(r"\*+|`+|__+")
_WELL_FORMATTED = re.compile(
    r"^\s*<think>(?P<think>(?:(?!</?think>|</?answer>).)+)</think>\s*<answer>\s*(?P<answer>[A-Za-z])\s*</answer>\s*$",
    re.DOTALL,
)

# The answer letter. Lower case counts only where it closes its line ("answer: b", "(c)."), so that prose such
# as "the answer is a dog" never reads as option A.
_L = r"(?P<letter>[A-Z]|[a-z](?=[)\].]*\s*(?:$|\n)))\b"
_OPEN = r"[(\[{（]?\s*"
# "A or B", "A/B", "A and C": a hedge is no answer.
_NO_HEDGE = r"(?![)\]}）]?\s*(?:or|and|/|&)\s*[(\[]?[A-Z]\b)"
_BE = r"(?:is|was|should\s+be|would\s+be|must\s+be|will\s+be|seems\s+to\s+be)"
_ADVERB = r"(?:likely|probably|clearly|definitely|therefore)"

# Explicit statements of the answer: when several match, the last one wins, because a response that corrects
# itself ("the answer is A. Wait, no, the answer is B") means its final statement.
_EXPLICIT = [
    re.compile(
        rf"(?i:\banswer\b(?:\s+to\s+(?:the|this)\s+question)?)\s*(?i:{_BE})?\s*(?i:{_ADVERB})?"
        rf"\s*[:：\-=]?\s*(?i:option|choice)?\s*{_OPEN}{_L}{_NO_HEDGE}"
    ),
    re.compile(
        rf"(?i:\b(?:correct|right|best|final)\s+(?:option|choice)\b)\s*(?i:{_BE})?\s*[:：\-=]?\s*{_OPEN}{_L}{_NO_HEDGE}"
    ),
    re.compile(rf"\\boxed\{{\s*{_OPEN}{_L}"),
    re.compile(rf"(?:答案|选项|选择|选)\s*(?:应该是|应为|是|为)?\s*[:：]?\s*{_OPEN}{_L}{_NO_HEDGE}"),
    re.compile(r"(?<![A-Za-z])[(\[]?(?P<letter>[A-Z])[)\]]?\s+(?i:is\s+(?:the\s+)?(?:correct|right)\b)"),
]
# Weaker cues, tried in order after the explicit ones: a pattern decides only when all its letters agree.
_WEAK = [
    re.compile(rf"(?m)^\s*[(\[{{]?{_L}[)\]}}]?\s*(?:[.):]|$)"),  # "B", "(B)", "B.", "B) text" on a line
    re.compile(rf"(?i:\b(?:option|choice))\s*{_OPEN}{_L}"),  # "I choose option C"
    re.compile(r"(?<![A-Za-z])[(\[{](?P<letter>[A-Za-z])[)\]}]"),  # "(b)" anywhere
]


def strip_reasoning(text: str) -> str:
    """``text`` without its reasoning: ``<think>...</think>`` blocks (an unclosed block runs to the end), and
    everything before a ``</think>`` left without its opening tag (the chat template opened it)."""
    return _ORPHAN_THINK_END.sub(" ", _THINK_BLOCK.sub(" ", text))


def extract_answer(text: str, options: Sequence[str] | None = None, num_options: int = 4) -> str | None:
    """The option letter a response chose, or ``None`` when it gives no answer or hedges.

    Only the text outside the reasoning (``<think>...</think>``) is read. When it has an ``<answer>`` tag, only
    the first tag's content counts (a wrong or unreadable tagged answer cannot be rescued by a letter elsewhere);
    otherwise all of it is searched.
    Markdown emphasis is ignored. In order, the first rule that finds a letter decides:

    1. explicit statements, the last one winning: ``Answer: B``, ``the answer is (B)``, ``Final answer: B``,
       ``the correct option is B``, ``\\boxed{B}``, ``答案：B``, ``B is correct``;
    2. a letter on its own line (``B``, ``(B)``, ``B.``, ``B) text``), ``option B``, a bracketed ``(B)``
       anywhere, each only when all its letters agree (``(A) ... (C)`` is no answer);
    3. when ``options`` are given, the text of exactly one option.

    Hedges (``A or B``) and letters beyond the options (``num_options`` without options) are no answer.

    Args:
        text: the model's response.
        options: option texts in letter order, to match an answer given as text.
        num_options: number of valid letters when ``options`` is ``None``.
    """
    if not options and not 1 <= num_options <= len(LETTERS):
        raise ValueError(f"num_options must be in 1..{len(LETTERS)}, got {num_options}")
    valid = LETTERS[: len(options) if options else num_options]
    # Only what follows the reasoning answers: an <answer> tag quoted inside <think> is not the answer.
    outside = strip_reasoning(text)
    tagged = _ANSWER_TAG.search(outside)
    candidate = _PARTIAL_TAG.sub("", tagged.group(1)) if tagged else outside
    candidate = _MARKDOWN.sub("", candidate)
    return _explicit_letter(candidate, valid) or _weak_letter(candidate, valid) or _option_text_in(candidate, options)


def _letters(pattern: re.Pattern[str], text: str, valid: str) -> list[tuple[int, str]]:
    """(end position, upper-case letter) of each match whose letter is a valid option."""
    found = ((m.end(), m.group("letter").upper()) for m in pattern.finditer(text))
    return [(end, letter) for end, letter in found if letter in valid]


def _explicit_letter(text: str, valid: str) -> str | None:
    matches = [hit for pattern in _EXPLICIT for hit in _letters(pattern, text, valid)]
    return max(matches)[1] if matches else None


def _weak_letter(text: str, valid: str) -> str | None:
    for pattern in _WEAK:
        letters = {letter for _, letter in _letters(pattern, text, valid)}
        if len(letters) == 1:
            return letters.pop()
    return None


def _option_text_in(text: str, options: Sequence[str] | None) -> str | None:
    if not options:
        return None
    padded = _words(text)
    words = [_words(option) for option in options]
    # Whole words only: the option "no" is not in "I cannot tell", nor "red" in "reduced".
    hits = [i for i, option in enumerate(words) if option.strip() and option in padded]
    # Keep only options not contained in another hit ("red" inside "red square").
    hits = [i for i in hits if not any(j != i and words[i] in words[j] for j in hits)]
    return LETTERS[hits[0]] if len(hits) == 1 else None


def _words(text: str) -> str:
    """Lower-case words separated by single spaces, with a space on each side (so ``in`` tests whole words)."""
    return " " + " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split()) + " "


def is_well_formatted(text: str) -> bool:
    """``<think>`` non-empty reasoning ``</think>`` then ``<answer>`` one letter ``</answer>``, nothing else."""
    match = _WELL_FORMATTED.match(text)
    return bool(match and match.group("think").strip())
