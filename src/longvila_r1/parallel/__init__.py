"""MR-SP building blocks: the parallel layout, autograd-aware collectives, frame-sharded vision encoding,
sequence sharding and Ulysses attention for sequence-parallel prefill."""

from longvila_r1.parallel.collectives import all_to_all, gather_along_dim, group_rank, group_size
from longvila_r1.parallel.layout import ParallelLayout
from longvila_r1.parallel.prefill import prefill_inputs, sequence_parallel_hidden_states, sequence_parallel_logprobs
from longvila_r1.parallel.sequence import SequenceShard, key_padding_mask
from longvila_r1.parallel.sharded_encode import FrameShards, sharded_encode_video
from longvila_r1.parallel.ulysses import (
    ULYSSES_ATTENTION,
    checkpoint_contexts,
    register_ulysses_attention,
    replicate_kv_heads,
    ulysses_attention_forward,
    ulysses_context,
    use_ulysses_attention,
    uses_ulysses_attention,
)

__all__ = [
    "ULYSSES_ATTENTION",
    "FrameShards",
    "ParallelLayout",
    "SequenceShard",
    "all_to_all",
    "checkpoint_contexts",
    "gather_along_dim",
    "group_rank",
    "group_size",
    "key_padding_mask",
    "prefill_inputs",
    "register_ulysses_attention",
    "replicate_kv_heads",
    "sequence_parallel_hidden_states",
    "sequence_parallel_logprobs",
    "sharded_encode_video",
    "ulysses_attention_forward",
    "ulysses_context",
    "use_ulysses_attention",
    "uses_ulysses_attention",
]
