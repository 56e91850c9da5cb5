"""DAPO dynamic sampling: train only on groups whose rewards differ, refilling the batch from new rollouts.

A group whose ``G`` responses all earn the same reward (all right, or all wrong) has zero advantage for every
response, so it adds nothing to the gradient but still dilutes a token-mean loss and costs a training pass.
Dynamic sampling drops such groups and generates more prompts until the batch holds ``target_groups``
informative groups, giving up after ``max_rounds`` generation rounds so a too-easy or too-hard dataset cannot
stall training.

Example:
    >>> buffer = GroupBuffer(group_size=2, target_groups=2, max_rounds=3)
    >>> buffer.add(torch.tensor([1.0, 1.0, 0.0, 1.0]), payloads=["p0", "p1"])  # p0: both right, dropped
    1
    >>> buffer.done
    False
    >>> buffer.add(torch.tensor([1.0, 0.0, 0.0, 0.0]), payloads=["p2", "p3"])
    1
    >>> batch = buffer.take(); batch.payloads, batch.rewards.tolist(), batch.rounds, batch.dropped_groups
    (['p1', 'p2'], [0.0, 1.0, 1.0, 0.0], 2, 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


def keep_groups(rewards: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """Indices of the groups whose rewards are not all equal (max - min > ``eps``), in increasing order.

    Args:
        rewards: ``[B*G]`` rewards, the ``G`` samples of a prompt consecutive.
        group_size: ``G``.
        eps: rewards closer than this count as equal (float noise from weighted reward sums).

    Returns:
        ``[K]`` int64 group indices in ``[0, B)``.

    Example:
        >>> keep_groups(torch.tensor([0.0, 0.0, 1.0, 0.0, 1.0, 1.0]), group_size=2)
        tensor([1])
    """
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [B*G], got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards has {rewards.numel()} entries, not a multiple of group_size={group_size}")
    grouped = rewards.view(-1, group_size)  # [B, G]
    spread = grouped.amax(dim=1) - grouped.amin(dim=1)  # [B]
    return torch.nonzero(spread > eps).flatten()  # [K]


@dataclass(frozen=True)
class GroupBatch:
    """What a ``GroupBuffer`` collected for one training step.

    Attributes:
        payloads: the kept groups' payloads, in the order they were added (at most ``target_groups``).
        rewards: ``[K*G]`` their rewards, group after group.
        rounds: generation rounds used.
        kept_groups: ``K``, the number of groups returned.
        dropped_groups: groups dropped because their rewards were all equal.
        surplus_groups: informative groups discarded because the last round overfilled the batch; they are
            not carried over, since by the next step the policy has moved and they would be off-policy.
        complete: whether ``target_groups`` was reached (``False`` after running out of rounds).
    """

    payloads: list[Any]
    rewards: torch.Tensor
    rounds: int
    kept_groups: int
    dropped_groups: int
    surplus_groups: int
    complete: bool


class GroupBuffer:
    """Collects informative groups over successive generation rounds, up to a target count.

    Payloads are opaque (a dict of tensors per group, a record id, ...), so the buffer works with any rollout
    representation. The loop that drives it::

        while not buffer.done:
            rewards, payloads = generate_and_score(next_prompts())  # [B*G], B payloads
            buffer.add(rewards, payloads)
        batch = buffer.take()  # may hold fewer than target_groups; check batch.complete

    Args:
        group_size: ``G``, samples per prompt.
        target_groups: informative groups wanted per training step.
        max_rounds: generation rounds allowed per step before giving up with what was collected.
        eps: see ``keep_groups``.
    """

    def __init__(self, group_size: int, target_groups: int, max_rounds: int, eps: float = 1e-6) -> None:
        for name, value in (("group_size", group_size), ("target_groups", target_groups), ("max_rounds", max_rounds)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.group_size = group_size
        self.target_groups = target_groups
        self.max_rounds = max_rounds
        self.eps = eps
        self._reset()

    def _reset(self) -> None:
        self._payloads: list[Any] = []
        self._rewards: list[torch.Tensor] = []  # one [G] tensor per kept group
        self._rounds = 0
        self._dropped = 0

    def __len__(self) -> int:
        return len(self._payloads)

    @property
    def rounds(self) -> int:
        """Generation rounds added since the last ``take``."""
        return self._rounds

    @property
    def done(self) -> bool:
        """Whether the target is reached or no round is left."""
        return len(self) >= self.target_groups or self._rounds >= self.max_rounds

    def add(self, rewards: torch.Tensor, payloads: Sequence[Any]) -> int:
        """Add one generation round; keep its informative groups and return how many were kept.

        Args:
            rewards: ``[B*G]`` rewards of the round.
            payloads: ``B`` payloads, one per group, in the order of ``rewards``.
        """
        if self._rounds >= self.max_rounds:
            # Past the target, a round is still accepted (its groups are surplus): a data-parallel rank that is
            # done waits for its peers by generating with them.
            raise RuntimeError(f"GroupBuffer used its {self.max_rounds} round(s); call take() first")
        if rewards.dim() != 1 or rewards.numel() != len(payloads) * self.group_size:
            raise ValueError(
                f"expected rewards of shape [{len(payloads)} * {self.group_size}] for {len(payloads)} payloads, "
                f"got {tuple(rewards.shape)}"
            )
        kept = keep_groups(rewards, self.group_size, self.eps).tolist()
        grouped = rewards.detach().view(-1, self.group_size)  # [B, G]
        self._payloads.extend(payloads[i] for i in kept)
        self._rewards.extend(grouped[i] for i in kept)
        self._rounds += 1
        self._dropped += len(payloads) - len(kept)
        return len(kept)

    def take(self, limit: int | None = None) -> GroupBatch:
        """Return at most ``target_groups`` groups (and at most ``limit``), oldest first, and empty the buffer.

        ``limit`` lets data-parallel ranks update on the same number of groups (the fewest any rank has).
        """
        count = min(len(self), self.target_groups)
        if limit is not None:
            count = min(count, limit)
        rewards = torch.cat(self._rewards[:count]) if count else torch.zeros(0)
        batch = GroupBatch(
            payloads=self._payloads[:count],
            rewards=rewards,
            rounds=self._rounds,
            kept_groups=count,
            dropped_groups=self._dropped,
            surplus_groups=len(self) - count,
            complete=count >= self.target_groups,
        )
        self._reset()
        return batch
