"""The vLLM engine's translation layer, which needs no vLLM: prompts with embeddings, outputs, synced weights."""

from __future__ import annotations

import pytest
import torch

from longvila_r1.data.collate import pad_sequences
from longvila_r1.models import VideoEmbeddings, VideoLMPolicy
from longvila_r1.rollout import SamplingParams
from longvila_r1.rollout.vllm_engine import weights_to_sync
from longvila_r1.rollout.vllm_requests import build_generation_output, build_prompts, collapse_video_runs

VIDEO = 7  # the tiny tokenizer's <|video_pad|>


@pytest.fixture(scope="module")
def policy() -> VideoLMPolicy:
    return VideoLMPolicy.build("tiny", family="qwen2_5_vl", seed=0, freeze_vision=True)


def _batch():
    # Row 0: text, one video of 4 tokens, text. Row 1: two videos (2 and 4 tokens). Row 2: text only.
    rows = [[1, 3, 7, 7, 7, 7, 4, 20], [1, 3, 7, 7, 4, 21, 3, 7, 7, 7, 7, 4], [1, 22, 23]]
    ids = pad_sequences([torch.tensor(r) for r in rows], 0, "left")
    mask = pad_sequences([torch.ones(len(r), dtype=torch.long) for r in rows], 0, "left")
    types = (ids == VIDEO).long() * 2
    grids = torch.tensor([[1, 4, 4], [1, 2, 4], [1, 4, 4]])  # 4, 2 and 4 merged tokens
    emb = VideoEmbeddings(torch.randn(10, 8), grids, merge_size=2, second_per_grid_ts=torch.tensor([1.0, 0.5, 2.0]))
    return ids, mask, types, emb


def test_each_run_of_video_placeholders_becomes_one():
    ids = torch.tensor([1, 7, 7, 7, 2, 7, 7])
    assert collapse_video_runs(ids, (ids == VIDEO).long() * 2, VIDEO) == [1, 7, 2, 7]


def test_prompts_drop_left_padding_and_carry_each_rows_videos():
    ids, mask, types, emb = _batch()
    prompts = build_prompts(ids, mask, types, emb, VIDEO)
    assert [p["prompt_token_ids"] for p in prompts] == [[1, 3, 7, 4, 20], [1, 3, 7, 4, 21, 3, 7, 4], [1, 22, 23]]
    first, second = (p["multi_modal_data"]["video"] for p in prompts[:2])
    assert torch.equal(first["video_embeds"], emb.embeds[:4])
    assert torch.equal(second["video_embeds"], emb.embeds[4:])
    assert second["video_grid_thw"].tolist() == [[1, 2, 4], [1, 4, 4]]
    assert second["second_per_grid_ts"].tolist() == [0.5, 2.0]  # the M-RoPE time scale goes along
    assert "multi_modal_data" not in prompts[2]


def test_outputs_follow_the_policy_layout(policy):
    ids, mask, types, emb = _batch()
    eos, pad = policy.tokenizer.eos_token_id, policy.tokenizer.pad_token_id
    tokens = [[[5, eos], [6, 6, 6]], [[9], [10, 11]], [[8, 8, eos], [eos]]]  # tokens[b][g]
    out = build_generation_output(tokens, ids, mask, types, emb, SamplingParams(n=2), policy)
    assert out.sequences.shape == (6, ids.shape[1] + 3) and out.prompt_length == ids.shape[1]
    expected = [[5, eos, pad], [6, 6, 6], [9, pad, pad], [10, 11, pad], [8, 8, eos], [eos, pad, pad]]
    assert out.response_ids.tolist() == expected  # row b * n + g, right-padded after the stop token
    assert out.response_lengths.tolist() == [2, 3, 1, 2, 3, 1]
    assert out.finished.tolist() == [True, False, False, False, True, True]
    assert torch.equal(out.sequences[:, : ids.shape[1]], ids.repeat_interleave(2, dim=0))
    assert out.video_embeddings.num_videos == 2 * 3  # rows 0 and 1 repeated per sample


def test_only_language_weights_are_sent_while_the_vision_tower_is_frozen(policy):
    vision = {id(p) for p in policy.vision_parameters()}
    named = dict(policy.model.named_parameters())
    sent = [name for name, _ in weights_to_sync(policy)]
    assert sent and not any(id(named[n]) in vision for n in sent)
    assert len(sent) == len(list(policy.language_parameters()))
    assert len(list(weights_to_sync(policy, everything=True))) == len(named)
    trainable = VideoLMPolicy.build("tiny", family="qwen2_5_vl", seed=0, freeze_vision=False)
    assert len(list(weights_to_sync(trainable))) == len(list(trainable.model.parameters()))
