"""Group-relative advantages: each response is scored against the other responses to the same prompt.

GRPO needs no value network: the ``G`` responses sampled for one prompt form a group, and a response's
advantage is its reward relative to the group. Rewards arrive flat, ``[B*G]``, with the ``G`` samples of one
prompt in consecutive positions (the order the rollout produces them).

Example:
    >>> rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])  # two prompts, G = 3
    >>> group_advantages(rewards, 3, mode="dr_grpo")
    tensor([ 0.6667, -0.3333, -0.3333,  0.0000,  0.0000,  0.0000])
"""

from __future__ import annotations

import torch

ADVANTAGE_MODES = ("grpo", "dr_grpo", "rloo")


def group_advantages(rewards: torch.Tensor, group_size: int, mode: str = "grpo", eps: float = 1e-6) -> torch.Tensor:
    """Advantage of every response relative to its group.

    - ``grpo``: ``(r - mean) / (std + eps)`` with the unbiased (``G - 1``) std, as in verl and TRL.
    - ``dr_grpo``: ``r - mean``. Dr.GRPO drops the std because it up-weights prompts that are nearly always
      right or nearly always wrong (small std) and so biases the update towards them.
    - ``rloo``: ``r - mean of the other G - 1 rewards`` = ``G / (G - 1) * (r - mean)``, the leave-one-out
      baseline that keeps the estimate unbiased (a response is not its own baseline).

    A group whose rewards are all equal carries no learning signal and gets exactly zero advantage in every
    mode (no ``nan``, no rounding residue divided by ``eps``). A group of one likewise gets zeros under
    ``grpo`` and ``dr_grpo``; ``rloo`` needs ``G >= 2``. The result is float (float32 for integer rewards).

    Args:
        rewards: ``[B*G]`` scalar rewards, the ``G`` samples of a prompt consecutive.
        group_size: ``G``, the number of samples per prompt.
        mode: one of ``ADVANTAGE_MODES``.
        eps: added to the std in ``grpo`` mode.

    Returns:
        ``[B*G]`` advantages, in the order of ``rewards``.

    Example:
        >>> group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), 4, mode="grpo")
        tensor([ 1.5000, -0.5000, -0.5000, -0.5000])
        >>> group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), 4, mode="rloo")
        tensor([ 1.0000, -0.3333, -0.3333, -0.3333])
    """
    _check(rewards, group_size, mode)
    if not rewards.is_floating_point():
        rewards = rewards.float()
    grouped = rewards.view(-1, group_size)  # [B, G]
    centred = grouped - grouped.mean(dim=1, keepdim=True)  # [B, G]
    if mode == "grpo":
        # std of a single sample is nan (G - 1 = 0); its centred reward is 0 anyway.
        std = grouped.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(centred)
        advantages = centred / (std + eps)
    elif mode == "rloo":
        advantages = centred * (group_size / (group_size - 1))
    else:
        advantages = centred
    # mean() of equal floats can differ from them in the last bit; such groups must give exact zeros.
    constant = grouped.amax(dim=1, keepdim=True) == grouped.amin(dim=1, keepdim=True)  # [B, 1]
    return advantages.masked_fill(constant, 0.0).view(-1)  # [B*G]


def _check(rewards: torch.Tensor, group_size: int, mode: str) -> None:
    if mode not in ADVANTAGE_MODES:
        raise ValueError(f"mode must be one of {ADVANTAGE_MODES}, got {mode!r}")
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [B*G], got shape {tuple(rewards.shape)}")
    if group_size < 1 or (mode == "rloo" and group_size < 2):
        minimum = 2 if mode == "rloo" else 1
        raise ValueError(f"group_size must be >= {minimum} for mode {mode!r}, got {group_size}")
    if rewards.numel() % group_size:
        raise ValueError(f"rewards has {rewards.numel()} entries, not a multiple of group_size={group_size}")
