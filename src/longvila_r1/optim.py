"""Learning-rate schedules stepped per optimizer step (what LLM fine-tuning recipes use)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class WarmupCosineLR(LRScheduler):
    """Linear warm-up from 0 to the base LR over ``warmup_steps``, then cosine decay to ``min_lr_ratio * base``.

    After ``total_steps`` the LR stays at the minimum, so training longer than planned is safe. The state is
    the step count only, so it resumes exactly from a checkpoint.

    Args:
        optimizer: the optimizer whose param groups' ``lr`` are the peak rates.
        warmup_steps: steps of linear warm-up.
        total_steps: step at which the decay reaches the minimum.
        min_lr_ratio: final LR as a fraction of the peak.

    Example:
        .. code-block:: yaml

            model:
              init_args:
                lr_scheduler:
                  class_path: longvila_r1.optim.WarmupCosineLR
                  init_args: {warmup_steps: 20, total_steps: 300}
    """

    def __init__(
        self, optimizer: Optimizer, warmup_steps: int = 0, total_steps: int = 1000, min_lr_ratio: float = 0.1
    ) -> None:
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if total_steps <= warmup_steps:
            raise ValueError(f"total_steps ({total_steps}) must be greater than warmup_steps ({warmup_steps})")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        self.warmup_steps, self.total_steps, self.min_lr_ratio = warmup_steps, total_steps, min_lr_ratio
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        """LR multiplier at ``step``."""
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def get_lr(self) -> list[float]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]
