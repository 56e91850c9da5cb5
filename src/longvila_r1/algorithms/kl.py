"""Per-token KL estimators between the policy and a frozen reference (Schulman's k1, k2, k3).

The KL term keeps the policy near the reference model. It is estimated per sampled token from two
log-probabilities, since the full-vocabulary KL would need both ``[B*G, L, V]`` distributions. Sum or
average the result with ``longvila_r1.algorithms.aggregate_loss`` the same way as the policy loss.

Example:
    >>> logp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0])
    >>> kl_penalty(logp, ref, "k1"), kl_penalty(logp, ref, "k3")
    (tensor([ 0.5000, -1.0000]), tensor([0.1065, 0.7183]))
"""

from __future__ import annotations

import torch

KL_ESTIMATORS = ("k1", "k2", "k3")
# exp(20) ~ 4.9e8 stays far from float32 overflow; a token that far off the reference is an outlier whose
# gradient is better dropped than allowed to dominate the step.
_LOG_RATIO_BOUND = 20.0
_KL_BOUND = 10.0


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token estimate of ``KL(policy || reference)`` from the log-probs of tokens sampled from the policy.

    - ``k1``: ``logp - ref_logp``; unbiased but high variance, and negative for some tokens.
    - ``k2``: ``0.5 * (logp - ref_logp) ** 2``; low variance, biased; on policy samples its expected gradient
      is the KL's.
    - ``k3``: ``exp(ref - logp) - (ref - logp) - 1``; unbiased and never negative, verl's ``low_var_kl``
      and the estimator of the paper. As in verl the log-ratio is clamped to ``[-20, 20]`` and the result to
      ``[-10, 10]`` so one far-off token cannot overflow or swamp the loss (its gradient is then zero).

    Args:
        logp: log-probs of the sampled tokens under the policy, any shape (``[B*G, L]`` in training).
        ref_logp: the same tokens under the reference, same shape.
        estimator: one of ``KL_ESTIMATORS``.

    Returns:
        Elementwise estimates, the shape of ``logp``; mask padding before reducing.

    Example:
        >>> kl_penalty(torch.tensor([0.0, -50.0]), torch.tensor([0.0, 0.0]), "k3")
        tensor([ 0., 10.])
    """
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"estimator must be one of {KL_ESTIMATORS}, got {estimator!r}")
    if logp.shape != ref_logp.shape:
        raise ValueError(f"logp and ref_logp shapes differ: {tuple(logp.shape)} vs {tuple(ref_logp.shape)}")
    if estimator == "k1":
        return logp - ref_logp
    if estimator == "k2":
        return 0.5 * (logp - ref_logp).square()
    log_ratio = (ref_logp - logp).clamp(-_LOG_RATIO_BOUND, _LOG_RATIO_BOUND)
    return (log_ratio.exp() - log_ratio - 1).clamp(-_KL_BOUND, _KL_BOUND)
