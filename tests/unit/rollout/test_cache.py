"""VideoEmbeddingCache: keys, byte-capped LRU, verified disk store, batched get_or_compute."""

from __future__ import annotations

import os

import pytest
import torch

from longvila_r1.data.qwen_vl import VideoProcessorConfig
from longvila_r1.models import VideoEmbeddings, VideoLMPolicy
from longvila_r1.rollout import (
    CacheKey,
    VideoEmbeddingCache,
    cache_key,
    select_video_patches,
    vision_fingerprint,
)
from longvila_r1.rollout.disk_store import SUFFIX

PROCESSOR = VideoProcessorConfig.qwen2_vl(min_pixels=56 * 56, max_pixels=64 * 64)


def _embeddings(tokens: int = 2, dim: int = 8, seed: int = 0, dtype=torch.float32, **kwargs) -> VideoEmbeddings:
    """One video of ``tokens`` merged tokens (grid 1 x 2 x 2*tokens, merge 2)."""
    gen = torch.Generator().manual_seed(seed)
    return VideoEmbeddings(
        embeds=torch.randn(tokens, dim, generator=gen).to(dtype),
        grid_thw=torch.tensor([[1, 2, 2 * tokens]]),
        merge_size=2,
        **kwargs,
    )


@pytest.fixture
def videos(tmp_path) -> list:
    paths = []
    for i in range(4):
        path = tmp_path / f"vid_{i}.mp4"
        path.write_bytes(bytes([i]) * (100 + i))
        paths.append(path)
    return paths


def _key(path, frames=(0, 4, 8), processor=PROCESSOR, version="v0") -> CacheKey:
    return cache_key(path, frames, processor, version)


def _assert_equal(a: VideoEmbeddings, b: VideoEmbeddings) -> None:
    assert torch.equal(a.embeds, b.embeds) and a.embeds.dtype == b.embeds.dtype
    assert torch.equal(a.grid_thw, b.grid_thw) and a.merge_size == b.merge_size
    assert (a.deepstack is None) == (b.deepstack is None)
    for x, y in zip(a.deepstack or [], b.deepstack or [], strict=True):
        assert torch.equal(x, y)
    assert (a.second_per_grid_ts is None) == (b.second_per_grid_ts is None)
    if a.second_per_grid_ts is not None:
        assert torch.equal(a.second_per_grid_ts, b.second_per_grid_ts)


def test_key_changes_with_every_input_of_the_vision_tower(videos, monkeypatch):
    path = videos[0]
    key = _key(path)
    monkeypatch.chdir(path.parent)
    assert _key(path.name) == key and _key(path.name).digest == key.digest  # relative paths resolve
    assert _key(path, frames=(0, 4, 9)) != key
    assert _key(path, processor=VideoProcessorConfig.qwen2_vl(min_pixels=56 * 56, max_pixels=96 * 96)) != key
    assert _key(path, processor=PROCESSOR.to_dict()) == key  # a settings mapping hashes like its config
    assert _key(path, version="v1") != key
    assert _key(videos[1]) != key
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # an edited file is a miss
    assert _key(path) != key
    assert len({key.digest, _key(path).digest, _key(path, version=3).digest}) == 3


def test_key_arguments_are_validated(videos, tmp_path):
    with pytest.raises(FileNotFoundError, match="video_path"):
        _key(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="frame_indices"):
        _key(videos[0], frames=())
    with pytest.raises(TypeError, match="processor_config"):
        _key(videos[0], processor=42)
    with pytest.raises(TypeError, match="vision_version"):
        _key(videos[0], version=None)
    with pytest.raises(ValueError, match="max_bytes"):
        VideoEmbeddingCache(max_bytes=-1)


def test_hit_miss_and_stats(videos):
    cache = VideoEmbeddingCache()
    key = _key(videos[0])
    assert cache.get(key) is None
    cache.put(key, _embeddings())
    _assert_equal(cache.get(key), _embeddings())
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["hit_rate"], stats["entries"]) == (1, 1, 0.5, 1)
    assert stats["bytes"] == _embeddings().nbytes
    cache.reset_stats()
    assert cache.stats()["hits"] == 0 and cache.stats()["entries"] == 1
    cache.invalidate()
    assert cache.get(key) is None and cache.stats()["bytes"] == 0
    with pytest.raises(ValueError, match="one video"):
        cache.put(key, VideoEmbeddings.concat([_embeddings(), _embeddings()]))


def test_lru_evicts_least_recently_used_by_bytes(videos):
    size = _embeddings().nbytes
    cache = VideoEmbeddingCache(max_bytes=2 * size + size // 2)
    a, b, c = (_key(p) for p in videos[:3])
    cache.put(a, _embeddings(seed=1))
    cache.put(b, _embeddings(seed=2))
    assert cache.get(a) is not None  # a is now more recent than b
    cache.put(c, _embeddings(seed=3))
    assert b not in cache and a in cache and c in cache
    assert cache.stats()["evictions"] == 1 and cache.stats()["bytes"] == 2 * size
    cache.put(_key(videos[3]), _embeddings(tokens=20))  # larger than the whole budget: not kept, counted
    assert cache.stats()["oversize"] == 1 and len(cache) == 2


def test_entries_are_detached_compact_cpu_copies(videos):
    batch = _embeddings(tokens=6).embeds.requires_grad_()
    emb = VideoEmbeddings(embeds=batch * 2, grid_thw=torch.tensor([[1, 2, 4], [1, 2, 8]]), merge_size=2)
    second = emb.split_per_video()[1]
    cache = VideoEmbeddingCache()
    cache.put(_key(videos[0]), second)
    entry = cache.get(_key(videos[0]))
    assert not entry.embeds.requires_grad and entry.embeds.device.type == "cpu"
    assert entry.embeds.untyped_storage().nbytes() == second.embeds.numel() * 4  # not the whole batch's storage


def test_disk_round_trip_is_exact_and_atomic(videos, tmp_path):
    disk = tmp_path / "cache"
    emb = _embeddings(tokens=3, dtype=torch.bfloat16, second_per_grid_ts=torch.tensor([0.5]))
    VideoEmbeddingCache(disk_dir=disk).put(_key(videos[0]), emb)
    fresh = VideoEmbeddingCache(disk_dir=disk)
    _assert_equal(fresh.get(_key(videos[0])), emb)
    assert fresh.stats()["disk_hits"] == 1 and _key(videos[0]) in fresh
    assert fresh.get(_key(videos[0], version="v1")) is None  # another vision version never reads the file
    assert [p.name for p in disk.iterdir()] == [_key(videos[0]).digest + SUFFIX]  # no temporary files left


def test_failed_write_leaves_no_file(videos, tmp_path, monkeypatch):
    disk = tmp_path / "cache"
    cache = VideoEmbeddingCache(disk_dir=disk)

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        cache.put(_key(videos[0]), _embeddings())
    assert list(disk.iterdir()) == []


def _truncate(path, other):
    path.write_bytes(path.read_bytes()[:-7])


def _flip_payload(path, other):
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))


def _flip_header(path, other):
    data = bytearray(path.read_bytes())
    data[20] ^= 0x01
    path.write_bytes(bytes(data))


def _garbage(path, other):
    path.write_bytes(os.urandom(300))


def _other_key(path, other):
    path.write_bytes(other.read_bytes())


@pytest.mark.parametrize("damage", [_truncate, _flip_payload, _flip_header, _garbage, _other_key])
def test_corrupt_disk_entry_is_recomputed_and_counted(videos, tmp_path, damage):
    disk = tmp_path / "cache"
    writer = VideoEmbeddingCache(disk_dir=disk)
    key, other = _key(videos[0]), _key(videos[1])
    writer.put(key, _embeddings(seed=1))
    writer.put(other, _embeddings(seed=2))
    damage(writer.disk.path(key), writer.disk.path(other))

    reader = VideoEmbeddingCache(disk_dir=disk)
    calls = []
    result = reader.get_or_compute([key], lambda misses: calls.append(misses) or [_embeddings(seed=1)])
    assert calls == [[0]] and reader.stats()["corrupt"] == 1 and reader.stats()["misses"] == 1
    _assert_equal(result[0], _embeddings(seed=1))
    _assert_equal(VideoEmbeddingCache(disk_dir=disk).get(key), _embeddings(seed=1))  # rewritten, valid again


def test_get_or_compute_encodes_only_the_misses_once(videos):
    cache = VideoEmbeddingCache()
    keys = [_key(p) for p in videos[:3]]
    cache.put(keys[1], _embeddings(seed=1))
    calls = []

    def compute(misses):
        calls.append(misses)  # one batched call: a single VideoEmbeddings for all missing videos
        return VideoEmbeddings.concat([_embeddings(seed=i) for i in misses])

    out = cache.get_or_compute([keys[0], keys[1], keys[2], keys[0]], compute, device="cpu")
    assert calls == [[0, 2]]
    for got, seed in zip(out, [0, 1, 2, 0], strict=True):
        _assert_equal(got, _embeddings(seed=seed))
    assert VideoEmbeddings.concat(out).num_videos == 4  # batch order, ready for the prompts
    assert cache.get_or_compute(keys, compute) and calls == [[0, 2]]  # all hits: compute not called
    assert cache.stats()["misses"] == 2
    with pytest.raises(ValueError, match="compute_fn returned"):
        cache.get_or_compute([_key(videos[3])], lambda misses: [])


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_policy_embeddings_round_trip_through_disk(family, tmp_path, videos):
    policy = VideoLMPolicy.build("tiny", family=family, seed=0)
    grids = torch.tensor([[2, 4, 4], [1, 4, 6]])
    pixels = torch.randn(int(grids.prod(-1).sum()), 3 * policy.temporal_patch_size * policy.patch_size**2)
    seconds = torch.tensor([1.0, 2.0]) if family == "qwen2_5_vl" else None
    keys = [_key(videos[0]), _key(videos[1])]

    def encode(misses):
        with torch.no_grad():
            picked, grid = select_video_patches(pixels, grids, misses)
            return policy.encode_video(picked, grid, None if seconds is None else seconds[misses])

    with torch.no_grad():
        full = policy.encode_video(pixels, grids, seconds).split_per_video()
    stored = VideoEmbeddingCache(disk_dir=tmp_path / "cache").get_or_compute(keys, encode)
    fresh = VideoEmbeddingCache(disk_dir=tmp_path / "cache")
    for key, computed, ref in zip(keys, stored, full, strict=True):
        entry = fresh.get(key)
        assert (entry.deepstack is not None) == (family == "qwen3_vl")
        _assert_equal(entry, computed)  # the disk copy is bit-exact
        # Encoding only the misses (here: all, in one call) matches each video's slice of a batched encoding.
        torch.testing.assert_close(entry.embeds, ref.embeds)
    assert fresh.stats()["disk_hits"] == 2


def test_vision_fingerprint_tracks_the_vision_weights():
    a, b = VideoLMPolicy.build("tiny", seed=0), VideoLMPolicy.build("tiny", seed=0)
    assert vision_fingerprint(a) == vision_fingerprint(b)
    assert vision_fingerprint(a) != vision_fingerprint(VideoLMPolicy.build("tiny", seed=1))
    with torch.no_grad():
        next(b.vision_parameters()).view(-1)[0] += 1.0
    assert vision_fingerprint(a) != vision_fingerprint(b)
    with torch.no_grad():
        next(iter(a.language_parameters())).view(-1)[0] += 1.0  # language weights are not part of it
    assert vision_fingerprint(a) == vision_fingerprint(VideoLMPolicy.build("tiny", seed=0))
