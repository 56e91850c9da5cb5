"""Stage 0 of the CPU demo: teach a random-init vision tower to perceive, before CoT-SFT and GRPO.

Real Qwen-VL checkpoints come with a pretrained vision tower; the demo's tiny model does not, and CoT-SFT alone
teaches it little perception (the README's demo section: its reasoning chains get the colour of the first
object right 43% of the time). This stage trains the tower, through small linear heads on its merged-token
embeddings, on the per-token targets of :mod:`longvila_r1.data.synth.perception`. The language model is frozen
and untouched; ``longvila-r1 export`` writes the whole policy (without the heads), ready for ``model.path`` of
the SFT stage.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from typing_extensions import override

from longvila_r1.data.synth.perception import (
    COLOUR_CLASSES,
    COUNT_CLASSES,
    IGNORE_INDEX,
    SHAPE_CLASSES,
    PerceptionTargets,
)
from longvila_r1.models import VideoLMPolicy
from longvila_r1.modules.policy_module import VideoPolicyModule

LOSS_NAMES = ("count", "colour", "shape", "offset", "size")


def check_loss_weights(
    loss_weights: dict[str, float] | None, default: float = 1.0, field: str = "loss_weights"
) -> dict[str, float]:
    """The weight of every perception target's loss: the named ones as given, the others ``default``.

    Example:
        >>> check_loss_weights({"colour": 0.5}, default=0.0)
        {'count': 0.0, 'colour': 0.5, 'shape': 0.0, 'offset': 0.0, 'size': 0.0}

    Raises:
        ValueError: an unknown target, or a weight that is negative or not a number.
    """
    weights = dict(loss_weights or {})
    unknown = sorted(set(weights) - set(LOSS_NAMES))
    if unknown or any(not w >= 0 for w in weights.values()):
        raise ValueError(f"{field} takes non-negative weights for {LOSS_NAMES}, got {loss_weights}")
    return {name: float(weights.get(name, default)) for name in LOSS_NAMES}


def weighted_loss(losses: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """``sum(weights[name] * losses[name])`` over the targets."""
    return sum(weights[name] * value for name, value in losses.items())


class PerceptionHeads(nn.Module):
    """Linear read-outs of every merged video token: object count, colour, shape, centre offset and size.

    Example:
        >>> heads = PerceptionHeads(hidden_size=32)
        >>> {name: tuple(out.shape) for name, out in heads(torch.zeros(6, 32)).items()}
        {'count': (6, 3), 'colour': (6, 9), 'shape': (6, 5), 'offset': (6, 2), 'size': (6,)}
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.count = nn.Linear(hidden_size, COUNT_CLASSES)
        self.colour = nn.Linear(hidden_size, COLOUR_CLASSES)
        self.shape = nn.Linear(hidden_size, SHAPE_CLASSES)
        self.offset = nn.Linear(hidden_size, 2)
        self.size = nn.Linear(hidden_size, 1)

    @classmethod
    def for_policy(cls, policy: VideoLMPolicy) -> PerceptionHeads:
        """Heads sized and typed for ``policy``'s merged video tokens (which are as wide as its language model)."""
        heads = cls(policy.config.get_text_config().hidden_size)
        return heads.to(dtype=next(policy.vision_parameters()).dtype)

    def forward(self, embeds: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "count": self.count(embeds),
            "colour": self.colour(embeds),
            "shape": self.shape(embeds),
            "offset": self.offset(embeds),
            "size": self.size(embeds).squeeze(-1),
        }


def perception_losses(outputs: dict[str, torch.Tensor], targets: PerceptionTargets) -> dict[str, torch.Tensor]:
    """Per-target losses: cross-entropy for the classes, mean absolute error (in cells) for offset and size.

    Attribute losses average over the tokens holding a single object only; with none in the batch they are zero
    (and still connected to the graph, so every rank runs the same backward).

    Example:
        >>> targets = PerceptionTargets(torch.tensor([0, 1]), torch.tensor([IGNORE_INDEX, 2]),
        ...     torch.tensor([IGNORE_INDEX, 0]), torch.tensor([[float("nan")] * 2, [0.5, 0.5]]),
        ...     torch.tensor([float("nan"), 0.5]))
        >>> sizes = {"count": (2, 3), "colour": (2, 9), "shape": (2, 5), "offset": (2, 2), "size": (2,)}
        >>> losses = perception_losses({name: torch.zeros(size) for name, size in sizes.items()}, targets)
        >>> sorted(losses), losses["offset"].item(), losses["size"].item()
        (['colour', 'count', 'offset', 'shape', 'size'], 0.5, 0.5)
    """
    single = targets.single
    losses = {
        "count": F.cross_entropy(outputs["count"], targets.count),
        "colour": F.cross_entropy(outputs["colour"], targets.colour, ignore_index=IGNORE_INDEX, reduction="sum"),
        "shape": F.cross_entropy(outputs["shape"], targets.shape, ignore_index=IGNORE_INDEX, reduction="sum"),
        "offset": (outputs["offset"][single] - targets.offset[single]).abs().sum() / 2,
        "size": (outputs["size"][single] - targets.size[single]).abs().sum(),
    }
    labelled = single.sum().clamp(min=1)
    for name in ("colour", "shape", "offset", "size"):
        losses[name] = losses[name] / labelled
    return losses


def perception_stats(outputs: dict[str, torch.Tensor], targets: PerceptionTargets) -> torch.Tensor:
    """Sums for the validation metrics: ``[tokens, count hits, single tokens, colour hits, shape hits,
    both-right hits, offset abs error (x+y)/2, size abs error]`` (summed over ranks, then divided)."""
    single = targets.single
    colour_hit = (outputs["colour"].argmax(-1) == targets.colour) & single
    shape_hit = (outputs["shape"].argmax(-1) == targets.shape) & single
    return torch.stack(
        [
            torch.tensor(float(targets.count.numel()), device=single.device),
            (outputs["count"].argmax(-1) == targets.count).sum().float(),
            single.sum().float(),
            colour_hit.sum().float(),
            shape_hit.sum().float(),
            (colour_hit & shape_hit).sum().float(),
            (outputs["offset"][single] - targets.offset[single]).abs().sum() / 2,
            (outputs["size"][single] - targets.size[single]).abs().sum(),
        ]
    ).detach()


class VisionPretrainModule(VideoPolicyModule):
    """Trains the vision tower (and the heads) on per-token perception targets; the language model is frozen.

    Logs ``train/loss`` and ``train/loss/<target>``; validation logs ``val/count_acc`` (over all tokens),
    ``val/colour_acc``, ``val/shape_acc``, ``val/object_acc`` (both right), ``val/offset_mae`` and
    ``val/size_mae`` (over tokens holding one object; errors in cell widths) and ``val/loss``.

    Args:
        path / family / seed / dtype / attn_implementation / gradient_checkpointing / preset_overrides: the
            policy, as for :class:`VideoPolicyModule` (a preset such as ``"demo"``, or a local directory).
        loss_weights: weight of each target's loss (``count``, ``colour``, ``shape``, ``offset``, ``size``;
            unnamed ones weigh 1, 0 turns one off).
        optimizer / lr_scheduler: over the vision tower and the heads.

    Example:
        .. code-block:: yaml

            model:
              class_path: longvila_r1.modules.VisionPretrainModule
              init_args: {path: demo}
            data:
              class_path: longvila_r1.data.SyntheticPerceptionDataModule

        ``longvila-r1 fit --config configs/vision_pretrain.yaml``, then
        ``longvila-r1 export --ckpt outputs/vision/checkpoints/last.ckpt --output outputs/vision/hf``.
    """

    def __init__(
        self,
        path: str = "demo",
        family: str | None = None,
        seed: int | None = None,
        dtype: str = "float32",
        attn_implementation: str = "sdpa",
        gradient_checkpointing: bool = False,
        preset_overrides: dict[str, int] | None = None,
        loss_weights: dict[str, float] | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        weights = check_loss_weights(loss_weights)
        super().__init__(
            path=path,
            family=family,
            seed=seed,
            dtype=dtype,
            attn_implementation=attn_implementation,
            gradient_checkpointing=gradient_checkpointing,
            preset_overrides=preset_overrides,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
        )
        self.loss_weights = weights
        for parameter in self.policy.language_parameters():
            parameter.requires_grad_(False)
        self.heads = PerceptionHeads.for_policy(self.policy)
        self._val_sums: torch.Tensor | None = None

    def _outputs(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        embeds = self.encode_batch_videos(batch).embeds
        return {name: out.float() for name, out in self.heads(embeds).items()}

    @override
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if self.min_over_ranks(batch["size"])[0] == 0:  # every video of the batch skipped (on_error=skip)
            if self.trainer.world_size == 1:
                return None
            return sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
        losses = perception_losses(self._outputs(batch), batch["targets"])
        loss = weighted_loss(losses, self.loss_weights)
        size = batch["size"]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log_dict({f"train/loss/{name}": value for name, value in losses.items()}, batch_size=size)
        return loss

    @override
    def configure_optimizers(self) -> dict[str, Any]:
        trainable = [p for p in self.parameters() if p.requires_grad]  # the vision tower and the heads
        return self.with_lr_schedule(self.optimizer_factory(trainable))

    @override
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        if batch["size"] == 0:
            return
        outputs = self._outputs(batch)
        sums = perception_stats(outputs, batch["targets"])
        loss = weighted_loss(perception_losses(outputs, batch["targets"]), self.loss_weights)
        sums = torch.cat([sums, (loss * batch["size"]).detach().view(1), sums.new_tensor([batch["size"]])])
        self._val_sums = sums if self._val_sums is None else self._val_sums + sums

    @override
    def on_validation_epoch_end(self) -> None:
        sums = self._val_sums if self._val_sums is not None else torch.zeros(10, device=self.device)
        self._val_sums = None
        if self._trainer is not None:
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        tokens, count_hits, single, colour_hits, shape_hits, object_hits, offset_err, size_err, loss, videos = (
            sums.tolist()
        )
        single_div = max(single, 1.0)
        metrics = {
            "val/count_acc": count_hits / max(tokens, 1.0),
            "val/colour_acc": colour_hits / single_div,
            "val/shape_acc": shape_hits / single_div,
            "val/object_acc": object_hits / single_div,
            "val/offset_mae": offset_err / single_div,
            "val/size_mae": size_err / single_div,
            "val/loss": loss / max(videos, 1.0),
        }
        self.log_dict(metrics, rank_zero_only=False)  # already summed over ranks
