"""Ulysses attention refuses the layers it cannot shard, naming why, before any collective runs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from longvila_r1.parallel.ulysses import _check_supported


def _layer(is_causal: bool = True) -> nn.Module:
    layer = nn.Module()
    layer.is_causal = is_causal
    return layer


QUERY = torch.zeros(1, 4, 6, 8)  # [B, H, S_local, D]


def test_causal_full_attention_with_divisible_heads_is_accepted():
    _check_supported(_layer(), QUERY, {}, world=2)
    _check_supported(_layer(), QUERY, {"sliding_window": None}, world=4)


@pytest.mark.parametrize(
    ("layer", "kwargs", "world", "error", "message"),
    [
        (_layer(is_causal=False), {}, 2, NotImplementedError, "causal"),
        (_layer(), {"sliding_window": 128}, 2, NotImplementedError, "sliding-window"),
        (_layer(), {}, 3, ValueError, r"heads \(4\).*sequence_parallel_size \(3\)"),
    ],
)
def test_unsupported_layers_are_refused_with_the_reason(layer, kwargs, world, error, message):
    with pytest.raises(error, match=message):
        _check_supported(layer, QUERY, kwargs, world=world)
