"""Per-token perception targets of a synthetic video: what each merged video token should see.

A Qwen-VL vision tower turns every ``temporal_patch_size`` frames into a grid of merged tokens, one per
``merge_size x merge_size`` block of patches: a *cell* of the frame. A real checkpoint's tower was pretrained on
billions of images and reads colour, shape and position from each cell already; the random-init tower of the CPU
demo reads nothing, and CoT-SFT alone teaches it little (its reasoning chains name the wrong colour more often
than not). Stage 0 of the demo therefore trains the tower on these targets first, read from the scene's ground
truth tracks, as a stand-in for that pretraining:

- ``count``: objects whose centre lies in the cell (0, 1, or 2 for "two or more"), for every token;
- ``colour``, ``shape``, ``offset`` (the centre's ``(x, y)`` within the cell, each in ``[0, 1)``) and ``size``
  (the object's side over the cell's side), for tokens whose cell holds exactly one object.

The colour is the one drawn: a flashing object reads as :data:`~longvila_r1.data.synth.scene.FLASH_COLOUR`.
Targets of a temporal group come from its first frame.

Example:
    >>> import torch
    >>> from longvila_r1.data.synth.scene import Scene
    >>> scene = Scene(frames=4, fps=8.0, size=64, difficulty="easy")
    >>> _ = scene.add_object("red", "circle", size=16, x=48.0, y=8.0, start=0)
    >>> targets = perception_targets(scene, [0, 1, 2, 3], torch.tensor([2, 4, 4]), merge_size=2, temporal_patch_size=2)
    >>> targets.count.tolist()  # 2 temporal groups x 2x2 cells, raster order: the object is top right
    [0, 1, 0, 0, 0, 1, 0, 0]
    >>> targets.colour[1].item(), targets.shape[1].item(), targets.offset[1].tolist(), targets.size[1].item()
    (0, 1, [0.5, 0.25], 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from longvila_r1.data.synth.scene import COLOUR_IDS, COLOUR_NAMES, FLASH_COLOUR, SHAPES, Scene

IGNORE_INDEX = -100
MAX_COUNT = 2  # "two or more": the cell is crowded and no single object's attributes are labelled
COUNT_CLASSES = MAX_COUNT + 1
COLOUR_CLASSES = len(COLOUR_NAMES)
SHAPE_CLASSES = len(SHAPES)


@dataclass
class PerceptionTargets:
    """Targets of the ``N`` merged tokens of one video, in the vision tower's output order.

    Attributes:
        count: ``long [N]`` objects centred in the cell, capped at :data:`MAX_COUNT`.
        colour: ``long [N]`` :data:`COLOUR_NAMES` index of the cell's single object, else :data:`IGNORE_INDEX`.
        shape: ``long [N]`` :data:`SHAPES` index of the cell's single object, else :data:`IGNORE_INDEX`.
        offset: ``float [N, 2]`` its centre within the cell (``x``, ``y`` in ``[0, 1)``), ``NaN`` elsewhere.
        size: ``float [N]`` its side over the cell's side, ``NaN`` elsewhere.
    """

    count: torch.Tensor
    colour: torch.Tensor
    shape: torch.Tensor
    offset: torch.Tensor
    size: torch.Tensor

    @property
    def single(self) -> torch.Tensor:
        """``bool [N]``: the cell holds exactly one object (its attributes are labelled)."""
        return self.colour != IGNORE_INDEX

    @staticmethod
    def concat(targets: Sequence[PerceptionTargets]) -> PerceptionTargets:
        """The targets of several videos, in batch order (as their embeddings are concatenated)."""
        return PerceptionTargets(
            *(torch.cat([getattr(t, name) for t in targets]) for name in ("count", "colour", "shape", "offset", "size"))
        )


def perception_targets(
    scene: Scene,
    frame_indices: Sequence[int],
    grid_thw: torch.Tensor | Sequence[int],
    merge_size: int,
    temporal_patch_size: int,
) -> PerceptionTargets:
    """Targets of every merged token of a video sampled at ``frame_indices`` and preprocessed to ``grid_thw``.

    Args:
        scene: the video's ground truth (:func:`~longvila_r1.data.synth.generator.video_records`).
        frame_indices: the sampled frames, in order (``VideoSample.frame_indices``).
        grid_thw: the patch grid ``(t, h, w)`` of the preprocessed video.
        merge_size: spatial merge factor of the vision tower (cells are ``merge_size`` patches wide).
        temporal_patch_size: frames per temporal patch.

    Raises:
        ValueError: the grid does not match the frames (a video preprocessed with other settings).
    """
    groups, rows, cols = (int(v) for v in grid_thw)
    if rows % merge_size or cols % merge_size:
        raise ValueError(f"grid {rows}x{cols} patches is not divisible by merge_size={merge_size}")
    rows, cols = rows // merge_size, cols // merge_size
    if not frame_indices or math.ceil(len(frame_indices) / temporal_patch_size) != groups:
        raise ValueError(f"{len(frame_indices)} frames do not make {groups} temporal groups of {temporal_patch_size}")
    cells = groups * rows * cols
    count = torch.zeros(cells, dtype=torch.long)
    colour = torch.full((cells,), IGNORE_INDEX, dtype=torch.long)
    shape = torch.full((cells,), IGNORE_INDEX, dtype=torch.long)
    offset = torch.full((cells, 2), math.nan)
    size = torch.full((cells,), math.nan)
    # The processor resizes the whole frame, so a cell is a fixed fraction of the scene whatever the resolution.
    cell_w, cell_h = scene.size / cols, scene.size / rows
    for group in range(groups):
        frame = int(frame_indices[group * temporal_patch_size])
        occupants: dict[int, list[int]] = {}
        for index, obj in enumerate(scene.objects):
            if not obj.visible[frame]:
                continue
            x, y = float(obj.x[frame]), float(obj.y[frame])
            row, col = min(rows - 1, max(0, int(y // cell_h))), min(cols - 1, max(0, int(x // cell_w)))
            occupants.setdefault(group * rows * cols + row * cols + col, []).append(index)
        for cell, members in occupants.items():
            count[cell] = min(len(members), MAX_COUNT)
            if len(members) != 1:
                continue
            obj = scene.objects[members[0]]
            row, col = divmod(cell % (rows * cols), cols)
            colour[cell] = COLOUR_IDS[FLASH_COLOUR] if obj.flash[frame] else int(obj.colour[frame])
            shape[cell] = SHAPES.index(obj.shape)
            offset[cell, 0] = float(obj.x[frame]) / cell_w - col
            offset[cell, 1] = float(obj.y[frame]) / cell_h - row
            size[cell] = float(obj.size[frame]) / min(cell_w, cell_h)
    return PerceptionTargets(count, colour, shape, offset, size)
