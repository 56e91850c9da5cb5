"""Rewards for GRPO: the interface, the paper's accuracy and format rewards, a consistency reward
(the answer is the option the reasoning concluded with), a reference-chain reward (the reasoning states what
the record's reference reasoning states), DAPO's overlong penalty, and
``RewardSet``, which weighs them into one total and handles failures.

A custom reward subclasses ``Reward`` (implement ``score``) and is listed by ``class_path`` in the YAML.
"""

from __future__ import annotations

from longvila_r1.rewards.answer import AccuracyReward, FormatReward
from longvila_r1.rewards.base import Reward, RewardError, RewardInput, default_reward_name
from longvila_r1.rewards.consistency import ConsistencyReward
from longvila_r1.rewards.overlong import OverlongReward
from longvila_r1.rewards.reference_chain import ReferenceChainReward
from longvila_r1.rewards.reward_set import ON_ERROR, RewardOutput, RewardSet

__all__ = [
    "ON_ERROR",
    "AccuracyReward",
    "ConsistencyReward",
    "FormatReward",
    "OverlongReward",
    "ReferenceChainReward",
    "Reward",
    "RewardError",
    "RewardInput",
    "RewardOutput",
    "RewardSet",
    "default_reward_name",
]
