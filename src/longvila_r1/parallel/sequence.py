"""Sequence sharding: pad a batch to a multiple of the group size and give each rank one contiguous slice.

Everything indexed by position is sharded the same way: input embeddings ``[B, S, D]``, the 3-row M-RoPE
position ids ``[3, B, S]``, labels and masks ``[B, S]``. Positions are computed for the whole sequence
*before* sharding, so every token keeps the position it has in a single-process run. The padding appended
at the end is masked out as a key and never scored.

Example:
    >>> shard = SequenceShard(length=10, world=4, rank=1)
    >>> shard.padded_length, shard.local_length, (shard.start, shard.end)
    (12, 3, (3, 6))
    >>> local_positions = shard.shard(position_ids, dim=2)  # [3, B, 10] -> [3, B, 3]
    >>> logprobs = shard.gather(local_logprobs, dim=1, group=sp_group)  # [B, 3] -> [B, 10] on every rank
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributed import ProcessGroup
from torch.nn import functional as F

from longvila_r1.parallel.collectives import gather_along_dim, group_rank, group_size


@dataclass(frozen=True)
class SequenceShard:
    """The slice of a length-``length`` sequence that rank ``rank`` of ``world`` holds.

    Attributes:
        length: the true sequence length ``S``.
        world: ranks of the sequence-parallel group.
        rank: this rank's position in the group.
    """

    length: int
    world: int = 1
    rank: int = 0

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ValueError(f"length must be >= 1, got {self.length}")
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank must be in [0, world={self.world}), got {self.rank}")

    @classmethod
    def for_group(cls, length: int, group: ProcessGroup | None) -> SequenceShard:
        """This process's shard of a length-``length`` sequence in ``group`` (``None``: the whole sequence)."""
        return cls(length, group_size(group), group_rank(group))

    @property
    def local_length(self) -> int:
        """Positions per rank: ``ceil(S / world)``."""
        return -(-self.length // self.world)

    @property
    def padded_length(self) -> int:
        """``S`` rounded up to a multiple of ``world``."""
        return self.local_length * self.world

    @property
    def start(self) -> int:
        return self.rank * self.local_length

    @property
    def end(self) -> int:
        return self.start + self.local_length

    def pad(self, tensor: Tensor, dim: int, value: float | bool = 0) -> Tensor:
        """``tensor`` padded with ``value`` at the end of ``dim`` to :attr:`padded_length`."""
        dim = dim % tensor.dim()
        if tensor.shape[dim] != self.length:
            raise ValueError(f"dim {dim} has {tensor.shape[dim]} entries, expected the sequence length {self.length}")
        missing = self.padded_length - self.length
        if missing == 0:
            return tensor
        widths = [0, 0] * (tensor.dim() - 1 - dim) + [0, missing]  # F.pad lists the last dim first
        if tensor.dtype == torch.bool:
            return F.pad(tensor.to(torch.uint8), widths, value=int(value)).bool()
        return F.pad(tensor, widths, value=value)

    def shard(self, tensor: Tensor, dim: int, value: float | bool = 0) -> Tensor:
        """This rank's slice of ``tensor`` along ``dim``, after padding. ``S -> S_local``"""
        return self.pad(tensor, dim, value).narrow(dim % tensor.dim(), self.start, self.local_length)

    def gather(self, local: Tensor, dim: int, group: ProcessGroup | None) -> Tensor:
        """All ranks' slices joined along ``dim`` and cut back to the true length. ``S_local -> S``

        Backward hands each rank the gradient of its slice, summed over the ranks
        (:func:`~longvila_r1.parallel.collectives.gather_along_dim`).
        """
        if local.shape[dim] != self.local_length:
            raise ValueError(f"dim {dim} has {local.shape[dim]} entries, expected {self.local_length} per rank")
        full = gather_along_dim(local, dim, group, [self.local_length] * self.world)  # [..., S_pad, ...]
        return full.narrow(dim % local.dim(), 0, self.length)

    def owned(self, device: torch.device | str | None = None) -> Tensor:
        """``True`` on the positions of the true length that this rank holds. ``[S]``"""
        positions = torch.arange(self.length, device=device)
        return (positions >= self.start) & (positions < self.end)


def key_padding_mask(attention_mask: Tensor | None, shard: SequenceShard) -> Tensor | None:
    """The global key mask for Ulysses attention, or ``None`` where causal attention alone is exact.

    Causal attention is exact for every valid query when padding only ever follows the valid tokens of a
    row (right padding, and the padding added for sharding): a valid query never sees a later key. Any
    padding before a valid token (left-padded prompts) needs the mask.

    Args:
        attention_mask: 1 on real tokens, 0 on padding. ``[B, S]``
        shard: the sharding of the sequence.

    Returns:
        ``True`` on keys that may be attended to, over the padded length, or ``None``. ``[B, S_pad]``
    """
    if attention_mask is None:
        return None
    valid = attention_mask.bool()  # [B, S]
    # A row is right-padded iff its mask never goes from 0 back to 1.
    if not (valid[:, 1:] & ~valid[:, :-1]).any():
        return None
    return shard.pad(valid, dim=1, value=False)
