"""RL algorithms as pure tensor functions: advantages, KL estimators, the clipped policy loss, DAPO tricks.

Nothing here knows about Lightning or the model; ``GRPOModule`` calls these in its training step, and a test
or a notebook can call them on hand-made tensors.
"""

from __future__ import annotations

from longvila_r1.algorithms.advantages import ADVANTAGE_MODES, group_advantages
from longvila_r1.algorithms.dynamic_sampling import GroupBatch, GroupBuffer, keep_groups
from longvila_r1.algorithms.kl import KL_ESTIMATORS, kl_penalty
from longvila_r1.algorithms.ops import LOSS_AGGREGATIONS, aggregate_loss, masked_mean, masked_sum
from longvila_r1.algorithms.overlong import overlong_penalty
from longvila_r1.algorithms.policy_loss import policy_loss

__all__ = [
    "ADVANTAGE_MODES",
    "KL_ESTIMATORS",
    "LOSS_AGGREGATIONS",
    "GroupBatch",
    "GroupBuffer",
    "aggregate_loss",
    "group_advantages",
    "keep_groups",
    "kl_penalty",
    "masked_mean",
    "masked_sum",
    "overlong_penalty",
    "policy_loss",
]
