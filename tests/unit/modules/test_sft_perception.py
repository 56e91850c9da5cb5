"""CoT-SFT with the auxiliary perception loss: targets in the batches, what trains, errors, resume, export."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from _trainers import assert_same_parameters, checkpointing_trainer, resumed_and_straight_runs
from longvila_r1.data.datamodule import LongVideoReasonDataModule
from longvila_r1.models import VideoLMPolicy
from longvila_r1.modules import CoTSFTModule
from longvila_r1.modules.export import export_checkpoint
from longvila_r1.modules.vision_pretrain import perception_losses

COLOUR_AND_SHAPE = {"colour": 1.0, "shape": 1.0}


def _data(synth_dir, **kwargs) -> LongVideoReasonDataModule:
    args = {"data_dir": str(synth_dir), "model_path": "demo", "num_frames": 8, "batch_size": 2, "eval_batch_size": 4}
    return LongVideoReasonDataModule(**(args | {"perception_targets": True} | kwargs))


def _module(**kwargs) -> CoTSFTModule:
    return CoTSFTModule(**({"path": "demo", "perception_loss_weights": COLOUR_AND_SHAPE} | kwargs))


def _perception_loss(module: CoTSFTModule, batch) -> float:
    with torch.no_grad():
        outputs = module.perception_heads(module.encode_batch_videos(batch).embeds)
        losses = perception_losses(outputs, batch["targets"])
    return (losses["colour"] + losses["shape"]).item()


def test_training_batches_carry_a_target_per_merged_token_and_eval_batches_none(synth_dir):
    dm = _data(synth_dir)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    tokens = sum(int(grid.prod()) // 4 for grid in batch["video_grid_thw"])  # 2x2 merge
    assert batch["targets"].count.shape == (tokens,) and batch["targets"].single.any()
    assert "labels" in batch  # still an SFT batch
    first = dm.train_set.targets(batch["video_paths"][0], batch["frame_indices"][0], batch["video_grid_thw"][0])
    assert torch.equal(batch["targets"].count[: first.count.numel()], first.count)
    assert "targets" not in next(iter(dm.val_dataloader()))
    plain = _data(synth_dir, perception_targets=False)
    plain.setup("fit")
    assert "targets" not in next(iter(plain.train_dataloader()))


def test_the_auxiliary_loss_teaches_the_tower_and_is_logged(synth_dir, tmp_path):
    pl.seed_everything(0)
    module = _module(optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3))
    dm = _data(synth_dir)
    dm.setup("fit")
    fixed = next(iter(dm.train_dataloader()))
    before = _perception_loss(module, fixed)
    heads = {n: p.detach().clone() for n, p in module.perception_heads.named_parameters()}
    trainer = checkpointing_trainer(tmp_path, 40, log_every_n_steps=1)
    trainer.fit(module, datamodule=dm)
    after = _perception_loss(module, fixed)
    assert after < 0.6 * before, (before, after)
    assert all(not torch.equal(p, heads[n]) for n, p in module.perception_heads.named_parameters())
    logged = set(trainer.callback_metrics)
    assert {
        "train/loss",
        "train/perception_loss",
        "train/perception_loss/colour",
        "train/perception_loss/shape",
    } <= logged
    assert "train/perception_loss/count" not in logged  # weight 0: not trained, not logged


def test_without_targets_in_the_batch_the_error_says_which_setting_to_turn_on(synth_dir, tmp_path):
    with pytest.raises(ValueError, match=r"data\.perception_targets: true"):
        checkpointing_trainer(tmp_path, 1).fit(_module(), datamodule=_data(synth_dir, perception_targets=False))


def test_rejects_bad_weights_and_a_frozen_tower():
    with pytest.raises(ValueError, match="perception_loss_weights"):
        _module(perception_loss_weights={"texture": 1.0})
    with pytest.raises(ValueError, match="perception_loss_weights"):
        _module(perception_loss_weights={"colour": -0.5})
    with pytest.raises(ValueError, match="freeze_vision"):
        _module(freeze_vision=True)
    assert CoTSFTModule(path="demo").perception_heads is None  # off by default


def test_resume_equals_an_uninterrupted_run_and_export_drops_the_heads(synth_dir, tmp_path):
    # 40 training questions / batch 2: the resume at step 3 lands mid-epoch
    straight, resumed = resumed_and_straight_runs(_module, lambda: _data(synth_dir), tmp_path)
    assert any(name.startswith("perception_heads.") for name, _ in straight.named_parameters())
    assert_same_parameters(straight, resumed)
    out = export_checkpoint(tmp_path / "a" / "ckpt" / "last.ckpt", tmp_path / "hf")
    reloaded = VideoLMPolicy.build(str(out))
    assert not any("perception" in name for name in reloaded.state_dict())
    trained = dict(straight.policy.named_parameters())
    for name, value in reloaded.named_parameters():
        torch.testing.assert_close(value, trained[name], rtol=0, atol=0, msg=name)
