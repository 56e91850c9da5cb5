"""policy_loss: REINFORCE limit, clipping (gradients included), aggregations, masking, global normalisers."""

from __future__ import annotations

import math

import pytest
import torch

from longvila_r1.algorithms import LOSS_AGGREGATIONS, policy_loss

MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])


def _random_inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    old = -torch.rand(3, 4, generator=gen) * 3
    logp = old + (torch.rand(3, 4, generator=gen) - 0.5) * 0.8  # ratios in ~[0.67, 1.49]: some clipped
    return logp, old, torch.randn(3, generator=gen)


def test_on_policy_loss_is_minus_mean_advantage_and_gradient_is_reinforce() -> None:
    old = -torch.rand(3, 4, generator=torch.Generator().manual_seed(1))
    logp = old.clone().requires_grad_(True)
    adv = torch.tensor([1.0, -2.0, 0.5])
    loss, stats = policy_loss(logp, old, adv, MASK)
    n = MASK.sum()
    expected = -(adv[:, None] * MASK).sum() / n
    torch.testing.assert_close(loss, expected)
    loss.backward()
    torch.testing.assert_close(logp.grad, -adv[:, None] * MASK / n)  # d/dlogp of -A * logp, token-mean
    assert stats["clipfrac"] == 0.0 and stats["approx_kl"] == 0.0 and stats["ratio_mean"] == 1.0


def test_clipped_tokens_get_no_gradient() -> None:
    # Rows: A > 0 then A < 0. Ratios per column: 1.5 (above 1 + 0.28), 0.5 (below 1 - 0.2), 1.1 (inside).
    ratios = torch.tensor([[1.5, 0.5, 1.1], [1.5, 0.5, 1.1]])
    logp = ratios.log().requires_grad_(True)
    adv = torch.tensor([2.0, -1.0])
    loss, stats = policy_loss(logp, torch.zeros(2, 3), adv, torch.ones(2, 3), agg="seq-mean-token-sum-norm")
    loss.backward()
    assert logp.grad[0, 0] == 0.0 and logp.grad[1, 1] == 0.0  # A > 0 above 1.28, A < 0 below 0.8: clipped
    for row, col in [(0, 1), (0, 2), (1, 0), (1, 2)]:  # moving against the advantage is never clipped
        assert logp.grad[row, col] != 0.0
    per_token = torch.tensor([[-2 * 1.28, -2 * 0.5, -2 * 1.1], [1.5, 0.8, 1.1]])
    torch.testing.assert_close(loss, per_token.sum(-1).div(3).mean())
    assert stats["clipfrac_high"].item() == pytest.approx(1 / 6)
    assert stats["clipfrac_low"].item() == pytest.approx(1 / 6)
    assert stats["clipfrac"].item() == pytest.approx(2 / 6)
    assert stats["dual_clipfrac"] == 0.0


def test_dual_clip_bounds_negative_advantage_loss() -> None:
    logp = torch.tensor([[math.log(5.0), math.log(2.0)], [math.log(5.0), 0.0]]).requires_grad_(True)
    adv = torch.tensor([-1.0, 1.0])
    loss, stats = policy_loss(logp, torch.zeros(2, 2), adv, torch.ones(2, 2), dual_clip=3.0, agg="seq-mean-token-mean")
    loss.backward()
    # Row 0 (A = -1): ratio 5 is capped at 3 * |A| = 3 (no grad), ratio 2 is below the cap. Row 1 is A > 0.
    torch.testing.assert_close(loss, torch.tensor(((3.0 + 2.0) / 2 + (-1.28 - 1.0) / 2) / 2))
    assert logp.grad[0, 0] == 0.0 and logp.grad[0, 1] != 0.0
    assert stats["dual_clipfrac"].item() == 0.25
    with pytest.raises(ValueError, match="dual_clip must be > 1"):
        policy_loss(logp, torch.zeros(2, 2), adv, torch.ones(2, 2), dual_clip=1.0)


@pytest.mark.parametrize("agg", LOSS_AGGREGATIONS)
def test_aggregations_match_hand_computation(agg: str) -> None:
    logp, old, adv = _random_inputs()
    loss, _ = policy_loss(logp, old, adv, MASK, clip_low=0.1, clip_high=0.15, agg=agg, max_response_length=6)
    ratio = (logp - old).exp()
    per_token = [
        [max(-a * r, -a * min(max(r, 0.9), 1.15)) for r in ratio_row.tolist()]
        for a, ratio_row in zip(adv.tolist(), ratio, strict=True)
    ]
    rows = zip(per_token, MASK.tolist(), strict=True)
    valid = [[v for v, m in zip(row, mask_row, strict=True) if m] for row, mask_row in rows]
    if agg == "token-mean":
        expected = sum(map(sum, valid)) / sum(map(len, valid))
    elif agg == "seq-mean-token-mean":
        expected = sum(sum(row) / len(row) for row in valid) / len(valid)
    else:
        expected = sum(sum(row) / 6 for row in valid) / len(valid)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("agg", LOSS_AGGREGATIONS)
def test_masked_tokens_contribute_nothing(agg: str) -> None:
    logp, old, adv = _random_inputs(seed=3)
    adv_tok = adv[:, None].expand(3, 4).clone()
    loss, stats = policy_loss(logp, old, adv_tok, MASK, agg=agg)
    masked = MASK == 0
    garbage_logp = logp.masked_fill(masked, float("-inf")).requires_grad_(True)
    loss2, stats2 = policy_loss(
        garbage_logp, old.masked_fill(masked, 7.0), adv_tok.masked_fill(masked, 1e6), MASK, agg=agg
    )
    torch.testing.assert_close(loss2, loss)
    assert all(torch.equal(stats[k], stats2[k]) for k in stats)
    loss2.backward()
    assert torch.isfinite(garbage_logp.grad).all() and (garbage_logp.grad[masked] == 0).all()


def test_seq_mean_skips_empty_sequences_and_token_advantages_match_broadcast() -> None:
    logp, old, adv = _random_inputs(seed=4)
    mask = MASK.clone()
    mask[1] = 0
    loss, _ = policy_loss(logp, old, adv, mask, agg="seq-mean-token-mean")
    loss_without, _ = policy_loss(logp[[0, 2]], old[[0, 2]], adv[[0, 2]], mask[[0, 2]], agg="seq-mean-token-mean")
    torch.testing.assert_close(loss, loss_without)
    per_token, _ = policy_loss(logp, old, adv[:, None].expand(3, 4), mask, agg="seq-mean-token-mean")
    torch.testing.assert_close(per_token, loss)


def test_global_num_tokens_makes_micro_batches_add_up_to_the_full_batch() -> None:
    logp, old, adv = _random_inputs(seed=5)
    full, _ = policy_loss(logp, old, adv, MASK)
    total = MASK.sum()
    # Two micro-batches of uneven token counts (3 vs 6), accumulated by summing losses divided by K = 2.
    parts = [policy_loss(logp[i], old[i], adv[i], MASK[i], num_tokens=total / 2)[0] / 2 for i in ([0], [1, 2])]
    torch.testing.assert_close(parts[0] + parts[1], full)
    with pytest.raises(ValueError, match="num_tokens must be positive"):
        policy_loss(logp, old, adv, MASK, num_tokens=0)


def test_approx_kl_is_the_k3_estimate_of_kl_old_to_current() -> None:
    logp, old, adv = _random_inputs(seed=6)
    _, stats = policy_loss(logp, old, adv, torch.ones(3, 4))
    d = logp - old
    torch.testing.assert_close(stats["approx_kl"], (d.exp() - d - 1).mean())
    torch.testing.assert_close(stats["ratio_mean"], d.exp().mean())
    assert all(not v.requires_grad for v in stats.values())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"advantages": torch.zeros(2)}, r"advantages must be \[B\*G\] or \[B\*G, L\]"),
        ({"mask": torch.ones(3, 3)}, "must all be"),
        ({"clip_low": 1.0}, r"clip_low must be in \[0, 1\)"),
        ({"clip_high": -0.1}, "clip_high must be >= 0"),
        ({"agg": "sum"}, r"agg must be one of \('token-mean'"),
    ],
)
def test_validation(kwargs: dict, match: str) -> None:
    args = {"logp": torch.zeros(3, 4), "old_logp": torch.zeros(3, 4), "advantages": torch.zeros(3), "mask": MASK}
    with pytest.raises(ValueError, match=match):
        policy_loss(**{**args, **kwargs})
