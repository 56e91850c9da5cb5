"""What identifies a cached video embedding: the video file, its frames, the preprocessing and the vision weights.

A cache entry may only be reused when every input of the vision tower is the same. Each part of
:class:`CacheKey` stands for one of them: the file (path, size and mtime, so an edited or replaced video is a
miss), the sampled frame indices, the preprocessing settings (resize budget, normalisation, patching) as a
hash, and a caller-chosen ``vision_version`` naming the vision weights (their fingerprint plus an update
counter when the vision tower trains).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class CacheKey:
    """Identity of one video's embeddings; hashable, so it keys the in-memory cache directly.

    Build it with :func:`cache_key` rather than by hand, so the file identity is read from disk.

    Attributes:
        video: the video file's resolved path.
        size: the file size in bytes.
        mtime_ns: the file's modification time in nanoseconds.
        frame_indices: the decoded frames, in order.
        processor_hash: sha256 of the preprocessing settings (:func:`processor_hash`).
        vision_version: names the vision weights, e.g. ``f"{vision_fingerprint(policy)}:{vision_updates}"``.
    """

    video: str
    size: int
    mtime_ns: int
    frame_indices: tuple[int, ...]
    processor_hash: str
    vision_version: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the disk store writes this next to the tensors and compares it on read)."""
        out = asdict(self)
        out["frame_indices"] = list(self.frame_indices)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CacheKey:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**data, "frame_indices": tuple(data["frame_indices"])})

    @cached_property
    def digest(self) -> str:
        """sha256 hex of the key's canonical JSON: a stable file name, the same in every process and run."""
        return hashlib.sha256(canonical_json(self.to_dict()).encode()).hexdigest()


def canonical_json(data: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal settings always hash equally."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def processor_hash(processor_config: Any) -> str:
    """sha256 hex of preprocessing settings: an object with ``to_dict()`` (``VideoProcessorConfig``) or a mapping."""
    if hasattr(processor_config, "to_dict"):
        settings = processor_config.to_dict()
    elif isinstance(processor_config, Mapping):
        settings = dict(processor_config)
    else:
        raise TypeError(
            "processor_config must be a VideoProcessorConfig (anything with to_dict()) or a mapping, "
            f"got {type(processor_config).__name__}"
        )
    return hashlib.sha256(canonical_json(settings).encode()).hexdigest()


def cache_key(
    video_path: str | os.PathLike[str],
    frame_indices: Sequence[int],
    processor_config: Any,
    vision_version: str | int,
) -> CacheKey:
    """The :class:`CacheKey` of ``video_path`` decoded at ``frame_indices`` and preprocessed by ``processor_config``.

    Args:
        video_path: the video file; it must exist (its size and mtime are part of the key).
        frame_indices: the frames the data pipeline decoded (a batch's ``frame_indices[i]``).
        processor_config: a ``VideoProcessorConfig`` (hashed through ``to_dict()``) or a mapping of settings.
        vision_version: names the vision weights; pass a new value whenever they change.

    Example:
        >>> version = f"{vision_fingerprint(policy)}:0"
        >>> keys = [cache_key(p, f, dataset.processor, version)
        ...         for p, f in zip(batch["video_paths"], batch["frame_indices"])]

    Note:
        File identity is ``(resolved path, size, mtime_ns)``, not a hash of the content: hashing a long video
        every step would cost more than encoding it. A file rewritten with the same size within the
        filesystem's mtime granularity (or with its mtime restored) is therefore not detected.
    """
    path = Path(video_path).resolve()
    try:
        stat = path.stat()
    except FileNotFoundError as err:
        raise FileNotFoundError(f"video_path {str(video_path)!r} does not exist; cannot build its cache key") from err
    indices = tuple(int(i) for i in frame_indices)
    if not indices:
        raise ValueError("frame_indices must name at least one frame")
    if isinstance(vision_version, bool) or not isinstance(vision_version, (str, int)):
        raise TypeError(f"vision_version must be a str or int, got {type(vision_version).__name__}")
    return CacheKey(
        video=str(path),
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        frame_indices=indices,
        processor_hash=processor_hash(processor_config),
        vision_version=str(vision_version),
    )


def vision_fingerprint(policy: nn.Module) -> str:
    """sha256 hex over the vision tower's parameter names, dtypes, shapes and bytes.

    Args:
        policy: a :class:`~longvila_r1.models.VideoLMPolicy` (its ``vision_tower`` is hashed) or any module.

    Cost: one pass over the vision weights, copied to CPU: microseconds for the tiny preset, about a second
    for a 7B model's ~0.7B-parameter ViT (1.3 GB in bf16; the device-to-host copy and sha256 both run at
    GB/s). Call it once at setup and count vision updates in ``vision_version``, not once per step. With
    sharded parameters (FSDP2 ``DTensor``) each rank hashes its local shard, so ranks get different
    fingerprints: correct, but a disk cache shared by the ranks is then not shared between them.

    Example:
        >>> vision_version = f"{vision_fingerprint(policy)}:{vision_updates}"
    """
    module = getattr(policy, "vision_tower", policy)
    digest = hashlib.sha256()
    for name, param in module.named_parameters():
        tensor = param.detach()
        tensor = tensor.to_local() if hasattr(tensor, "to_local") else tensor
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        # Bytes through a uint8 view: numpy has no bfloat16, and the raw bytes are what identify the weights.
        digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).cpu().numpy())
    return digest.hexdigest()
