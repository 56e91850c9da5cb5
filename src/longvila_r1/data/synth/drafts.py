"""The :class:`Draft` a question template returns, and the helpers templates share (distractors, picks).

Example:
    >>> import numpy as np
    >>> pick(np.random.default_rng(0), ["a", "b", "c"]) in {"a", "b", "c"}
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from longvila_r1.data.synth.narrative import absent_looks
from longvila_r1.data.synth.scene import EASY_COLOURS, HARD_COLOURS, Event, Scene
from longvila_r1.data.synth.stage import EFFECTS


@dataclass
class Draft:
    """A question before its options are lettered.

    Attributes:
        template / category: names recorded with the question.
        problem: the question text, without options.
        answer: the correct option text; ``distractors`` the three wrong ones (all four distinct).
        steps: reasoning sentences in time order; ``conclusion`` the final claim (no letter, no full stop).
        evidence: ``[start, end)`` frame spans that must be seen to answer.
    """

    template: str
    category: str
    problem: str
    answer: str
    distractors: list[str]
    steps: list[str]
    conclusion: str
    evidence: list[tuple[int, int]]


Template = Callable[[Scene, np.random.Generator], "Draft | None"]


def pick(rng: np.random.Generator, items: Sequence):
    """One random item of ``items``."""
    return items[int(rng.integers(len(items)))]


def shuffled(rng: np.random.Generator, items: Sequence) -> list:
    """``items`` in random order."""
    return [items[k] for k in rng.permutation(len(items)).tolist()]


def events_of(scene: Scene, *kinds: str) -> list[Event]:
    """The scene's events of the given kinds, in time order."""
    return [event for event in scene.events if event.kind in kinds]


def look_distractors(
    scene: Scene, rng: np.random.Generator, answer: str, real: Sequence[str], involved: Sequence[int]
) -> list[str]:
    """Three wrong objects: ``real`` ones from the video first, then looks it never shows, then (long videos
    that used up every look) looks other objects had at other times. Looks of the ``involved`` objects are
    never used, since "the blue square" and "the green square" may be one object before and after a recolour.
    """
    chosen = list(dict.fromkeys(look for look in shuffled(rng, list(real)) if look != answer))[:3]
    chosen += absent_looks(scene, rng, 3 - len(chosen), exclude={answer})
    taken = {answer, *chosen}.union(*(scene.looks_ever(i) for i in involved))
    others = sorted(set().union(*(scene.looks_ever(i) for i in range(len(scene.objects)))) - taken)
    return chosen + shuffled(rng, others)[: 3 - len(chosen)]


def effect_distractors(scene: Scene, rng: np.random.Generator, event: Event, table: dict[str, str]) -> list[str]:
    """The three other effects; a recolour distractor gets a colour the object did not turn."""
    colours = EASY_COLOURS if scene.difficulty == "easy" else HARD_COLOURS
    current = scene.colour(event.target if event.kind == "move" else event.third, event.touch)
    spare = [c for c in colours if c not in (current, event.colour)]
    return [table[effect].format(colour=pick(rng, spare)) for effect in EFFECTS if effect != event.effect]


def at_time(scene: Scene, event: Event) -> str:
    """`` at about m:ss`` for hard videos, where the same objects meet several times."""
    return "" if scene.difficulty == "easy" else f" at about {scene.clock(event.start)}"


def touch_span(scene: Scene, event: Event) -> tuple[int, int]:
    """Frames from the start of a move to its touch (hard: plus the frame the mover rests on its target)."""
    return event.start, event.touch + (1 if scene.difficulty == "easy" else 2)
