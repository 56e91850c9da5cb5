"""An in-memory LRU of decoded and preprocessed videos, so that a video is decoded once per worker, not per question.

A LongVideo-Reason video carries several questions and SFT runs several epochs, so without a cache the same
frames are decoded and resized again and again; on a small CPU run decoding costs as much as the training step.
The cache holds what the dataset builds from a video (patchified pixels, grid, sampled timestamps) under a byte
budget and drops the least recently used videos beyond it. Each DataLoader worker keeps its own cache (workers
are separate processes); with ``persistent_workers`` it survives across epochs.

Example:
    >>> cache = PreprocessedClipCache(max_bytes=1 << 30)
    >>> clip = cache.get_or_build("videos/vid_00001.mp4", lambda: build(...))  # doctest: +SKIP
    >>> cache.hits, cache.misses  # doctest: +SKIP
    (0, 1)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PreprocessedClip:
    """One video as the model reads it: ``pixels`` ``[N, C*tp*p*p]``, its ``grid`` ``(t, h, w)``, frame times."""

    pixels: torch.Tensor
    grid: torch.Tensor
    timestamps: torch.Tensor
    duration: float
    indices: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.pixels, self.grid, self.timestamps))


class PreprocessedClipCache:
    """Least-recently-used :class:`PreprocessedClip` store bounded by ``max_bytes``.

    Args:
        max_bytes: budget for the cached tensors; ``0`` disables caching (every call builds). A clip larger than
            the whole budget is returned without being stored.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._clips: OrderedDict[str, PreprocessedClip] = OrderedDict()

    def __len__(self) -> int:
        return len(self._clips)

    def get_or_build(self, key: str, build: Callable[[], PreprocessedClip]) -> PreprocessedClip:
        """The cached clip of ``key``, or ``build()``'s result (stored if it fits the budget)."""
        clip = self._clips.get(key)
        if clip is not None:
            self._clips.move_to_end(key)
            self.hits += 1
            return clip
        self.misses += 1
        clip = build()
        if 0 < clip.nbytes <= self.max_bytes:
            while self._clips and self.bytes + clip.nbytes > self.max_bytes:
                _, dropped = self._clips.popitem(last=False)
                self.bytes -= dropped.nbytes
            self._clips[key] = clip
            self.bytes += clip.nbytes
        return clip
