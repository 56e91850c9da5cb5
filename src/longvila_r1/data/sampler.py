"""A shuffling sampler that shards by data-parallel rank and resumes mid-epoch at the exact sample."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DistributedSampler


class ResumableSampler(DistributedSampler):
    """Seeded per-epoch permutation, split over the data-parallel ranks, that can skip what was consumed.

    A subclass of :class:`~torch.utils.data.DistributedSampler` so Lightning does not wrap it again: the ranks
    given here are the *data-parallel* ranks (all ranks of one sequence-parallel group read the same samples).
    ``state_dict()`` records the epoch and how many of this rank's samples were consumed; after
    ``load_state_dict`` the next iteration starts right after them, so a resumed run sees exactly the samples
    an uninterrupted run would have seen.

    Args:
        dataset_size: number of samples.
        shuffle: a new permutation every epoch (seeded with ``seed + epoch``), else dataset order.
        seed: the permutation seed; identical on every rank.
        num_replicas: data-parallel size.
        rank: data-parallel rank.
        drop_last: drop the tail that does not divide evenly over the ranks (else it is padded by repeats).

    Example:
        >>> sampler = ResumableSampler(10, seed=0)
        >>> first = list(sampler)[:3]
        >>> sampler.load_state_dict({"epoch": 0, "consumed": 3})
        >>> list(sampler)[:2] == [i for i in ResumableSampler(10, seed=0)][3:5]
        True
    """

    def __init__(
        self,
        dataset_size: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
    ) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        super().__init__(
            range(dataset_size), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
        self._skip = 0
        self._skip_epoch = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        # The skip belongs to the epoch that was interrupted; if the trainer moved on to another epoch (a
        # checkpoint written at the end of an epoch or of training), that epoch starts from its beginning.
        skip = self._skip if self.epoch == self._skip_epoch else 0
        self._skip = 0
        return iter(indices[skip:])

    def __len__(self) -> int:
        # The epoch's full length even when resuming: Lightning counts the resumed epoch's batches from the
        # restored batch index, so the loader must report the whole epoch while yielding only the rest.
        return self.num_samples

    def state_dict(self, consumed: int) -> dict[str, Any]:
        """State after ``consumed`` samples of the current epoch were used on this rank."""
        return {"epoch": self.epoch, "consumed": consumed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_epoch(int(state["epoch"]))
        self._skip_epoch = self.epoch
        self._skip = int(state["consumed"]) % max(self.num_samples, 1)
