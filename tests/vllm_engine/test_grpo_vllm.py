"""A GRPO fit of a few steps with rollouts from the vLLM engine (Lightning Trainer, RolloutCallback)."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from longvila_r1.callbacks import RolloutCallback
from longvila_r1.data.datamodule import LongVideoReasonDataModule
from longvila_r1.modules import GRPOModule
from longvila_r1.rollout import VLLMEngine

pytest.importorskip("vllm", reason="vLLM is not installed: `make test-vllm` runs these tests")

STEPS = 3


def test_grpo_fit_with_the_vllm_engine_syncs_weights_every_step(synth_dir, tmp_path):
    engine = VLLMEngine(dtype="float32", enforce_eager=True, max_model_len=2048)
    module = GRPOModule(
        path="tiny", freeze_vision=True, group_size=4, max_new_tokens=12, eval_max_new_tokens=8, rollout_engine=engine
    )
    data = LongVideoReasonDataModule(data_dir=str(synth_dir), task="rl", num_frames=8, batch_size=2)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=STEPS,
        logger=TensorBoardLogger(tmp_path, name="grpo"),
        callbacks=[RolloutCallback(log_samples_every_n_steps=1)],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        log_every_n_steps=1,
    )
    trainer.fit(module, datamodule=data)

    assert trainer.global_step == STEPS
    assert not engine.is_setup, "the callback tears the engine down at fit end"
    events = EventAccumulator(str(trainer.logger.log_dir))
    events.Reload()
    syncs = [e.value for e in events.Scalars("timing/weight_sync_s")]
    assert len(syncs) == STEPS and all(s > 0 for s in syncs)
    losses = [e.value for e in events.Scalars("train/loss")]
    assert len(losses) == STEPS and all(math.isfinite(v) for v in losses)
    assert events.Scalars("rollout/response_len")
