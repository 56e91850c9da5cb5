"""The vocabulary of a synthetic video: colours, shapes, objects with per-frame tracks, and the event log.

A :class:`Scene` is the ground truth both the renderer and the question templates read: every object carries
one value per frame (visibility, centre, base colour, flash, size), and ``events`` lists what happened in
time order. Questions are answered from the event log, the pixels are drawn from the tracks, so the two can
never disagree.

Example:
    >>> import numpy as np
    >>> scene = Scene(frames=16, fps=8.0, size=64, difficulty="easy")
    >>> obj = scene.add_object("red", "square", size=16, x=20.0, y=30.0, start=4)
    >>> scene.look(obj, 3), bool(scene.objects[obj].visible[3]), bool(scene.objects[obj].visible[4])
    ('red square', False, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Saturated colours far apart in RGB *and* in chroma, so they survive H.264's 4:2:0 chroma subsampling at 64x64.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 200, 40),
    "blue": (40, 80, 255),
    "yellow": (250, 230, 30),
    "white": (245, 245, 245),
    "purple": (150, 40, 220),
    "orange": (255, 140, 0),
    "cyan": (0, 220, 230),
    "pink": (255, 100, 190),
}
COLOUR_NAMES = tuple(PALETTE)
COLOUR_IDS = {name: index for index, name in enumerate(COLOUR_NAMES)}
SHAPES = ("square", "circle", "triangle", "diamond", "cross")
# Easy videos use the five most distinct colours and the three most distinct shapes: a tiny model sees them at
# 56x56 after resizing. Hard videos keep white for flashes, so a flash can never be mistaken for a colour.
EASY_COLOURS = ("red", "green", "blue", "yellow", "white")
EASY_SHAPES = ("square", "circle", "triangle")
HARD_COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "cyan", "pink")
HARD_SHAPES = SHAPES
FLASH_COLOUR = "white"
DIRECTIONS = ("left", "right", "above", "below")
DIFFICULTIES = ("easy", "hard")


@dataclass
class SceneObject:
    """One object and its state at every frame (arrays of length ``frames``).

    Attributes:
        shape: one of :data:`SHAPES`; never changes.
        visible: ``bool[F]``, drawn or not.
        x, y: ``float32[F]`` centre in pixels (``y`` grows downwards, as in images).
        colour: ``int8[F]`` index into :data:`COLOUR_NAMES` (the base colour; flashes are separate).
        flash: ``bool[F]``, drawn in :data:`FLASH_COLOUR` instead of its colour.
        size: ``int16[F]`` side of the bounding box in pixels.
        transient: a visitor that pops in for a few frames (hard videos), not a resident.
    """

    shape: str
    visible: np.ndarray
    x: np.ndarray
    y: np.ndarray
    colour: np.ndarray
    flash: np.ndarray
    size: np.ndarray
    transient: bool = False


@dataclass(frozen=True)
class Event:
    """One entry of the event log; frames are ``[start, end)``.

    Kinds: ``appear`` (a resident appears and stays), ``visit`` (an object pops in and out), ``flash`` (an
    object briefly lights up white), ``move`` (``subject`` moves to ``target`` and touches it at ``touch``;
    ``effect`` happens to the target), ``chain`` (``subject`` pushes ``target`` into ``third``, and ``effect``
    happens to ``third``). ``settle`` is the first frame at which the effect is fully visible, ``side`` the
    side of the touched object the mover ends on, ``colour`` the new colour of a ``recolour`` effect.
    """

    kind: str
    start: int
    end: int
    subject: int
    target: int = -1
    third: int = -1
    effect: str = ""
    colour: str = ""
    touch: int = -1
    settle: int = -1
    side: str = ""


@dataclass
class Scene:
    """Objects, their tracks and the event log of one synthetic video.

    Args:
        frames: number of frames ``F``.
        fps: frame rate, to turn frames into seconds.
        size: frame height and width in pixels.
        difficulty: ``"easy"`` or ``"hard"``.
    """

    frames: int
    fps: float
    size: int
    difficulty: str
    objects: list[SceneObject] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    flasher: int = -1  # hard videos: the object whose flashes are counted (never recoloured nor removed)

    def add_object(
        self, colour: str, shape: str, size: int, x: float, y: float, start: int, end: int | None = None
    ) -> int:
        """Create an object visible on ``[start, end)`` resting at ``(x, y)``; returns its index."""
        frames = self.frames
        obj = SceneObject(
            shape=shape,
            visible=np.zeros(frames, bool),
            x=np.full(frames, x, np.float32),
            y=np.full(frames, y, np.float32),
            colour=np.full(frames, COLOUR_IDS[colour], np.int8),
            flash=np.zeros(frames, bool),
            size=np.full(frames, size, np.int16),
        )
        obj.visible[start : frames if end is None else end] = True
        self.objects.append(obj)
        return len(self.objects) - 1

    def colour(self, index: int, frame: int) -> str:
        """The base colour name of object ``index`` at ``frame``."""
        return COLOUR_NAMES[int(self.objects[index].colour[frame])]

    def look(self, index: int, frame: int) -> str:
        """``"<colour> <shape>"`` of object ``index`` at ``frame``: how a viewer names it then."""
        return f"{self.colour(index, frame)} {self.objects[index].shape}"

    def looks_ever(self, index: int) -> set[str]:
        """Every look object ``index`` has while visible."""
        obj = self.objects[index]
        colours = np.unique(obj.colour[obj.visible])
        return {f"{COLOUR_NAMES[int(c)]} {obj.shape}" for c in colours}

    def all_looks(self) -> set[str]:
        """Every look any object has at any visible frame (fabricated distractors must avoid them)."""
        return set().union(*(self.looks_ever(i) for i in range(len(self.objects)))) if self.objects else set()

    def visible_at(self, frame: int, residents_only: bool = False) -> list[int]:
        """Indices of the objects drawn at ``frame`` (optionally without short-lived visitors)."""
        return [
            i for i, obj in enumerate(self.objects) if obj.visible[frame] and not (residents_only and obj.transient)
        ]

    def position(self, index: int, frame: int) -> tuple[float, float]:
        """Centre ``(x, y)`` of object ``index`` at ``frame``."""
        obj = self.objects[index]
        return float(obj.x[frame]), float(obj.y[frame])

    def seconds(self, frame: int) -> float:
        """Time of ``frame`` in seconds."""
        return frame / self.fps

    def clock(self, frame: int) -> str:
        """``m:ss`` time of ``frame``, as a viewer reads it from a player."""
        total = int(frame / self.fps)
        return f"{total // 60}:{total % 60:02d}"

    def place_words(self, index: int, frame: int) -> str:
        """Coarse place of object ``index`` at ``frame``: ``"in the top left"``, ``"in the centre"``, ..."""
        x, y = self.position(index, frame)
        col = ("left", "", "right")[min(2, int(3 * x / self.size))]
        row = ("top", "", "bottom")[min(2, int(3 * y / self.size))]
        if row and col:
            return f"in the {row} {col}"
        if row:
            return f"at the {row}"
        return f"on the {col}" if col else "in the centre"

    def relation(self, index: int, reference: int, frame: int) -> str | None:
        """Where object ``index`` is relative to ``reference`` at ``frame``, or ``None`` when ambiguous.

        One axis must dominate by a factor of two and the gap must be at least a quarter of the object size,
        so the answer is clear to a viewer and survives resizing to 56x56.
        """
        (x, y), (rx, ry) = self.position(index, frame), self.position(reference, frame)
        return direction_of(x - rx, y - ry, min_gap=self.objects[index].size[frame] / 4)


def direction_of(dx: float, dy: float, min_gap: float = 1.0) -> str | None:
    """``"left"``/``"right"``/``"above"``/``"below"`` for an offset, ``None`` when no axis clearly dominates.

    Example:
        >>> direction_of(-10.0, 2.0), direction_of(1.0, 12.0), direction_of(6.0, 5.0)
        ('left', 'below', None)
    """
    if abs(dx) >= 2 * abs(dy) and abs(dx) >= min_gap:
        return "left" if dx < 0 else "right"
    if abs(dy) >= 2 * abs(dx) and abs(dy) >= min_gap:
        return "above" if dy < 0 else "below"
    return None
