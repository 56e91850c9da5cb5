"""DAPO soft overlong punishment: a length penalty that ramps up over the last tokens before the limit.

A response cut at the length limit is usually unfinished reasoning; scoring it like a finished one teaches
the policy that rambling is free, while a hard penalty at the limit punishes sound reasoning that was merely
long. The soft version is zero until ``max_length - buffer_length`` tokens, then falls linearly to
``-penalty_factor`` at ``max_length``. ``longvila_r1.rewards.OverlongReward`` adds it to the reward.

Example:
    >>> overlong_penalty(torch.tensor([10, 80, 90, 100, 120]), max_length=100, buffer_length=20)
    tensor([ 0.0000,  0.0000, -0.5000, -1.0000, -1.0000])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def overlong_penalty(
    response_lengths: torch.Tensor | Sequence[int],
    max_length: int,
    buffer_length: int,
    penalty_factor: float = 1.0,
) -> torch.Tensor:
    """Per-response penalty in ``[-penalty_factor, 0]``.

    ``0`` for ``length <= max_length - buffer_length``, ``-penalty_factor * (length - (max_length -
    buffer_length)) / buffer_length`` up to ``max_length``, ``-penalty_factor`` beyond. With
    ``buffer_length = 0`` this is a hard penalty on responses longer than ``max_length``.

    Args:
        response_lengths: ``[N]`` response lengths in tokens.
        max_length: the generation limit, in tokens.
        buffer_length: the width of the ramp, in ``[0, max_length]``.
        penalty_factor: the penalty at and beyond ``max_length``; ``>= 0``.

    Returns:
        ``[N]`` float32 penalties.

    Example:
        >>> overlong_penalty([4, 5, 6], max_length=5, buffer_length=0, penalty_factor=0.5)
        tensor([ 0.0000,  0.0000, -0.5000])
    """
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    if not 0 <= buffer_length <= max_length:
        raise ValueError(f"buffer_length must be in [0, max_length={max_length}], got {buffer_length}")
    if not penalty_factor >= 0:
        raise ValueError(f"penalty_factor must be >= 0, got {penalty_factor}")
    lengths = torch.as_tensor(response_lengths, dtype=torch.float32)  # [N]
    excess = lengths - (max_length - buffer_length)  # [N]; > 0 inside the ramp
    fraction = (excess > 0).float() if buffer_length == 0 else (excess / buffer_length).clamp(0.0, 1.0)
    return 0.0 - penalty_factor * fraction  # 0.0 - x, not -x: no "-0." in logs and reprs
