"""Question templates: each reads a scene's event log and returns a :class:`Draft` (or ``None`` if it cannot).

A template picks its subject at random among the events that support it, writes the question, the correct
option, three distractors (taken from the same video's objects and events where possible, so they are
plausible), the reasoning steps and the evidence spans (frames a viewer must see). Letters are assigned later
by :func:`~longvila_r1.data.synth.questions.make_questions`, never here.

``TEMPLATES[difficulty][category]`` lists the templates of each category:

* easy (coarse facts that 16 frames always show): ``first_appeared``, ``goal_target``, ``relative_position``,
  ``touch_effect``.
* hard (short events, counting, order, chains): temporal ``first_visitor``, ``last_visitor``, ``next_event``,
  ``count_flashes``, ``count_visits``, ``when_event``; goal ``goal_target``, ``goal_purpose``; spatial
  ``visit_position``, ``approach_side``; plot ``touch_effect``, ``effect_cause``, ``chain_origin``.

Example:
    >>> import numpy as np
    >>> from longvila_r1.data.synth.events import simulate_scene
    >>> scene = simulate_scene(np.random.default_rng([0, 1]), frames=128, fps=8.0, size=64, difficulty="easy")
    >>> first_appeared(scene, np.random.default_rng(0)).problem
    'Which object appeared first in the video?'
"""

from __future__ import annotations

import numpy as np

from longvila_r1.data.synth.drafts import (
    Draft,
    Template,
    at_time,
    effect_distractors,
    events_of,
    look_distractors,
    pick,
    touch_span,
)
from longvila_r1.data.synth.narrative import OUTCOME, PRESENT, PURPOSE, RELATIVE, SIDE_FROM, VERB, effect_text, sentence
from longvila_r1.data.synth.scene import Scene
from longvila_r1.data.synth.temporal import (
    count_flashes,
    count_visits,
    first_appeared,
    first_visitor,
    last_visitor,
    next_event,
    when_event,
)


# -- goal and purpose -----------------------------------------------------------------------------------------
def goal_target(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """Which object the mover was heading for (evidence: the approach up to the touch)."""
    moves = events_of(scene, "move", "chain")
    if not moves:
        return None
    event = pick(rng, moves)
    agent, target = scene.look(event.subject, event.start), scene.look(event.target, event.start)
    verb = "move toward" if scene.difficulty == "easy" else "dash to"
    others = [
        scene.look(i, event.start) for i in scene.visible_at(event.start) if i not in (event.subject, event.target)
    ]
    return Draft(
        "goal_target",
        "goal_purpose",
        f"Which object did the {agent} {verb}{at_time(scene, event)}?",
        target,
        look_distractors(scene, rng, target, others, [event.subject, event.target]),
        [sentence(scene, event)],
        f"The {agent} was heading for the {target}",
        [touch_span(scene, event)],
    )


def goal_purpose(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """Hard: why the mover went to its target, judged by what the touch did (evidence: dash and effect)."""
    moves = events_of(scene, "move")
    if not moves:
        return None
    event = pick(rng, moves)
    agent, target = scene.look(event.subject, event.start), scene.look(event.target, event.start)
    return Draft(
        "goal_purpose",
        "goal_purpose",
        f"Why did the {agent} dash to the {target}{at_time(scene, event)}?",
        effect_text(PURPOSE, event),
        effect_distractors(scene, rng, event, PURPOSE),
        [sentence(scene, event)],
        f"The touch made the {target} {effect_text(VERB, event)}, so the {agent} went there "
        f"{effect_text(PURPOSE, event).replace('it', f'the {target}', 1)}",
        [(event.start, event.settle + 1)],
    )


# -- spatial --------------------------------------------------------------------------------------------------
def relative_position(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """Easy: where an earlier object was relative to a newcomer when it appeared (evidence: until the move)."""
    appears, moves = events_of(scene, "appear"), events_of(scene, "move")
    pairs = [
        (a, b, scene.relation(a.subject, b.subject, b.start))
        for k, b in enumerate(appears)
        for a in appears[:k]
        if scene.relation(a.subject, b.subject, b.start)
    ]
    if not pairs or not moves:
        return None
    a, b, side = pick(rng, pairs)
    first, newcomer = scene.look(a.subject, b.start), scene.look(b.subject, b.start)
    answer = RELATIVE[side].format(ref="it")
    return Draft(
        "relative_position",
        "spatial",
        f"Where was the {first} relative to the {newcomer} when the {newcomer} appeared?",
        answer,
        [RELATIVE[other].format(ref="it") for other in RELATIVE if other != side],
        [sentence(scene, a), sentence(scene, b)],
        f"The {first} was {RELATIVE[side].format(ref=f'the {newcomer}')}",
        [(b.start, moves[0].start)],
    )


def visit_position(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """Hard: where a short visitor popped up relative to a resident (evidence: the visit)."""
    pairs = [
        (event, ref, scene.relation(event.subject, ref, event.start))
        for event in events_of(scene, "visit")
        for ref in scene.visible_at(event.start, residents_only=True)
        if scene.relation(event.subject, ref, event.start)
    ]
    if not pairs:
        return None
    event, ref, side = pick(rng, pairs)
    visitor, resident = scene.look(event.subject, event.start), scene.look(ref, event.start)
    return Draft(
        "visit_position",
        "spatial",
        f"Where did the {visitor} pop up relative to the {resident}?",
        RELATIVE[side].format(ref="it"),
        [RELATIVE[other].format(ref="it") for other in RELATIVE if other != side],
        [sentence(scene, event), f"The {resident} is {scene.place_words(ref, event.start)} at that moment."],
        f"The {visitor} popped up {RELATIVE[side].format(ref=f'the {resident}')}",
        [(event.start, event.end)],
    )


def approach_side(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """Hard: from which side the mover touched its target (evidence: the dash)."""
    moves = events_of(scene, "move", "chain")
    if not moves:
        return None
    event = pick(rng, moves)
    agent, target = scene.look(event.subject, event.start), scene.look(event.target, event.start)
    return Draft(
        "approach_side",
        "spatial",
        f"From which side did the {agent} touch the {target}{at_time(scene, event)}?",
        SIDE_FROM[event.side],
        [SIDE_FROM[side] for side in SIDE_FROM if side != event.side],
        [sentence(scene, event)],
        f"The {agent} touched the {target} {SIDE_FROM[event.side]}",
        [touch_span(scene, event)],
    )


# -- plot and narrative ---------------------------------------------------------------------------------------
def touch_effect(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """What happened to an object after it was touched (easy evidence: approach + lasting effect)."""
    moves = events_of(scene, "move")
    if not moves:
        return None
    event = pick(rng, moves)
    agent, target = scene.look(event.subject, event.start), scene.look(event.target, event.start)
    if scene.difficulty == "easy":
        evidence = [touch_span(scene, event), (event.settle, scene.frames)]
    else:
        evidence = [(event.start, event.settle + 1)]
    return Draft(
        "touch_effect",
        "plot_narrative",
        f"What happened to the {target} after the {agent} touched it{at_time(scene, event)}?",
        effect_text(OUTCOME, event),
        effect_distractors(scene, rng, event, OUTCOME),
        [sentence(scene, event)],
        f"After the touch the {target} {effect_text(PRESENT, event)}",
        evidence,
    )


def effect_cause(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """Hard: which object caused a change (evidence: the dash that caused it)."""
    moves = events_of(scene, "move")
    if not moves:
        return None
    event = pick(rng, moves)
    agent, target = scene.look(event.subject, event.start), scene.look(event.target, event.start)
    others = [
        scene.look(i, event.start) for i in scene.visible_at(event.start) if i not in (event.subject, event.target)
    ]
    return Draft(
        "effect_cause",
        "plot_narrative",
        f"What made the {target} {effect_text(VERB, event)}{at_time(scene, event)}?",
        agent,
        look_distractors(scene, rng, agent, others, [event.subject, event.target]),
        [sentence(scene, event)],
        f"The change came right after the {agent} touched the {target}",
        [(event.start, event.settle + 1)],
    )


def chain_origin(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """Hard: who started a two-step chain (the knocked object is the tempting wrong answer)."""
    chains = events_of(scene, "chain")
    if not chains:
        return None
    event = pick(rng, chains)
    agent, middle = scene.look(event.subject, event.start), scene.look(event.target, event.start)
    third = scene.look(event.third, event.start)
    others = [
        scene.look(i, event.start)
        for i in scene.visible_at(event.start)
        if i not in (event.subject, event.target, event.third)
    ]
    return Draft(
        "chain_origin",
        "plot_narrative",
        f"Which object set off the chain of events that made the {third} {effect_text(VERB, event)}?",
        agent,
        [middle, *look_distractors(scene, rng, agent, others, [event.subject, event.target, event.third])[:2]],
        [sentence(scene, event)],
        f"The {agent} started it by knocking the {middle} into the {third}",
        [(event.start, event.settle + 1)],
    )


TEMPLATES: dict[str, dict[str, tuple[Template, ...]]] = {
    "easy": {
        "temporal": (first_appeared,),
        "goal_purpose": (goal_target,),
        "spatial": (relative_position,),
        "plot_narrative": (touch_effect,),
    },
    "hard": {
        "temporal": (first_visitor, last_visitor, next_event, count_flashes, count_visits, when_event),
        "goal_purpose": (goal_target, goal_purpose),
        "spatial": (visit_position, approach_side),
        "plot_narrative": (touch_effect, effect_cause, chain_origin),
    },
}
