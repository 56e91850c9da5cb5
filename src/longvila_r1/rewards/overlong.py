"""DAPO's soft overlong punishment as a reward term: a negative reward for responses near the length limit.

Example:
    >>> reward = OverlongReward(max_length=100, buffer_length=20)
    >>> reward([RewardInput("...", "A", response_length=n) for n in (50, 90, 100)])
    tensor([ 0.0000, -0.5000, -1.0000])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from typing_extensions import override

from longvila_r1.algorithms.overlong import overlong_penalty
from longvila_r1.rewards.base import Reward, RewardInput


class OverlongReward(Reward):
    """``0`` up to ``max_length - buffer_length`` tokens, then linearly down to ``-penalty_factor`` at
    ``max_length`` and beyond (see ``longvila_r1.algorithms.overlong_penalty``).

    Set ``max_length`` to the rollout's response-token limit, so a truncated response gets the full
    penalty. Reads ``RewardInput.response_length`` only; the text is not parsed.

    Args:
        max_length: the response length limit, in tokens.
        buffer_length: the width of the ramp before the limit, in tokens.
        penalty_factor: the penalty at the limit.
        weight: the factor in the total reward.
        name: the log key; ``overlong`` by default.

    Example:
        .. code-block:: yaml

            rewards:
              - class_path: longvila_r1.rewards.OverlongReward
                init_args: {max_length: 2048, buffer_length: 256}
    """

    def __init__(
        self,
        max_length: int,
        buffer_length: int,
        penalty_factor: float = 1.0,
        weight: float = 1.0,
        name: str | None = None,
    ) -> None:
        super().__init__(weight=weight, name=name)
        overlong_penalty([0], max_length, buffer_length, penalty_factor)  # validates the arguments now
        self.max_length = max_length
        self.buffer_length = buffer_length
        self.penalty_factor = penalty_factor

    @override
    def score(self, sample: RewardInput) -> float:
        return self([sample]).item()

    @override
    def __call__(self, samples: Sequence[RewardInput]) -> torch.Tensor:
        lengths = [sample.response_length for sample in samples]
        return overlong_penalty(lengths, self.max_length, self.buffer_length, self.penalty_factor)
