"""One file per cached video embedding, written atomically and verified on every read.

The disk store outlives a process (a restarted run, the other ranks of a node), so nothing read from it is
trusted: a file is used only if its magic, checksum and stored key all match. Anything else (a truncated
write from a killed job, a flipped bit, a file of another key) is deleted and reported as corrupt, and the
caller recomputes it.

File layout, ``<disk_dir>/<key.digest>.emb``::

    b"LVR1EMB\\0"                        8 bytes, magic
    header length                        4 bytes, unsigned little-endian
    header                               UTF-8 JSON: {"meta": {...}, "sha256": "<hex>"}
    payload                              safetensors bytes: embeds, grid_thw, [deepstack.i], [second_per_grid_ts]

``meta`` holds the format version, the full :class:`CacheKey`, ``merge_size``, the number of deepstack
layers and the payload length; ``sha256`` covers the canonical JSON of ``meta`` followed by the payload,
so a corrupt header is caught as surely as a corrupt tensor. safetensors, not pickle: loading a file never
runs code from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path

from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from longvila_r1.models.embeddings import VideoEmbeddings
from longvila_r1.rollout.cache_key import CacheKey, canonical_json

MAGIC = b"LVR1EMB\0"
FORMAT_VERSION = 1
SUFFIX = ".emb"
_LENGTH = struct.Struct("<I")


class CorruptEntryError(Exception):
    """A cache file that cannot be trusted; the store has already deleted it."""


class EmbeddingDiskStore:
    """Reads and writes one :class:`VideoEmbeddings` per :class:`CacheKey` under ``disk_dir``.

    Args:
        disk_dir: directory for the files (created if missing). Several processes may share it: writes go
            to a private temporary file that is renamed into place, so a reader sees a whole file or none.

    Example:
        >>> store = EmbeddingDiskStore("/scratch/emb_cache")
        >>> store.save(key, embeddings)
        >>> store.load(key)  # None if absent; raises CorruptEntryError (file deleted) if it fails a check
    """

    def __init__(self, disk_dir: str | os.PathLike[str]) -> None:
        self.disk_dir = Path(disk_dir)
        if self.disk_dir.exists() and not self.disk_dir.is_dir():
            raise ValueError(f"disk_dir {str(disk_dir)!r} exists and is not a directory")
        self.disk_dir.mkdir(parents=True, exist_ok=True)

    def path(self, key: CacheKey) -> Path:
        """Where ``key``'s entry lives (the file name is the key's sha256, never the video's own name)."""
        return self.disk_dir / f"{key.digest}{SUFFIX}"

    def save(self, key: CacheKey, embeddings: VideoEmbeddings) -> Path:
        """Write ``embeddings`` (CPU tensors) for ``key`` atomically; replaces an existing file."""
        data = encode_entry(key, embeddings)
        final = self.path(key)
        fd, tmp = tempfile.mkstemp(dir=self.disk_dir, prefix=f".{final.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                # On disk before the rename: a crash must leave the old file or the whole new one.
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return final

    def load(self, key: CacheKey) -> VideoEmbeddings | None:
        """The entry of ``key``; ``None`` if there is none.

        Raises:
            CorruptEntryError: the file failed to parse, failed its checksum or holds another key; it has
                been deleted.
        """
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return decode_entry(data, key)
        except CorruptEntryError as err:
            self.remove(key)
            raise CorruptEntryError(f"{path}: {err}") from None

    def remove(self, key: CacheKey) -> None:
        """Delete ``key``'s file if present."""
        with contextlib.suppress(FileNotFoundError):
            self.path(key).unlink()


def encode_entry(key: CacheKey, embeddings: VideoEmbeddings) -> bytes:
    """The file bytes for ``embeddings`` under ``key`` (layout in the module docstring)."""
    tensors = {"embeds": embeddings.embeds, "grid_thw": embeddings.grid_thw}
    for i, layer in enumerate(embeddings.deepstack or []):
        tensors[f"deepstack.{i}"] = layer
    if embeddings.second_per_grid_ts is not None:
        tensors["second_per_grid_ts"] = embeddings.second_per_grid_ts
    payload = save_safetensors({name: t.detach().cpu().contiguous() for name, t in tensors.items()})
    meta = {
        "format": FORMAT_VERSION,
        "key": key.to_dict(),
        "merge_size": embeddings.merge_size,
        "deepstack_layers": None if embeddings.deepstack is None else len(embeddings.deepstack),
        "payload_bytes": len(payload),
    }
    header = json.dumps({"meta": meta, "sha256": _checksum(meta, payload)}).encode()
    return MAGIC + _LENGTH.pack(len(header)) + header + payload


def decode_entry(data: bytes, key: CacheKey) -> VideoEmbeddings:
    """Parse and verify file bytes written by :func:`encode_entry` for ``key``.

    Raises:
        CorruptEntryError: naming the first check that failed.
    """
    start = len(MAGIC) + _LENGTH.size
    if len(data) < start or not data.startswith(MAGIC):
        raise CorruptEntryError("not a cache entry (bad magic or too short)")
    (header_length,) = _LENGTH.unpack_from(data, len(MAGIC))
    try:
        header = json.loads(data[start : start + header_length])
        meta, checksum = header["meta"], header["sha256"]
    except (ValueError, TypeError, KeyError) as err:
        raise CorruptEntryError(f"unreadable header ({type(err).__name__}: {err})") from None
    if not isinstance(meta, dict) or not isinstance(checksum, str):
        raise CorruptEntryError("malformed header")
    payload = data[start + header_length :]
    if _checksum(meta, payload) != checksum:
        raise CorruptEntryError("checksum mismatch (truncated or modified file)")
    # Checked after the checksum: a verified file of another key is a misplaced file, not a damaged one.
    if meta.get("format") != FORMAT_VERSION:
        raise CorruptEntryError(f"format {meta.get('format')!r}, this reader understands {FORMAT_VERSION}")
    if meta.get("key") != key.to_dict():
        raise CorruptEntryError("file holds the entry of another key")
    try:
        tensors = load_safetensors(payload)
        layers = meta["deepstack_layers"]
        return VideoEmbeddings(
            embeds=tensors["embeds"],
            grid_thw=tensors["grid_thw"],
            merge_size=int(meta["merge_size"]),
            deepstack=None if layers is None else [tensors[f"deepstack.{i}"] for i in range(layers)],
            second_per_grid_ts=tensors.get("second_per_grid_ts"),
        )
    except Exception as err:  # a verified payload that still fails was written by a buggy writer: not trusted
        raise CorruptEntryError(f"payload does not load ({type(err).__name__}: {err})") from None


def _checksum(meta: dict, payload: bytes) -> str:
    digest = hashlib.sha256(canonical_json(meta).encode())
    digest.update(payload)
    return digest.hexdigest()
