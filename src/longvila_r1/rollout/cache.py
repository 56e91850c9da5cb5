"""The video-embedding cache: encode each (video, frames, preprocessing, vision weights) once.

Vision encoding of a long video is the most expensive part of a rollout that can be reused: GRPO encodes the
B prompts' videos once per step and every one of the G rollouts, the old-policy and the reference log-prob
passes take the same embeddings. Across steps and epochs the same video comes back with the same frames, so
a frozen (or rarely updated) vision tower need not run on it again at all. :class:`VideoEmbeddingCache`
keeps per-video entries in a byte-capped in-memory LRU, optionally backed by a verified on-disk store.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from longvila_r1.data.collate import select_video_patches  # noqa: F401 -- re-exported for encoding cache misses
from longvila_r1.models.embeddings import VideoEmbeddings
from longvila_r1.rollout.cache_key import CacheKey
from longvila_r1.rollout.disk_store import CorruptEntryError, EmbeddingDiskStore

log = logging.getLogger(__name__)

ComputeFn = Callable[[list[int]], "VideoEmbeddings | Sequence[VideoEmbeddings]"]
_COUNTERS = ("hits", "disk_hits", "misses", "evictions", "corrupt", "oversize")


class VideoEmbeddingCache:
    """Per-video :class:`VideoEmbeddings` keyed by :class:`CacheKey`: an LRU in memory, optionally on disk too.

    Entries are stored detached, as compact CPU copies (a slice of a batch does not pin the whole batch), so
    the cache never holds accelerator memory or an autograd graph; the trainer moves what it gets to its own
    device (``get_or_compute(..., device=...)`` does it in one place). Returned entries are shared with the
    cache: move or copy them, never modify them in place.

    Args:
        max_bytes: memory budget for entries (:attr:`VideoEmbeddings.nbytes`); least recently used entries
            are evicted beyond it. An entry larger than the whole budget is not kept in memory (counted as
            ``oversize``); ``0`` keeps nothing in memory (disk only).
        disk_dir: if given, every entry is also written there (one file per key, see
            :mod:`~longvila_r1.rollout.disk_store`) and memory misses are looked up there. Files of other
            vision versions are never read (the version is part of the key); delete the directory to reclaim
            the space.

    Example:
        >>> cache = VideoEmbeddingCache(max_bytes=8 << 30, disk_dir="/scratch/emb_cache")
        >>> version = f"{vision_fingerprint(policy)}:{vision_updates}"
        >>> keys = [cache_key(path, frames, processor, version)
        ...         for path, frames in zip(batch["video_paths"], batch["frame_indices"])]
        >>> def encode(misses):  # one vision-tower call for all the videos not in the cache
        ...     pixels, grid = select_video_patches(batch["pixel_values_videos"], batch["video_grid_thw"], misses)
        ...     return policy.encode_video(pixels, grid, batch["second_per_grid_ts"][misses])
        >>> emb = VideoEmbeddings.concat(cache.get_or_compute(keys, encode, device=policy.device))
        >>> cache.stats()["hit_rate"]

        In YAML (the rollout callback owns the cache):

        .. code-block:: yaml

            callbacks:
              - class_path: longvila_r1.callbacks.RolloutCallback
                init_args:
                  cache_max_bytes: 8589934592
                  cache_dir: /scratch/emb_cache
    """

    def __init__(self, max_bytes: int = 1 << 30, disk_dir: str | os.PathLike[str] | None = None) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be an int >= 0 (0 keeps nothing in memory), got {max_bytes!r}")
        self.max_bytes = max_bytes
        self.disk = EmbeddingDiskStore(disk_dir) if disk_dir is not None else None
        self._entries: OrderedDict[CacheKey, VideoEmbeddings] = OrderedDict()
        self._bytes = 0
        self._counts = dict.fromkeys(_COUNTERS, 0)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is in memory (no disk lookup, no effect on the statistics or the LRU order)."""
        return key in self._entries

    def get(self, key: CacheKey) -> VideoEmbeddings | None:
        """The CPU entry of ``key`` from memory, else from disk (then kept in memory); ``None`` on a miss."""
        _check_key(key)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self._counts["hits"] += 1
            return entry
        entry = self._load_from_disk(key)
        if entry is not None:
            self._counts["hits"] += 1
            self._counts["disk_hits"] += 1
            self._remember(key, entry)
            return entry
        self._counts["misses"] += 1
        return None

    def put(self, key: CacheKey, embeddings: VideoEmbeddings) -> None:
        """Store one video's ``embeddings`` under ``key`` (a detached CPU copy; written to disk if enabled)."""
        self._store(key, embeddings)

    def get_or_compute(
        self, keys: Sequence[CacheKey], compute_fn: ComputeFn, device: torch.device | str | None = None
    ) -> list[VideoEmbeddings]:
        """Per-video embeddings for ``keys``, computing all the missing ones in a single ``compute_fn`` call.

        Args:
            keys: one key per video, in batch order (repeats allowed: a repeated key is computed once).
            compute_fn: called with the sorted positions (into ``keys``) of the distinct missing keys, only if
                there are any; returns their embeddings in that order, as a list of single-video
                :class:`VideoEmbeddings` or as one batched :class:`VideoEmbeddings` (split here).
            device: where the returned embeddings live; ``None`` returns the cached CPU copies. Computed
                embeddings already on ``device`` are returned detached without a round trip through the CPU.

        Returns:
            One single-video :class:`VideoEmbeddings` per key, in the order of ``keys``, so
            ``VideoEmbeddings.concat(result)`` matches the batch's placeholder order.

        Statistics count each distinct key once per call: ``misses`` is the number of videos encoded.
        """
        results: list[VideoEmbeddings | None] = [None] * len(keys)
        first: dict[CacheKey, int] = {}
        for position, key in enumerate(keys):
            if key not in first:
                first[key] = position
                results[position] = self.get(key)
        misses = [position for position in first.values() if results[position] is None]
        if misses:
            for position, computed in zip(misses, self._compute(compute_fn, misses), strict=True):
                stored = self._store(keys[position], computed)
                results[position] = stored if device is None else computed.detach()
        out = [results[first[key]] for key in keys]
        return out if device is None else [entry.to(device) for entry in out]

    def invalidate(self) -> None:
        """Drop every in-memory entry (after a vision update); disk entries stay, separated by ``vision_version``."""
        self._entries.clear()
        self._bytes = 0

    def stats(self) -> dict[str, float]:
        """Counters since the last :meth:`reset_stats` plus the current memory use.

        Keys: ``hits`` (memory + disk), ``disk_hits``, ``misses``, ``hit_rate`` (hits / lookups, 0.0 before any),
        ``bytes``, ``entries``, ``evictions``, ``corrupt`` (disk files that failed verification and were
        dropped), ``oversize`` (entries larger than ``max_bytes``, not kept in memory).
        """
        lookups = self._counts["hits"] + self._counts["misses"]
        return {
            **self._counts,
            "hit_rate": self._counts["hits"] / lookups if lookups else 0.0,
            "bytes": self._bytes,
            "entries": len(self._entries),
        }

    def reset_stats(self) -> None:
        """Zero the counters (e.g. at each logging interval); entries are kept."""
        self._counts = dict.fromkeys(_COUNTERS, 0)

    # ------------------------------------------------------------------ internals
    def _compute(self, compute_fn: ComputeFn, misses: list[int]) -> list[VideoEmbeddings]:
        computed = compute_fn(list(misses))
        if isinstance(computed, VideoEmbeddings):
            computed = computed.split_per_video()
        computed = list(computed)
        if len(computed) != len(misses):
            raise ValueError(f"compute_fn returned {len(computed)} videos for {len(misses)} missing keys")
        return computed

    def _store(self, key: CacheKey, embeddings: VideoEmbeddings) -> VideoEmbeddings:
        _check_key(key)
        if not isinstance(embeddings, VideoEmbeddings) or embeddings.num_videos != 1:
            raise ValueError("a cache entry is the VideoEmbeddings of exactly one video (use split_per_video())")
        entry = cpu_copy(embeddings)
        self._remember(key, entry)
        if self.disk is not None:
            self.disk.save(key, entry)
        return entry

    def _remember(self, key: CacheKey, entry: VideoEmbeddings) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes
        size = entry.nbytes
        if size > self.max_bytes:
            self._counts["oversize"] += 1
            return
        self._entries[key] = entry
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.nbytes
            self._counts["evictions"] += 1

    def _load_from_disk(self, key: CacheKey) -> VideoEmbeddings | None:
        if self.disk is None:
            return None
        try:
            return self.disk.load(key)
        except CorruptEntryError as err:
            self._counts["corrupt"] += 1
            log.warning("embedding cache: dropped a corrupt disk entry, recomputing it (%s)", err)
            return None


def _check_key(key: object) -> None:
    if not isinstance(key, CacheKey):
        raise TypeError(f"key must be a CacheKey (build it with cache_key(...)), got {type(key).__name__}")


def cpu_copy(embeddings: VideoEmbeddings) -> VideoEmbeddings:
    """A detached CPU copy with its own compact storage (``to(copy=True)`` also copies a CPU view)."""

    def copy(t: Tensor) -> Tensor:
        return t.detach().to("cpu", copy=True)

    return VideoEmbeddings(
        embeds=copy(embeddings.embeds),
        grid_thw=copy(embeddings.grid_thw),
        merge_size=embeddings.merge_size,
        deepstack=None if embeddings.deepstack is None else [copy(f) for f in embeddings.deepstack],
        second_per_grid_ts=None if embeddings.second_per_grid_ts is None else copy(embeddings.second_per_grid_ts),
    )
