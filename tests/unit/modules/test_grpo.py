"""GRPOModule: a real few-step run, one encoding per video per step, cache reuse, reference stays frozen."""

from __future__ import annotations

import warnings

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from _grpo_fit import fit_grpo, grpo_data
from longvila_r1.callbacks import RolloutCallback
from longvila_r1.data.records import load_records
from longvila_r1.modules import GRPOModule
from longvila_r1.modules.grpo_batch import RolloutBatch, merge_rollouts, reward_inputs, select_groups
from longvila_r1.rewards import AccuracyReward, FormatReward, Reward, RewardError

GROUP = 4


def _module(module_class: type[GRPOModule] = GRPOModule, **kwargs) -> GRPOModule:
    defaults = {"path": "tiny", "group_size": GROUP, "max_new_tokens": 12, "eval_max_new_tokens": 8}
    return module_class(**{**defaults, **kwargs})


def _count_vision_calls(module: GRPOModule) -> list[int]:
    calls = [0]
    module.policy.vision_tower.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_grpo_steps_log_every_metric_and_encode_each_video_once(synth_dir, tmp_path):
    module = _module(freeze_vision=True)
    calls = _count_vision_calls(module)
    before = {n: p.detach().clone() for n, p in module.policy.named_parameters()}
    trainer = fit_grpo(module, synth_dir, tmp_path, steps=3)
    # 3 steps x 2 prompts, each video encoded once for G rollouts + old/ref log-probs + the update.
    assert calls[0] <= 3 * 2
    events = EventAccumulator(str(trainer.logger.log_dir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {
        "rollout/reward",
        "rollout/reward/accuracy",
        "rollout/reward/format",
        "rollout/accuracy",
        "rollout/response_len",
        "train/loss",
        "train/kl",
        "train/clipfrac",
        "train/entropy",
        "cache/hit_rate",
        "timing/encode_s",
        "timing/generate_s",
        "timing/logprob_s",
        "timing/update_s",
    }
    assert expected <= tags, expected - tags
    assert "rollout/samples/text_summary" in events.Tags()["tensors"]  # sample generations as text
    changed = [n for n, p in module.policy.named_parameters() if not torch.equal(p, before[n])]
    assert changed and not any(".visual." in n for n in changed)  # frozen vision untouched
    reference = module._reference[0]
    assert all(torch.equal(p, before[n]) for n, p in reference.named_parameters())


def test_frozen_vision_reuses_cached_embeddings_across_epochs(synth_dir, tmp_path):
    records = load_records(synth_dir / "train.jsonl")
    steps_per_epoch = -(-len(records) // 2)
    module = _module(freeze_vision=True)
    calls = _count_vision_calls(module)
    calls_per_epoch = []
    module.on_train_epoch_end = lambda: calls_per_epoch.append(calls[0])
    fit_grpo(module, synth_dir, tmp_path, steps=2 * steps_per_epoch, max_epochs=2)
    stats = module.embedding_cache.stats()
    # Each video is encoded once, the first time it is seen; epoch 2 is served from the cache entirely.
    assert stats["misses"] == len({r.videos for r in records}) and stats["hits"] > 0
    assert calls_per_epoch[0] <= steps_per_epoch and calls_per_epoch[1] == calls_per_epoch[0]


def test_training_vision_reencodes_once_per_prompt_with_gradients(synth_dir, tmp_path):
    module = _module(freeze_vision=False)
    calls = _count_vision_calls(module)
    vision_before = [p.detach().clone() for p in module.policy.vision_parameters()]
    fit_grpo(module, synth_dir, tmp_path, steps=1)
    # Once without grad for rollout + old/ref log-probs, once with grad for the update: per prompt, not per sample.
    assert calls[0] == 2
    assert any(not torch.equal(a, b) for a, b in zip(vision_before, module.policy.vision_parameters(), strict=True))


class _Exploding(Reward):
    def score(self, sample):
        raise RuntimeError("boom")


def test_a_failing_reward_names_itself_or_counts_as_zero(synth_dir, tmp_path):
    module = _module(rewards=[AccuracyReward(), _Exploding()])
    with pytest.raises(RewardError, match="exploding"):
        fit_grpo(module, synth_dir, tmp_path, steps=1)
    lenient = _module(rewards=[FormatReward(), _Exploding()], reward_on_error="zero")
    fit_grpo(lenient, synth_dir, tmp_path / "zero", steps=1)


def test_invalid_arguments_are_named():
    with pytest.raises(ValueError, match="advantage_mode must be one of"):
        _module(advantage_mode="ppo")
    with pytest.raises(ValueError, match="group_size must be >= 2"):
        _module(group_size=1)


class _LengthParity(Reward):
    """A reward that differs within most groups, so dynamic sampling keeps some and drops others."""

    def score(self, sample):
        return float(sample.response_length % 2)


def test_dynamic_sampling_refills_from_the_next_batches(synth_dir, tmp_path):
    module = _module(rewards=[_LengthParity()], dynamic_sampling=True, max_sampling_rounds=2)
    trainer = fit_grpo(module, synth_dir, tmp_path, steps=2, max_epochs=1)
    events = EventAccumulator(str(trainer.logger.log_dir))
    events.Reload()
    rounds = [e.value for e in events.Scalars("rollout/sampling_rounds")]
    kept = [e.value for e in events.Scalars("rollout/kept_groups")]
    assert rounds and all(1 <= r <= 2 for r in rounds)
    assert all(0 <= k <= 2 for k in kept)  # never more than B=2 groups per update


def test_merged_rollouts_score_like_the_originals(synth_dir):
    dm = grpo_data(synth_dir)
    dm.setup("fit")
    loader = iter(dm.train_dataloader())
    module = _module()
    policy = module.policy.eval()
    parts, originals, references = [], [], []
    for batch in (next(loader), next(loader)):
        references += [reference for reference in batch["references"] for _ in range(GROUP)]
        embeddings = module.encode_batch_videos(batch)
        out = policy.generate(
            batch["input_ids"],
            batch["attention_mask"],
            batch["mm_token_type_ids"],
            embeddings,
            max_new_tokens=6,
            num_return_sequences=GROUP,
            seed=0,
        )
        texts = policy.tokenizer.batch_decode(out.response_ids, skip_special_tokens=True)
        parts.append(RolloutBatch.from_generation(out, texts, batch, GROUP))
        originals.append(
            policy.response_logprobs(
                out.sequences,
                out.attention_mask,
                out.mm_token_type_ids,
                out.video_embeddings,
                prompt_lengths=out.prompt_length,
            )[:, out.prompt_length - 1 :]
        )  # [R, L_i] response positions
    merged = merge_rollouts(parts, policy.tokenizer.pad_token_id)
    out = merged.output
    logp = policy.response_logprobs(
        out.sequences,
        out.attention_mask,
        out.mm_token_type_ids,
        out.video_embeddings,
        prompt_lengths=out.prompt_length,
    )[:, out.prompt_length - 1 :]
    start = 0
    for original in originals:
        rows = logp[start : start + original.shape[0], : original.shape[1]]
        torch.testing.assert_close(rows, original, rtol=0, atol=1e-5)
        start += original.shape[0]
    assert merged.num_prompts == 4 and len(merged.texts) == 4 * GROUP
    # The records' reference chains reach the rewards, row-aligned, through merging and group selection.
    assert all(references) and [s.reference for s in reward_inputs(merged)] == references
    assert select_groups(merged, [3, 1], GROUP).references == references[3 * GROUP :] + references[GROUP : 2 * GROUP]


def test_old_and_reference_logprobs_use_the_sampling_temperature(synth_dir):
    assert _module(temperature=0).logprob_temperature == 1.0  # greedy rollouts: plain log-probs
    module = _module(temperature=0.5)
    module.setup("fit")  # builds the frozen reference copy
    assert module.logprob_temperature == 0.5
    dm = grpo_data(synth_dir)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    embeddings = module.encode_batch_videos(batch)
    out = module.policy.eval().generate(
        batch["input_ids"], batch["attention_mask"], batch["mm_token_type_ids"], embeddings, max_new_tokens=6, seed=0
    )
    texts = module.tokenizer.batch_decode(out.response_ids, skip_special_tokens=True)
    rollout = RolloutBatch.from_generation(out, texts, batch, 1)
    old, ref = module.reference_logprobs(rollout)
    inputs = (out.sequences, out.attention_mask, out.mm_token_type_ids, out.video_embeddings)
    cooled = module.policy.response_logprobs(*inputs, prompt_lengths=out.prompt_length, temperature=0.5)
    plain = module.policy.response_logprobs(*inputs, prompt_lengths=out.prompt_length)
    torch.testing.assert_close(old, cooled, rtol=0, atol=1e-6)
    torch.testing.assert_close(ref, cooled, rtol=0, atol=1e-6)  # the reference starts as a copy of the policy
    assert not torch.allclose(old, plain)


class _ScoresTheOldPolicySeparately(GRPOModule):
    """The general path: a no-grad old-policy pass before the update, as with several PPO epochs."""

    @property
    def single_update(self) -> bool:
        return False


def test_a_single_update_skips_the_old_policy_pass_and_trains_the_same(synth_dir, tmp_path):
    module, general = _module(), _module(_ScoresTheOldPolicySeparately)
    assert module.single_update and not _module(ppo_epochs=2).single_update
    assert not _module(mini_batch_prompts=1).single_update
    passes = [0, 0]
    for index, each in enumerate((module, general)):
        each.response_logprobs = _counting(each.response_logprobs, passes, index)
        fit_grpo(each, synth_dir, tmp_path / str(index), steps=3)
    # Per step: reference + update, against old + reference + update.
    assert passes == [2 * 3, 3 * 3]
    for (name, param), other in zip(module.policy.named_parameters(), general.policy.parameters(), strict=True):
        torch.testing.assert_close(param, other, rtol=0, atol=1e-6, msg=name)


def _counting(method, counts: list[int], index: int):
    def counted(*args, **kwargs):
        counts[index] += 1
        return method(*args, **kwargs)

    return counted


def _resumable_fit(module, synth_dir, root, steps: int, save_every: int | None = None, ckpt_path=None):
    callbacks = [RolloutCallback()]
    if save_every:
        callbacks.append(ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=save_every, save_top_k=-1))
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        callbacks=callbacks,
        enable_checkpointing=bool(save_every),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=root,
    )
    trainer.fit(module, datamodule=grpo_data(synth_dir), ckpt_path=ckpt_path)
    return trainer


class _TextLengthParity(Reward):
    """Differs within most groups even when every response runs to the token limit (the random model's do)."""

    def score(self, sample):
        return float(len(sample.response) % 2)


RESUME_SETTINGS = {
    # Two optimizer steps per batch (two mini-batches of one prompt).
    "mini-batches": {"mini_batch_prompts": 1},
    # Updates that wait for informative groups over several batches (no step for a batch that fills nothing).
    "dynamic sampling": {"dynamic_sampling": True, "rewards": [_TextLengthParity()], "max_sampling_rounds": 2},
}


@pytest.mark.parametrize("settings", list(RESUME_SETTINGS.values()), ids=list(RESUME_SETTINGS))
def test_resume_from_checkpoint_equals_an_uninterrupted_run(synth_dir, tmp_path, settings):
    settings = {**settings, "temperature": 1.0, "max_new_tokens": 8}
    straight = _module(**settings)
    _resumable_fit(straight, synth_dir, tmp_path / "a", steps=6)
    with warnings.catch_warnings(record=True) as caught:
        _resumable_fit(_module(**settings), synth_dir, tmp_path / "b", steps=6, save_every=1)
    # The after-step checkpoint is the one to resume from, so Lightning's manual-optimisation warning is muted.
    assert not [w for w in caught if "manual optimization" in str(w.message)]
    # The first checkpoint from step 2 on (a dynamic-sampling update may take one or two steps).
    saved = {int(path.stem.split("step=")[1]): path for path in (tmp_path / "b" / "ckpt").glob("*.ckpt")}
    mid_run = saved[min(step for step in saved if 2 <= step < 6)]
    pl.seed_everything(123)  # the resumed run must not depend on the seed state at restart
    resumed = _module(**settings)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = _resumable_fit(resumed, synth_dir, tmp_path / "c", steps=6, ckpt_path=mid_run)
    assert not [w for w in caught if "not resumable" in str(w.message)]  # Lightning knows the loader resumes
    assert trainer.global_step == 6
    initial = {n: p.detach().clone() for n, p in _module(**settings).policy.named_parameters()}
    expected = {n: p.detach() for n, p in straight.policy.named_parameters()}
    assert any(not torch.equal(expected[n], initial[n]) for n in expected), "training did not change any weight"
    for name, param in resumed.policy.named_parameters():
        torch.testing.assert_close(param.detach(), expected[name], rtol=0, atol=1e-6, msg=name)
    # The frozen reference is the starting policy, not the checkpoint's.
    for name, param in resumed._reference[0].named_parameters():
        torch.testing.assert_close(param, initial[name], rtol=0, atol=0, msg=name)
