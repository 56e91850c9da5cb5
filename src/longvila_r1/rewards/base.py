"""The reward interface: what a reward sees of a rollout, and the base class user rewards subclass.

A reward scores a batch of finished rollouts. It sees only text and plain metadata (``RewardInput``), never
tensors or the model, so a user reward is a few lines of Python and can be tested without a GPU. Rewards are
built from YAML by ``class_path``; constructor arguments must therefore be plain typed values.

Example:
    >>> class ShortAnswer(Reward):
    ...     def __init__(self, limit: int = 50, weight: float = 1.0) -> None:
    ...         super().__init__(weight=weight)
    ...         self.limit = limit
    ...
    ...     def score(self, sample: RewardInput) -> float:
    ...         return float(sample.response_length <= self.limit)
    >>> reward = ShortAnswer(limit=10)
    >>> reward.name, reward([RewardInput("A", "A", response_length=3), RewardInput("B", "A", response_length=30)])
    ('short_answer', tensor([1., 0.]))
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class RewardInput:
    """One rollout as a reward sees it.

    Attributes:
        response: the decoded response, special tokens removed but the ``<think>``/``<answer>`` tags kept.
        answer: the correct option letter (``"B"``), as normalised by the record schema.
        options: the option texts in letter order, when the record has them.
        response_length: the response length in tokens (EOS included when generated).
        finished: whether generation stopped at EOS rather than at the length limit.
        record_id: the id of the source record, for error messages and sample logs.
        category: the question category (``"temporal"``, ...), for per-category logging.
        reference: the record's reference reasoning (its ``reasoning`` field), when it has one.
        extra: any other record fields a custom reward needs.
    """

    response: str
    answer: str
    options: Sequence[str] | None = None
    response_length: int = 0
    finished: bool = True
    record_id: str | None = None
    category: str | None = None
    reference: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class RewardError(RuntimeError):
    """A reward failed on a sample; the message names the reward and the sample.

    Attributes:
        reward: the name of the reward that failed.
        index: the position of the sample in the batch (``None`` when the whole batch is at fault).
        record_id: the sample's record id, when known.
    """

    def __init__(self, message: str, reward: str, index: int | None = None, record_id: str | None = None) -> None:
        super().__init__(message)
        self.reward = reward
        self.index = index
        self.record_id = record_id


class Reward(ABC):
    """Base class of all rewards: a named, weighted function of a batch of rollouts, one float each.

    Subclasses implement ``score`` for one sample; those that can score a batch faster override ``__call__``
    as well. A reward returns unweighted values: ``RewardSet`` applies ``weight``, so logs show each reward
    on its own scale (``rollout/reward/<name>``).

    Args:
        weight: the factor of this reward in the total; must be finite.
        name: the key in logs and error messages; by default the class name in snake_case without a
            ``Reward`` suffix (``AccuracyReward`` -> ``accuracy``, ``LengthBonus`` -> ``length_bonus``).

    Example:
        .. code-block:: yaml

            rewards:
              - class_path: my_project.rewards.ShortAnswer   # any importable Reward subclass
                init_args: {limit: 200, weight: 0.5}
    """

    def __init__(self, weight: float = 1.0, name: str | None = None) -> None:
        if not math.isfinite(weight):
            raise ValueError(f"weight of {type(self).__name__} must be finite, got {weight}")
        if name is not None and not name.strip():
            raise ValueError(f"name of {type(self).__name__} must be a non-empty string, got {name!r}")
        self.weight = float(weight)
        self.name = name if name is not None else default_reward_name(type(self))

    @abstractmethod
    def score(self, sample: RewardInput) -> float:
        """The unweighted reward of one sample."""

    def __call__(self, samples: Sequence[RewardInput]) -> torch.Tensor:
        """``[N]`` float32 unweighted rewards of ``samples``, in order."""
        return torch.tensor([float(self.score(sample)) for sample in samples], dtype=torch.float32)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, weight={self.weight})"


def default_reward_name(cls: type) -> str:
    """``cls.__name__`` in snake_case, without a trailing ``Reward`` (``AccuracyReward`` -> ``accuracy``).

    Example:
        >>> default_reward_name(type("VQAMatchReward", (), {}))
        'vqa_match'
    """
    stem = cls.__name__.removesuffix("Reward") or cls.__name__
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", stem).lower()
