"""The parallel layout: which rank holds which part of which sample.

MR-SP arranges the ``world_size`` processes on a 2-D mesh with a data-parallel axis ``dp`` and a
sequence-parallel axis ``sp``. The ranks of one ``sp`` group share one sample (its frames for the vision
tower, its tokens for the language model); different ``dp`` groups see different samples. ``sp`` is the
inner axis, so an ``sp`` group is ``sequence_parallel_size`` consecutive ranks: on a GPU cluster they sit on
one node, where the all-to-all of Ulysses attention runs over NVLink.

Example:
    >>> layout = ParallelLayout(world_size=8, rank=5, sequence_parallel_size=4)
    >>> layout.dp_size, layout.dp_rank, layout.sp_rank, layout.sp_group_ranks
    (2, 1, 1, [4, 5, 6, 7])
"""

from __future__ import annotations

import torch.distributed as dist
from torch.distributed import ProcessGroup
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

MESH_AXES = ("dp", "sp")


class ParallelLayout:
    """Sizes and coordinates of one rank on the ``("dp", "sp")`` mesh, and the mesh itself once built.

    The arithmetic needs no process group, so samplers and tests can use it anywhere; :meth:`build` creates
    the device mesh (and with it one process group per axis) after ``torch.distributed`` is initialised.

    Args:
        world_size: number of processes.
        rank: this process's global rank.
        sequence_parallel_size: ranks that share one sample; must divide ``world_size``. 1 turns sequence
            parallelism off (pure data parallelism).

    Example:
        >>> layout = ParallelLayout(dist.get_world_size(), dist.get_rank(), sequence_parallel_size=2)
        >>> mesh = layout.build("cuda")  # DeviceMesh with axes ("dp", "sp")
        >>> sequence_parallel_logprobs(policy, ..., group=layout.sp_group)
    """

    def __init__(self, world_size: int, rank: int, sequence_parallel_size: int = 1) -> None:
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if sequence_parallel_size < 1:
            raise ValueError(f"sequence_parallel_size must be >= 1, got {sequence_parallel_size}")
        if world_size % sequence_parallel_size:
            raise ValueError(
                f"sequence_parallel_size={sequence_parallel_size} must divide the number of processes "
                f"(world_size={world_size}); valid sizes: {_divisors(world_size)}"
            )
        self.world_size = world_size
        self.rank = rank
        self.sp_size = sequence_parallel_size
        self.mesh: DeviceMesh | None = None

    @classmethod
    def from_process_group(cls, sequence_parallel_size: int = 1) -> ParallelLayout:
        """The layout of this process in the initialised default process group."""
        if not dist.is_initialized():
            raise RuntimeError("torch.distributed is not initialised; call init_process_group first")
        return cls(dist.get_world_size(), dist.get_rank(), sequence_parallel_size)

    # ------------------------------------------------------------------ coordinates
    @property
    def dp_size(self) -> int:
        """Number of data-parallel groups (distinct samples processed at once)."""
        return self.world_size // self.sp_size

    @property
    def dp_rank(self) -> int:
        """Index of this rank's sample shard: what the sampler uses."""
        return self.rank // self.sp_size

    @property
    def sp_rank(self) -> int:
        """Position of this rank inside its sequence-parallel group."""
        return self.rank % self.sp_size

    @property
    def sp_group_ranks(self) -> list[int]:
        """Global ranks of this rank's sequence-parallel group (they share one sample)."""
        first = self.dp_rank * self.sp_size
        return list(range(first, first + self.sp_size))

    @property
    def dp_group_ranks(self) -> list[int]:
        """Global ranks holding the same sequence position of different samples."""
        return list(range(self.sp_rank, self.world_size, self.sp_size))

    @property
    def sequence_parallel(self) -> bool:
        return self.sp_size > 1

    # ------------------------------------------------------------------ process groups
    def build(self, device_type: str = "cpu") -> DeviceMesh:
        """Create the ``[dp_size, sp_size]`` device mesh with axes ``("dp", "sp")`` (collective on all ranks).

        Args:
            device_type: ``"cuda"`` (NCCL) or ``"cpu"`` (gloo), as ``init_device_mesh`` takes it.
        """
        if not dist.is_initialized():
            raise RuntimeError("torch.distributed is not initialised; call init_process_group before build()")
        if (dist.get_world_size(), dist.get_rank()) != (self.world_size, self.rank):
            raise ValueError(
                f"layout is for rank {self.rank} of {self.world_size} but the process group has rank "
                f"{dist.get_rank()} of {dist.get_world_size()}"
            )
        self.mesh = init_device_mesh(device_type, (self.dp_size, self.sp_size), mesh_dim_names=MESH_AXES)
        return self.mesh

    @property
    def sp_group(self) -> ProcessGroup | None:
        """Process group of the ``sp`` axis; ``None`` without sequence parallelism (the SP functions then
        run as a single process)."""
        return self._axis_group("sp") if self.sequence_parallel else None

    @property
    def dp_group(self) -> ProcessGroup:
        """Process group of the ``dp`` axis."""
        return self._axis_group("dp")

    def _axis_group(self, axis: str) -> ProcessGroup:
        if self.mesh is None:
            raise RuntimeError("the process groups do not exist yet; call ParallelLayout.build() first")
        return self.mesh[axis].get_group()

    def __repr__(self) -> str:
        return (
            f"ParallelLayout(world_size={self.world_size}, rank={self.rank}, "
            f"dp_rank={self.dp_rank}/{self.dp_size}, sp_rank={self.sp_rank}/{self.sp_size})"
        )


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]
