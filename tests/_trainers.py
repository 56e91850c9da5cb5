"""Trainers for the module tests: CPU, no logger, checkpoints under ``tmp_path/ckpt``, and a resume check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
import torch


def checkpointing_trainer(
    tmp_path: Path, max_steps: int, every_n_train_steps: int | None = None, **kwargs
) -> pl.Trainer:
    """A CPU trainer that saves ``last.ckpt`` (and every ``every_n_train_steps``) and validates only if asked."""
    checkpoint = pl.callbacks.ModelCheckpoint(
        dirpath=tmp_path / "ckpt", save_last=True, save_top_k=-1, every_n_train_steps=every_n_train_steps
    )
    defaults = {"limit_val_batches": 0, "num_sanity_val_steps": 0}
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        logger=False,
        callbacks=[checkpoint],
        enable_progress_bar=False,
        enable_model_summary=False,
        **(defaults | kwargs),
    )


def resumed_and_straight_runs(
    make_module: Callable[[], pl.LightningModule],
    make_data: Callable[[], pl.LightningDataModule],
    tmp_path: Path,
    steps: int = 6,
) -> tuple[pl.LightningModule, pl.LightningModule]:
    """An uninterrupted run of ``steps`` and one resumed from the checkpoint its twin left at ``steps // 2``.

    The resumed run starts under another seed, so it matches only if the checkpoint holds everything.
    """
    pl.seed_everything(0)
    straight = make_module()
    checkpointing_trainer(tmp_path / "a", steps).fit(straight, datamodule=make_data())
    # An interrupted run: the periodic checkpoint at steps // 2 is what a crash leaves behind.
    pl.seed_everything(0)
    checkpointing_trainer(tmp_path / "b", steps, every_n_train_steps=steps // 2).fit(
        make_module(), datamodule=make_data()
    )
    mid_run = tmp_path / "b" / "ckpt" / f"epoch=0-step={steps // 2}.ckpt"
    pl.seed_everything(123)
    resumed = make_module()
    trainer = checkpointing_trainer(tmp_path / "c", steps)
    trainer.fit(resumed, datamodule=make_data(), ckpt_path=mid_run)
    assert trainer.global_step == steps
    return straight, resumed


def assert_same_parameters(expected: torch.nn.Module, got: torch.nn.Module, atol: float = 1e-6) -> None:
    """Every parameter of ``got`` equals ``expected``'s within ``atol``."""
    reference = dict(expected.named_parameters())
    for name, value in got.named_parameters():
        torch.testing.assert_close(value, reference[name], rtol=0, atol=atol, msg=name)
