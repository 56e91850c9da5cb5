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

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from longvila_r1.data.synth.events import EFFECTS, count_window
from longvila_r1.data.synth.narrative import (
    OUTCOME,
    PRESENT,
    PURPOSE,
    QUARTERS,
    RELATIVE,
    SIDE_FROM,
    VERB,
    absent_looks,
    capitalise,
    clause,
    effect_text,
    indefinite,
    sentence,
    times_text,
)
from longvila_r1.data.synth.scene import EASY_COLOURS, HARD_COLOURS, Event, Scene


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


def _pick(rng: np.random.Generator, items: Sequence):
    return items[int(rng.integers(len(items)))]


def _shuffled(rng: np.random.Generator, items: Sequence) -> list:
    return [items[k] for k in rng.permutation(len(items)).tolist()]


def _events(scene: Scene, *kinds: str) -> list[Event]:
    return [event for event in scene.events if event.kind in kinds]


def _look_distractors(
    scene: Scene, rng: np.random.Generator, answer: str, real: Sequence[str], involved: Sequence[int]
) -> list[str]:
    """Three wrong objects: ``real`` ones from the video first, then looks it never shows, then (long videos
    that used up every look) looks other objects had at other times. Looks of the ``involved`` objects are
    never used, since "the blue square" and "the green square" may be one object before and after a recolour.
    """
    chosen = list(dict.fromkeys(look for look in _shuffled(rng, list(real)) if look != answer))[:3]
    chosen += absent_looks(scene, rng, 3 - len(chosen), exclude={answer})
    taken = {answer, *chosen}.union(*(scene.looks_ever(i) for i in involved))
    others = sorted(set().union(*(scene.looks_ever(i) for i in range(len(scene.objects)))) - taken)
    return chosen + _shuffled(rng, others)[: 3 - len(chosen)]


def _effect_distractors(scene: Scene, rng: np.random.Generator, event: Event, table: dict[str, str]) -> list[str]:
    """The three other effects; a recolour distractor gets a colour the object did not turn."""
    colours = EASY_COLOURS if scene.difficulty == "easy" else HARD_COLOURS
    current = scene.colour(event.target if event.kind == "move" else event.third, event.touch)
    spare = [c for c in colours if c not in (current, event.colour)]
    return [table[effect].format(colour=_pick(rng, spare)) for effect in EFFECTS if effect != event.effect]


def _at(scene: Scene, event: Event) -> str:
    """`` at about m:ss`` for hard videos, where the same objects meet several times."""
    return "" if scene.difficulty == "easy" else f" at about {scene.clock(event.start)}"


def _touch_span(scene: Scene, event: Event) -> tuple[int, int]:
    return event.start, event.touch + (1 if scene.difficulty == "easy" else 2)


# -- temporal -------------------------------------------------------------------------------------------------
def first_appeared(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """Easy: which object appeared first (evidence: from its appearance to the next one's)."""
    appears = _events(scene, "appear")
    if len(appears) < 2:
        return None
    looks = [scene.look(event.subject, event.start) for event in appears]
    return Draft(
        "first_appeared",
        "temporal",
        "Which object appeared first in the video?",
        looks[0],
        _look_distractors(scene, rng, looks[0], looks[1:], [appears[0].subject]),
        [sentence(scene, event) for event in appears],
        f"The {looks[0]} appeared before the other objects",
        [(appears[0].start, appears[1].start)],
    )


def _visitor_order(scene: Scene, rng: np.random.Generator, last: bool) -> Draft | None:
    visits = _events(scene, "visit")
    # One visit is enough (the others are looks the video never shows): refusing it would make the count
    # templates more frequent exactly when the count is 1, a shortcut.
    if not visits:
        return None
    chosen = sorted(_shuffled(rng, visits)[:4], key=lambda event: event.start)
    looks = [scene.look(event.subject, event.start) for event in chosen]
    answer, word = (looks[-1], "last") if last else (looks[0], "first")
    return Draft(
        f"{word}_visitor",
        "temporal",
        f"Several objects briefly popped up during the video. Which of these popped up {word}?",
        answer,
        _look_distractors(scene, rng, answer, looks, [event.subject for event in chosen]),
        [sentence(scene, event) for event in chosen],
        f"Of these objects, the {answer} popped up {word}",
        [(event.start, event.end) for event in chosen],
    )


def first_visitor(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """Hard: order of short visits (evidence: every listed visit)."""
    return _visitor_order(scene, rng, last=False)


def last_visitor(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """Hard: order of short visits, asked from the end."""
    return _visitor_order(scene, rng, last=True)


def next_event(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """Hard: which event came right after a uniquely described one (evidence: both events)."""
    events = [event for event in scene.events if not (event.kind == "appear" and event.start == 0)]
    texts = [clause(scene, event) for event in events]
    anchors = [i for i in range(len(events) - 1) if texts.count(texts[i]) == 1]
    if not anchors:
        return None
    i = _pick(rng, anchors)
    answer = capitalise(texts[i + 1])
    invented = [f"the {scene.look(j, events[i].start)} flashed white" for j in scene.visible_at(events[i].start)]
    invented += [f"{indefinite(look)} briefly popped up" for look in absent_looks(scene, rng, 2)]
    pool = [capitalise(t) for t in _shuffled(rng, texts) + _shuffled(rng, invented) if t not in texts[i : i + 2]]
    return Draft(
        "next_event",
        "temporal",
        f"After {texts[i]}, which of these happened next?",
        answer,
        list(dict.fromkeys(pool))[:3],
        [sentence(scene, events[i]), sentence(scene, events[i + 1])],
        f"Right after {texts[i]}, {texts[i + 1]}",
        [(events[i].start, events[i].end), (events[i + 1].start, events[i + 1].end)],
    )


def _count_question(
    scene: Scene, rng: np.random.Generator, template: str, problem: str, events: list[Event], prefix: str
):
    """A count question whose options are the video's count window (see ``count_window``).

    The simulation draws each counted number uniformly from that window, so every option is equally likely to
    be right and the numbers offered say nothing about the answer.
    """
    count = len(events)
    if not count:
        return None
    low, _ = count_window(scene.frames)
    if not low <= count <= low + 3:  # a planned episode could not be placed: slide the window over the count
        low = max(1, count - int(rng.integers(4)))
    return Draft(
        template,
        "temporal",
        problem,
        str(count),
        [str(n) for n in range(low, low + 4) if n != count],
        [sentence(scene, event) for event in events],
        f"{prefix} {times_text(count)}",
        [(event.start, event.end) for event in events],
    )


def count_flashes(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """Hard: how often the designated object flashed (evidence: every flash of it)."""
    if scene.flasher < 0:
        return None
    flashes = [event for event in _events(scene, "flash") if event.subject == scene.flasher]
    look = scene.look(scene.flasher, 0)
    problem = f"How many times did the {look} flash white?"
    return _count_question(scene, rng, "count_flashes", problem, flashes, f"The {look} flashed")


def count_visits(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """Hard: how many objects popped up briefly (evidence: every visit)."""
    problem = "How many objects briefly popped up and vanished again?"
    return _count_question(scene, rng, "count_visits", problem, _events(scene, "visit"), "Objects popped up")


def when_event(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """Hard: in which quarter of the video a one-off visit or flash happened (evidence: that event)."""

    def quarter(frame: int) -> int:
        return 4 * frame // scene.frames

    flashes = [event.subject for event in _events(scene, "flash")]
    events = [
        event
        for event in _events(scene, "visit", "flash")
        if quarter(event.start) == quarter(event.end - 1)
        and (event.kind == "visit" or flashes.count(event.subject) == 1)
    ]
    if not events:
        return None
    event = _pick(rng, events)
    look, which = scene.look(event.subject, event.start), quarter(event.start)
    verb = "briefly pop up" if event.kind == "visit" else "flash white"
    options = [f"in the {word} quarter of the video" for word in QUARTERS]
    return Draft(
        "when_event",
        "temporal",
        f"When did the {look} {verb}?",
        options[which],
        options[:which] + options[which + 1 :],
        [sentence(scene, event), f"The video lasts {scene.frames / scene.fps:g} seconds."],
        f"That is in the {QUARTERS[which]} quarter of the video",
        [(event.start, event.end)],
    )


# -- goal and purpose -----------------------------------------------------------------------------------------
def goal_target(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """Which object the mover was heading for (evidence: the approach up to the touch)."""
    moves = _events(scene, "move", "chain")
    if not moves:
        return None
    event = _pick(rng, moves)
    agent, target = scene.look(event.subject, event.start), scene.look(event.target, event.start)
    verb = "move toward" if scene.difficulty == "easy" else "dash to"
    others = [
        scene.look(i, event.start) for i in scene.visible_at(event.start) if i not in (event.subject, event.target)
    ]
    return Draft(
        "goal_target",
        "goal_purpose",
        f"Which object did the {agent} {verb}{_at(scene, event)}?",
        target,
        _look_distractors(scene, rng, target, others, [event.subject, event.target]),
        [sentence(scene, event)],
        f"The {agent} was heading for the {target}",
        [_touch_span(scene, event)],
    )


def goal_purpose(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """Hard: why the mover went to its target, judged by what the touch did (evidence: dash and effect)."""
    moves = _events(scene, "move")
    if not moves:
        return None
    event = _pick(rng, moves)
    agent, target = scene.look(event.subject, event.start), scene.look(event.target, event.start)
    return Draft(
        "goal_purpose",
        "goal_purpose",
        f"Why did the {agent} dash to the {target}{_at(scene, event)}?",
        effect_text(PURPOSE, event),
        _effect_distractors(scene, rng, event, PURPOSE),
        [sentence(scene, event)],
        f"The touch made the {target} {effect_text(VERB, event)}, so the {agent} went there "
        f"{effect_text(PURPOSE, event).replace('it', f'the {target}', 1)}",
        [(event.start, event.settle + 1)],
    )


# -- spatial --------------------------------------------------------------------------------------------------
def relative_position(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """Easy: where an earlier object was relative to a newcomer when it appeared (evidence: until the move)."""
    appears, moves = _events(scene, "appear"), _events(scene, "move")
    pairs = [
        (a, b, scene.relation(a.subject, b.subject, b.start))
        for k, b in enumerate(appears)
        for a in appears[:k]
        if scene.relation(a.subject, b.subject, b.start)
    ]
    if not pairs or not moves:
        return None
    a, b, side = _pick(rng, pairs)
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
        for event in _events(scene, "visit")
        for ref in scene.visible_at(event.start, residents_only=True)
        if scene.relation(event.subject, ref, event.start)
    ]
    if not pairs:
        return None
    event, ref, side = _pick(rng, pairs)
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
    moves = _events(scene, "move", "chain")
    if not moves:
        return None
    event = _pick(rng, moves)
    agent, target = scene.look(event.subject, event.start), scene.look(event.target, event.start)
    return Draft(
        "approach_side",
        "spatial",
        f"From which side did the {agent} touch the {target}{_at(scene, event)}?",
        SIDE_FROM[event.side],
        [SIDE_FROM[side] for side in SIDE_FROM if side != event.side],
        [sentence(scene, event)],
        f"The {agent} touched the {target} {SIDE_FROM[event.side]}",
        [_touch_span(scene, event)],
    )


# -- plot and narrative ---------------------------------------------------------------------------------------
def touch_effect(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """What happened to an object after it was touched (easy evidence: approach + lasting effect)."""
    moves = _events(scene, "move")
    if not moves:
        return None
    event = _pick(rng, moves)
    agent, target = scene.look(event.subject, event.start), scene.look(event.target, event.start)
    if scene.difficulty == "easy":
        evidence = [_touch_span(scene, event), (event.settle, scene.frames)]
    else:
        evidence = [(event.start, event.settle + 1)]
    return Draft(
        "touch_effect",
        "plot_narrative",
        f"What happened to the {target} after the {agent} touched it{_at(scene, event)}?",
        effect_text(OUTCOME, event),
        _effect_distractors(scene, rng, event, OUTCOME),
        [sentence(scene, event)],
        f"After the touch the {target} {effect_text(PRESENT, event)}",
        evidence,
    )


def effect_cause(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """Hard: which object caused a change (evidence: the dash that caused it)."""
    moves = _events(scene, "move")
    if not moves:
        return None
    event = _pick(rng, moves)
    agent, target = scene.look(event.subject, event.start), scene.look(event.target, event.start)
    others = [
        scene.look(i, event.start) for i in scene.visible_at(event.start) if i not in (event.subject, event.target)
    ]
    return Draft(
        "effect_cause",
        "plot_narrative",
        f"What made the {target} {effect_text(VERB, event)}{_at(scene, event)}?",
        agent,
        _look_distractors(scene, rng, agent, others, [event.subject, event.target]),
        [sentence(scene, event)],
        f"The change came right after the {agent} touched the {target}",
        [(event.start, event.settle + 1)],
    )


def chain_origin(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """Hard: who started a two-step chain (the knocked object is the tempting wrong answer)."""
    chains = _events(scene, "chain")
    if not chains:
        return None
    event = _pick(rng, chains)
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
        [middle, *_look_distractors(scene, rng, agent, others, [event.subject, event.target, event.third])[:2]],
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
