"""Writes every validation response, scored, to ``results.json`` and a markdown table; resumes finished samples."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from longvila_r1.evaluation.results import DEFAULT_GROUP_BY, EvalResults

log = logging.getLogger(__name__)


class EvalResultsWriter(Callback):
    """Collects the responses of validation and writes them with their scoring and a summary.

    At the end of each validation, ``output_dir/results.json`` holds every sample (id, category, duration,
    answer, response, extracted letter, correct, well formatted; see :mod:`longvila_r1.evaluation.results`) and
    ``output_dir/results.md`` the accuracy table (overall, per category, duration bucket and benchmark group,
    format rate) with the run's settings and its time per sample. During ``fit`` each validation writes to
    ``output_dir/step<global step>``.

    With ``resume`` (``validate`` only) a rerun skips the samples already in ``output_dir``, including
    those a killed run left in its partial files, and merges its new samples with them: the eval set is filtered
    by id before its first batch is read. The logged ``val/...`` scalars cover the samples of this run; the files
    cover all.

    The module's ``validation_step`` must return ``{"responses": [str, ...]}`` (one per sample of the batch), and
    may add ``"sampled_responses": [[str, ...], ...]`` (``k`` sampled answers per sample, see
    :class:`~longvila_r1.modules.VideoPolicyModule`'s ``eval_samples``: their letters and ``pass@k`` / ``maj@k``
    are written too); and
    the data module must expose its eval dataset as ``eval_set`` (batches carry ``indices`` into it), as
    :class:`~longvila_r1.data.LongVideoReasonDataModule` does.

    Args:
        output_dir: directory of ``results.json`` and ``results.md``.
        resume: skip samples whose results exist in ``output_dir``.
        group_by: record ``extra`` fields that get their own table rows (VideoMME's task type, domain, ...).
        duration_buckets: buckets of the duration rows, see :class:`~longvila_r1.evaluation.metrics.DurationBuckets`.

    Example:
        .. code-block:: yaml

            trainer:
              callbacks:
                - class_path: longvila_r1.callbacks.EvalResultsWriter
                  init_args:
                    output_dir: outputs/eval/longvideo_reason
    """

    def __init__(
        self,
        output_dir: str,
        resume: bool = True,
        group_by: Sequence[str] = DEFAULT_GROUP_BY,
        duration_buckets: Mapping[str, float | None] | None = None,
    ) -> None:
        if not str(output_dir).strip():
            raise ValueError("output_dir must be a directory path, got an empty string")
        self.output_dir = Path(output_dir)
        self.resume = resume
        self._group_by, self._duration_buckets = tuple(group_by), duration_buckets
        self.results = EvalResults(output_dir, group_by, duration_buckets)
        self._samples: list[dict[str, Any]] = []
        self._start = 0.0

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not self.resume or stage != "validate":
            return
        dataset = _eval_set(trainer)
        # Every rank must drop the same samples, whatever file system it sees: rank 0 decides.
        finished = trainer.strategy.broadcast(self.results.finished_ids() if trainer.is_global_zero else None)
        kept = [record for record in dataset.records if record.id not in finished]
        if len(kept) < len(dataset.records):
            done = len(dataset.records) - len(kept)
            rank_zero_info(f"EvalResultsWriter: skipping {done} sample(s) already in {self.output_dir}")
            dataset.records = kept

    @override
    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._samples = []
        self._start = time.perf_counter()

    @override
    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: dict[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking or batch["size"] == 0:
            return
        if not isinstance(outputs, Mapping) or len(outputs.get("responses", ())) != batch["size"]:
            raise RuntimeError(
                "EvalResultsWriter needs validation_step to return {'responses': [...]} with one response per "
                f"sample; {type(pl_module).__name__}.validation_step returned {type(outputs).__name__}"
            )
        records = _eval_set(trainer).records
        sampled = outputs.get("sampled_responses") or [None] * batch["size"]
        if len(sampled) != batch["size"]:
            raise RuntimeError(
                f"EvalResultsWriter: {type(pl_module).__name__}.validation_step returned {len(sampled)} lists of "
                f"sampled responses for a batch of {batch['size']} samples"
            )
        samples = [
            self.results.score(records[i], text, sampled_responses=extra)
            for i, text, extra in zip(batch["indices"], outputs["responses"], sampled, strict=True)
        ]
        self._samples += samples
        if self._resumable(trainer):
            self.results.append_partial(trainer.global_rank, samples)

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        wall_s = time.perf_counter() - self._start
        samples = _gather(self._samples, trainer.world_size)
        if trainer.is_global_zero:
            results = self._target(trainer)
            new = len({sample["id"] for sample in samples})
            meta = self._meta(trainer, pl_module, new, wall_s)
            summary = results.write(samples, meta, merge=self._resumable(trainer))
            rank_zero_info(
                f"EvalResultsWriter: {summary['num_samples']} sample(s), accuracy {100 * summary['acc']:.1f}%, "
                f"written to {results.json_path}"
            )
        trainer.strategy.barrier("eval_results_written")

    def _resumable(self, trainer: pl.Trainer) -> bool:
        return self.resume and trainer.state.fn == "validate"

    def _target(self, trainer: pl.Trainer) -> EvalResults:
        # A validation inside fit scores a different model each time: its own directory, never merged.
        if trainer.state.fn != "fit":
            return self.results
        return EvalResults(self.output_dir / f"step{trainer.global_step}", self._group_by, self._duration_buckets)

    def _meta(self, trainer: pl.Trainer, pl_module: pl.LightningModule, new: int, wall_s: float) -> dict[str, Any]:
        data = getattr(trainer.datamodule, "hparams", {})
        model = getattr(pl_module, "hparams", {})
        return {
            "model": model.get("path"),
            "module": type(pl_module).__name__,
            "benchmark": data.get("benchmark", "longvideo_reason"),
            "eval_file": data.get("eval_file"),
            "num_frames": data.get("num_frames"),
            "fps": data.get("fps"),
            "max_new_tokens": model.get("eval_max_new_tokens"),
            "sampled_answers": model.get("eval_samples") or None,
            "sampling_temperature": model.get("eval_temperature") if model.get("eval_samples") else None,
            "subtitles": data.get("subtitle_dir") is not None,
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "samples_this_run": new,
            "wall_s": round(wall_s, 3),
            "seconds_per_sample": round(wall_s / new, 4) if new else None,
        }


def _eval_set(trainer: pl.Trainer) -> Any:
    dataset = getattr(trainer.datamodule, "eval_set", None)
    if dataset is None or not hasattr(dataset, "records"):
        raise RuntimeError(
            "EvalResultsWriter needs a data module with an `eval_set` dataset of records (after setup), such as "
            "LongVideoReasonDataModule or BenchmarkDataModule"
        )
    return dataset


def _gather(samples: list[dict[str, Any]], world_size: int) -> list[dict[str, Any]]:
    if world_size == 1 or not (dist.is_available() and dist.is_initialized()):
        return samples
    gathered: list[list[dict[str, Any]] | None] = [None] * world_size
    dist.all_gather_object(gathered, samples)
    return [sample for rank_samples in gathered for sample in rank_samples or ()]
