"""group_advantages against hand-computed values and a per-group loop reference."""

from __future__ import annotations

import pytest
import torch

from longvila_r1.algorithms import ADVANTAGE_MODES, group_advantages


def _loop_reference(rewards: torch.Tensor, group_size: int, mode: str, eps: float) -> torch.Tensor:
    out = []
    for start in range(0, len(rewards), group_size):
        group = rewards[start : start + group_size].tolist()
        mean = sum(group) / len(group)
        std = (sum((r - mean) ** 2 for r in group) / (len(group) - 1)) ** 0.5
        for i, r in enumerate(group):
            if mode == "grpo":
                out.append((r - mean) / (std + eps))
            elif mode == "dr_grpo":
                out.append(r - mean)
            else:
                others = group[:i] + group[i + 1 :]
                out.append(r - sum(others) / len(others))
    return torch.tensor(out, dtype=torch.float64)


def test_hand_computed_values() -> None:
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 1.0, 1.0])
    # Group 1: mean 0.25, unbiased std 0.5. Group 2: mean 1, unbiased std sqrt(2/3).
    std2 = (2 / 3) ** 0.5
    grpo = [1.5, -0.5, -0.5, -0.5, 1 / std2, -1 / std2, 0.0, 0.0]
    dr = [0.75, -0.25, -0.25, -0.25, 1.0, -1.0, 0.0, 0.0]
    rloo = [1.0, -1 / 3, -1 / 3, -1 / 3, 4 / 3, -4 / 3, 0.0, 0.0]
    for mode, expected in (("grpo", grpo), ("dr_grpo", dr), ("rloo", rloo)):
        got = group_advantages(rewards, 4, mode=mode)
        torch.testing.assert_close(got, torch.tensor(expected), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ADVANTAGE_MODES)
@pytest.mark.parametrize("group_size", [2, 3, 5])
def test_matches_loop_reference(mode: str, group_size: int) -> None:
    rewards = torch.rand(4 * group_size, generator=torch.Generator().manual_seed(group_size), dtype=torch.float64)
    got = group_advantages(rewards, group_size, mode=mode, eps=1e-4)
    torch.testing.assert_close(got, _loop_reference(rewards, group_size, mode, eps=1e-4))


@pytest.mark.parametrize("mode", ADVANTAGE_MODES)
def test_equal_rewards_give_exact_zeros(mode: str) -> None:
    # 0.1 is not exact in binary: the float32 mean of three 0.1s need not equal 0.1 itself.
    rewards = torch.tensor([0.1, 0.1, 0.1, 1.1, 1.1, 1.1, 0.0, 1.0, 0.0])
    got = group_advantages(rewards, 3, mode=mode)
    assert torch.isfinite(got).all()
    assert got[:6].tolist() == [0.0] * 6
    assert got[6:].abs().sum() > 0


def test_order_follows_rewards_and_integer_rewards_become_float() -> None:
    got = group_advantages(torch.tensor([0, 1, 1, 0]), 2, mode="dr_grpo")
    assert got.dtype == torch.float32
    assert got.tolist() == [-0.5, 0.5, 0.5, -0.5]


def test_group_of_one_gives_zeros_without_nan() -> None:
    rewards = torch.tensor([1.0, 0.0, 0.5])
    assert group_advantages(rewards, 1, mode="grpo").tolist() == [0.0, 0.0, 0.0]
    assert group_advantages(rewards, 1, mode="dr_grpo").tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("rewards", "group_size", "mode", "match"),
    [
        (torch.zeros(2, 2), 2, "grpo", "1-D"),
        (torch.zeros(5), 2, "grpo", "not a multiple of group_size=2"),
        (torch.zeros(4), 1, "rloo", "group_size must be >= 2 for mode 'rloo'"),
        (torch.zeros(4), 0, "grpo", "group_size must be >= 1"),
        (torch.zeros(4), 2, "ppo", r"mode must be one of \('grpo', 'dr_grpo', 'rloo'\), got 'ppo'"),
    ],
)
def test_validation(rewards: torch.Tensor, group_size: int, mode: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        group_advantages(rewards, group_size, mode=mode)
