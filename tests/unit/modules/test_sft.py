"""CoTSFTModule: label masking, resume equality, export round trip, generation-based validation."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from _trainers import assert_same_parameters, checkpointing_trainer, resumed_and_straight_runs
from longvila_r1.data.datamodule import LongVideoReasonDataModule
from longvila_r1.data.qwen_vl_prompt import IGNORE_INDEX
from longvila_r1.models import VideoLMPolicy
from longvila_r1.modules import CoTSFTModule, response_nll
from longvila_r1.modules.export import export_checkpoint


def _module() -> CoTSFTModule:
    return CoTSFTModule(path="tiny", seed=0, eval_max_new_tokens=8)


def _data(synth_dir, **kwargs) -> LongVideoReasonDataModule:
    return LongVideoReasonDataModule(data_dir=str(synth_dir), num_frames=8, batch_size=4, eval_batch_size=4, **kwargs)


def test_loss_is_a_per_token_mean_over_labelled_tokens():
    logprobs = -torch.rand(2, 4)  # [B, S-1]
    labels = torch.full((2, 5), IGNORE_INDEX)
    labels[0, 2:] = torch.tensor([1, 2, 3])
    labels[1, 4] = 4
    loss, count = response_nll(logprobs, labels)
    manual = torch.stack([logprobs[0, 1], logprobs[0, 2], logprobs[0, 3], logprobs[1, 3]])
    assert int(count) == 4
    torch.testing.assert_close(loss, -manual.mean())


def test_no_prompt_or_video_token_contributes_to_the_loss(synth_dir):
    dm = _data(synth_dir)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    module = _module()
    inputs = (batch["input_ids"], batch["attention_mask"], batch["mm_token_type_ids"])
    labels = batch["labels"]
    logprobs = module.response_logprobs(
        module.policy, *inputs, module.encode_batch_videos(batch), response_mask=labels != IGNORE_INDEX
    )
    predicts_label = labels[:, 1:] != IGNORE_INDEX  # [B, S-1]
    # Nothing is scored where the next token is prompt, video or padding ...
    assert (logprobs[~predicts_label] == 0).all() and (logprobs[predicts_label] < 0).all()
    video_or_prompt = torch.arange(labels.shape[1] - 1)[None] < batch["prompt_lengths"][:, None] - 1
    assert not (predicts_label & video_or_prompt).any()
    # ... and the loss is exactly the cross-entropy of the full logits on the labelled tokens.
    loss, _ = response_nll(logprobs, labels)
    logits = module.policy(*inputs, module.encode_batch_videos(batch))  # [B, S, V]
    reference = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-5)


def _parameters(module: CoTSFTModule) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.policy.named_parameters()}


def test_resume_from_checkpoint_equals_an_uninterrupted_run(synth_dir, tmp_path):
    # 40 training questions / batch 4 = 10 batches: the resume at step 3 lands mid-epoch
    straight, resumed = resumed_and_straight_runs(_module, lambda: _data(synth_dir), tmp_path)
    initial = _parameters(_module())
    expected = _parameters(straight)
    assert any(not torch.equal(expected[n], initial[n]) for n in expected), "training did not change any weight"
    assert_same_parameters(straight, resumed)


def test_validation_logs_accuracy_per_category_and_format_rate(synth_dir, tmp_path):
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    metrics = trainer.validate(_module(), datamodule=_data(synth_dir), verbose=False)[0]
    assert {"val/acc", "val/format_rate"} <= set(metrics)
    assert any(key.startswith("val/acc/") for key in metrics)
    assert all(0.0 <= value <= 1.0 for value in metrics.values())


def test_export_round_trip(synth_dir, tmp_path):
    from transformers import AutoModelForImageTextToText

    module = _module()
    checkpointing_trainer(tmp_path, 2).fit(module, datamodule=_data(synth_dir))
    out = export_checkpoint(tmp_path / "ckpt" / "last.ckpt", tmp_path / "hf")
    assert (out / "video_preprocessor_config.json").is_file() and (out / "chat_template.jinja").is_file()

    dm = _data(synth_dir, model_path=str(out))
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    inputs = (batch["input_ids"], batch["attention_mask"], batch["mm_token_type_ids"])
    module.policy.eval()
    with torch.no_grad():
        reference = module.policy(*inputs, module.encode_batch_videos(batch))
        hf_model = AutoModelForImageTextToText.from_pretrained(out).eval()
        hf_logits = hf_model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            mm_token_type_ids=batch["mm_token_type_ids"],
            pixel_values_videos=batch["pixel_values_videos"],
            video_grid_thw=batch["video_grid_thw"],
            second_per_grid_ts=batch["second_per_grid_ts"],
        ).logits
        reloaded = VideoLMPolicy.build(str(out)).eval()
        seconds = batch["second_per_grid_ts"]
        reloaded_logits = reloaded(
            *inputs, reloaded.encode_video(batch["pixel_values_videos"], batch["video_grid_thw"], seconds)
        )
    torch.testing.assert_close(hf_logits, reference, rtol=0, atol=1e-5)
    torch.testing.assert_close(reloaded_logits, reference, rtol=0, atol=0)


def test_export_rejects_a_foreign_checkpoint(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ValueError, match="not written by a longvila-r1 module"):
        export_checkpoint(path, tmp_path / "out")


def test_validation_with_sampled_answers_logs_pass_and_majority(synth_dir):
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    module = CoTSFTModule(path="tiny", seed=0, eval_max_new_tokens=8, eval_samples=3, eval_temperature=1.0)
    first = trainer.validate(module, datamodule=_data(synth_dir), verbose=False)[0]
    assert {"val/acc", "val/sample_acc", "val/pass@3", "val/maj@3"} <= set(first)
    assert first["val/sample_acc"] <= first["val/pass@3"] and first["val/maj@3"] <= first["val/pass@3"]
    again = trainer.validate(module, datamodule=_data(synth_dir), verbose=False)[0]
    assert again == first  # sampling is seeded per batch: a rerun scores the same samples


def test_sampled_answers_come_from_the_same_prompts_as_the_greedy_ones(synth_dir):
    data = _data(synth_dir)
    data.setup("validate")
    batch = next(iter(data.val_dataloader()))
    module = CoTSFTModule(path="tiny", seed=0, eval_max_new_tokens=6, eval_samples=3, eval_temperature=1e-4)
    embeddings = module.encode_batch_videos(batch)
    greedy = module.generate_answers(batch, embeddings)
    near_greedy = module.sample_answers(batch, embeddings, batch_idx=0)
    # At a tiny temperature every sample is its prompt's greedy response: rows are grouped per prompt, in order.
    assert near_greedy == [[text] * 3 for text in greedy]
    module.hparams.eval_temperature = 1.0
    sampled = module.sample_answers(batch, embeddings, batch_idx=0)
    assert len(sampled) == batch["size"] and all(len(samples) == 3 for samples in sampled)
    assert any(len(set(samples)) > 1 for samples in sampled), "temperature 1 should vary the samples"
    assert sampled == module.sample_answers(batch, embeddings, batch_idx=0)  # seeded per batch


@pytest.mark.parametrize(("samples", "temperature"), [(-1, 1.0), (2, 0.0)])
def test_rejects_invalid_sampled_validation_settings(samples, temperature):
    with pytest.raises(ValueError, match="eval_samples must be >= 0 and eval_temperature > 0"):
        CoTSFTModule(path="tiny", eval_samples=samples, eval_temperature=temperature)


@pytest.mark.parametrize("field", ["patch_size", "merge_size", "temporal_patch_size"])
def test_rejects_preset_overrides_that_change_the_video_patching(field):
    # The data module preprocesses by the preset's name; a tower built for other patches would fail deep inside.
    with pytest.raises(ValueError, match=f"preset_overrides \\['{field}'\\] change the video patching"):
        CoTSFTModule(path="tiny", preset_overrides={field: 4})
    assert (
        CoTSFTModule(path="tiny", preset_overrides={"text_layers": 1}).policy.model.config.text_config.num_hidden_layers
        == 1
    )


def test_vision_lr_scale_puts_the_vision_tower_in_its_own_scaled_group():
    from functools import partial

    from longvila_r1.optim import WarmupCosineLR

    module = CoTSFTModule(
        path="tiny",
        vision_lr_scale=5.0,
        optimizer=partial(torch.optim.AdamW, lr=1e-3),
        lr_scheduler=partial(WarmupCosineLR, warmup_steps=2, total_steps=10),
    )
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    language, vision = optimizer.param_groups
    assert {id(p) for p in vision["params"]} == {id(p) for p in module.policy.vision_parameters()}
    assert len(language["params"]) + len(vision["params"]) == len(list(module.policy.parameters()))
    assert scheduler.base_lrs == pytest.approx([1e-3, 5e-3])
    for _ in range(2):  # end of warm-up: both groups at their peak, in the same ratio
        optimizer.step()
        scheduler.step()
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([1e-3, 5e-3])
    # A frozen vision tower has no group of its own; the default keeps a single group.
    frozen = CoTSFTModule(path="tiny", vision_lr_scale=5.0, freeze_vision=True).configure_optimizers()
    assert len(frozen["optimizer"].param_groups) == 1
    assert len(CoTSFTModule(path="tiny").configure_optimizers()["optimizer"].param_groups) == 1
    with pytest.raises(ValueError, match="vision_lr_scale must be > 0"):
        CoTSFTModule(path="tiny", vision_lr_scale=0.0)
