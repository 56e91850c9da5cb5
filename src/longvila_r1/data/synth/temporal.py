"""Temporal question templates: order, counting and "when" (see :mod:`longvila_r1.data.synth.templates`).

Example:
    >>> import numpy as np
    >>> from longvila_r1.data.synth.events import simulate_scene
    >>> scene = simulate_scene(np.random.default_rng([0, 1]), frames=128, fps=8.0, size=64, difficulty="hard")
    >>> count_visits(scene, np.random.default_rng(0)).problem
    'How many objects briefly popped up and vanished again?'
"""

from __future__ import annotations

import numpy as np

from longvila_r1.data.synth.drafts import Draft, events_of, look_distractors, pick, shuffled
from longvila_r1.data.synth.events import count_window
from longvila_r1.data.synth.narrative import (
    QUARTERS,
    absent_looks,
    capitalise,
    clause,
    indefinite,
    sentence,
    times_text,
)
from longvila_r1.data.synth.scene import Event, Scene


def first_appeared(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """Easy: which object appeared first (evidence: from its appearance to the next one's)."""
    appears = events_of(scene, "appear")
    if len(appears) < 2:
        return None
    looks = [scene.look(event.subject, event.start) for event in appears]
    return Draft(
        "first_appeared",
        "temporal",
        "Which object appeared first in the video?",
        looks[0],
        look_distractors(scene, rng, looks[0], looks[1:], [appears[0].subject]),
        [sentence(scene, event) for event in appears],
        f"The {looks[0]} appeared before the other objects",
        [(appears[0].start, appears[1].start)],
    )


def _visitor_order(scene: Scene, rng: np.random.Generator, last: bool) -> Draft | None:
    visits = events_of(scene, "visit")
    # One visit is enough (the others are looks the video never shows): refusing it would make the count
    # templates more frequent exactly when the count is 1, a shortcut.
    if not visits:
        return None
    chosen = sorted(shuffled(rng, visits)[:4], key=lambda event: event.start)
    looks = [scene.look(event.subject, event.start) for event in chosen]
    answer, word = (looks[-1], "last") if last else (looks[0], "first")
    return Draft(
        f"{word}_visitor",
        "temporal",
        f"Several objects briefly popped up during the video. Which of these popped up {word}?",
        answer,
        look_distractors(scene, rng, answer, looks, [event.subject for event in chosen]),
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
    i = pick(rng, anchors)
    answer = capitalise(texts[i + 1])
    invented = [f"the {scene.look(j, events[i].start)} flashed white" for j in scene.visible_at(events[i].start)]
    invented += [f"{indefinite(look)} briefly popped up" for look in absent_looks(scene, rng, 2)]
    pool = [capitalise(t) for t in shuffled(rng, texts) + shuffled(rng, invented) if t not in texts[i : i + 2]]
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
    scene: Scene, rng: np.random.Generator, template: str, problem: str, events: list[Event], conclusion: str
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
        conclusion.format(count=count, times=times_text(count), s="" if count == 1 else "s"),
        [(event.start, event.end) for event in events],
    )


def count_flashes(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """Hard: how often the designated object flashed (evidence: every flash of it)."""
    if scene.flasher < 0:
        return None
    flashes = [event for event in events_of(scene, "flash") if event.subject == scene.flasher]
    look = scene.look(scene.flasher, 0)
    problem = f"How many times did the {look} flash white?"
    return _count_question(scene, rng, "count_flashes", problem, flashes, f"The {look} flashed {{times}} in all")


def count_visits(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """Hard: how many objects popped up briefly (evidence: every visit)."""
    problem = "How many objects briefly popped up and vanished again?"
    conclusion = "In all, {count} object{s} briefly popped up"
    return _count_question(scene, rng, "count_visits", problem, events_of(scene, "visit"), conclusion)


def when_event(scene: Scene, rng: np.random.Generator) -> Draft | None:
    """Hard: in which quarter of the video a one-off visit or flash happened (evidence: that event)."""

    def quarter(frame: int) -> int:
        return 4 * frame // scene.frames

    flashes = [event.subject for event in events_of(scene, "flash")]
    events = [
        event
        for event in events_of(scene, "visit", "flash")
        if quarter(event.start) == quarter(event.end - 1)
        and (event.kind == "visit" or flashes.count(event.subject) == 1)
    ]
    if not events:
        return None
    event = pick(rng, events)
    look, which = scene.look(event.subject, event.start), quarter(event.start)
    verb = "briefly pop up" if event.kind == "visit" else "flash white"
    options = [f"in the {word} quarter of the video" for word in QUARTERS]
    return Draft(
        "when_event",
        "temporal",
        f"When did the {look} {verb}?",
        options[which],
        options[:which] + options[which + 1 :],
        [
            sentence(scene, event),
            f"The video lasts {scene.frames / scene.fps:g} seconds, so {scene.clock(event.start)} falls in its "
            f"{QUARTERS[which]} quarter.",
        ],
        f"It happened in the {QUARTERS[which]} quarter of the video",
        [(event.start, event.end)],
    )
