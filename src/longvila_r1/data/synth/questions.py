"""Turn a scene into multiple-choice records: pick templates per category, letter the options, write the CoT.

The letter of the correct option is *given* (the generator draws it from a balanced per-split schedule) and the
options are placed around it, so letters are spread evenly over A-D and carry no information about the
template, the category or the answer text. Distractors come from the templates in random order.

Example:
    >>> import numpy as np
    >>> from longvila_r1.data.synth.events import simulate_scene
    >>> scene = simulate_scene(np.random.default_rng([0, 1]), frames=128, fps=8.0, size=64, difficulty="easy")
    >>> records = make_questions(scene, np.random.default_rng(1), letters=[2, 0], categories=["temporal", "spatial"])
    >>> [(r["category"], r["answer"]) for r in records]
    [('temporal', 'C'), ('spatial', 'A')]
    >>> records[0]["reasoning"].endswith("<answer>C</answer>")
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from longvila_r1.data.synth.drafts import Draft
from longvila_r1.data.synth.scene import Scene
from longvila_r1.data.synth.templates import TEMPLATES

LETTERS = "ABCD"
# How every chain names its answer; longvila_r1.rewards.ConsistencyReward reads the chains by this phrase.
CONCLUSION_PHRASE = "That matches the option"
CATEGORIES = ("temporal", "goal_purpose", "spatial", "plot_narrative")


def make_questions(
    scene: Scene, rng: np.random.Generator, letters: Sequence[int], categories: Sequence[str]
) -> list[dict[str, Any]]:
    """One question per ``(letter, category)`` pair, each with a different problem text.

    Args:
        scene: the simulated video.
        rng: the video's question generator (separate from the scene's, so rendering never shifts it).
        letters: index (0-3) of the correct option of each question.
        categories: the wanted category of each question; when no template of it applies to this video (rare),
            the next category that does is used, and when no template applies at all the list ends early.

    Returns:
        Dicts with ``problem``, ``options``, ``answer``, ``reasoning``, ``category``, ``difficulty``,
        ``template`` and ``evidence`` (``[start_s, end_s)`` spans in seconds).
    """
    records, seen = [], set()
    for letter, category in zip(letters, categories, strict=True):
        order = [category, *(c for c in CATEGORIES if c != category)]
        draft = next((d for c in order if (d := _draft(scene, rng, c, seen)) is not None), None)
        if draft is None:
            break
        seen.add(draft.problem)
        records.append(to_record(scene, draft, letter, rng))
    return records


def _draft(scene: Scene, rng: np.random.Generator, category: str, seen: set[str]) -> Draft | None:
    """The first template of ``category`` (in random order) that fits the scene with an unseen problem."""
    templates = TEMPLATES[scene.difficulty][category]
    for k in rng.permutation(len(templates)).tolist():
        draft = templates[k](scene, rng)
        if draft is not None and draft.problem not in seen:
            return draft
    return None


def to_record(scene: Scene, draft: Draft, letter: int, rng: np.random.Generator) -> dict[str, Any]:
    """Place the answer at ``letter``, the distractors around it in random order, and write the reasoning."""
    options = [draft.answer, *draft.distractors]
    if len(options) != 4 or len(set(options)) != 4:
        raise ValueError(f"template {draft.template!r} produced options that are not 4 distinct texts: {options}")
    others = [draft.distractors[k] for k in rng.permutation(3).tolist()]
    options = [*others[:letter], draft.answer, *others[letter:]]
    return {
        "problem": draft.problem,
        "options": options,
        "answer": LETTERS[letter],
        "reasoning": reasoning_text(draft, options, letter),
        "category": draft.category,
        "difficulty": scene.difficulty,
        "template": draft.template,
        "evidence": [[round(start / scene.fps, 3), round(end / scene.fps, 3)] for start, end in draft.evidence],
    }


def reasoning_text(draft: Draft, options: Sequence[str], letter: int) -> str:
    """The CoT-SFT target: what the video shows, the matching option, a check of every option, then the letter.

    ``<think>Checking the video, at 0:02 ... The red square appeared first. That matches the option "red square".
    A. blue circle: no. B. red square: yes. ... So the answer is B.</think><answer>B</answer>``

    The option check is there for small models: mapping an answer text back to its letter is a lookup that a
    tiny random-init model learns only late and by chance, whereas copying each option line and marking the one
    equal to the quoted answer is plain copying; the letter then follows the single ``yes``.
    """
    body = " ".join(draft.steps)
    checks = " ".join(f"{LETTERS[k]}. {option}: {'yes' if k == letter else 'no'}." for k, option in enumerate(options))
    return (
        f"<think>Checking the video, {body[:1].lower()}{body[1:]} {draft.conclusion}. "
        f'{CONCLUSION_PHRASE} "{draft.answer}". {checks} '
        f"So the answer is {LETTERS[letter]}.</think><answer>{LETTERS[letter]}</answer>"
    )
