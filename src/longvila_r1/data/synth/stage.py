"""The mechanics shared by every timeline: placing objects, gliding, touching, and the four touch effects.

:class:`Stage` keeps where each resident rests *now* (``home``) while a builder writes episodes in time order;
an effect writes the object's tracks from its frame to the end of the video, and a later episode overwrites the
tail again, so the tracks always end in the latest state.

Example:
    >>> import numpy as np
    >>> from longvila_r1.data.synth.scene import Scene
    >>> stage = Stage(np.random.default_rng(0), Scene(frames=32, fps=8.0, size=64, difficulty="hard"))
    >>> a = stage.scene.add_object("red", "square", 12, 16.0, 32.0, start=0)
    >>> b = stage.scene.add_object("blue", "circle", 12, 48.0, 32.0, start=0)
    >>> stage.home.update({a: (16.0, 32.0), b: (48.0, 32.0)})
    >>> stage._contact(a, b)  # a stops left of b, touching it
    (36.0, 32.0, 'left')
"""

from __future__ import annotations

import numpy as np

from longvila_r1.data.synth.scene import COLOUR_IDS, HARD_COLOURS, HARD_SHAPES, Scene, direction_of

EFFECTS = ("recolour", "vanish", "push", "grow")
GROWTH = 1.4
# A blocked push glances off at 45 then 90 degrees, so pushes stay possible next to edges and neighbours.
PUSH_TURNS = (0.0, np.pi / 4, -np.pi / 4, np.pi / 2, -np.pi / 2)
# Pixels kept between two resting objects, so shapes never merge into one blob after encoding.
MARGIN = 2
MIN_RESIDENTS = 3


class Stage:
    """Objects at rest (``home``), free room, looks in use, and the effects a touch can have.

    Args:
        rng: the video's scene generator.
        scene: the scene being written.
    """

    def __init__(self, rng: np.random.Generator, scene: Scene) -> None:
        self.rng, self.scene = rng, scene
        self.used_looks: set[str] = set()
        self.home: dict[int, tuple[float, float]] = {}
        self.spare = ""  # easy videos: the one colour no object has, for the recolour effect
        self.reserved = 0  # fresh looks kept back for planned visits

    def _plan(self, pairs: list[tuple[int, int]], effects: tuple[str, ...]) -> tuple[int, int, str] | None:
        """Pick the effect first (uniformly), then a pair it is feasible on, so effects stay balanced.

        Choosing the pair first would make pushes rare (they need free room behind the target), and a rare
        answer would be a shortcut: "never answer *pushed away*".
        """
        for effect in self._shuffled(effects):
            for agent, target in self._shuffled(pairs):
                if self._contact(agent, target) is not None and self._feasible(effect, target, agent):
                    return agent, target, effect
        return None

    def _feasible(self, effect: str, target: int, pusher: int) -> bool:
        if target == self.scene.flasher and effect in ("recolour", "vanish"):
            return False
        if effect == "recolour":
            shape = self.scene.objects[target].shape
            return self.scene.difficulty == "easy" or (self._spare_looks() and bool(self._fresh_looks(shape)))
        if effect == "vanish":
            # Hard videos keep a few residents alive, or later dashes would run out of objects.
            return self.scene.difficulty == "easy" or len(self.home) > MIN_RESIDENTS
        if effect == "push":
            return self._push_destination(target, pusher) is not None
        return self._size(target) == int(self.scene.objects[target].size[0])  # grow once only

    def _apply(self, effect: str, target: int, frame: int, pusher: int, slide: int = 3) -> tuple[str, int]:
        """Apply ``effect`` to ``target`` from ``frame`` on; returns (new colour or "", settle frame).

        ``settle`` is the first frame showing the whole effect (a push needs ``slide`` frames to get there).
        """
        obj = self.scene.objects[target]
        if effect == "recolour":
            colour = self.spare if self.scene.difficulty == "easy" else self._fresh_look(obj.shape)[0]
            obj.colour[frame:] = COLOUR_IDS[colour]
            self.used_looks.add(f"{colour} {obj.shape}")
            return colour, frame
        if effect == "vanish":
            obj.visible[frame:] = False
            self.home.pop(target)
        elif effect == "grow":
            obj.size[frame:] = round(obj.size[frame] * GROWTH)
        else:
            destination = self._push_destination(target, pusher)
            self._glide(target, frame, frame + slide, destination)
            self.home[target] = destination
            return "", frame + slide - 1
        return "", frame

    def _push_destination(self, target: int, pusher: int) -> tuple[float, float] | None:
        """Where ``target`` slides when pushed, or ``None`` if it has no room.

        Straight away from the pusher first; when the frame edge or another object is in the way, glancing
        directions (45 then 90 degrees off) and shorter slides are tried, like a real glancing push.
        """
        (tx, ty), (px, py) = self.home[target], self._contact(pusher, target)[:2]
        heading = np.arctan2(ty - py, tx - px)
        for turn in PUSH_TURNS:
            for distance in (0.3, 0.22, 0.15):
                reach = distance * self.scene.size
                x, y = float(tx + reach * np.cos(heading + turn)), float(ty + reach * np.sin(heading + turn))
                if self._fits((x, y), self._size(target), ignore=(target, pusher)):
                    return x, y
        return None

    def _contact(self, mover: int, target: int) -> tuple[float, float, str] | None:
        """Where ``mover`` stops to touch ``target``, on the side facing it; ``None`` if that spot is taken."""
        (mx, my), (tx, ty) = self.home[mover], self.home[target]
        reach = (self._size(mover) + self._size(target)) / 2
        horizontal = abs(tx - mx) >= abs(ty - my)
        if horizontal:
            x, y = tx - np.sign(tx - mx or 1) * reach, ty
        else:
            x, y = tx, ty - np.sign(ty - my or 1) * reach
        # Inside the frame and clear of every other object, so the touch is unmistakable.
        if not self._fits((x, y), self._size(mover), ignore=(mover, target)):
            return None
        side = direction_of(x - tx, y - ty)
        return float(x), float(y), str(side)

    def _glide(self, index: int, start: int, end: int, dest: tuple[float, float]) -> None:
        """Move linearly so the object reaches ``dest`` at frame ``end - 1`` and rests there afterwards."""
        obj, steps = self.scene.objects[index], max(1, end - start)
        x0, y0 = float(obj.x[start]), float(obj.y[start])
        t = np.arange(1, steps + 1, dtype=np.float32) / steps
        obj.x[start:end], obj.y[start:end] = x0 + t * (dest[0] - x0), y0 + t * (dest[1] - y0)
        obj.x[end:], obj.y[end:] = dest

    def _fresh_looks(self, shape: str | None = None) -> list[tuple[str, str]]:
        """Never-used ``(colour, shape)`` pairs, so every look names one object over the whole video.

        Long hard videos use up the 40 looks after roughly a thousand frames; from then on no new objects or
        recolours happen, and the timeline goes on with flashes, pushes, growth and chains.
        """
        shapes = HARD_SHAPES if shape is None else (shape,)
        return [(c, s) for c in HARD_COLOURS for s in shapes if f"{c} {s}" not in self.used_looks]

    def _spare_looks(self) -> bool:
        """Whether a look can go to a newcomer or a recolour without starving the planned visits."""
        return len(self._fresh_looks()) > self.reserved

    def _fresh_look(self, shape: str | None = None) -> tuple[str, str] | None:
        looks = self._fresh_looks(shape)
        return looks[int(self.rng.integers(len(looks)))] if looks else None

    def _shuffled(self, items: list | tuple) -> list:
        return [items[k] for k in self.rng.permutation(len(items)).tolist()]

    def _free_position(self, size: int) -> tuple[float, float] | None:
        for _ in range(40):
            x, y = self.rng.uniform(size / 2 + 1, self.scene.size - size / 2 - 1, 2)
            if self._fits((float(x), float(y)), size):
                return float(x), float(y)
        return None

    def _fits(self, position: tuple[float, float], size: float, ignore: tuple[int, ...] = ()) -> bool:
        half, limit = size / 2, self.scene.size
        x, y = position
        if not (half <= x <= limit - half and half <= y <= limit - half):
            return False
        return not any(self._boxes_overlap(position, size, other) for other in self.home if other not in ignore)

    def _boxes_overlap(self, position: tuple[float, float], size: float, other: int, margin: int = MARGIN) -> bool:
        ox, oy = self.home[other]
        reach = (size + self._size(other)) / 2 + margin
        return abs(position[0] - ox) < reach and abs(position[1] - oy) < reach

    def _size(self, index: int) -> int:
        return int(self.scene.objects[index].size[-1])

    def _hard_size(self) -> int:
        return round(self.rng.uniform(0.17, 0.2) * self.scene.size)
