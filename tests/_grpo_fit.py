"""A few-step GRPO fit on the synthetic set, shared by the GRPO tests of every engine."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger

from longvila_r1.callbacks import RolloutCallback
from longvila_r1.data.datamodule import LongVideoReasonDataModule


def grpo_data(synth_dir) -> LongVideoReasonDataModule:
    return LongVideoReasonDataModule(data_dir=str(synth_dir), task="rl", num_frames=8, batch_size=2, eval_batch_size=4)


def fit_grpo(module, synth_dir, tmp_path, steps: int, **trainer_kwargs) -> pl.Trainer:
    """``steps`` optimizer steps on CPU with the RolloutCallback and a TensorBoard logger under ``tmp_path``."""
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=TensorBoardLogger(tmp_path, name="grpo"),
        callbacks=[RolloutCallback(log_samples_every_n_steps=1)],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        log_every_n_steps=1,
        **trainer_kwargs,
    )
    trainer.fit(module, datamodule=grpo_data(synth_dir))
    return trainer
