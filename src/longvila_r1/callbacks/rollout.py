"""The callback that owns the rollout engine and the video-embedding cache of a GRPO run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from typing_extensions import override

from longvila_r1.rollout import VideoEmbeddingCache


class RolloutCallback(Callback):
    """Engine and cache lifecycle for :class:`~longvila_r1.modules.GRPOModule`; never part of the algorithm.

    - fit start: sets up the module's rollout engine with the policy and attaches the embedding cache;
    - after optimizer steps: pushes the new weights to engines that hold their own copy (every
      ``sync_every_n_steps``; logs ``timing/weight_sync_s``), drops cached embeddings when the vision tower
      trains (their weights changed);
    - every ``log_samples_every_n_steps``: writes a few sampled responses with their rewards to TensorBoard;
    - fit end: tears the engine down and reports the cache statistics.

    Args:
        cache_max_bytes: memory budget of the in-memory LRU of video embeddings.
        cache_dir: optional directory for a persistent on-disk store (atomic writes, checksummed reads), reused
            across runs while the vision weights and preprocessing stay the same.
        sync_every_n_steps: weight-sync cadence in optimizer steps, for engines holding their own weights.
        log_samples_every_n_steps: how often sample generations go to TensorBoard (0 disables it).
        num_logged_samples: responses written each time.

    Example:
        .. code-block:: yaml

            trainer:
              callbacks:
                - class_path: longvila_r1.callbacks.RolloutCallback
                  init_args:
                    cache_max_bytes: 4294967296
                    cache_dir: outputs/embedding_cache
    """

    def __init__(
        self,
        cache_max_bytes: int = 1 << 30,
        cache_dir: str | None = None,
        sync_every_n_steps: int = 1,
        log_samples_every_n_steps: int = 10,
        num_logged_samples: int = 2,
    ) -> None:
        if cache_max_bytes < 0:
            raise ValueError(f"cache_max_bytes must be >= 0, got {cache_max_bytes}")
        if sync_every_n_steps < 1:
            raise ValueError(f"sync_every_n_steps must be >= 1, got {sync_every_n_steps}")
        if log_samples_every_n_steps < 0 or num_logged_samples < 0:
            raise ValueError("log_samples_every_n_steps and num_logged_samples must be >= 0")
        self.cache_max_bytes = cache_max_bytes
        self.cache_dir = cache_dir
        self.sync_every_n_steps = sync_every_n_steps
        self.log_samples_every_n_steps = log_samples_every_n_steps
        self.num_logged_samples = num_logged_samples
        self._last_synced_step = 0

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _require_grpo(pl_module)
        engine = pl_module.rollout_engine
        if not engine.is_setup:
            engine.setup(pl_module.policy)
        disk = None if self.cache_dir is None else Path(self.cache_dir)
        pl_module.embedding_cache = VideoEmbeddingCache(max_bytes=self.cache_max_bytes, disk_dir=disk)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        engine = pl_module.rollout_engine
        if engine.holds_own_weights and step - self._last_synced_step >= self.sync_every_n_steps:
            seconds = engine.sync_weights(pl_module.policy)
            self._last_synced_step = step
            pl_module.log("timing/weight_sync_s", seconds, batch_size=1)
        if pl_module.vision_trains and pl_module.embedding_cache is not None:
            pl_module.embedding_cache.invalidate()  # cached embeddings came from the old vision weights
        if self.log_samples_every_n_steps and batch_idx % self.log_samples_every_n_steps == 0:
            self._log_samples(trainer, pl_module, step)

    def _log_samples(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> None:
        samples = pl_module.last_samples[: self.num_logged_samples]
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger) and samples:
                text = "\n\n".join(
                    f"**{sample['id']}** (answer {sample['answer']}, reward {sample['reward']:.2f})\n\n    "
                    + sample["response"].replace("\n", "\n    ")
                    for sample in samples
                )
                logger.experiment.add_text("rollout/samples", text, global_step=step)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if pl_module.rollout_engine.is_setup:
            pl_module.rollout_engine.teardown()


def _require_grpo(pl_module: pl.LightningModule) -> None:
    if not hasattr(pl_module, "rollout_engine"):
        raise TypeError(f"RolloutCallback needs a GRPOModule, got {type(pl_module).__name__}")
