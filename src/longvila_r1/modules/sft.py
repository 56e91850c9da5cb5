"""Stage 1 of the recipe: long chain-of-thought supervised fine-tuning (CoT-SFT)."""

from __future__ import annotations

import time
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch.distributed.tensor import DTensor
from typing_extensions import override

from longvila_r1.data.qwen_vl_prompt import IGNORE_INDEX
from longvila_r1.modules.policy_module import VideoPolicyModule
from longvila_r1.modules.vision_pretrain import (
    PerceptionHeads,
    check_loss_weights,
    perception_losses,
    weighted_loss,
)


def response_nll(logprobs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean negative log-likelihood of the labelled tokens of the whole batch, and their count.

    Every labelled token weighs the same whatever the length of its sample (per-token average over the
    batch); positions labelled ``IGNORE_INDEX`` (system, prompt, video and padding) contribute nothing.

    Args:
        logprobs: ``[B, S-1]`` log-prob of each next token (entry ``t`` scores token ``t+1``), zero where not
            scored, as ``VideoLMPolicy.response_logprobs`` returns them.
        labels: ``[B, S]`` target ids aligned with the inputs, ``IGNORE_INDEX`` where nothing is learned.

    Example:
        >>> labels = torch.tensor([[IGNORE_INDEX, 1, 2]])
        >>> loss, n = response_nll(torch.tensor([[-1.0, -3.0]]), labels); loss.item(), int(n)
        (2.0, 2)
    """
    scored = labels[:, 1:] != IGNORE_INDEX  # [B, S-1]
    count = scored.sum()
    return -(logprobs * scored).sum() / count.clamp(min=1), count


class CoTSFTModule(VideoPolicyModule):
    """Cross-entropy on the assistant tokens (reasoning + answer) given the question and the video.

    The optimizer and LR schedule come from the YAML (LightningCLI injects ``configure_optimizers``). Logs
    ``train/loss``, ``train/tokens_per_s`` (all tokens processed, prompt and video included) and
    ``train/response_tokens``; the LR is logged by the ``LearningRateMonitor`` callback of ``configs/sft.yaml``.

    On a synthetic set, ``perception_loss_weights`` adds an auxiliary loss: linear heads on the merged video
    tokens (:class:`~longvila_r1.modules.vision_pretrain.PerceptionHeads`) predict each token's object count,
    colour, shape, offset and size, so the vision tower learns what the chains have to name while it learns with
    the language model. It needs ``data.perception_targets: true``; the total, ``train/perception_loss``, and
    each weighted target, ``train/perception_loss/<target>``, are logged beside ``train/loss`` (the response
    NLL alone). The heads are for training only: ``export`` writes the policy without them.

    Args:
        perception_loss_weights: weight of each target's loss (``count``, ``colour``, ``shape``, ``offset``,
            ``size``; unnamed ones weigh 0). ``None`` (default): no auxiliary loss.
        the others: as for :class:`VideoPolicyModule`.

    Example:
        .. code-block:: yaml

            model:
              class_path: longvila_r1.modules.CoTSFTModule
              init_args:
                path: tiny          # or /models/Qwen2.5-VL-7B-Instruct
                freeze_vision: false
            optimizer:
              class_path: torch.optim.AdamW
              init_args: {lr: 1.0e-3}

        ``longvila-r1 fit --config configs/sft.yaml``
    """

    _step_started: float | None = None
    _window_batches = 0  # batches with data since the last optimizer step (gradient accumulation window)

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
        perception_loss_weights: dict[str, float] | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        weights = None
        if perception_loss_weights is not None:
            weights = check_loss_weights(perception_loss_weights, default=0.0, field="perception_loss_weights")
            if freeze_vision:
                raise ValueError(
                    "perception_loss_weights trains the vision tower through its heads; with freeze_vision: true "
                    "it would train the heads only. Unfreeze the tower or drop perception_loss_weights"
                )
        super().__init__(
            path=path,
            family=family,
            seed=seed,
            dtype=dtype,
            attn_implementation=attn_implementation,
            freeze_vision=freeze_vision,
            gradient_checkpointing=gradient_checkpointing,
            preset_overrides=preset_overrides,
            eval_max_new_tokens=eval_max_new_tokens,
            eval_samples=eval_samples,
            eval_temperature=eval_temperature,
            vision_lr_scale=vision_lr_scale,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
        )
        self.perception_loss_weights = weights
        self.perception_heads = PerceptionHeads.for_policy(self.policy) if weights is not None else None

    @override
    def auxiliary_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.perception_heads.parameters()) if self.perception_heads is not None else []

    def _zero_step_loss(self) -> torch.Tensor:
        # Lightning refuses a step that returns None in distributed training, so every rank runs a backward whose
        # gradients are all zero; on_before_optimizer_step then drops them, so the optimizer leaves every weight
        # and moment as it was (as a skipped step in a single process does).
        trainable = [p for p in self.policy.parameters() if p.requires_grad]
        heads = sum(p.sum() for p in self.auxiliary_parameters()) * 0.0  # their gradients are reduced too
        if any(isinstance(p, DTensor) for p in trainable):
            # Sharded: gradients must come through the sharded modules' forward, whose backward hooks
            # reduce-scatter them; a one-token text forward runs every decoder layer.
            ids = torch.full((1, 1), self.tokenizer.pad_token_id, dtype=torch.long, device=self.device)
            return self.policy.model(input_ids=ids).logits.sum() * 0.0 + heads
        return sum(p.sum() for p in trainable) * 0.0 + heads

    @override
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._step_started = time.perf_counter()

    @override
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        # Every sample of the batch was skipped (on_error=skip), here or on another rank: all ranks skip together
        # (a rank that stepped alone would wait forever for the others' gradients).
        if self.min_over_ranks(batch["size"])[0] == 0:
            if self.trainer.world_size == 1:
                return None
            return self._zero_step_loss()
        self._window_batches += 1
        embeddings = self.encode_batch_videos(batch)  # the vision tower runs once per video, with gradients
        labels = batch["labels"]
        # Only the labelled tokens reach the LM head (no [B, S, V] logits); sequence-parallel under MR-SP.
        logprobs = self.response_logprobs(
            self.policy,
            batch["input_ids"],
            batch["attention_mask"],
            batch["mm_token_type_ids"],
            embeddings,
            response_mask=labels != IGNORE_INDEX,
        )  # [B, S-1]
        loss, response_tokens = response_nll(logprobs, labels)
        size = batch["size"]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/response_tokens", response_tokens.float(), batch_size=size)
        if self.perception_heads is not None:
            loss = loss + self._perception_loss(batch, embeddings.embeds)
        return loss

    def _perception_loss(self, batch: dict[str, Any], embeds: torch.Tensor) -> torch.Tensor:
        targets = batch.get("targets")
        if targets is None:
            raise ValueError(
                "model.perception_loss_weights needs per-token perception targets in the batch: set "
                "data.perception_targets: true (synthetic sets written by `longvila-r1 data synth` only)"
            )
        outputs = {name: out.float() for name, out in self.perception_heads(embeds).items()}
        losses = perception_losses(outputs, targets)
        weights = self.perception_loss_weights
        total = weighted_loss(losses, weights)
        size = batch["size"]
        self.log("train/perception_loss", total, batch_size=size)
        self.log_dict(
            {f"train/perception_loss/{name}": weights[name] * value for name, value in losses.items() if weights[name]},
            batch_size=size,
        )
        return total

    @override
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self._window_batches == 0:
            # Only zero steps since the last update (all ranks agree): without gradients AdamW skips every
            # parameter, so neither momentum nor weight decay moves a weight, sharded or not, vision trained or not.
            optimizer.zero_grad(set_to_none=True)
        self._window_batches = 0

    @override
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._step_started is None or batch.get("size", 0) == 0:
            return
        tokens = float(batch["attention_mask"].sum())
        elapsed = max(time.perf_counter() - self._step_started, 1e-9)
        self.log("train/tokens_per_s", tokens / elapsed, batch_size=batch["size"])
