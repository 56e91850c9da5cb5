"""DAPO dynamic sampling: which groups are kept, and how GroupBuffer refills and stops."""

from __future__ import annotations

import pytest
import torch

from longvila_r1.algorithms import GroupBuffer, keep_groups


def test_keep_groups_drops_all_equal_groups_in_order() -> None:
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.1, 1.1, 1.1000001, 0.0, 0.0, 0.5])
    assert keep_groups(rewards, 3).tolist() == [1, 4]  # group 3 differs by float noise only
    assert keep_groups(rewards, 3, eps=0.0).tolist() == [1, 3, 4]
    assert keep_groups(torch.ones(4), 2).dtype == torch.int64 and keep_groups(torch.ones(4), 2).numel() == 0
    with pytest.raises(ValueError, match="not a multiple of group_size=2"):
        keep_groups(torch.ones(3), 2)
    with pytest.raises(ValueError, match="1-D"):
        keep_groups(torch.ones(2, 2), 2)


def test_buffer_reaches_target_in_order_and_discards_surplus() -> None:
    buffer = GroupBuffer(group_size=2, target_groups=3, max_rounds=5)
    rounds = [
        (torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0, 0.5]), ["a", "b", "c"]),  # keeps a, c
        (torch.tensor([0.0, 0.0, 1.0, 0.0, 0.2, 0.1]), ["d", "e", "f"]),  # keeps e, f; f is surplus
    ]
    for rewards, payloads in rounds:
        assert not buffer.done
        buffer.add(rewards, payloads)
    assert buffer.done and len(buffer) == 4
    buffer.add(torch.tensor([0.0, 1.0]), ["g"])  # past the target (a rank waiting for its peers): surplus
    batch = buffer.take()
    assert batch.payloads == ["a", "c", "e"]
    assert batch.rewards.tolist() == [0.0, 1.0, 0.0, 0.5, 1.0, 0.0]
    assert (batch.rounds, batch.kept_groups, batch.dropped_groups, batch.surplus_groups) == (3, 3, 2, 2)
    assert batch.complete
    assert len(buffer) == 0 and buffer.rounds == 0 and not buffer.done  # ready for the next step


def test_buffer_stops_at_max_rounds_with_what_it_has() -> None:
    buffer = GroupBuffer(group_size=2, target_groups=4, max_rounds=2)
    payload = {"tokens": torch.arange(3)}
    buffer.add(torch.tensor([1.0, 1.0, 0.0, 1.0]), [{"tokens": torch.zeros(1)}, payload])
    buffer.add(torch.tensor([0.0, 0.0, 1.0, 1.0]), [{}, {}])
    assert buffer.done
    batch = buffer.take()
    assert not batch.complete
    assert batch.payloads[0] is payload  # opaque payloads are passed through untouched
    assert (batch.rounds, batch.kept_groups, batch.dropped_groups, batch.surplus_groups) == (2, 1, 3, 0)


def test_buffer_refuses_rounds_past_its_limit_and_takes_at_most_a_limit() -> None:
    buffer = GroupBuffer(group_size=2, target_groups=3, max_rounds=1)
    buffer.add(torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0, 0.5]), ["a", "b", "c"])
    with pytest.raises(RuntimeError, match=r"used its 1 round\(s\); call take"):
        buffer.add(torch.tensor([0.0, 1.0]), ["d"])
    batch = buffer.take(limit=2)  # a peer rank found only two informative groups
    assert batch.payloads == ["a", "b"] and (batch.kept_groups, batch.surplus_groups) == (2, 1)
    assert not batch.complete


def test_buffer_with_nothing_kept_returns_an_empty_batch() -> None:
    buffer = GroupBuffer(group_size=3, target_groups=1, max_rounds=1)
    assert buffer.add(torch.zeros(6), ["x", "y"]) == 0
    batch = buffer.take()
    assert batch.payloads == [] and batch.rewards.shape == (0,) and batch.dropped_groups == 2


def test_buffer_validation() -> None:
    with pytest.raises(ValueError, match="max_rounds must be >= 1"):
        GroupBuffer(group_size=2, target_groups=1, max_rounds=0)
    buffer = GroupBuffer(group_size=2, target_groups=1, max_rounds=1)
    with pytest.raises(ValueError, match=r"expected rewards of shape \[2 \* 2\]"):
        buffer.add(torch.zeros(6), ["a", "b"])
