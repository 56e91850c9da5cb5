"""VisionPretrainModule (stage 0): losses, what it trains, that it learns, resume, export to the SFT stage."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from _trainers import assert_same_parameters, checkpointing_trainer, resumed_and_straight_runs
from longvila_r1.data.perception_datamodule import SyntheticPerceptionDataModule
from longvila_r1.data.synth.perception import IGNORE_INDEX, PerceptionTargets
from longvila_r1.models import VideoLMPolicy
from longvila_r1.modules import VisionPretrainModule
from longvila_r1.modules.export import export_checkpoint
from longvila_r1.modules.vision_pretrain import perception_losses, perception_stats

NAN = float("nan")


def _targets() -> PerceptionTargets:
    return PerceptionTargets(
        count=torch.tensor([0, 1, 2]),
        colour=torch.tensor([IGNORE_INDEX, 3, IGNORE_INDEX]),
        shape=torch.tensor([IGNORE_INDEX, 1, IGNORE_INDEX]),
        offset=torch.tensor([[NAN, NAN], [0.25, 0.75], [NAN, NAN]]),
        size=torch.tensor([NAN, 0.5, NAN]),
    )


def _outputs() -> dict[str, torch.Tensor]:
    count = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.0, 2.0]])  # tokens 0 and 2 right, 1 wrong
    colour = torch.zeros(3, 9)
    colour[1, 3] = 1.0
    shape = torch.zeros(3, 5)
    shape[1, 0] = 1.0  # wrong
    offset = torch.tensor([[9.0, 9.0], [0.5, 0.5], [9.0, 9.0]])  # only the labelled token counts
    size = torch.tensor([9.0, 0.25, 9.0])
    return {"count": count, "colour": colour, "shape": shape, "offset": offset, "size": size}


def test_losses_against_hand_computed_values():
    losses = perception_losses(_outputs(), _targets())
    log_softmax = torch.log_softmax
    expected_count = -(log_softmax(_outputs()["count"], -1)[[0, 1, 2], [0, 1, 2]]).mean()
    torch.testing.assert_close(losses["count"], expected_count)
    torch.testing.assert_close(losses["colour"], -log_softmax(_outputs()["colour"][1], -1)[3])
    torch.testing.assert_close(losses["shape"], -log_softmax(_outputs()["shape"][1], -1)[1])
    torch.testing.assert_close(losses["offset"], torch.tensor(0.25))  # (|0.5-0.25| + |0.5-0.75|) / 2
    torch.testing.assert_close(losses["size"], torch.tensor(0.25))
    stats = perception_stats(_outputs(), _targets()).tolist()
    assert stats == [3.0, 2.0, 1.0, 1.0, 0.0, 0.0, 0.25, 0.25]


def test_losses_without_a_single_object_are_zero_and_finite():
    targets = _targets()
    targets.colour[:] = IGNORE_INDEX
    outputs = {name: value.clone().requires_grad_() for name, value in _outputs().items()}
    losses = perception_losses(outputs, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["colour"].item() == losses["offset"].item() == 0.0
    sum(losses.values()).backward()  # still one graph: every rank can run the same backward


def test_rejects_unknown_or_negative_loss_weights():
    with pytest.raises(ValueError, match="loss_weights"):
        VisionPretrainModule(path="tiny", loss_weights={"colour": 1.0, "texture": 1.0})
    with pytest.raises(ValueError, match="loss_weights"):
        VisionPretrainModule(path="tiny", loss_weights={"size": -1.0})


def _data(synth_dir, **kwargs) -> SyntheticPerceptionDataModule:
    args = {"data_dir": str(synth_dir), "model_path": "demo", "num_frames": 8, "batch_size": 2, "eval_batch_size": 4}
    return SyntheticPerceptionDataModule(**(args | kwargs))


def _module(**kwargs) -> VisionPretrainModule:
    return VisionPretrainModule(path="demo", **kwargs)


def test_trains_the_tower_and_learns_to_perceive(synth_dir, tmp_path):
    pl.seed_everything(0)
    module = _module(optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3))
    language = {n: p.detach().clone() for n, p in module.policy.named_parameters() if "visual" not in n}
    vision = {n: p.detach().clone() for n, p in module.policy.vision_tower.named_parameters()}
    # Validate on the training videos: 60 steps must take the colour read-out well above chance (1/9).
    data = _data(synth_dir, eval_file="train.jsonl")
    before = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    untrained = before.validate(module, datamodule=data, verbose=False)[0]
    trainer = checkpointing_trainer(
        tmp_path, 60, limit_val_batches=None, val_check_interval=60, check_val_every_n_epoch=None
    )
    trainer.fit(module, datamodule=data)
    trained = trainer.callback_metrics
    assert {"val/count_acc", "val/colour_acc", "val/shape_acc", "val/object_acc", "val/offset_mae"} <= set(untrained)
    assert trained["val/colour_acc"] > max(0.5, untrained["val/colour_acc"] + 0.2), (untrained, dict(trained))
    assert trained["val/loss"] < untrained["val/loss"]
    # The language model is frozen and untouched; the tower moved.
    for name, value in module.policy.named_parameters():
        if name in language:
            assert torch.equal(value, language[name]) and not value.requires_grad, name
    assert any(not torch.equal(p, vision[n]) for n, p in module.policy.vision_tower.named_parameters())


def test_resume_from_checkpoint_equals_an_uninterrupted_run(synth_dir, tmp_path):
    # 10 training videos / batch 2 = 5 batches: the resume at step 3 lands mid-epoch
    straight, resumed = resumed_and_straight_runs(_module, lambda: _data(synth_dir), tmp_path)
    assert_same_parameters(straight, resumed)


def test_export_writes_the_trained_tower_without_the_heads(synth_dir, tmp_path):
    module = _module()
    checkpointing_trainer(tmp_path, 2).fit(module, datamodule=_data(synth_dir))
    out = export_checkpoint(tmp_path / "ckpt" / "last.ckpt", tmp_path / "hf")
    reloaded = VideoLMPolicy.build(str(out))
    trained = dict(module.policy.named_parameters())
    for name, value in reloaded.named_parameters():
        torch.testing.assert_close(value, trained[name], rtol=0, atol=0, msg=name)
    assert not any("heads" in name for name in reloaded.state_dict())
    # The SFT stage starts from it with the demo preset's preprocessing.
    dm = _data(synth_dir, model_path=str(out))
    dm.setup("validate")
    assert next(iter(dm.val_dataloader()))["pixel_values_videos"].shape[1] == 3 * 2 * 14 * 14
