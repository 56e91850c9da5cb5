"""Masked reductions and the loss aggregations shared by the policy loss and the KL term.

Every per-token quantity of an RL step lives on a padded ``[B*G, L]`` grid whose padding (and prompt) positions
are switched off by a 0/1 ``mask``. These helpers reduce over the valid positions only, and never let a value at
a masked position leak in: padding may hold ``-inf`` log-probs, and ``inf * 0`` is ``nan``.

Example:
    >>> values = torch.tensor([[1.0, 2.0, float("-inf")], [4.0, 0.0, 0.0]])
    >>> mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    >>> round(masked_mean(values, mask).item(), 4), masked_mean(values, mask, dim=-1).tolist()
    (2.3333, [1.5, 4.0])
    >>> aggregate_loss(values, mask, "seq-mean-token-mean").item()
    2.75
"""

from __future__ import annotations

import torch

LOSS_AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of ``values`` where ``mask`` is set, over ``dim`` (all dims when ``None``).

    Args:
        values: any shape.
        mask: broadcastable to ``values``; bool or 0/1 numbers.
        dim: the dim to reduce, or ``None`` for a scalar.

    Example:
        >>> masked_sum(torch.tensor([1.0, float("nan"), 3.0]), torch.tensor([True, False, True])).item()
        4.0
    """
    kept = torch.where(mask.bool(), values, torch.zeros((), dtype=values.dtype, device=values.device))
    return kept.sum() if dim is None else kept.sum(dim=dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is set; 0 where nothing is set (rather than ``nan``).

    Args:
        values: any shape.
        mask: broadcastable to ``values``; bool or 0/1 numbers.
        dim: the dim to reduce, or ``None`` for a scalar.

    Example:
        >>> masked_mean(torch.tensor([[1.0, 3.0], [5.0, 7.0]]), torch.tensor([[1, 1], [0, 0]]), dim=-1).tolist()
        [2.0, 0.0]
    """
    count = mask.bool().expand_as(values)
    count = count.sum() if dim is None else count.sum(dim=dim)
    return masked_sum(values, mask, dim) / count.clamp(min=1).to(values.dtype)


def aggregate_loss(
    loss_mat: torch.Tensor,
    mask: torch.Tensor,
    agg: str = "token-mean",
    max_response_length: int | None = None,
    num_tokens: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Reduce a per-token loss ``[B*G, L]`` to the scalar that is back-propagated.

    - ``token-mean`` (DAPO): sum over every valid token of the batch / number of valid tokens, so each token
      weighs the same and long responses are not down-weighted. ``num_tokens`` replaces the local count.
    - ``seq-mean-token-mean`` (original GRPO): mean over sequences of each sequence's token mean; sequences
      without a valid token are left out of the outer mean.
    - ``seq-mean-token-sum-norm`` (Dr.GRPO): each sequence's token sum divided by one constant,
      ``max_response_length`` (``L`` when ``None``), then the mean over all ``B*G`` sequences; the constant
      keeps the length bias of a per-sequence mean out of the gradient.

    Under data parallelism or gradient accumulation a local token count weighs a token of a short
    micro-batch more than one of a long micro-batch. To weigh every token of the optimizer step the same, pass
    ``num_tokens`` = (valid tokens of the whole step, all ranks and micro-batches) / (``world_size`` *
    ``accumulate_grad_batches``): DDP averages gradients over ranks and Lightning divides each micro-batch
    loss by the accumulation count, so those two factors cancel and the step's gradient is the global token
    mean.

    Args:
        loss_mat: ``[B*G, L]`` per-token loss.
        mask: ``[B*G, L]`` 1 on response tokens that count.
        agg: one of ``LOSS_AGGREGATIONS``.
        max_response_length: the constant of ``seq-mean-token-sum-norm`` (ignored by the other modes).
        num_tokens: the normaliser of ``token-mean`` (ignored by the other modes); must be positive.

    Example:
        >>> loss = torch.tensor([[1.0, 1.0, 1.0], [4.0, 0.0, 0.0]]); mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
        >>> [round(aggregate_loss(loss, mask, agg).item(), 4) for agg in LOSS_AGGREGATIONS]
        [1.75, 2.5, 1.1667]
    """
    if agg not in LOSS_AGGREGATIONS:
        raise ValueError(f"agg must be one of {LOSS_AGGREGATIONS}, got {agg!r}")
    if loss_mat.dim() != 2 or mask.shape != loss_mat.shape:
        raise ValueError(f"loss_mat and mask must both be [B*G, L], got {tuple(loss_mat.shape)}, {tuple(mask.shape)}")
    if agg == "token-mean":
        if num_tokens is None:
            return masked_mean(loss_mat, mask)
        if not bool(torch.as_tensor(num_tokens) > 0):
            raise ValueError(f"num_tokens must be positive, got {num_tokens}")
        return masked_sum(loss_mat, mask) / num_tokens
    if agg == "seq-mean-token-mean":
        seq_loss = masked_mean(loss_mat, mask, dim=-1)  # [B*G]
        return masked_mean(seq_loss, mask.bool().any(dim=-1))
    norm = loss_mat.shape[-1] if max_response_length is None else max_response_length
    if norm <= 0:
        raise ValueError(f"max_response_length must be positive, got {max_response_length}")
    return (masked_sum(loss_mat, mask, dim=-1) / norm).mean()
