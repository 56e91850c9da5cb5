"""Words for scenes: event sentences for the chain of thought, short clauses for options, effect phrases.

Every text a question uses comes from here, so the phrasing of a fact is the same in the question, the options
and the reasoning (the corpus a tokenizer is trained on stays small and consistent).

Example:
    >>> import numpy as np
    >>> from longvila_r1.data.synth.events import simulate_scene
    >>> scene = simulate_scene(np.random.default_rng([0, 1]), frames=128, fps=8.0, size=64, difficulty="easy")
    >>> sentence(scene, scene.events[0]).startswith("At 0:0")
    True
"""

from __future__ import annotations

import numpy as np

from longvila_r1.data.synth.scene import EASY_COLOURS, EASY_SHAPES, HARD_COLOURS, HARD_SHAPES, Event, Scene

# What a viewer sees happen to the touched object, as an answer option ("What happened to it?").
OUTCOME = {
    "recolour": "it turned {colour}",
    "vanish": "it vanished",
    "push": "it was pushed away",
    "grow": "it grew bigger",
}
# The same effect as an intention ("Why did the agent go there?").
PURPOSE = {
    "recolour": "to turn it {colour}",
    "vanish": "to make it vanish",
    "push": "to push it away",
    "grow": "to make it grow bigger",
}
# The effect as a verb phrase after the object ("What made the blue circle ...?").
VERB = {"recolour": "turn {colour}", "vanish": "vanish", "push": "move away", "grow": "grow bigger"}
# Present tense for the reasoning narrative ("the blue circle ...").
PRESENT = {"recolour": "turns {colour}", "vanish": "vanishes", "push": "is pushed away", "grow": "grows bigger"}
SIDE_FROM = {"left": "from the left", "right": "from the right", "above": "from above", "below": "from below"}
# Where one object is relative to ``ref`` ("it" in options, "the red square" in the reasoning).
RELATIVE = {
    "left": "to the left of {ref}",
    "right": "to the right of {ref}",
    "above": "above {ref}",
    "below": "below {ref}",
}
QUARTERS = ("first", "second", "third", "last")


def effect_text(table: dict[str, str], event: Event) -> str:
    """The phrase of ``event``'s effect from one of the tables above (fills in the new colour)."""
    return table[event.effect].format(colour=event.colour)


def sentence(scene: Scene, event: Event) -> str:
    """One reasoning sentence for ``event``, with its ``m:ss`` time and the names viewers see then.

    Example: ``"At 0:09 the blue diamond dashes to the yellow cross, touching it from the left; the yellow
    cross turns pink."``
    """
    at = scene.clock(event.start)
    subject = scene.look(event.subject, event.start)
    if event.kind == "appear":
        return f"At {at} {indefinite(subject)} appears {scene.place_words(event.subject, event.start)}."
    if event.kind == "visit":
        place = scene.place_words(event.subject, event.start)
        return f"At {at} {indefinite(subject)} briefly pops up {place} and vanishes again."
    if event.kind == "flash":
        return f"At {at} the {subject} flashes white."
    target = scene.look(event.target, event.touch)
    if event.kind == "chain":
        third = scene.look(event.third, event.touch)
        return (
            f"At {at} the {subject} dashes to the {target} and knocks it into the {third}; "
            f"the {third} {effect_text(PRESENT, event)}."
        )
    outcome = f"the {target} {effect_text(PRESENT, event)}"
    if scene.difficulty == "easy":
        return (
            f"From {at} to {scene.clock(event.touch)} the {subject} moves toward the {target} and touches it "
            f"{SIDE_FROM[event.side]}; then {outcome}."
        )
    return f"At {at} the {subject} dashes to the {target}, touching it {SIDE_FROM[event.side]}; {outcome}."


def clause(scene: Scene, event: Event) -> str:
    """A short past-tense clause naming ``event`` ("the red square flashed white"), for options and questions."""
    subject = scene.look(event.subject, event.start)
    if event.kind == "appear":
        return f"{indefinite(subject)} appeared"
    if event.kind == "visit":
        return f"{indefinite(subject)} briefly popped up"
    if event.kind == "flash":
        return f"the {subject} flashed white"
    target = scene.look(event.target, event.touch)
    if event.kind == "chain":
        return f"the {subject} knocked the {target} into the {scene.look(event.third, event.touch)}"
    return f"the {subject} touched the {target}"


def indefinite(look: str) -> str:
    """``"a red square"``, ``"an orange circle"``."""
    return f"{'an' if look[:1] in 'aeiou' else 'a'} {look}"


def capitalise(text: str) -> str:
    """Upper-case the first letter only (``str.capitalize`` would lower-case the rest)."""
    return text[:1].upper() + text[1:]


def absent_looks(scene: Scene, rng: np.random.Generator, count: int, exclude: set[str] = frozenset()) -> list[str]:
    """``count`` plausible looks (same palette and shapes) that no object of ``scene`` ever has.

    Used as distractors when a video has too few objects of its own: they can only be ruled out by watching.
    """
    colours, shapes = (EASY_COLOURS, EASY_SHAPES) if scene.difficulty == "easy" else (HARD_COLOURS, HARD_SHAPES)
    taken = scene.all_looks() | set(exclude)
    pool = [f"{c} {s}" for c in colours for s in shapes if f"{c} {s}" not in taken]
    return [pool[k] for k in rng.choice(len(pool), size=min(count, len(pool)), replace=False).tolist()]


def times_text(count: int) -> str:
    """``"once"``, ``"twice"``, ``"3 times"``."""
    return {1: "once", 2: "twice"}.get(count, f"{count} times")
