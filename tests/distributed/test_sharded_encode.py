"""Frame-sharded vision encoding on a real 2-rank gloo group against one process encoding everything.

Tolerances (fp32): embeddings atol 1e-6; vision gradients atol 1e-5, rtol 1e-4. Measured: embeddings
bit-identical; gradients at most 2e-6 off for entries up to 15 (~1e-7 relative: the order of the sums).
"""

from __future__ import annotations

import pytest
import torch
from _spawn import grads, run_ranks

from longvila_r1.models import VideoLMPolicy
from longvila_r1.parallel import FrameShards, sharded_encode_video

# (family, grids): odd t; 5 groups of 24 patches + 2 of 16 split 4 | 1 + 2, so rank 1 starts mid-video;
# a single group leaves rank 1 without frames (it must still join the backward collective).
CASES = {
    "split_mid_video": ("qwen2_5_vl", [[5, 4, 6], [2, 4, 4]]),
    "deepstack": ("qwen3_vl", [[3, 4, 4], [2, 4, 4]]),
    "fewer_groups_than_ranks": ("qwen2_5_vl", [[1, 4, 4]]),
}
EMBED_TOL = {"atol": 1e-6, "rtol": 0}
GRAD_TOL = {"atol": 1e-5, "rtol": 1e-4}


def _inputs(policy: VideoLMPolicy, grids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    grid_thw = torch.tensor(grids)
    patch_dim = 3 * policy.temporal_patch_size * policy.patch_size**2
    pixels = torch.randn(int(grid_thw.prod(-1).sum()), patch_dim, generator=gen)
    tokens = int(grid_thw.prod(-1).sum()) // policy.merge_size**2
    weights = torch.randn(tokens, policy.config.text_config.hidden_size, generator=gen)
    return pixels, grid_thw, weights


def _loss(emb, weights: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
    """A linear probe of the embeddings (and deepstack features), over ``rows`` only."""
    loss = (emb.embeds[rows] * weights[rows]).sum()
    for i, feature in enumerate(emb.deepstack or []):
        loss = loss + (feature[rows] * weights[rows]).sum() / (i + 2)
    return loss


def _encode(policy: VideoLMPolicy, grids: list[list[int]], group, rows: slice) -> dict:
    pixels, grid_thw, weights = _inputs(policy, grids)
    policy.zero_grad()
    emb = sharded_encode_video(policy, pixels, grid_thw, group=group)
    _loss(emb, weights, rows).backward()
    vision = {k: v for k, v in grads(policy).items() if k.startswith("model.model.visual")}
    deepstack = [f.detach() for f in emb.deepstack] if emb.deepstack else []
    grads_set = all(p.grad is not None for p in policy.vision_parameters())
    return {"embeds": emb.embeds.detach(), "deepstack": deepstack, "grads": vision, "grads_set": grads_set}


def _worker(rank: int, world: int) -> dict:
    group = torch.distributed.group.WORLD
    out = {}
    for name, (family, grids) in CASES.items():
        policy = VideoLMPolicy.build("tiny", family=family, seed=0)
        tokens = sum(t * h * w for t, h, w in grids) // policy.merge_size**2
        half = slice(0, tokens // 2) if rank == 0 else slice(tokens // 2, None)
        out[name] = {"whole": _encode(policy, grids, group, slice(None)), "share": _encode(policy, grids, group, half)}
    return out


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    return run_ranks(_worker, tmp_path_factory.mktemp("gloo"))


@pytest.fixture(scope="module")
def references() -> dict:
    return {
        name: _encode(VideoLMPolicy.build("tiny", family=f, seed=0), g, None, slice(None))
        for name, (f, g) in CASES.items()
    }


@pytest.mark.parametrize("case", list(CASES))
def test_sharded_embeddings_equal_unsharded(ranks, references, case):
    ref = references[case]
    for result in ranks:
        torch.testing.assert_close(result[case]["whole"]["embeds"], ref["embeds"], **EMBED_TOL)
        assert len(result[case]["whole"]["deepstack"]) == len(ref["deepstack"])
        for got, want in zip(result[case]["whole"]["deepstack"], ref["deepstack"], strict=True):
            torch.testing.assert_close(got, want, **EMBED_TOL)


@pytest.mark.parametrize("case", list(CASES))
def test_vision_gradients_equal_unsharded(ranks, references, case):
    ref = references[case]["grads"]
    # Each rank's loss is the whole loss: the mean of the ranks' gradients (what DDP computes) is the reference.
    whole = [r[case]["whole"]["grads"] for r in ranks]
    # Each rank's loss is its half of the rows (not the rows it encoded): the sum is the reference.
    share = [r[case]["share"]["grads"] for r in ranks]
    for name, want in ref.items():
        torch.testing.assert_close(sum(g[name] for g in whole) / len(whole), want, **GRAD_TOL, msg=name)
        torch.testing.assert_close(sum(g[name] for g in share), want, **GRAD_TOL, msg=name)
    assert any(g.abs().sum() > 0 for g in ref.values())


def test_each_rank_encodes_only_its_frames():
    shards = FrameShards.plan(torch.tensor(CASES["split_mid_video"][1]), merge_size=2, world=2)
    assert shards.starts == [0, 4, 7]
    assert shards.local_grid(0).tolist() == [[4, 4, 6]]
    assert shards.local_grid(1).tolist() == [[1, 4, 6], [2, 4, 4]]
    assert shards.patch_range(1) == (96, 152) and shards.token_counts == [24, 14]


def test_a_rank_without_frames_still_gives_every_vision_parameter_a_gradient(ranks):
    # DDP expects a gradient for every parameter on every rank; the idle rank's are zeros.
    idle = ranks[1]["fewer_groups_than_ranks"]["whole"]
    assert idle["grads_set"] and all(g.abs().sum() == 0 for g in idle["grads"].values())
