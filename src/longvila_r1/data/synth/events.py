"""Simulate the timeline of one synthetic video: objects appear, move to each other, touch, and react.

``simulate_scene`` fills a :class:`~longvila_r1.data.synth.scene.Scene` (per-frame tracks + event log) from a
``numpy.random.Generator``; nothing else is random, so a video is a pure function of its generator.

* ``easy``: 2-3 big objects appear one after another (first at the start, the others about a fifth of the
  video apart), then one of them slowly moves to another one and touches it, and the touched object turns
  another colour, vanishes, is pushed away or grows. Every fact stays on screen for more than a tenth of the
  video, so 16 uniformly sampled frames always see it.
* ``hard``: 4-6 residents plus short episodes spread uniformly over the timeline (one per ~12 frames, each
  in its own slot, so longer videos hold more events): visitors that pop in for 2-5 frames, white flashes,
  dashes in which an object darts to another, touches it (with an effect) and darts back, chains in which the
  touched object is knocked into a third one, and newcomers. The number of visits and of flashes of one
  designated object are drawn uniformly from :func:`count_window`, so count answers are evenly spread.
  Episodes last a few frames, so sparse frame sampling misses many of them.

Example:
    >>> import numpy as np
    >>> scene = simulate_scene(np.random.default_rng([0, 3]), frames=128, fps=8.0, size=64, difficulty="hard")
    >>> {"appear", "flash", "move", "chain", "visit"} <= {event.kind for event in scene.events}
    True
"""

from __future__ import annotations

import numpy as np

from longvila_r1.data.synth.scene import EASY_COLOURS, EASY_SHAPES, Event, Scene
from longvila_r1.data.synth.stage import EFFECTS, MARGIN, Stage

# Relative weights of the free (not planned) hard episodes; dashes carry the goal, spatial and plot questions.
FREE_EPISODES = {"flash": 2.0, "move": 4.0, "chain": 1.5, "appear": 1.0}
FRAMES_PER_EPISODE = 12
# Counted episodes (visits) use up looks; capping the window keeps 40 looks enough for thousands of frames.
MAX_COUNT_LOW = 20
MAX_RESIDENTS = 6


def simulate_scene(rng: np.random.Generator, frames: int, fps: float, size: int, difficulty: str) -> Scene:
    """Simulate one video's objects and events.

    Args:
        rng: the video's own generator (``np.random.default_rng([seed, index])`` or a child of it).
        frames: number of frames ``F`` (at least 32).
        fps: frame rate, stored in the scene to turn frames into seconds.
        size: frame side in pixels; object sizes scale with it.
        difficulty: ``"easy"`` or ``"hard"``.

    Returns:
        The scene with its tracks and chronological event log.
    """
    scene = Scene(frames=frames, fps=fps, size=size, difficulty=difficulty)
    builder = _Builder(rng, scene)
    if difficulty == "easy":
        builder.build_easy()
    else:
        builder.build_hard()
    scene.events.sort(key=lambda event: (event.start, event.subject))
    return scene


def episode_slots(frames: int) -> int:
    """Number of episodes of a hard video: one per ~12 frames, at least 3."""
    return max(3, frames // FRAMES_PER_EPISODE)


def count_window(frames: int) -> tuple[int, int]:
    """``(low, high)`` of the counts in a hard video of ``frames`` frames; count options show ``low..low+3``.

    Example:
        >>> count_window(128), count_window(1024), count_window(48)
        ((1, 4), (8, 11), (1, 1))
    """
    slots = episode_slots(frames)
    low = min(1 + slots // 12, MAX_COUNT_LOW)
    # Visits and flashes of the designated object must leave room for a move and a chain.
    high = low + 3 if 2 * (low + 3) + 2 <= slots else max(low, (slots - 2) // 2)
    return low, high


class _Builder(Stage):
    """Writes the episodes of an easy or a hard video into a scene, in time order."""

    def __init__(self, rng: np.random.Generator, scene: Scene) -> None:
        super().__init__(rng, scene)
        self.weights = dict(FREE_EPISODES)

    # -- easy -----------------------------------------------------------------------------------------------
    def build_easy(self) -> None:
        rng, scene, frames = self.rng, self.scene, self.scene.frames
        count = int(rng.integers(2, 4))
        colours = [str(c) for c in rng.choice(EASY_COLOURS, count + 1, replace=False)]
        shapes = [str(s) for s in rng.choice(EASY_SHAPES, count, replace=False)]
        cells = self._easy_cells(count)
        # Appearance windows are a fifth of the video apart, so the gap between two appearances (the evidence
        # of "which came first") always holds more than one of 16 uniformly sampled frames.
        windows = [(0.0, 0.04), (0.18, 0.23), (0.36, 0.41)]
        for k in range(count):
            start = int(rng.uniform(*windows[k]) * frames)
            x, y = (0.18 + 0.32 * cells[k][1]) * scene.size, (0.18 + 0.32 * cells[k][0]) * scene.size
            x, y = x + rng.uniform(-1, 1), y + rng.uniform(-1, 1)
            index = scene.add_object(colours[k], shapes[k], int(rng.integers(15, 19) * scene.size / 64), x, y, start)
            self.home[index] = (x, y)
            scene.events.append(Event("appear", start, frames, index))
        self.spare = colours[-1]
        self._easy_move()

    def _easy_cells(self, count: int) -> list[tuple[int, int]]:
        """Cells of a 3x3 grid; each new object shares a row or column with an earlier one (clean relations)."""
        cells = [(int(self.rng.integers(3)), int(self.rng.integers(3)))]
        while len(cells) < count:
            options = sorted(
                {(r, c) for r in range(3) for c in range(3) for (r0, c0) in cells if (r == r0) != (c == c0)}
                - set(cells)
            )
            cells.append(options[int(self.rng.integers(len(options)))])
        return cells

    def _easy_move(self) -> None:
        rng, scene, frames = self.rng, self.scene, self.scene.frames
        pairs = [(a, t) for a in self.home for t in self.home if a != t and self._clear_path(a, t)]
        # Neighbours on the grid always have a clear path; the fallback only guards against future layouts.
        pairs = pairs or [(a, t) for a in self.home for t in self.home if a != t and self._contact(a, t)]
        agent, target, effect = self._plan(pairs, EFFECTS)
        start = int(rng.uniform(0.55, 0.6) * frames)
        arrive = start + int(rng.uniform(0.18, 0.22) * frames)
        x, y, side = self._contact(agent, target)
        self._glide(agent, start, arrive, (x, y))
        self.home[agent] = (x, y)
        colour, settle = self._apply(effect, target, arrive, agent, slide=frames // 16)
        scene.events.append(Event("move", start, arrive, agent, target, -1, effect, colour, arrive - 1, settle, side))

    def _clear_path(self, agent: int, target: int) -> bool:
        """Whether the agent's straight path to its contact point passes no third object."""
        contact = self._contact(agent, target)
        if contact is None:
            return False
        (x0, y0), (x1, y1) = self.home[agent], contact[:2]
        size = self._size(agent)
        for other in self.home.keys() - {agent, target}:
            for t in np.linspace(0.0, 1.0, 12):
                if self._boxes_overlap((x0 + t * (x1 - x0), y0 + t * (y1 - y0)), size, other, margin=0):
                    return False
        return True

    # -- hard -----------------------------------------------------------------------------------------------
    def build_hard(self) -> None:
        rng, frames = self.rng, self.scene.frames
        for _ in range(int(rng.integers(4, MAX_RESIDENTS + 1))):
            self._hard_appear(0)
        slots = episode_slots(frames)
        bounds = [round(k * frames / slots) for k in range(slots + 1)]
        # Counted things get a count drawn uniformly from the window the count options show, so a count
        # question's answer cannot be guessed from the numbers offered: the visits (all of them) and the
        # flashes of one designated object, which is never recoloured nor removed so its name holds.
        low, high = count_window(frames)
        self.scene.flasher = list(self.home)[int(rng.integers(len(self.home)))]
        plan = ["visit"] * int(rng.integers(low, high + 1)) + ["flasher"] * int(rng.integers(low, high + 1))
        self.reserved = plan.count("visit")  # looks kept for the planned visits (long videos run short of looks)
        plan += ["move", "chain"]  # every video supports the goal, spatial and plot templates
        plan = self._shuffled(plan + [""] * max(0, slots - len(plan)))[:slots]
        # Each video gets its own mix of the free episodes, so videos differ in what mostly happens.
        self.weights = {kind: weight * rng.gamma(2.0) for kind, weight in FREE_EPISODES.items()}
        for slot, wanted in enumerate(plan):
            self._hard_episode(bounds[slot], bounds[slot + 1], wanted)

    def _hard_episode(self, lo: int, hi: int, wanted: str) -> None:
        start = lo + int(self.rng.integers(1, max(2, hi - lo - 8)))
        if wanted == "flasher":
            self._hard_flash(start, self.scene.flasher)
            return
        if not wanted:
            kinds = [k for k in FREE_EPISODES if self._possible(k)]
            weights = np.array([self.weights[k] for k in kinds])
            wanted = kinds[int(self.rng.choice(len(kinds), p=weights / weights.sum()))]
        getattr(self, f"_hard_{wanted}")(start)

    def _possible(self, kind: str) -> bool:
        alive = len(self.home)
        if kind == "flash":
            return alive >= 2  # someone besides the designated flasher
        if kind == "appear":
            return self._spare_looks() and alive < MAX_RESIDENTS
        return alive >= (2 if kind == "move" else 3)

    def _hard_appear(self, start: int) -> None:
        look, size = self._fresh_look(), self._hard_size()
        position = self._free_position(size)
        if look is None or position is None:
            return
        index = self.scene.add_object(*look, size, *position, start)
        self.used_looks.add(" ".join(look))
        self.home[index] = position
        self.scene.events.append(Event("appear", start, start + 3, index))

    def _hard_visit(self, start: int) -> None:
        self.reserved = max(0, self.reserved - 1)
        rng, size = self.rng, self._hard_size()
        for _ in range(30):
            # Next to a resident along one axis (small sideways jitter), so "where did it pop up" is clear-cut.
            anchor = list(self.home)[int(rng.integers(len(self.home)))]
            dx, dy = ((-1, 0), (1, 0), (0, -1), (0, 1))[int(rng.integers(4))]
            reach = (size + self._size(anchor)) / 2 + rng.uniform(MARGIN + 1, 0.2 * self.scene.size)
            jitter = rng.uniform(-2, 2)
            x, y = self.home[anchor][0] + dx * reach + dy * jitter, self.home[anchor][1] + dy * reach + dx * jitter
            look = self._fresh_look()
            if look is not None and self._fits((x, y), size):
                end = start + int(rng.integers(2, 6))
                index = self.scene.add_object(*look, size, x, y, start, end)
                self.scene.objects[index].transient = True
                self.used_looks.add(" ".join(look))
                self.scene.events.append(Event("visit", start, end, index))
                return
        self._hard_flash(start)

    def _hard_flash(self, start: int, index: int | None = None) -> None:
        """Flash ``index``, or a random resident other than the designated flasher (whose count is asked)."""
        if index is None:
            others = [i for i in self.home if i != self.scene.flasher]
            if not others:
                return
            index = others[int(self.rng.integers(len(others)))]
        end = start + int(self.rng.integers(2, 5))
        self.scene.objects[index].flash[start:end] = True
        self.scene.events.append(Event("flash", start, end, index))

    def _hard_move(self, start: int) -> None:
        plan = self._plan([(a, t) for a in self.home for t in self.home if a != t], EFFECTS)
        if plan is None:
            self._hard_flash(start)
            return
        agent, target, effect = plan
        x, y, side = self._contact(agent, target)
        touch = self._dash(agent, start, (x, y))
        colour, settle = self._apply(effect, target, touch + 1, agent, slide=int(self.rng.integers(2, 4)))
        end = max(touch + 5, settle + 1)
        self.scene.events.append(Event("move", start, end, agent, target, -1, effect, colour, touch, settle, side))

    def _hard_chain(self, start: int) -> None:
        residents = list(self.home)
        triples = [(a, m, t) for a in residents for m in residents for t in residents if len({a, m, t}) == 3]
        for effect in self._shuffled(("recolour", "vanish", "grow")):
            for agent, middle, third in self._shuffled(triples):
                first, second = self._contact(agent, middle), self._contact(middle, third)
                if first is None or second is None or not self._feasible(effect, third, middle):
                    continue
                if not self._fits(second[:2], self._size(middle), ignore=(middle, third)):
                    continue
                touch = self._dash(agent, start, first[:2])
                hit = touch + int(self.rng.integers(2, 4))
                self._glide(middle, touch + 1, hit + 1, second[:2])
                self.home[middle] = second[:2]
                colour, settle = self._apply(effect, third, hit + 1, middle)
                end = max(touch + 5, settle + 1)
                self.scene.events.append(
                    Event("chain", start, end, agent, middle, third, effect, colour, touch, settle, first[2])
                )
                return
        self._hard_move(start)

    def _dash(self, agent: int, start: int, contact: tuple[float, float]) -> int:
        """Dart to ``contact`` in 2-3 frames, stay one frame, dart back home in 2-3; returns the touch frame."""
        home = self.home[agent]
        touch = start + int(self.rng.integers(2, 4)) - 1
        self._glide(agent, start, touch + 1, contact)
        back = touch + 2
        self._glide(agent, back, back + int(self.rng.integers(2, 4)), home)
        return touch
