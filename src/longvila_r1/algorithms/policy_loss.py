"""The PPO clipped surrogate used by GRPO, with DAPO's asymmetric clip and an optional dual clip.

For each response token the importance ratio ``r = exp(logp - old_logp)`` compares the policy being trained
with the policy that sampled the token. The surrogate ``-A * r`` is taken pessimistically against
``-A * clip(r, 1 - clip_low, 1 + clip_high)``, so a token whose ratio already moved past the trust region in
the direction its advantage pushes gets no more gradient. ``clip_high > clip_low`` ("clip-higher", DAPO) leaves
room to raise the probability of unlikely tokens, which keeps entropy from collapsing.

Example:
    >>> logp = torch.zeros(2, 3, requires_grad=True)
    >>> loss, stats = policy_loss(logp, torch.zeros(2, 3), torch.tensor([1.0, -1.0]), torch.ones(2, 3))
    >>> loss.item(), stats["clipfrac"].item()
    (0.0, 0.0)
"""

from __future__ import annotations

import torch

from longvila_r1.algorithms.kl import kl_penalty
from longvila_r1.algorithms.ops import LOSS_AGGREGATIONS, aggregate_loss, masked_mean

# As for the KL: a log-ratio beyond +-20 (ratio ~5e8) means stale or broken log-probs, not a real update.
_LOG_RATIO_BOUND = 20.0


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    agg: str = "token-mean",
    dual_clip: float | None = None,
    max_response_length: int | None = None,
    num_tokens: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped policy-gradient loss over the response tokens, and its diagnostics.

    Per token: ``max(-A * r, -A * clip(r, 1 - clip_low, 1 + clip_high))``. With ``dual_clip = c > 1`` the
    loss of a token with ``A < 0`` is further capped at ``c * |A|`` (dual-clip PPO): when the policy already
    made a bad token far *more* likely (``r > c``), the unbounded ``-A * r`` would otherwise dominate the
    batch. The per-token losses are then reduced by ``aggregate_loss`` with ``agg``, ``max_response_length``
    and ``num_tokens`` (pass a global token count there under DDP or gradient accumulation; see its docs).

    With ``logp == old_logp`` (the first update after a rollout) the ratio is 1, nothing is clipped, the loss
    is ``-mean(A)`` over the valid tokens and the gradient is REINFORCE's ``-A * grad(logp)``.

    Args:
        logp: ``[B*G, L]`` log-probs of the response tokens under the policy being trained (with grad).
        old_logp: ``[B*G, L]`` the same under the policy that sampled them (no grad needed).
        advantages: ``[B*G]`` one per response (broadcast over its tokens) or ``[B*G, L]`` per token.
        mask: ``[B*G, L]`` 1 on the response tokens that count, 0 on prompt and padding.
        clip_low: ``r`` is clipped below at ``1 - clip_low``; in ``[0, 1)``.
        clip_high: ``r`` is clipped above at ``1 + clip_high``; ``>= 0``.
        agg: one of ``LOSS_AGGREGATIONS``.
        dual_clip: the dual-clip constant ``c > 1``, or ``None`` for none.
        max_response_length: the constant of ``seq-mean-token-sum-norm``.
        num_tokens: the normaliser of ``token-mean`` in place of the local count of valid tokens.

    Returns:
        The scalar loss and detached scalar stats over the valid tokens of this batch: ``clipfrac`` (the
        clipped term was active), ``clipfrac_low`` (``A < 0`` and ``r < 1 - clip_low``), ``clipfrac_high``
        (``A > 0`` and ``r > 1 + clip_high``), ``dual_clipfrac`` (the dual clip was active), ``approx_kl``
        (mean k3 estimate of ``KL(old || current)``; the tokens were sampled from the old policy, and k3 is
        never negative, unlike the mean log-ratio) and ``ratio_mean``.

    Example:
        >>> logp = torch.log(torch.tensor([[2.0, 1.0]])); old = torch.zeros(1, 2)
        >>> loss, stats = policy_loss(logp, old, torch.tensor([1.0]), torch.ones(1, 2))
        >>> round(loss.item(), 2), stats["clipfrac_high"].item()  # token 0 is clipped at 1.28
        (-1.14, 0.5)
    """
    _check(logp, old_logp, advantages, mask, clip_low, clip_high, agg, dual_clip)
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)  # [B*G, 1], broadcast over the tokens
    log_ratio = (logp - old_logp).clamp(-_LOG_RATIO_BOUND, _LOG_RATIO_BOUND)  # [B*G, L]
    ratio = log_ratio.exp()  # [B*G, L]
    unclipped = -advantages * ratio  # [B*G, L]
    clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)  # [B*G, L]
    loss_mat = torch.maximum(unclipped, clipped)  # [B*G, L]
    clip_low_hit = (advantages < 0) & (ratio < 1.0 - clip_low)  # [B*G, L]
    clip_high_hit = (advantages > 0) & (ratio > 1.0 + clip_high)  # [B*G, L]
    dual_hit = torch.zeros_like(clip_low_hit)
    if dual_clip is not None:
        bound = -advantages * dual_clip  # [B*G, 1] or [B*G, L]; the cap c * |A| for A < 0
        dual_hit = (advantages < 0) & (loss_mat > bound)
        loss_mat = torch.where(dual_hit, bound.expand_as(loss_mat), loss_mat)
    loss = aggregate_loss(loss_mat, mask, agg, max_response_length=max_response_length, num_tokens=num_tokens)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((clip_low_hit | clip_high_hit).float(), mask),
            "clipfrac_low": masked_mean(clip_low_hit.float(), mask),
            "clipfrac_high": masked_mean(clip_high_hit.float(), mask),
            "dual_clipfrac": masked_mean(dual_hit.float(), mask),
            "approx_kl": masked_mean(kl_penalty(old_logp.detach(), logp.detach(), "k3"), mask),
            "ratio_mean": masked_mean(ratio.detach(), mask),
        }
    return loss, stats


def _check(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float,
    clip_high: float,
    agg: str,
    dual_clip: float | None,
) -> None:
    if logp.dim() != 2 or old_logp.shape != logp.shape or mask.shape != logp.shape:
        shapes = f"{tuple(logp.shape)}, {tuple(old_logp.shape)}, {tuple(mask.shape)}"
        raise ValueError(f"logp, old_logp and mask must all be [B*G, L], got {shapes}")
    if advantages.shape not in (logp.shape[:1], logp.shape):
        raise ValueError(f"advantages must be [B*G] or [B*G, L] = {tuple(logp.shape)}, got {tuple(advantages.shape)}")
    if not 0.0 <= clip_low < 1.0:
        raise ValueError(f"clip_low must be in [0, 1), got {clip_low}")
    if clip_high < 0.0:
        raise ValueError(f"clip_high must be >= 0, got {clip_high}")
    if agg not in LOSS_AGGREGATIONS:
        raise ValueError(f"agg must be one of {LOSS_AGGREGATIONS}, got {agg!r}")
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1 (or None to disable), got {dual_clip}")
