"""Frame sharding: the vision tower never mixes temporal groups, so encoding each rank's run of groups and
concatenating equals encoding the whole batch, for every supported family (single process)."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch

from longvila_r1.models import FAMILIES, VideoLMPolicy
from longvila_r1.parallel import FrameShards


@pytest.mark.parametrize(
    ("grids", "world", "starts"),
    [
        ([[3, 4, 4], [2, 4, 4]], 2, [0, 3, 5]),
        ([[5, 4, 6], [2, 4, 4]], 2, [0, 4, 7]),  # balanced by patches, not by groups
        ([[2, 4, 4]], 3, [0, 1, 2, 2]),  # fewer groups than ranks: the last rank has none
        ([[7, 4, 4]], 3, [0, 3, 5, 7]),
    ],
)
def test_plan_gives_each_rank_a_contiguous_balanced_run(grids, world, starts):
    shards = FrameShards.plan(torch.tensor(grids), merge_size=2, world=world)
    assert shards.starts == starts
    assert sum(shards.token_counts) == sum(t * h * w for t, h, w in grids) // 4
    groups = [int(shards.local_grid(rank)[:, 0].sum()) for rank in range(world)]
    assert groups == [end - start for start, end in pairwise(starts)]


@pytest.mark.parametrize("family", FAMILIES)
def test_encoding_the_pieces_equals_encoding_the_batch(family):
    policy = VideoLMPolicy.build("tiny", family=family, seed=0)
    # 8x12 patches: several of Qwen2.5-VL's attention windows per frame; 3 + 2 groups cut mid-video.
    grid_thw = torch.tensor([[3, 8, 12], [2, 4, 4]])
    pixels = torch.randn(int(grid_thw.prod(-1).sum()), 3 * policy.temporal_patch_size * policy.patch_size**2)
    whole = policy.encode_video(pixels, grid_thw)
    shards = FrameShards.plan(grid_thw, policy.merge_size, world=3)
    pieces = []
    for rank in range(3):
        start, end = shards.patch_range(rank)
        pieces.append(policy.encode_video(pixels[start:end], shards.local_grid(rank)))
    torch.testing.assert_close(torch.cat([p.embeds for p in pieces]), whole.embeds, atol=1e-6, rtol=0)
    for i, feature in enumerate(whole.deepstack or []):
        torch.testing.assert_close(torch.cat([p.deepstack[i] for p in pieces]), feature, atol=1e-6, rtol=0)
