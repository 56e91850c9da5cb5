"""Sequence sharding, the global key mask, KV-head replication and Ulysses' single-process fallback."""

from __future__ import annotations

import pytest
import torch

from longvila_r1.models import VideoLMPolicy
from longvila_r1.parallel import (
    ULYSSES_ATTENTION,
    SequenceShard,
    key_padding_mask,
    replicate_kv_heads,
    sequence_parallel_logprobs,
    use_ulysses_attention,
)


def test_shards_cover_the_padded_sequence_once():
    x = torch.arange(2 * 10).view(2, 10)  # [B, S]
    shards = [SequenceShard(10, world=4, rank=r) for r in range(4)]
    assert [(s.start, s.end) for s in shards] == [(0, 3), (3, 6), (6, 9), (9, 12)]
    joined = torch.cat([s.shard(x, dim=1, value=-1) for s in shards], dim=1)  # [B, 12]
    assert torch.equal(joined[:, :10], x) and (joined[:, 10:] == -1).all()
    positions = torch.arange(10).expand(3, 2, 10)  # [3, B, S] M-RoPE rows shard along dim 2
    assert shards[1].shard(positions, dim=2).shape == (3, 2, 3)
    assert shards[3].owned().tolist() == [False] * 9 + [True]
    bools = shards[3].shard(torch.ones(2, 10, dtype=torch.bool), dim=1, value=False)
    assert bools.dtype == torch.bool and bools.tolist() == [[True, False, False]] * 2


def test_single_process_gather_is_the_identity():
    shard = SequenceShard.for_group(7, None)
    local = torch.randn(2, 7)
    assert (shard.world, shard.padded_length) == (1, 7)
    assert torch.equal(shard.gather(local, dim=1, group=None), local)


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"length": 0}, "length must be >= 1"), ({"length": 4, "rank": 2}, "rank")]
)
def test_shard_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SequenceShard(**{"world": 2, **kwargs})


def test_key_mask_only_where_causal_attention_is_not_enough():
    shard = SequenceShard(4, world=2)
    right_padded = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    assert key_padding_mask(right_padded, shard) is None and key_padding_mask(None, shard) is None
    left_padded = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 0]])
    assert key_padding_mask(left_padded, SequenceShard(4, world=3)).tolist() == [
        [False, True, True, True, False, False],
        [True, True, True, False, False, False],
    ]


@pytest.mark.parametrize(("kv_heads", "world", "heads"), [(2, 2, 2), (1, 2, 2), (2, 4, 4), (3, 2, 6)])
def test_replicated_kv_heads_stay_with_their_query_heads(kv_heads, world, heads):
    query_heads = 12
    kv = torch.arange(kv_heads).view(1, kv_heads, 1, 1).float()  # head i holds the value i
    out = replicate_kv_heads(kv, world)
    assert out.shape[1] == heads and out.shape[1] % world == 0
    # After scattering, rank r holds query heads [r*H/w, (r+1)*H/w) and KV' heads [r*KV'/w, (r+1)*KV'/w);
    # inside the rank, query head j uses local KV head j // (H/KV'): it must be the original KV head.
    for h in range(query_heads):
        assert out[0, h * heads // query_heads, 0, 0] == h * kv_heads // query_heads


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_without_a_group_ulysses_is_plain_sdpa(family):
    policy = VideoLMPolicy.build("tiny", family=family, seed=0, text_layers=1, vision_depth=1)
    ids = torch.randint(12, len(policy.tokenizer), (2, 9))
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 1], [1] * 9])
    reference = policy.response_logprobs(ids, mask, None, None, prompt_lengths=4)
    use_ulysses_attention(policy.model)
    assert policy.config.text_config._attn_implementation == ULYSSES_ATTENTION
    assert policy.config.vision_config._attn_implementation == "sdpa"
    torch.testing.assert_close(policy.response_logprobs(ids, mask, None, None, prompt_lengths=4), reference)
    torch.testing.assert_close(sequence_parallel_logprobs(policy, ids, mask, None, None, prompt_lengths=4), reference)


def test_ulysses_needs_sdpa():
    policy = VideoLMPolicy.build("tiny", seed=0, attn_implementation="eager", text_layers=1, vision_depth=1)
    with pytest.raises(ValueError, match="needs attn_implementation='sdpa'"):
        use_ulysses_attention(policy.model)
