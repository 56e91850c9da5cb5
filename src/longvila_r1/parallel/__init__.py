"""MR-SP building blocks: the parallel layout, autograd-aware collectives, frame-sharded vision encoding,
sequence sharding and Ulysses attention for sequence-parallel prefill."""

from longvila_r1.parallel.collectives import all_to_all, gather_along_dim, group_rank, group_size
from longvila_r1.parallel.layout import ParallelLayout
from longvila_r1.parallel.sharded_encode import FrameShards, sharded_encode_video

__all__ = [
    "FrameShards",
    "ParallelLayout",
    "all_to_all",
    "gather_along_dim",
    "group_rank",
    "group_size",
    "sharded_encode_video",
]
