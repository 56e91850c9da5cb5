"""A GRPO fit of a few steps with rollouts from the vLLM engine (Lightning Trainer, RolloutCallback)."""

from __future__ import annotations

import math

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from _grpo_fit import fit_grpo
from longvila_r1.modules import GRPOModule
from longvila_r1.rollout import VLLMEngine

pytest.importorskip("vllm", reason="vLLM is not installed: `make test-vllm` runs these tests")

STEPS = 3


def test_grpo_fit_with_the_vllm_engine_syncs_weights_every_step(synth_dir, tmp_path):
    engine = VLLMEngine(dtype="float32", enforce_eager=True, max_model_len=2048)
    module = GRPOModule(
        path="tiny", freeze_vision=True, group_size=4, max_new_tokens=12, eval_max_new_tokens=8, rollout_engine=engine
    )
    trainer = fit_grpo(module, synth_dir, tmp_path, steps=STEPS)

    assert trainer.global_step == STEPS
    assert not engine.is_setup, "the callback tears the engine down at fit end"
    events = EventAccumulator(str(trainer.logger.log_dir))
    events.Reload()
    syncs = [e.value for e in events.Scalars("timing/weight_sync_s")]
    assert len(syncs) == STEPS and all(s > 0 for s in syncs)
    losses = [e.value for e in events.Scalars("train/loss")]
    assert len(losses) == STEPS and all(math.isfinite(v) for v in losses)
    assert events.Scalars("rollout/response_len")
