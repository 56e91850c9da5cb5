"""Autograd-aware collectives of a sequence-parallel group, built on ``all_to_all_single`` only.

``all_to_all_single`` with split sizes works on NCCL and on gloo, equal and uneven (gloo cannot all-gather a
list of tensors of unequal sizes), so it carries both the uneven all-gather of the vision embeddings and the
head/sequence exchange of Ulysses attention.

Gradient convention: every rank's loss counts. The objective is the **sum over the ranks of the group** of
what each rank computes, so the backward of :func:`gather_along_dim` sums the gradients of all ranks before
handing each rank its slice (reduce-scatter semantics). Two ways of writing the loss follow from it:

* each rank computes its share of the loss (its tokens, normalised by the global token count): the sum of
  the ranks' parameter gradients is the single-process gradient;
* each rank computes the whole loss from gathered values: the *mean* of the ranks' gradients is the
  single-process gradient, which is what DDP/FSDP's averaging over all ranks gives.

``group=None`` means no sequence parallelism: every function returns its input unchanged.

Example:
    >>> full = gather_along_dim(local_embeds, dim=0, group=sp_group, sizes=[5, 4])  # [9, D] on every rank
    >>> heads = all_to_all(q, scatter_dim=1, gather_dim=2, group=sp_group)  # [B, H, S/sp, D] -> [B, H/sp, S, D]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed import ProcessGroup


def group_size(group: ProcessGroup | None) -> int:
    """Number of ranks in ``group``; 1 for ``None`` (no sequence parallelism)."""
    return 1 if group is None else dist.get_world_size(group)


def group_rank(group: ProcessGroup | None) -> int:
    """This process's rank inside ``group``; 0 for ``None``."""
    return 0 if group is None else dist.get_rank(group)


def _exchange(tensor: Tensor, output_sizes: list[int], input_sizes: list[int], group: ProcessGroup) -> Tensor:
    """``all_to_all_single`` along dim 0: send ``input_sizes[j]`` rows to rank j, receive ``output_sizes[j]``."""
    tensor = tensor.contiguous()
    out = tensor.new_empty((sum(output_sizes), *tensor.shape[1:]))
    dist.all_to_all_single(out, tensor, output_sizes, input_sizes, group=group)
    return out


class _GatherAlongDim(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: Tensor, dim: int, sizes: list[int], group: ProcessGroup) -> Tensor:
        ctx.dim, ctx.sizes, ctx.group = dim, sizes, group
        world = len(sizes)
        local = tensor.movedim(dim, 0)  # [n_r, ...]
        # Every rank sends its whole slice to every rank, and receives rank j's n_j rows from rank j.
        out = _exchange(torch.cat([local] * world), sizes, [local.shape[0]] * world, group)  # [sum(n), ...]
        return out.movedim(0, dim)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        world, rank = len(ctx.sizes), dist.get_rank(ctx.group)
        n = ctx.sizes[rank]
        # Send the gradient of rank j's rows back to rank j; sum what comes back from all ranks.
        received = _exchange(grad.movedim(ctx.dim, 0), [n] * world, ctx.sizes, ctx.group)  # [world*n, ...]
        summed = received.view(world, n, *received.shape[1:]).sum(0)  # [n, ...]
        return summed.movedim(0, ctx.dim), None, None, None


def gather_sizes(length: int, group: ProcessGroup, device: torch.device | str = "cpu") -> list[int]:
    """Every rank's ``length``, in rank order (one small all-gather; ``device`` must suit the backend)."""
    mine = torch.tensor([length], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(mine) for _ in range(dist.get_world_size(group))]
    dist.all_gather(sizes, mine, group=group)
    return [int(s) for s in sizes]


def gather_along_dim(
    tensor: Tensor, dim: int, group: ProcessGroup | None, sizes: Sequence[int] | None = None
) -> Tensor:
    """Concatenate the ranks' tensors along ``dim``, in rank order; sizes along ``dim`` may differ.

    Backward returns to each rank the gradient of its own slice, summed over all ranks of the group.

    Args:
        tensor: this rank's slice; all dims but ``dim`` equal on every rank. ``[..., n_r, ...]``
        dim: the dim to concatenate along.
        group: the process group; ``None`` returns ``tensor``.
        sizes: every rank's size along ``dim`` if known (saves one collective); must agree with ``tensor``.

    Returns:
        The concatenation, identical on every rank. ``[..., sum(n), ...]``
    """
    if group is None or group_size(group) == 1:
        return tensor
    dim = dim % tensor.dim()
    sizes = gather_sizes(tensor.shape[dim], group, tensor.device) if sizes is None else [int(s) for s in sizes]
    if len(sizes) != group_size(group):
        raise ValueError(f"sizes has {len(sizes)} entries for a group of {group_size(group)} ranks")
    if sizes[group_rank(group)] != tensor.shape[dim]:
        raise ValueError(
            f"sizes[{group_rank(group)}]={sizes[group_rank(group)]} but this rank's tensor has "
            f"{tensor.shape[dim]} entries along dim {dim}"
        )
    return _GatherAlongDim.apply(tensor, dim, sizes, group)


class _AllToAll(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: Tensor, scatter_dim: int, gather_dim: int, group: ProcessGroup) -> Tensor:
        ctx.scatter_dim, ctx.gather_dim, ctx.group = scatter_dim, gather_dim, group
        return _all_to_all(tensor, scatter_dim, gather_dim, group)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        # An all-to-all is a permutation of the entries; its adjoint is the inverse all-to-all.
        return _all_to_all(grad, ctx.gather_dim, ctx.scatter_dim, ctx.group), None, None, None


def _all_to_all(tensor: Tensor, scatter_dim: int, gather_dim: int, group: ProcessGroup) -> Tensor:
    world = dist.get_world_size(group)
    chunks = torch.stack(tensor.chunk(world, dim=scatter_dim))  # [world, ...]: chunk j goes to rank j
    received = _exchange(chunks, [1] * world, [1] * world, group)  # [world, ...]: chunk j came from rank j
    return torch.cat(received.unbind(0), dim=gather_dim)


def all_to_all(tensor: Tensor, scatter_dim: int, gather_dim: int, group: ProcessGroup | None) -> Tensor:
    """Split ``scatter_dim`` over the ranks and concatenate the received pieces along ``gather_dim``.

    Rank ``r`` keeps the ``r``-th chunk of ``scatter_dim`` of every rank's tensor, concatenated along
    ``gather_dim`` in rank order. Ulysses uses it both ways: heads scattered / sequence gathered before
    attention, the inverse after. Backward is the inverse all-to-all.

    Args:
        tensor: equal shapes on every rank; ``scatter_dim`` divisible by the group size.
        scatter_dim: the dim to split (e.g. heads, 1 of ``[B, H, S_local, D]``).
        gather_dim: the dim to concatenate along (e.g. sequence, 2).
        group: the process group; ``None`` returns ``tensor``.
    """
    world = group_size(group)
    if world == 1:
        return tensor
    scatter_dim, gather_dim = scatter_dim % tensor.dim(), gather_dim % tensor.dim()
    if tensor.shape[scatter_dim] % world:
        raise ValueError(
            f"all_to_all: dim {scatter_dim} has {tensor.shape[scatter_dim]} entries, not divisible by the "
            f"{world} ranks of the group"
        )
    return _AllToAll.apply(tensor, scatter_dim, gather_dim, group)
