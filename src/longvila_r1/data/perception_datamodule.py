"""The LightningDataModule of stage 0: the distinct videos of a synthetic set, with per-token perception targets."""

from __future__ import annotations

from typing import Literal

from typing_extensions import override

from longvila_r1.data.datamodule import LongVideoReasonDataModule
from longvila_r1.data.perception import PerceptionBatchCollator, SyntheticPerceptionDataset, load_synth_settings
from longvila_r1.data.processing import load_model_processing


class SyntheticPerceptionDataModule(LongVideoReasonDataModule):
    """Videos of the train split for training, of the eval split for validation, one item per video.

    Everything but the items is :class:`LongVideoReasonDataModule`'s: the model's preprocessing (linked to
    ``model.path``), the resumable data-parallel sampler, ``on_error`` skip-and-count, the video cache.

    Args:
        data_dir: a set written by ``longvila-r1 data synth`` (its ``synth_config.json`` regenerates the scenes).
        model_path / model_family: whose video preprocessing to use (linked to the model's by the CLI).
        train_file / eval_file: the splits whose videos are read.
        num_frames / fps / max_frames / video_backend: frame sampling, as for the later stages.
        batch_size / eval_batch_size: videos per batch (per data-parallel rank).
        num_workers: DataLoader worker processes.
        on_error: ``"raise"`` or ``"skip"`` unreadable videos.
        video_cache_bytes: per-worker memory for preprocessed videos (each is decoded once, not once per epoch).
        seed: shuffling seed; ``None`` (the default) takes the run's ``seed_everything`` under the CLI, 0 elsewhere.

    Example:
        .. code-block:: yaml

            data:
              class_path: longvila_r1.data.SyntheticPerceptionDataModule
              init_args:
                data_dir: outputs/demo/data
                num_frames: 16
                batch_size: 8
    """

    def __init__(
        self,
        data_dir: str = "outputs/demo/data",
        model_path: str = "demo",
        model_family: str | None = None,
        train_file: str = "train.jsonl",
        eval_file: str = "eval.jsonl",
        num_frames: int | None = 16,
        fps: float | None = None,
        max_frames: int | None = None,
        video_backend: Literal["auto", "decord", "pyav"] = "auto",
        batch_size: int = 8,
        eval_batch_size: int = 16,
        num_workers: int = 0,
        on_error: Literal["raise", "skip"] = "raise",
        video_cache_bytes: int = 0,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            data_dir=data_dir,
            model_path=model_path,
            model_family=model_family,
            task="rl",  # no text targets; only sets the (unused) padding side
            train_file=train_file,
            eval_file=eval_file,
            num_frames=num_frames,
            fps=fps,
            max_frames=max_frames,
            video_backend=video_backend,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            on_error=on_error,
            video_cache_bytes=video_cache_bytes,
            seed=seed,
        )

    @override
    def setup(self, stage: str) -> None:
        settings = load_synth_settings(self.data_dir)
        _, processor = load_model_processing(self.hparams.model_path, self.hparams.model_family)
        common = {
            "settings": settings,
            "frames": self.frames,
            "processor": processor,
            "on_error": self.hparams.on_error,
            "video_cache_bytes": self.hparams.video_cache_bytes,
        }
        if stage == "fit" and self.train_set is None:
            self.train_set = SyntheticPerceptionDataset(self._load(self.hparams.train_file), **common)
        if self.eval_set is None:
            self.eval_set = SyntheticPerceptionDataset(self._load(self.hparams.eval_file), **common)

    @override
    def _collator(self, padding_side: str) -> PerceptionBatchCollator:
        return PerceptionBatchCollator()
