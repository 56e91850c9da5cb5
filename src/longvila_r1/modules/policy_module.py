"""The LightningModule base shared by CoT-SFT and GRPO: the policy, generation-based validation, export."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from typing_extensions import override

from longvila_r1.data.processing import processor_config_for, save_processor_config
from longvila_r1.evaluation.metrics import VideoQAMetrics
from longvila_r1.evaluation.sampled_metrics import SampledAnswerMetrics
from longvila_r1.models import VideoEmbeddings, VideoLMPolicy
from longvila_r1.parallel import group_rank, sequence_parallel_logprobs, sharded_encode_video
from longvila_r1.strategies.mrsp import sequence_parallel_group

log = logging.getLogger(__name__)
CHECKPOINT_KEY = "longvila_r1"
# Preset fields the data preprocessing must agree with; `preset_overrides` may not change them.
PATCHING_FIELDS = ("patch_size", "merge_size", "temporal_patch_size")


class VideoPolicyModule(pl.LightningModule):
    """Holds a :class:`VideoLMPolicy` and validates it by generating answers to the eval split.

    Validation decodes greedily (``eval_max_new_tokens`` tokens, long enough for the reasoning), extracts the
    answer letter and logs ``val/acc``, ``val/acc/<category>`` and ``val/format_rate``. With ``eval_samples=k``
    it also samples ``k`` answers per question from the same video embeddings and logs ``val/sample_acc``,
    ``val/pass@k`` and ``val/maj@k`` (:class:`~longvila_r1.evaluation.SampledAnswerMetrics`): the headroom a
    GRPO stage has before it runs. Subclasses add the training step.

    Args:
        path: ``"tiny"``/``"small"`` (random init from a config in code) or a local Hugging Face model directory.
        family: architecture of a preset: ``"qwen2_5_vl"`` (default), ``"qwen2_vl"`` or ``"qwen3_vl"``.
        seed: weight-initialisation seed of a preset; ``None`` (the default) takes the run's ``seed_everything``
            under ``longvila-r1 fit|validate|test`` and 0 elsewhere.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` or ``"auto"`` (the checkpoint's).
        attn_implementation: ``"sdpa"`` (default), ``"eager"`` or ``"flash_attention_2"``.
        freeze_vision: keep the vision tower fixed.
        gradient_checkpointing: recompute activations in backward to save memory.
        preset_overrides: sizes of a preset to change, e.g. ``{"text_layers": 4}``.
        eval_max_new_tokens: generation budget per validation answer.
        eval_samples: sampled answers per validation question on top of the greedy one (0: greedy only).
        eval_temperature: sampling temperature of those answers (set it to the GRPO stage's).
        vision_lr_scale: the vision tower's learning rate as a multiple of the optimizer's (its parameters form a
            second parameter group; the LR schedule scales both groups alike). ``1.0`` trains everything alike.
        optimizer: optimizer factory over the trainable parameters (YAML ``class_path``, default AdamW).
        lr_scheduler: optional LR schedule factory, stepped every optimizer step (e.g.
            :class:`~longvila_r1.optim.WarmupCosineLR`).
    """

    def __init__(
        self,
        path: str = "tiny",
        family: str | None = None,
        seed: int | None = None,
        dtype: str = "float32",
        attn_implementation: str = "sdpa",
        freeze_vision: bool = False,
        gradient_checkpointing: bool = False,
        preset_overrides: dict[str, int] | None = None,
        eval_max_new_tokens: int = 256,
        eval_samples: int = 0,
        eval_temperature: float = 1.0,
        vision_lr_scale: float = 1.0,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        if eval_max_new_tokens < 1:
            raise ValueError(f"eval_max_new_tokens must be >= 1, got {eval_max_new_tokens}")
        if eval_samples < 0 or eval_temperature <= 0:
            raise ValueError(
                f"eval_samples must be >= 0 and eval_temperature > 0, got {eval_samples} and {eval_temperature}"
            )
        if not vision_lr_scale > 0:
            raise ValueError(f"vision_lr_scale must be > 0, got {vision_lr_scale}")
        patching = sorted(set(preset_overrides or {}) & set(PATCHING_FIELDS))
        if patching:
            # The data module preprocesses by the preset's name (`processor_config_for(path)`), which knows nothing
            # of the overrides: a changed patching would feed 14-px patches to a tower built for others and fail
            # deep inside the vision tower's patch embedding, and `export` would write the wrong processor config.
            raise ValueError(
                f"preset_overrides {patching} change the video patching, which the data preprocessing of "
                f"path={path!r} does not follow; override only the model's sizes (layers, widths, heads)"
            )
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.optimizer_factory, self.lr_scheduler_factory = optimizer, lr_scheduler
        self.policy = VideoLMPolicy.build(
            path,
            family,
            seed=0 if seed is None else seed,
            dtype=dtype,
            attn_implementation=attn_implementation,
            freeze_vision=freeze_vision,
            gradient_checkpointing=gradient_checkpointing,
            **(preset_overrides or {}),
        )
        self.val_metrics = VideoQAMetrics()
        self.sampled_val_metrics = SampledAnswerMetrics(eval_samples) if eval_samples else None

    @property
    def tokenizer(self):
        return self.policy.tokenizer

    @property
    def sp_group(self):
        """The sequence-parallel process group of the MR-SP strategy; ``None`` when running unsharded."""
        return sequence_parallel_group(self._trainer)

    @property
    def dp_rank(self) -> int:
        """This process's rank on the data-parallel axis (all ranks of an sp group share it)."""
        layout = getattr(self._trainer.strategy, "parallel_layout", None) if self._trainer is not None else None
        return layout.dp_rank if layout is not None else self.global_rank

    def min_over_ranks(self, *values: int) -> list[int]:
        """Each value's minimum over all ranks (the values themselves in a single process).

        Ranks must take the same path through a training step (their gradients are reduced together), so
        per-rank decisions such as "this batch lost every sample to on_error=skip" are made on the minimum.
        """
        if self._trainer is None:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.long, device=self.device)
        return self.trainer.strategy.reduce(tensor, reduce_op="min").tolist()  # as is on a single device

    def encode_batch_videos(self, batch: dict[str, Any]) -> VideoEmbeddings:
        """Video embeddings of a collated batch (the vision tower runs here, frame-sharded under MR-SP)."""
        seconds = batch["second_per_grid_ts"] if self.policy.family == "qwen2_5_vl" else None
        pixels, grid = batch["pixel_values_videos"], batch["video_grid_thw"]
        return sharded_encode_video(self.policy, pixels, grid, seconds, group=self.sp_group)

    def response_logprobs(self, policy: VideoLMPolicy, *args: Any, **kwargs: Any) -> torch.Tensor:
        """``policy.response_logprobs`` run sequence-parallel under MR-SP (identical result, sharded activations)."""
        return sequence_parallel_logprobs(policy, *args, group=self.sp_group, **kwargs)

    @override
    def configure_optimizers(self) -> dict[str, Any]:
        scale = self.hparams.vision_lr_scale
        vision = [p for p in self.policy.vision_parameters() if p.requires_grad]
        extra = [p for p in self.auxiliary_parameters() if p.requires_grad]
        if scale == 1.0 or not vision:
            # One group in the model's parameter order (the order checkpointed optimizer states index by).
            optimizer = self.optimizer_factory([p for p in self.policy.parameters() if p.requires_grad] + extra)
        else:
            # The factory sets the base lr on every group; the vision group is rescaled before the LR schedule
            # is built, so the schedule reads the scaled rate as that group's initial rate.
            language = [p for p in self.policy.language_parameters() if p.requires_grad]
            optimizer = self.optimizer_factory([{"params": language + extra}, {"params": vision}])
            optimizer.param_groups[1]["lr"] *= scale
        return self.with_lr_schedule(optimizer)

    def auxiliary_parameters(self) -> list[torch.nn.Parameter]:
        """Trained parameters outside the policy (training-only heads), optimised with the language model."""
        return []

    def with_lr_schedule(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """``configure_optimizers``' answer for ``optimizer`` and the configured LR schedule, if any."""
        if self.lr_scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.lr_scheduler_factory(optimizer)
        # LLM schedules are defined in optimizer steps, not epochs.
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    @override
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, list] | None:
        if batch["size"] == 0:
            return None
        embeddings = self.encode_batch_videos(batch)
        responses = self.generate_answers(batch, embeddings)
        # EvalResultsWriter reads these (the `outputs` of on_validation_batch_end).
        outputs = {"responses": responses}
        if self.sampled_val_metrics is not None:
            outputs["sampled_responses"] = self.sample_answers(batch, embeddings, batch_idx)
        if group_rank(self.sp_group) != 0:  # all ranks of an sp group answer the same samples: count them once
            return outputs
        self.val_metrics.update(
            responses, batch["answers"], batch["categories"], batch["options"], durations=batch.get("durations")
        )
        if self.sampled_val_metrics is not None:
            self.sampled_val_metrics.update(outputs["sampled_responses"], batch["answers"], batch["options"])
        return outputs

    @torch.no_grad()
    def generate_answers(self, batch: dict[str, Any], embeddings: VideoEmbeddings) -> list[str]:
        """Greedy responses to a left-padded batch of prompts, from the batch's encoded videos."""
        return self._decoded_responses(batch, embeddings, do_sample=False)

    @torch.no_grad()
    def sample_answers(self, batch: dict[str, Any], embeddings: VideoEmbeddings, batch_idx: int) -> list[list[str]]:
        """``eval_samples`` sampled responses per prompt, seeded by batch so that reruns sample the same."""
        k = self.hparams.eval_samples
        texts = self._decoded_responses(
            batch,
            embeddings,
            do_sample=True,
            temperature=self.hparams.eval_temperature,
            num_return_sequences=k,
            seed=1_000_003 * self.dp_rank + batch_idx,  # ranks of an sp group share it and sample the same
        )
        return [texts[row : row + k] for row in range(0, len(texts), k)]

    def _decoded_responses(self, batch: dict[str, Any], embeddings: VideoEmbeddings, **sampling: Any) -> list[str]:
        out = self.policy.generate(
            batch["input_ids"],
            batch["attention_mask"],
            batch["mm_token_type_ids"],
            embeddings,
            max_new_tokens=self.hparams.eval_max_new_tokens,
            **sampling,
        )
        return self.tokenizer.batch_decode(out.response_ids * out.response_mask, skip_special_tokens=True)

    @override
    def on_validation_epoch_end(self) -> None:
        # The metrics already sum their states over processes, so the logged values need no further sync.
        results = self.val_metrics.compute()
        if self.sampled_val_metrics is not None:
            results.update(self.sampled_val_metrics.compute())
            self.sampled_val_metrics.reset()
        self.log_dict({f"val/{name}": value for name, value in results.items()}, rank_zero_only=False)
        self.val_metrics.reset()

    @override
    def on_train_epoch_end(self) -> None:
        # Samples dropped under data.on_error=skip are counted by the data module; make them visible in TensorBoard.
        skipped = getattr(self.trainer.datamodule, "skipped", None) if self.trainer is not None else None
        if skipped:
            # Every rank loads all records (the same count everywhere) but reads only its share of the samples: the
            # logged sample count is the sum over ranks, the record count any rank's (a plain log kept rank 0's).
            self.log("data/skipped_records", float(skipped["records"]), sync_dist=True, reduce_fx="max")
            self.log("data/skipped_samples", float(skipped["samples"]), sync_dist=True, reduce_fx="sum")

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Export rebuilds the module from the checkpoint alone, so it needs the class next to the weights.
        cls = type(self)
        checkpoint[CHECKPOINT_KEY] = {"module_class": f"{cls.__module__}.{cls.__qualname__}"}

    def export(self, output_dir: str | Path) -> Path:
        """Write the policy as a Hugging Face directory (weights, config, tokenizer, chat template, processor)."""
        output_dir = Path(output_dir)
        self.policy.save_pretrained(output_dir)
        save_processor_config(processor_config_for(self.hparams.path, self.policy.family), output_dir)
        return output_dir
