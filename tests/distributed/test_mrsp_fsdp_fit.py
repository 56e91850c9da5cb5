"""MRSPStrategy(shard_parameters=True): short Trainer fits on 2 CPU processes match the same fits under DDP.

- CoT-SFT, sp=2 (dp=1), frozen vision tower (left unsharded): 2 AdamW steps with a checkpoint after each; the
  losses and final weights equal the DDP run's; the checkpoint holds full weights and optimizer state; resuming
  from the step-1 checkpoint ends at the same weights; ``export`` of the last checkpoint gives those weights.
- GRPO, sp=1 (dp=2): the two ranks roll out different prompts with different token budgets, so their
  generations stop after different numbers of decoding steps; two optimizer steps per batch (manual
  optimization) for 2 batches; losses and final weights equal the DDP run's.

Tolerances (fp32): losses atol 1e-6; weights atol 1e-6, rtol 1e-5 (FSDP vs DDP); resume within 1e-7; export
exact. Measured: FSDP and DDP losses and weights bit-identical for both fits; the resumed run bit-identical.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.distributed as dist

from longvila_r1.data.datamodule import LongVideoReasonDataModule
from longvila_r1.data.records import load_records
from longvila_r1.data.sampler import ResumableSampler
from longvila_r1.models import VideoLMPolicy
from longvila_r1.modules import CoTSFTModule, GRPOModule
from longvila_r1.modules.export import export_checkpoint
from longvila_r1.rewards import Reward
from longvila_r1.rollout import TransformersEngine
from longvila_r1.strategies import MRSPStrategy

WEIGHT_TOL = {"atol": 1e-6, "rtol": 1e-5}
LOSS_TOL = {"atol": 1e-6, "rtol": 0}
METRICS = ("train/loss", "train/kl", "rollout/response_len", "rollout/kept_groups", "rollout/sampling_rounds")


class _MetricRecorder(pl.Callback):
    """Each rank's logged metrics after every batch, written to ``workdir/metrics{rank}.pt`` (spawned ranks
    return nothing else to the test)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.rows = workdir, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        metrics = trainer.callback_metrics
        self.rows.append({k: float(metrics[k]) for k in METRICS if k in metrics})

    def on_train_end(self, trainer, pl_module) -> None:
        torch.save(self.rows, self.workdir / f"metrics{trainer.global_rank}.pt")
        # Epoch-level metrics (logged after the last batch), for the tests that read them.
        final = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("data/")}
        torch.save(final, self.workdir / f"final_metrics{trainer.global_rank}.pt")


def _fit(module, datamodule, workdir: Path, sp: int, shard: bool, max_steps: int, ckpt_path=None) -> list:
    workdir.mkdir(parents=True, exist_ok=True)
    callbacks = [_MetricRecorder(workdir)]
    if ckpt_path is None:
        callbacks.append(
            pl.callbacks.ModelCheckpoint(dirpath=workdir / "ckpt", save_last=True, save_top_k=-1, every_n_train_steps=1)
        )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=MRSPStrategy(sequence_parallel_size=sp, shard_parameters=shard, start_method="spawn"),
        max_steps=max_steps,
        logger=False,
        callbacks=callbacks,
        enable_checkpointing=ckpt_path is None,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=workdir,
    )
    pl.seed_everything(0)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return [torch.load(workdir / f"metrics{rank}.pt") for rank in range(2)]


def _weights(module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.policy.named_parameters()}


def _assert_weights_close(got: dict, want: dict, **tol) -> None:
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, **tol, msg=lambda detail, name=name: f"{name}: {detail}")


def _assert_metrics_close(got: list, want: list) -> None:
    assert [sorted(row) for rank in got for row in rank] == [sorted(row) for rank in want for row in rank]
    for rank_got, rank_want in zip(got, want, strict=True):
        for row_got, row_want in zip(rank_got, rank_want, strict=True):
            for key, value in row_want.items():
                torch.testing.assert_close(row_got[key], value, **LOSS_TOL, msg=key)


def _sft_module(freeze_vision: bool = True) -> CoTSFTModule:
    return CoTSFTModule(path="tiny", seed=0, freeze_vision=freeze_vision, eval_max_new_tokens=8)


def _sft_data(synth_dir) -> LongVideoReasonDataModule:
    return LongVideoReasonDataModule(data_dir=str(synth_dir), num_frames=8, batch_size=2, eval_batch_size=2)


@pytest.fixture(scope="module")
def sft_runs(synth_dir, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("sft")
    runs = {}
    for name, shard in (("fsdp", True), ("ddp", False)):
        module = _sft_module()
        runs[name] = {"metrics": _fit(module, _sft_data(synth_dir), root / name, 2, shard, 2), "module": module}
    resumed = _sft_module()
    step1 = root / "fsdp" / "ckpt" / "epoch=0-step=1.ckpt"
    metrics = _fit(resumed, _sft_data(synth_dir), root / "resumed", 2, True, 2, ckpt_path=step1)
    runs["resumed"] = {"metrics": metrics, "module": resumed}
    runs["root"] = root
    return runs


def test_sft_sharded_fit_matches_ddp(sft_runs):
    fsdp, ddp = sft_runs["fsdp"], sft_runs["ddp"]
    assert len(fsdp["metrics"][0]) == 2
    _assert_metrics_close(fsdp["metrics"], ddp["metrics"])
    initial = _weights(_sft_module())
    got = _weights(fsdp["module"])
    assert any(not torch.equal(got[n], initial[n]) for n in got), "training changed no weight"
    _assert_weights_close(got, _weights(ddp["module"]), **WEIGHT_TOL)


def test_sft_checkpoint_is_full_and_resumes(sft_runs):
    ckpt = torch.load(sft_runs["root"] / "fsdp" / "ckpt" / "last.ckpt", weights_only=False)
    expected = _weights(sft_runs["fsdp"]["module"])
    state = {key.removeprefix("policy."): value for key, value in ckpt["state_dict"].items()}
    assert set(state) >= set(expected) and all(type(t) is torch.Tensor for t in state.values())
    _assert_weights_close(state, expected, atol=0, rtol=0)
    optimizer_state = ckpt["optimizer_states"][0]["state"]
    trainable = {n: p for n, p in sft_runs["fsdp"]["module"].policy.named_parameters() if p.requires_grad}
    assert {key.removeprefix("policy."): s["exp_avg"].shape for key, s in optimizer_state.items()} == {
        n: p.shape for n, p in trainable.items()
    }
    # Resumed at step 1, it takes step 2 with the restored weights and AdamW moments.
    _assert_metrics_close(sft_runs["resumed"]["metrics"], [rows[1:] for rows in sft_runs["fsdp"]["metrics"]])
    _assert_weights_close(_weights(sft_runs["resumed"]["module"]), expected, atol=1e-7, rtol=0)


def test_sft_sharded_checkpoint_exports(sft_runs):
    root = sft_runs["root"]
    out = export_checkpoint(root / "fsdp" / "ckpt" / "last.ckpt", root / "hf")
    exported = VideoLMPolicy.build(str(out))
    got = {name: p.detach() for name, p in exported.named_parameters()}
    _assert_weights_close(got, _weights(sft_runs["fsdp"]["module"]), atol=0, rtol=0)


class _UnevenBudgetEngine(TransformersEngine):
    """Rank ``r`` decodes at most ``6 + 6 r`` tokens. The random tiny model never samples EOS early, so without
    this every rank would run exactly ``max_new_tokens`` decoding steps."""

    def _generate(self, *inputs):
        *prompts, params = inputs
        return super()._generate(*prompts, dataclasses.replace(params, max_new_tokens=6 + 6 * dist.get_rank()))


def _grpo_module() -> GRPOModule:
    return GRPOModule(
        path="tiny",
        rollout_engine=_UnevenBudgetEngine(),
        freeze_vision=True,
        group_size=4,
        max_new_tokens=12,
        eval_max_new_tokens=8,
        mini_batch_prompts=1,
    )


def _grpo_data(synth_dir) -> LongVideoReasonDataModule:
    return LongVideoReasonDataModule(data_dir=str(synth_dir), task="rl", num_frames=8, batch_size=2, eval_batch_size=2)


def test_grpo_sharded_fit_matches_ddp(synth_dir, tmp_path):
    runs = {}
    for name, shard in (("fsdp", True), ("ddp", False)):
        module = _grpo_module()
        metrics = _fit(module, _grpo_data(synth_dir), tmp_path / name, 1, shard, max_steps=4)
        runs[name] = {"metrics": metrics, "weights": _weights(module)}
    fsdp, ddp = runs["fsdp"], runs["ddp"]
    assert len(fsdp["metrics"][0]) == 2  # 2 batches x 2 optimizer steps (one per prompt)
    # Rank 0 stopped decoding after 6 steps while rank 1 went on to 12.
    assert max(row["rollout/response_len"] for row in fsdp["metrics"][0]) <= 6
    assert max(row["rollout/response_len"] for row in fsdp["metrics"][1]) > 6
    _assert_metrics_close(fsdp["metrics"], ddp["metrics"])
    _assert_weights_close(fsdp["weights"], ddp["weights"], **WEIGHT_TOL)


class _InformativeLaterOnRank1(Reward):
    """Rewards alternate within each group (informative), except on rank 1 in the first batch of every two,
    where they are all 0: rank 1 needs a second batch for its groups while rank 0 is done after one."""

    def __init__(self) -> None:
        super().__init__(name="alternating")
        self.calls = 0

    def score(self, sample) -> float:
        batch, self.calls = self.calls // 8, self.calls + 1  # 2 prompts x 4 samples per batch
        if dist.get_rank() == 1 and batch % 2 == 0:
            return 0.0
        return float(self.calls % 2)


@pytest.mark.timeout(300)
def test_grpo_dynamic_sampling_ranks_update_together(synth_dir, tmp_path):
    # Rank 0 has its 2 informative groups after one batch, rank 1 after two: both must wait for the second
    # (otherwise rank 0's gradient all-reduce meets rank 1's generation and the fit hangs or desyncs).
    module = GRPOModule(
        path="tiny",
        rewards=[_InformativeLaterOnRank1()],
        dynamic_sampling=True,
        max_sampling_rounds=3,
        freeze_vision=True,
        group_size=4,
        max_new_tokens=6,
        mini_batch_prompts=1,
    )
    metrics = _fit(module, _grpo_data(synth_dir), tmp_path, 1, False, max_steps=4)
    for rank_rows in metrics:
        updates = [row for row in rank_rows if "train/loss" in row]
        assert len(rank_rows) == 4  # 4 batches for 2 updates of 2 optimizer steps (one per prompt)
        assert updates and all(row["rollout/kept_groups"] == 2 for row in updates)
        assert all(row["rollout/sampling_rounds"] == 2 for row in updates)
    initial = _weights(_grpo_module())
    assert any(not torch.equal(p, initial[n]) for n, p in _weights(module).items()), "training changed no weight"


def _corrupt_a_video_only_rank1_reads_first(data_dir: Path, batch_size: int) -> str:
    """Overwrite the video of a sample of rank 1's first batch that rank 0's first batch does not use."""
    records = load_records(data_dir / "train.jsonl")
    first_batches = [
        [records[i].videos for i in list(ResumableSampler(len(records), seed=0, num_replicas=2, rank=rank))]
        for rank in (0, 1)
    ]
    first_batches = [videos[:batch_size] for videos in first_batches]
    video = next(v for v in first_batches[1] if v not in first_batches[0])
    (data_dir / video).write_bytes(b"not a video")
    return video


@pytest.mark.timeout(300)
def test_grpo_ranks_that_lost_samples_still_update_together(synth_dir, tmp_path):
    # Rank 1's first batch loses a prompt to on_error=skip: with one optimizer step per prompt, it would take one
    # step where rank 0 takes two, and rank 0's second gradient all-reduce would wait forever.
    data_dir = tmp_path / "data"
    shutil.copytree(synth_dir, data_dir)
    video = _corrupt_a_video_only_rank1_reads_first(data_dir, batch_size=2)
    data = LongVideoReasonDataModule(
        data_dir=str(data_dir), task="rl", num_frames=8, batch_size=2, eval_batch_size=2, on_error="skip"
    )
    module = _grpo_module()
    metrics = _fit(module, data, tmp_path / "run", 1, False, max_steps=4)
    assert [len(rows) for rows in metrics] == [3, 3]  # 1 + 2 + 1 optimizer steps: the first batch used 1 prompt
    # Each rank skipped the questions on the corrupt video among its 3 batches; both log the sum over ranks.
    records = load_records(data_dir / "train.jsonl")
    orders = [list(ResumableSampler(len(records), seed=0, num_replicas=2, rank=r)) for r in (0, 1)]
    per_rank = [sum(records[i].videos == video for i in order[:6]) for order in orders]
    assert per_rank[1] >= 1
    for rank in range(2):
        final = torch.load(tmp_path / "run" / f"final_metrics{rank}.pt")
        assert final == {"data/skipped_records": 0.0, "data/skipped_samples": float(sum(per_rank))}


def _data_where_rank1_loses_its_first_batch(synth_dir, tmp_path: Path) -> LongVideoReasonDataModule:
    data_dir = tmp_path / "data"
    shutil.copytree(synth_dir, data_dir)
    _corrupt_a_video_only_rank1_reads_first(data_dir, batch_size=1)
    return LongVideoReasonDataModule(
        data_dir=str(data_dir), num_frames=8, batch_size=1, eval_batch_size=1, on_error="skip"
    )


@pytest.mark.timeout(400)
@pytest.mark.parametrize("freeze_vision", [True, False], ids=["frozen_vision", "trained_vision"])
def test_sft_ranks_skip_together_when_one_lost_its_whole_batch(synth_dir, tmp_path, freeze_vision):
    # Batches of one: rank 1's first batch is empty after on_error=skip. Stepping on rank 0 alone would leave its
    # gradient all-reduce waiting forever, and Lightning refuses a skipped step in distributed training: every
    # rank runs a zero-gradient backward whose gradients are dropped, so the first update moves nothing (not even
    # AdamW's decay), and the run goes on, sharded or not, to the same weights.
    initial = _weights(_sft_module(freeze_vision))
    weights = {}
    for name, shard in (("ddp", False), ("fsdp", True)):
        module = _sft_module(freeze_vision)
        data = _data_where_rank1_loses_its_first_batch(synth_dir, tmp_path / name)
        metrics = _fit(module, data, tmp_path / name / "run", 1, shard, max_steps=3)
        assert [len(rows) for rows in metrics] == [3, 3]
        for rows in metrics:  # no rank scored the first batch (all skipped it); all trained on the next
            assert "train/loss" not in rows[0] and all("train/loss" in row for row in rows[1:])
        after_skip = torch.load(tmp_path / name / "run" / "ckpt" / "epoch=0-step=1.ckpt", weights_only=False)
        after_skip = {k.removeprefix("policy."): v for k, v in after_skip["state_dict"].items()}
        for key, tensor in initial.items():
            assert torch.equal(after_skip[key], tensor), f"{name}: the skipped update moved {key}"
        weights[name] = _weights(module)
        assert any(not torch.equal(p, initial[k]) for k, p in weights[name].items()), "training changed no weight"
    _assert_weights_close(weights["fsdp"], weights["ddp"], **WEIGHT_TOL)
    # The step-1 checkpoint holds an optimizer that never stepped: resuming from it ends where the run ended.
    resumed = _sft_module(freeze_vision)
    data = LongVideoReasonDataModule(
        data_dir=str(tmp_path / "fsdp" / "data"), num_frames=8, batch_size=1, eval_batch_size=1, on_error="skip"
    )
    _fit(
        resumed,
        data,
        tmp_path / "resumed",
        1,
        True,
        max_steps=3,
        ckpt_path=tmp_path / "fsdp" / "run" / "ckpt" / "epoch=0-step=1.ckpt",
    )
    _assert_weights_close(_weights(resumed), weights["fsdp"], **WEIGHT_TOL)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_shard_parameters_is_validated(value):
    with pytest.raises(TypeError, match="shard_parameters"):
        MRSPStrategy(shard_parameters=value)
