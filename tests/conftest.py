"""Shared fixtures: a small synthetic LongVideo-Reason set written once per test session."""

from __future__ import annotations

import pytest

from longvila_r1.data.synth import generate_dataset


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """12 easy videos of 32 frames (64x64), 4 questions each, split 10/1/1 by video."""
    out = tmp_path_factory.mktemp("synth")
    generate_dataset(out, num_videos=12, frames=32, seed=7, difficulty="easy", progress=False)
    return out
