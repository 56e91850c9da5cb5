"""PreprocessedClipCache: byte budget, LRU order; the dataset with a cache builds the same samples."""

from __future__ import annotations

import pytest
import torch

from longvila_r1.data.clip_cache import PreprocessedClip, PreprocessedClipCache
from longvila_r1.data.dataset import LongVideoReasonDataset, SampleError
from longvila_r1.data.processing import load_model_processing
from longvila_r1.data.records import load_records


def _clip(value: float, patches: int = 4) -> PreprocessedClip:
    # 4 patches x 8 floats = 128 bytes of pixels + 24 of grid + 8 of timestamps = 160 bytes.
    pixels = torch.full((patches, 8), float(value))
    return PreprocessedClip(pixels, torch.tensor([1, 2, 2]), torch.zeros(2, dtype=torch.float32), 1.0, (0, 1))


def test_lru_keeps_the_most_recent_clips_within_the_budget():
    cache = PreprocessedClipCache(max_bytes=2 * _clip(0).nbytes)
    built = []

    def build(value):
        built.append(value)
        return _clip(value)

    cache.get_or_build("a", lambda: build(1.0))
    cache.get_or_build("b", lambda: build(2.0))
    assert cache.get_or_build("a", lambda: build(9.0)).pixels[0, 0] == 1.0  # hit: "a" is now the most recent
    cache.get_or_build("c", lambda: build(3.0))  # evicts "b", the least recently used
    assert len(cache) == 2 and cache.bytes == 2 * _clip(0).nbytes
    cache.get_or_build("a", lambda: build(9.0))
    cache.get_or_build("b", lambda: build(4.0))
    assert built == [1.0, 2.0, 3.0, 4.0]
    assert (cache.hits, cache.misses) == (2, 4)


def test_zero_budget_and_oversized_clips_are_not_stored():
    off = PreprocessedClipCache(0)
    off.get_or_build("a", lambda: _clip(1.0))
    off.get_or_build("a", lambda: _clip(1.0))
    assert (off.hits, off.misses, len(off)) == (0, 2, 0)
    small = PreprocessedClipCache(_clip(0).nbytes)
    small.get_or_build("big", lambda: _clip(1.0, patches=100))
    assert len(small) == 0 and small.bytes == 0
    with pytest.raises(ValueError, match="max_bytes"):
        PreprocessedClipCache(-1)


def test_dataset_with_cache_builds_identical_samples_and_decodes_each_video_once(synth_dir):
    tokenizer, processor = load_model_processing("tiny")
    records = load_records(synth_dir / "train.jsonl")
    plain = LongVideoReasonDataset(records, tokenizer, processor=processor)
    cached = LongVideoReasonDataset(records, tokenizer, processor=processor, video_cache_bytes=1 << 30)
    for _epoch in range(2):
        for i in range(len(records)):
            a, b = plain[i], cached[i]
            assert torch.equal(a.pixel_values_videos, b.pixel_values_videos)
            assert torch.equal(a.video_grid_thw, b.video_grid_thw) and torch.equal(a.labels, b.labels)
            assert a.second_per_grid_ts == b.second_per_grid_ts and a.frame_indices == b.frame_indices
    videos = len({r.video_path for r in records})
    assert cached.clip_cache.misses == videos < len(records)
    assert cached.clip_cache.hits == 2 * len(records) - videos


def test_a_failing_video_is_not_cached(tmp_path, synth_dir):
    tokenizer, processor = load_model_processing("tiny")
    record = load_records(synth_dir / "train.jsonl")[0]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    record = type(record).from_dict({**record.to_dict(), "videos": str(broken)})
    dataset = LongVideoReasonDataset([record], tokenizer, processor=processor, video_cache_bytes=1 << 20)
    for _ in range(2):
        with pytest.raises(SampleError, match=r"broken\.mp4"):
            dataset[0]
    assert len(dataset.clip_cache) == 0 and dataset.clip_cache.misses == 2
