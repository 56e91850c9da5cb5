"""MRSPStrategy: one optimizer step of a Trainer on 2 CPU processes (sp=2, dp=1) equals the step one process
takes on the same sample. The sampler must give both ranks the same sample, the module's policy must get
Ulysses attention, and DDP's averaging must turn the sp ranks' gradients into the single-process gradient.

Tolerance (fp32): parameters after one SGD step (lr 0.1) atol 1e-6, rtol 1e-5 (measured: at most 2e-8 off).
"""

from __future__ import annotations

import time

import lightning.pytorch as pl
import pytest
import torch
from _spawn import run_ranks
from test_sequence_parallel import CASES, _loss, make_batch
from torch.utils.data import DataLoader

from longvila_r1.models import VideoLMPolicy
from longvila_r1.parallel import sequence_parallel_logprobs, sharded_encode_video, uses_ulysses_attention
from longvila_r1.strategies import MRSPStrategy, sequence_parallel_group
from longvila_r1.strategies.launcher import MRSPSpawnLauncher, leave_process_group

CASE = CASES["gqa_left_padded"]
LR = 0.1


class _GRPOLikeModule(pl.LightningModule):
    """The training step a module runs under MR-SP: sharded encoding, SP log-probs, the whole loss."""

    def __init__(self) -> None:
        super().__init__()
        self.policy = VideoLMPolicy.build("tiny", family=CASE["family"], seed=0)

    def setup(self, stage: str) -> None:
        torch.set_num_threads(1)  # two processes on two shared cores

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        group = sequence_parallel_group(self.trainer)
        assert group is not None and uses_ulysses_attention(self.policy.model)
        emb = sharded_encode_video(self.policy, batch["pixel_values_videos"], batch["video_grid_thw"], group=group)
        inputs = (batch["input_ids"], batch["attention_mask"], batch["mm_token_type_ids"])
        logprobs = sequence_parallel_logprobs(
            self.policy, *inputs, emb, prompt_lengths=batch["prompt_lengths"], group=group
        )  # [B, S-1], the same on both ranks
        return _loss(logprobs, batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=LR)


class _FailingOnOneRank(_GRPOLikeModule):
    """Rank 1 fails in its first step while rank 0 goes on to the gradient all-reduce."""

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if self.global_rank == 1:
            raise ValueError("bad sample on rank 1")
        return super().training_step(batch, batch_idx)


def _first(items: list) -> dict:
    return items[0]


def _samples(policy: VideoLMPolicy) -> list[dict]:
    """Two different samples: a sampler that split them over the sp ranks would feed the group two inputs."""
    other = dict(CASE, text=[5, 3])
    return [make_batch(policy, CASE), make_batch(policy, other)]


def _reference_step() -> dict[str, torch.Tensor]:
    policy = VideoLMPolicy.build("tiny", family=CASE["family"], seed=0)
    batch = _samples(policy)[0]
    emb = policy.encode_video(batch["pixel_values_videos"], batch["video_grid_thw"])
    inputs = (batch["input_ids"], batch["attention_mask"], batch["mm_token_type_ids"])
    _loss(policy.response_logprobs(*inputs, emb, prompt_lengths=batch["prompt_lengths"]), batch).backward()
    return {name: (p - LR * p.grad).detach() for name, p in policy.named_parameters()}


def _trainer(tmp_path) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=MRSPStrategy(sequence_parallel_size=2, start_method="spawn"),
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )


def test_one_step_equals_single_process(tmp_path):
    module = _GRPOLikeModule()
    loader = DataLoader(_samples(module.policy), batch_size=1, collate_fn=_first)
    _trainer(tmp_path).fit(module, loader)
    expected = _reference_step()
    for name, param in module.policy.named_parameters():
        torch.testing.assert_close(param.detach(), expected[name], atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.timeout(180)
def test_an_error_on_one_rank_ends_the_fit_instead_of_hanging(tmp_path):
    # One rank's error reaches the caller with its message, and the other rank does not keep the fit waiting.
    module = _FailingOnOneRank()
    loader = DataLoader(_samples(module.policy), batch_size=1, collate_fn=_first)
    with pytest.raises(Exception, match="bad sample on rank 1"):
        _trainer(tmp_path).fit(module, loader)


@pytest.mark.parametrize("shard", [False, True])
def test_spawned_workers_use_the_launcher_that_leaves_the_group_together(tmp_path, shard):
    strategy = MRSPStrategy(shard_parameters=shard, start_method="spawn")
    pl.Trainer(accelerator="cpu", devices=2, strategy=strategy, logger=False, default_root_dir=tmp_path)
    assert isinstance(strategy.launcher, MRSPSpawnLauncher)
    assert strategy.launcher.gather_full_weights is shard


def _leave_then_report(rank: int, world: int) -> bool:
    leave_process_group()
    leave_process_group()  # a second call finds no group and does nothing
    return torch.distributed.is_initialized()


def test_leave_process_group_destroys_the_group_on_every_rank(tmp_path):
    assert run_ranks(_leave_then_report, tmp_path) == [False, False]


@pytest.mark.parametrize(("value", "error"), [(0, ValueError), (1.5, TypeError), (True, TypeError)])
def test_sequence_parallel_size_is_validated(value, error):
    with pytest.raises(error, match="sequence_parallel_size"):
        MRSPStrategy(sequence_parallel_size=value)


def test_without_a_layout_there_is_no_group():
    assert sequence_parallel_group(None) is None
    assert MRSPStrategy(sequence_parallel_size=2).parallel_layout is None


def _gather_then_leave_unevenly(rank: int, world: int, store: str) -> None:
    # Rank 1 leaves right after a collective while rank 0 still works: without destroying the group first, a
    # standalone run of this aborted rank 1 at exit in 14 of 30 tries (7 of 30 with only a barrier).
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    tensor = torch.full((1_000_000,), float(rank))
    torch.distributed.all_gather([torch.empty_like(tensor) for _ in range(world)], tensor)
    if rank == 0:
        time.sleep(0.3)
    leave_process_group()


@pytest.mark.timeout(180)
def test_workers_that_leave_the_group_together_exit_cleanly(tmp_path):
    for attempt in range(4):  # each try without the fix aborted about half the time
        torch.multiprocessing.spawn(
            _gather_then_leave_unevenly, args=(2, str(tmp_path / f"store{attempt}")), nprocs=2, join=True
        )
