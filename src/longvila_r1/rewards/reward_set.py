"""The rewards of a run together: the weighted total, each reward's values, and what to do when one fails.

Example:
    >>> from longvila_r1.rewards import AccuracyReward, FormatReward
    >>> rewards = RewardSet([AccuracyReward(), FormatReward(weight=0.1)])
    >>> out = rewards([RewardInput("<think>x</think><answer>B</answer>", "B"), RewardInput("A", "B")])
    >>> out.total, out.values["accuracy"], out.values["format"]
    (tensor([1.1000, 0.0000]), tensor([1., 0.]), tensor([1., 0.]))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from longvila_r1.rewards.base import Reward, RewardError, RewardInput

ON_ERROR = ("raise", "zero")
_EXCERPT_CHARS = 80


@dataclass(frozen=True)
class RewardOutput:
    """What a ``RewardSet`` computed for one batch.

    Attributes:
        total: ``[N]`` sum over rewards of ``weight * value``; the input to the advantages.
        values: ``{name: [N]}`` unweighted values per reward, for ``rollout/reward/<name>``.
        failures: ``{name: count}`` samples of this batch each reward failed on (zero with ``on_error="raise"``).
    """

    total: torch.Tensor
    values: dict[str, torch.Tensor]
    failures: dict[str, int]


class RewardSet:
    """Scores a batch with several rewards and sums them with their weights.

    A reward that raises, or returns ``nan``/``inf``, for a sample is handled by ``on_error``:

    - ``"raise"`` (default): raise a ``RewardError`` naming the reward and the sample (batch index, record
      id, the start of the response), chained to the original exception.
    - ``"zero"``: give that sample 0 for that reward, keep training, and count the failure in
      ``RewardOutput.failures`` and in the running ``failures`` of the set (log them; a reward that fails
      often is a bug, not noise).

    A reward that raises on the batch is retried one sample at a time to find the samples at fault, so
    batch-vectorised rewards get the same per-sample handling. Returning the wrong number of values is a
    bug in the reward, not in a sample, and always raises.

    Args:
        rewards: the rewards; their names must be unique.
        on_error: ``"raise"`` or ``"zero"``.

    Example:
        >>> from longvila_r1.rewards import AccuracyReward, OverlongReward
        >>> rewards = RewardSet([AccuracyReward(), OverlongReward(max_length=8, buffer_length=4)], on_error="zero")
        >>> out = rewards([RewardInput("(B)", "B", response_length=6)]); out.total, out.failures
        (tensor([0.5000]), {'accuracy': 0, 'overlong': 0})
    """

    def __init__(self, rewards: Sequence[Reward], on_error: Literal["raise", "zero"] = "raise") -> None:
        if not rewards:
            raise ValueError("rewards must hold at least one Reward")
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        for reward in rewards:
            if not isinstance(reward, Reward):
                raise TypeError(f"rewards must be Reward instances, got {type(reward).__name__}")
        names = [reward.name for reward in rewards]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(
                f"reward names must be unique, got {duplicates} more than once; pass name= to tell them apart"
            )
        self.rewards = list(rewards)
        self.on_error = on_error
        self.failures: dict[str, int] = dict.fromkeys(names, 0)

    @property
    def names(self) -> list[str]:
        return [reward.name for reward in self.rewards]

    def __call__(self, samples: Sequence[RewardInput]) -> RewardOutput:
        """Score ``samples`` with every reward; see the class docs for failures."""
        values, failures = {}, {}
        total = torch.zeros(len(samples), dtype=torch.float32)  # [N]
        for reward in self.rewards:
            values[reward.name], failures[reward.name] = self._score(reward, samples)
            self.failures[reward.name] += failures[reward.name]
            total += reward.weight * values[reward.name]
        return RewardOutput(total=total, values=values, failures=failures)

    def _score(self, reward: Reward, samples: Sequence[RewardInput]) -> tuple[torch.Tensor, int]:
        """``[N]`` values of one reward (0 where it failed) and how many samples it failed on."""
        try:
            raw = reward(samples)
        except Exception:
            # Retry one by one to find the samples at fault, so one bad sample does not cost the whole batch.
            values, problems = _score_each(reward, samples)
        else:
            values, problems = _as_values(reward, samples, raw), {}
        bad = ~torch.isfinite(values)  # [N]
        if self.on_error == "raise" and bad.any():
            index = int(bad.nonzero()[0])
            problem, cause = problems.get(index, (f"returned {values[index].item()}", None))
            raise _sample_error(reward, samples[index], index, problem) from cause
        return values.masked_fill(bad, 0.0), int(bad.sum())

    def __repr__(self) -> str:
        return f"RewardSet({self.rewards!r}, on_error={self.on_error!r})"


def _score_each(
    reward: Reward, samples: Sequence[RewardInput]
) -> tuple[torch.Tensor, dict[int, tuple[str, Exception]]]:
    """``[N]`` values, ``nan`` where the reward raised, and what it raised there."""
    values = torch.full((len(samples),), float("nan"))  # [N]
    problems = {}
    for index, sample in enumerate(samples):
        try:
            raw = reward([sample])
        except Exception as exc:
            problems[index] = (f"raised {type(exc).__name__}: {exc}", exc)
            continue
        values[index] = _as_values(reward, [sample], raw)[0]
    return values, problems


def _as_values(reward: Reward, samples: Sequence[RewardInput], values: object) -> torch.Tensor:
    """A reward's output as ``[N]`` float32; a wrong length is the reward's bug and raises ``RewardError``."""
    try:
        values = torch.as_tensor(values, dtype=torch.float32).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise RewardError(f"reward {reward.name!r} returned {type(values).__name__}, not numbers", reward.name) from exc
    if values.shape != (len(samples),):
        raise RewardError(
            f"reward {reward.name!r} returned shape {tuple(values.shape)} for {len(samples)} samples; "
            f"a reward must return one value per sample",
            reward=reward.name,
        )
    return values


def _sample_error(reward: Reward, sample: RewardInput, index: int, problem: str) -> RewardError:
    excerpt = sample.response[:_EXCERPT_CHARS] + ("..." if len(sample.response) > _EXCERPT_CHARS else "")
    return RewardError(
        f"reward {reward.name!r} {problem} on sample {index} (record_id={sample.record_id!r}, response={excerpt!r})",
        reward=reward.name,
        index=index,
        record_id=sample.record_id,
    )
