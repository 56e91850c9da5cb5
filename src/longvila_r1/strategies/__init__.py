"""Lightning Strategies: MR-SP (data parallelism across sequence-parallel groups)."""

from longvila_r1.strategies.mrsp import MRSPStrategy, sequence_parallel_group

__all__ = ["MRSPStrategy", "sequence_parallel_group"]
