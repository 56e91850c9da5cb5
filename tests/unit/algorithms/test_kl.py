"""kl_penalty: the three estimators, the k3 clamps and finite gradients at extreme inputs."""

from __future__ import annotations

import math

import pytest
import torch

from longvila_r1.algorithms import kl_penalty


def test_values() -> None:
    logp, ref = torch.tensor([-1.0, -2.0, -0.3]), torch.tensor([-1.5, -1.0, -0.3])
    torch.testing.assert_close(kl_penalty(logp, ref, "k1"), torch.tensor([0.5, -1.0, 0.0]))
    torch.testing.assert_close(kl_penalty(logp, ref, "k2"), torch.tensor([0.125, 0.5, 0.0]))
    k3 = [math.exp(-0.5) + 0.5 - 1, math.exp(1.0) - 1.0 - 1, 0.0]
    torch.testing.assert_close(kl_penalty(logp, ref, "k3"), torch.tensor(k3))


def test_k3_is_default_non_negative_and_elementwise_on_any_shape() -> None:
    gen = torch.Generator().manual_seed(0)
    logp, ref = -torch.rand(2, 3, 4, generator=gen) * 5, -torch.rand(2, 3, 4, generator=gen) * 5
    kl = kl_penalty(logp, ref)
    assert kl.shape == (2, 3, 4)
    assert (kl >= 0).all()
    torch.testing.assert_close(kl[1, 2], kl_penalty(logp[1, 2], ref[1, 2], "k3"))


def test_k3_clamps() -> None:
    logp = torch.tensor([0.0, -50.0, 50.0, -3.0])
    ref = torch.zeros(4)
    kl = kl_penalty(logp, ref, "k3")
    assert kl[0] == 0.0
    assert kl[1] == 10.0 and kl[2] == 10.0  # exp(20) - 21 and 20 - 1 + exp(-20), both capped at 10
    assert kl[3] == 10.0  # exp(3) - 4 = 16.1 > 10: the result clamp, not the log-ratio clamp
    assert kl_penalty(torch.tensor([-2.0]), torch.tensor([0.0]), "k3").item() < 10.0  # exp(2) - 3 = 4.39


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_gradient_finite_for_extreme_inputs(estimator: str) -> None:
    logp = torch.tensor([-1e4, 1e4, -30.0, 0.0, -1e-3], requires_grad=True)
    ref = torch.tensor([0.0, 0.0, 0.0, -1e4, 0.0])
    kl_penalty(logp, ref, estimator).sum().backward()
    assert torch.isfinite(logp.grad).all()
    if estimator == "k3":
        assert logp.grad[:4].tolist() == [0.0] * 4  # clamped: an outlier token does not steer the step
        assert logp.grad[4] != 0.0


def test_validation() -> None:
    with pytest.raises(ValueError, match=r"estimator must be one of \('k1', 'k2', 'k3'\), got 'k4'"):
        kl_penalty(torch.zeros(2), torch.zeros(2), "k4")
    with pytest.raises(ValueError, match="shapes differ"):
        kl_penalty(torch.zeros(2), torch.zeros(3))
