"""The LightningDataModule that serves LongVideo-Reason (train split) and its eval split."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader
from typing_extensions import override

from longvila_r1.data.collate import VideoBatchCollator
from longvila_r1.data.dataset import ON_ERROR, TASKS, FrameSampling, LongVideoReasonDataset
from longvila_r1.data.perception import WithPerceptionTargets, load_synth_settings
from longvila_r1.data.processing import load_model_processing
from longvila_r1.data.records import load_records_with_report
from longvila_r1.data.sampler import ResumableSampler

log = logging.getLogger(__name__)


class LongVideoReasonDataModule(pl.LightningDataModule):
    """LongVideo-Reason records as batches for CoT-SFT (``task="sft"``) or GRPO (``task="rl"``).

    The train split feeds ``train_dataloader``; the eval split (with category labels) feeds ``val`` and
    ``test``. Bad records and videos raise or are skipped and counted (``on_error``); the counts are printed
    at the end of a stage and available as :attr:`skipped`. The train sampler shards over data-parallel ranks
    only and resumes mid-epoch at the exact sample (its position is saved in checkpoints).

    Args:
        data_dir: directory holding the split files and the videos they name.
        model_path: ``"tiny"`` or a local model directory; the tokenizer and video preprocessing come from it
            (LightningCLI links it to ``model.path``).
        model_family: architecture of a preset model (linked to ``model.family``); picks its preprocessing.
        task: ``"sft"`` or ``"rl"``.
        train_file / eval_file: split files under ``data_dir`` (``.jsonl``, ``.json`` or ``.parquet``).
        num_frames / fps / max_frames / video_backend: frame sampling, see :class:`FrameSampling`.
        batch_size / eval_batch_size: samples per batch (per data-parallel rank).
        num_workers: DataLoader worker processes.
        on_error: ``"raise"`` or ``"skip"`` bad records and videos.
        max_length: maximum tokens of one sample; longer ones are errors (raise or skip).
        max_eval_samples: evaluate on the first N eval records only (``None``: all).
        video_cache_bytes: per-worker memory for preprocessed videos, so each video is decoded once rather than
            once per question and epoch (``0``: no cache). About 0.6 MB per 16-frame 56x56 video.
        perception_targets: give every training sample the per-token perception targets of its video
            (``batch["targets"]``), for CoT-SFT's auxiliary perception loss (``model.perception_loss_weights``).
            Only for sets written by ``longvila-r1 data synth``, whose scenes the targets are read from.
        seed: shuffling seed; ``None`` (the default) takes the run's ``seed_everything`` under the CLI, 0 elsewhere.

    Example:
        .. code-block:: yaml

            data:
              class_path: longvila_r1.data.LongVideoReasonDataModule
              init_args:
                data_dir: outputs/demo/data
                task: sft
                num_frames: 16
                batch_size: 8
    """

    def __init__(
        self,
        data_dir: str = "outputs/demo/data",
        model_path: str = "tiny",
        model_family: str | None = None,
        task: Literal["sft", "rl"] = "sft",
        train_file: str = "train.jsonl",
        eval_file: str = "eval.jsonl",
        num_frames: int | None = 16,
        fps: float | None = None,
        max_frames: int | None = None,
        video_backend: Literal["auto", "decord", "pyav"] = "auto",
        batch_size: int = 4,
        eval_batch_size: int = 8,
        num_workers: int = 0,
        on_error: Literal["raise", "skip"] = "raise",
        max_length: int | None = None,
        max_eval_samples: int | None = None,
        video_cache_bytes: int = 0,
        perception_targets: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if video_cache_bytes < 0:
            raise ValueError(f"video_cache_bytes must be >= 0 (0 disables the cache), got {video_cache_bytes}")
        self.save_hyperparameters()
        self.frames = FrameSampling(num_frames=num_frames, fps=fps, max_frames=max_frames, backend=video_backend)
        self.skipped: dict[str, int] = {"records": 0, "samples": 0}
        self._consumed, self._consumed_epoch = 0, 0
        self._resume_state: dict[str, Any] | None = None
        self._sampler: ResumableSampler | None = None
        self.train_set: LongVideoReasonDataset | None = None
        self.eval_set: LongVideoReasonDataset | None = None

    @property
    def data_dir(self) -> Path:
        return Path(self.hparams.data_dir)

    @override
    def setup(self, stage: str) -> None:
        tokenizer, processor = load_model_processing(self.hparams.model_path, self.hparams.model_family)
        self.tokenizer = tokenizer
        common = {
            "tokenizer": tokenizer,
            "frames": self.frames,
            "processor": processor,
            "on_error": self.hparams.on_error,
            "max_length": self.hparams.max_length,
            "video_cache_bytes": self.hparams.video_cache_bytes,
        }
        if stage == "fit" and self.train_set is None:
            self.train_set = LongVideoReasonDataset(
                self._load(self.hparams.train_file), task=self.hparams.task, **common
            )
            if self.hparams.perception_targets:
                self.train_set = WithPerceptionTargets(self.train_set, load_synth_settings(self.data_dir))
        if self.eval_set is None:
            records = self._load(self.hparams.eval_file)[: self.hparams.max_eval_samples]
            self.eval_set = LongVideoReasonDataset(records, task="rl", **common)

    def _load(self, name: str) -> list:
        path = self.data_dir / name
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found; write a synthetic set with `longvila-r1 data synth --output-dir {self.data_dir}` "
                "or point data.data_dir at your data"
            )
        report = load_records_with_report(path, on_error=self.hparams.on_error)
        self.skipped["records"] += report.num_skipped
        return report.records

    @override
    def train_dataloader(self) -> DataLoader:
        dp_size, dp_rank = self._data_parallel()
        self._sampler = ResumableSampler(
            len(self.train_set), seed=self.hparams.seed or 0, num_replicas=dp_size, rank=dp_rank
        )
        if self._resume_state is not None:
            self._sampler.load_state_dict(self._resume_state)
            self._consumed, self._consumed_epoch = self._resume_state["consumed"], self._resume_state["epoch"]
            self._resume_state = None
        # RL batches are prompts to generate from, so they end together (left padding) like the eval batches.
        # (Subclasses without text, such as stage 0's perception data, have no task and no padding.)
        side = "left" if self.hparams.get("task") == "rl" else "right"
        return self._loader(
            self.train_set, self.hparams.batch_size, self._sampler, padding_side=side, loader_class=ResumingDataLoader
        )

    @override
    def val_dataloader(self) -> DataLoader:
        return self._eval_loader()

    @override
    def test_dataloader(self) -> DataLoader:
        return self._eval_loader()

    def _eval_loader(self) -> DataLoader:
        dp_size, dp_rank = self._data_parallel()
        sampler = ResumableSampler(len(self.eval_set), shuffle=False, num_replicas=dp_size, rank=dp_rank)
        return self._loader(self.eval_set, self.hparams.eval_batch_size, sampler, padding_side="left")

    def _loader(
        self, dataset, batch_size: int, sampler, padding_side: str, loader_class: type[DataLoader] = DataLoader
    ) -> DataLoader:
        collate = self._collator(padding_side)
        workers = self.hparams.num_workers
        return loader_class(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate,
            persistent_workers=workers > 0,
        )

    def _collator(self, padding_side: str):
        # Generation needs prompts that end together (left padding); training pads on the right.
        return VideoBatchCollator(self.tokenizer.pad_token_id, padding_side=padding_side)

    def _data_parallel(self) -> tuple[int, int]:
        """(size, rank) of the data-parallel axis: the strategy's layout when it has one, else every rank."""
        trainer = self.trainer
        if trainer is None:
            return 1, 0
        layout = getattr(trainer.strategy, "parallel_layout", None)
        if layout is not None:
            return layout.dp_size, layout.dp_rank
        return trainer.world_size, trainer.global_rank

    @override
    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        # Runs in the main process, so counts from DataLoader workers arrive here with their batch.
        skipped = batch.get("skipped", [])
        for reason in skipped:
            log.warning("skipped %s", reason)
        self.skipped["samples"] += len(skipped)
        if self.trainer is not None and self.trainer.training and self._sampler is not None:
            if self._sampler.epoch != self._consumed_epoch:  # a new epoch: its position starts at zero
                self._consumed_epoch, self._consumed = self._sampler.epoch, 0
            self._consumed += batch["size"] + len(skipped)
        return batch

    @override
    def state_dict(self) -> dict[str, Any]:
        epoch = self._sampler.epoch if self._sampler is not None else 0
        return {"sampler": {"epoch": epoch, "consumed": self._consumed}, "skipped": dict(self.skipped)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_state = dict(state_dict["sampler"])
        self.skipped.update(state_dict.get("skipped", {}))

    @override
    def teardown(self, stage: str) -> None:
        if any(self.skipped.values()):
            rank_zero_info(
                f"LongVideoReasonDataModule ({stage}): skipped {self.skipped['records']} malformed record(s) and "
                f"{self.skipped['samples']} sample(s) with unreadable videos or over-long prompts (on_error=skip)"
            )


class ResumingDataLoader(DataLoader):
    """The training loader: it resumes mid-epoch, through its data module.

    The position (samples consumed in the epoch) is the data module's checkpoint state, which sets up the
    sampler before this loader exists. Having ``state_dict`` / ``load_state_dict`` tells Lightning so: without
    them it warns on every mid-epoch resume that the loader "is not resumable" and results may be unreliable,
    which is not true here.
    """

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass  # the data module restored the position already
