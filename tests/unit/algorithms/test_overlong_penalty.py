"""DAPO soft overlong punishment: zero, linear ramp, full penalty."""

from __future__ import annotations

import pytest
import torch

from longvila_r1.algorithms import overlong_penalty


def test_ramp_values() -> None:
    got = overlong_penalty(torch.tensor([0, 60, 61, 70, 79, 80, 81, 500]), max_length=80, buffer_length=20)
    expected = torch.tensor([0.0, 0.0, -0.05, -0.5, -0.95, -1.0, -1.0, -1.0])
    torch.testing.assert_close(got, expected)
    assert got.dtype == torch.float32


def test_factor_and_hard_limit() -> None:
    got = overlong_penalty([10, 15, 20], max_length=20, buffer_length=10, penalty_factor=0.5)
    torch.testing.assert_close(got, torch.tensor([0.0, -0.25, -0.5]))
    assert overlong_penalty([19, 20, 21], max_length=20, buffer_length=0).tolist() == [0.0, 0.0, -1.0]
    assert overlong_penalty([1, 2], max_length=4, buffer_length=2, penalty_factor=0.0).tolist() == [0.0, 0.0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_length": 0, "buffer_length": 0}, "max_length must be >= 1"),
        ({"max_length": 10, "buffer_length": 11}, r"buffer_length must be in \[0, max_length=10\]"),
        ({"max_length": 10, "buffer_length": 2, "penalty_factor": -1.0}, "penalty_factor must be >= 0"),
    ],
)
def test_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        overlong_penalty([1], **kwargs)
