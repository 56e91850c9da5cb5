"""Fixtures of the vLLM engine tests: a tiny Qwen2.5-VL policy and video prompts with uneven lengths.

These tests run against a real vLLM (``make test-vllm`` builds its CPU environment); every test module skips
itself where vLLM is not installed. Nothing here imports vLLM, so the main suite collects this folder cleanly.
"""

from __future__ import annotations

import pytest
from _prompts import VideoPrompts, make_prompts

from longvila_r1.models import VideoLMPolicy


@pytest.fixture(scope="session")
def policy() -> VideoLMPolicy:
    return VideoLMPolicy.build("tiny", family="qwen2_5_vl", seed=0, dtype="float32", freeze_vision=True)


@pytest.fixture(scope="session")
def prompts(policy) -> VideoPrompts:
    return make_prompts(policy)
