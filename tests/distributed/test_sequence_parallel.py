"""MR-SP end to end on a real 2-rank gloo group against one process with the same weights.

Frame-sharded encoding, then sequence-parallel log-probs with Ulysses attention, then a GRPO-like loss and
backward through the language model and the vision tower. Each case mixes uneven lengths: left-padded
prompts, right-padded responses, an odd sequence length (padded for sharding), odd frame counts, and a
rank that holds no scored token.

Tolerances (fp32): log-probs and entropies atol 1e-5, rtol 1e-5; parameter gradients atol 1e-5, rtol 1e-4.
Measured: log-probs/entropies at most 5e-7 off; gradients at most 4e-7 off for entries up to 0.8.
"""

from __future__ import annotations

import pytest
import torch
from _spawn import grads, run_ranks

from longvila_r1.data.qwen_vl_prompt import mm_token_type_ids, video_placeholder_ids
from longvila_r1.models import VideoLMPolicy, special_token_ids
from longvila_r1.parallel import SequenceShard, sequence_parallel_logprobs, sharded_encode_video, use_ulysses_attention

IDS = special_token_ids()
IM_START, VISION_START, VISION_END = 1, IDS["vision_start_token_id"], IDS["vision_end_token_id"]
FIRST_TEXT_ID = 12
# family, preset overrides, grids (t, h, w), per-row prompt text lengths and response lengths, checkpointing.
CASES = {
    # TINY: 4 heads over 2 KV heads (GQA); left padding makes the global key mask necessary.
    "gqa_left_padded": dict(family="qwen2_5_vl", overrides={}, grids=[[3, 4, 4], [1, 4, 6]], text=[2, 7], resp=[4, 2]),
    # One KV head for sp=2: KV heads are replicated before the all-to-all. Right padding only (causal path);
    # long responses give both ranks scored tokens.
    "one_kv_head": dict(
        family="qwen2_5_vl", overrides={"text_kv_heads": 1}, grids=[[3, 4, 4], [3, 4, 4]], text=[1, 1], resp=[20, 9]
    ),
    # Deepstack features follow their video tokens into the shards; Qwen3-VL's per-frame layout.
    "qwen3_deepstack": dict(family="qwen3_vl", overrides={}, grids=[[3, 4, 4], [1, 4, 4]], text=[2, 5], resp=[3, 3]),
    # Recomputed decoder layers must run sequence-parallel again.
    "checkpointing": dict(
        family="qwen2_5_vl", overrides={}, grids=[[3, 4, 4], [1, 4, 6]], text=[2, 7], resp=[4, 2], checkpointing=True
    ),
}
LOGPROB_TOL = {"atol": 1e-5, "rtol": 1e-5}
GRAD_TOL = {"atol": 1e-5, "rtol": 1e-4}


def _build(case: dict) -> VideoLMPolicy:
    policy = VideoLMPolicy.build(
        "tiny",
        family=case["family"],
        seed=0,
        gradient_checkpointing=case.get("checkpointing", False),
        **case["overrides"],
    )
    return policy.train()


def _video_ids(policy: VideoLMPolicy, grid: list[int]) -> list[int]:
    """The placeholder ids of one video in the family's layout (Qwen3-VL: a timestamped run per group)."""
    if policy.family != "qwen3_vl":
        return [VISION_START, *video_placeholder_ids(policy.tokenizer, grid, policy.merge_size), VISION_END]
    return video_placeholder_ids(
        policy.tokenizer, grid, policy.merge_size, timestamps=[2.0 * i for i in range(grid[0])]
    )


def make_batch(policy: VideoLMPolicy, case: dict) -> dict:
    """Left-padded prompts (one video each) followed by right-padded responses, plus pixels and weights."""
    gen = torch.Generator().manual_seed(0)
    vocab = len(policy.tokenizer)
    prompts = []
    for grid, text_len in zip(case["grids"], case["text"], strict=True):
        text = torch.randint(FIRST_TEXT_ID, vocab, (text_len,), generator=gen).tolist()
        prompts.append([IM_START, *_video_ids(policy, grid), *text])
    prompt_len, resp_len = max(len(ids) for ids in prompts), max(case["resp"])
    input_ids, mask = [], []
    for ids, n in zip(prompts, case["resp"], strict=True):
        pad, tail = prompt_len - len(ids), resp_len - n
        response = torch.randint(FIRST_TEXT_ID, vocab, (n,), generator=gen).tolist()
        input_ids.append([0] * pad + ids + response + [0] * tail)
        mask.append([0] * pad + [1] * (len(ids) + n) + [0] * tail)
    input_ids = torch.tensor(input_ids)
    grid_thw = torch.tensor(case["grids"])
    patch_dim = 3 * policy.temporal_patch_size * policy.patch_size**2
    length = prompt_len + resp_len
    return {
        "input_ids": input_ids,
        "attention_mask": torch.tensor(mask),
        "mm_token_type_ids": mm_token_type_ids(policy.tokenizer, input_ids),
        "prompt_lengths": prompt_len,
        "pixel_values_videos": torch.randn(int(grid_thw.prod(-1).sum()), patch_dim, generator=gen),
        "video_grid_thw": grid_thw,
        "weights": torch.randn(input_ids.shape[0], length - 1, generator=gen),  # per-token advantages
    }


def _loss(logprobs: torch.Tensor, batch: dict, positions: torch.Tensor | None = None) -> torch.Tensor:
    """A policy-gradient-like loss normalised by the global count of scored tokens (over ``positions``)."""
    scored = logprobs != 0  # [B, S-1]
    terms = -(logprobs * batch["weights"])  # [B, S-1]
    if positions is not None:
        terms = terms * positions
    return terms.sum() / scored.sum()


def _run(policy: VideoLMPolicy, batch: dict, group, share: bool = False) -> dict:
    policy.zero_grad()
    inputs = (batch["input_ids"], batch["attention_mask"], batch["mm_token_type_ids"])
    if group is None:  # the single-process reference
        emb = policy.encode_video(batch["pixel_values_videos"], batch["video_grid_thw"])
        logprobs, entropy = policy.response_logprobs(
            *inputs, emb, prompt_lengths=batch["prompt_lengths"], return_entropy=True
        )
    else:
        emb = sharded_encode_video(policy, batch["pixel_values_videos"], batch["video_grid_thw"], group=group)
        logprobs, entropy = sequence_parallel_logprobs(
            policy, *inputs, emb, prompt_lengths=batch["prompt_lengths"], return_entropy=True, group=group
        )
    positions = None
    if share:  # this rank's loss: the tokens it computed, still normalised by the global count
        positions = SequenceShard.for_group(batch["input_ids"].shape[1], group).owned()[:-1].float()
    _loss(logprobs, batch, positions).backward()
    return {"logprobs": logprobs.detach(), "entropy": entropy.detach(), "grads": grads(policy)}


def _worker(rank: int, world: int) -> dict:
    group = torch.distributed.group.WORLD
    out = {}
    for name, case in CASES.items():
        policy = _build(case)
        use_ulysses_attention(policy.model)
        batch = make_batch(policy, case)
        whole, share = _run(policy, batch, group), _run(policy, batch, group, share=True)
        scored = SequenceShard.for_group(batch["input_ids"].shape[1], group).owned()[:-1] & (whole["logprobs"] != 0)
        out[name] = {"whole": whole, "share": share, "local_scored": int(scored.sum())}
    return out


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    return run_ranks(_worker, tmp_path_factory.mktemp("gloo"))


@pytest.fixture(scope="module")
def references() -> dict:
    refs = {}
    for name, case in CASES.items():
        policy = _build(case)
        refs[name] = _run(policy, make_batch(policy, case), None)
    return refs


@pytest.mark.parametrize("case", list(CASES))
def test_logprobs_equal_single_process(ranks, references, case):
    ref = references[case]
    assert (ref["logprobs"] != 0).any()
    for result in ranks:
        for key in ("logprobs", "entropy"):
            torch.testing.assert_close(result[case]["whole"][key], ref[key], **LOGPROB_TOL)


@pytest.mark.parametrize("case", list(CASES))
def test_gradients_equal_single_process(ranks, references, case):
    ref = references[case]["grads"]
    whole = [r[case]["whole"]["grads"] for r in ranks]  # every rank: the whole loss -> mean of gradients
    share = [r[case]["share"]["grads"] for r in ranks]  # every rank: its tokens' share -> sum of gradients
    for name, want in ref.items():
        torch.testing.assert_close(sum(g[name] for g in whole) / len(whole), want, **GRAD_TOL, msg=name)
        torch.testing.assert_close(sum(g[name] for g in share), want, **GRAD_TOL, msg=name)
    # (not every vision parameter: Qwen3-VL's last deepstack tap feeds only video positions of the last layer)
    assert sum(g.abs().sum() for name, g in ref.items() if ".visual." in name) > 0, "the vision tower gets no gradient"


def test_a_rank_without_scored_tokens_still_takes_part(ranks):
    # The responses sit at the end of the sequence: rank 0 holds none of them, yet its backward ran.
    assert ranks[0]["gqa_left_padded"]["local_scored"] == 0
    assert ranks[1]["gqa_left_padded"]["local_scored"] > 0
    assert all(r["one_kv_head"]["local_scored"] > 0 for r in ranks)
