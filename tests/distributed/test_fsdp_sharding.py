"""PolicySharding (FSDP2) on a real 2-rank gloo group against one process with the same weights.

For sp=2 (dp=1; both ranks hold one sample) and sp=1 (dp=2; one sample per rank): the loss of a step run as
the root's forward, the full gradients (the mean over the dp groups of the single-process gradients), the
parameters after one SGD step, and a second forward after that step inside the same step (GRPO's manual
optimization). Then greedy generation with prompts that stop after different numbers of tokens on the two
ranks, and the full model and optimizer state dicts: saved, loaded into a fresh sharded copy, saved again.

Tolerances (fp32): losses and gradients atol 1e-5, rtol 1e-4; parameters after the step atol 1e-6, rtol 1e-5;
generated tokens exact; state dicts round-trip exactly. Measured: sp=2 gradients at most 6e-8 off (entries up
to 0.95), parameters 7e-9, losses exact; sp=1 everything bit-identical.
"""

from __future__ import annotations

import copy

import pytest
import torch
from _spawn import run_ranks
from test_sequence_parallel import CASES, _loss, make_batch
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor

from longvila_r1.models import VideoLMPolicy
from longvila_r1.parallel import ParallelLayout, sequence_parallel_logprobs, sharded_encode_video, use_ulysses_attention
from longvila_r1.strategies.fsdp import (
    PolicySharding,
    full_model_state_dict,
    full_optimizer_state_dict,
    load_full_model_state_dict,
    load_full_optimizer_state_dict,
)

CASE = CASES["gqa_left_padded"]
SAMPLES = [CASE, dict(CASE, text=[5, 3], resp=[3, 6])]
GRAD_TOL = {"atol": 1e-5, "rtol": 1e-4}
PARAM_TOL = {"atol": 1e-6, "rtol": 1e-5}
LR = 1e-2
MAX_NEW_TOKENS = [2, 7]  # rank 0 stops decoding after 2 tokens, rank 1 after 7


def _build() -> VideoLMPolicy:
    return VideoLMPolicy.build("tiny", family=CASE["family"], seed=0).train()


def _loss_of(policy: VideoLMPolicy, batch: dict, group) -> torch.Tensor:
    emb = sharded_encode_video(policy, batch["pixel_values_videos"], batch["video_grid_thw"], group=group)
    inputs = (batch["input_ids"], batch["attention_mask"], batch["mm_token_type_ids"])
    logprobs = sequence_parallel_logprobs(policy, *inputs, emb, prompt_lengths=batch["prompt_lengths"], group=group)
    return _loss(logprobs, batch)


def _prompt(policy: VideoLMPolicy, rank: int) -> tuple:
    batch = make_batch(policy, SAMPLES[rank])
    length = batch["prompt_lengths"]
    emb = policy.encode_video(batch["pixel_values_videos"], batch["video_grid_thw"])
    prompt = (batch[key][:, :length] for key in ("input_ids", "attention_mask", "mm_token_type_ids"))
    return (*prompt, emb)


def _optimizer(policy: VideoLMPolicy) -> torch.optim.Optimizer:
    # SGD, not Adam: Adam's first step moves every weight by about lr * sign(grad), so gradients of 1e-7 that
    # agree to 5e-7 (the SP tolerance) can move a weight by 2 * lr. Momentum gives the optimizer a state to save.
    return torch.optim.SGD(policy.parameters(), lr=LR, momentum=0.9)


def _full(tensor: torch.Tensor) -> torch.Tensor:
    return (tensor.full_tensor() if isinstance(tensor, DTensor) else tensor).detach().clone()


def _worker(rank: int, world: int, sp: int) -> dict:
    layout = ParallelLayout(world, rank, sp)
    layout.build("cpu")
    policy = _build()
    if sp > 1:
        use_ulysses_attention(policy.model)
    batch = make_batch(policy, SAMPLES[layout.dp_rank])
    prompt = _prompt(policy, rank)
    sharding = PolicySharding(init_device_mesh("cpu", (world,)))
    sharding.apply(policy)
    optimizer = _optimizer(policy)  # built on the shards

    def step() -> dict:
        loss = _loss_of(policy, batch, layout.sp_group)
        loss.backward()
        grads = {name: _full(p.grad) for name, p in policy.named_parameters()}
        optimizer.step()
        sharding.regather()
        with torch.no_grad():
            second = _loss_of(policy, batch, layout.sp_group)
        return {"loss": loss.detach(), "grads": grads, "second_loss": second}

    out = sharding.run_step(step)
    out["params"] = {name: _full(p) for name, p in policy.named_parameters()}
    out["sharded"] = all(isinstance(p, DTensor) for p in policy.parameters())
    generated = policy.generate(*prompt, max_new_tokens=MAX_NEW_TOKENS[rank], do_sample=False, stop_token_ids=[0])
    out["generated"] = generated.response_ids
    out["state_dict"] = full_model_state_dict(policy)
    out["optim"] = full_optimizer_state_dict(policy, optimizer)
    out["reloaded"] = _reload(world, out["state_dict"], out["optim"], layout)
    return out


def _reload(world: int, state_dict: dict, optim: dict, layout: ParallelLayout) -> tuple[dict, dict]:
    """A fresh sharded copy loaded from what rank 0 saved (every rank reads rank 0's file, as on resume)."""
    saved = copy.deepcopy([state_dict, optim])  # loading replaces the full tensors by shards, in place
    torch.distributed.broadcast_object_list(saved, src=0)
    policy = _build()
    if layout.sequence_parallel:
        use_ulysses_attention(policy.model)
    PolicySharding(init_device_mesh("cpu", (world,))).apply(policy)
    optimizer = _optimizer(policy)
    load_full_model_state_dict(policy, saved[0])
    load_full_optimizer_state_dict(policy, optimizer, saved[1])
    return full_model_state_dict(policy), full_optimizer_state_dict(policy, optimizer)


def _reference(sp: int) -> dict:
    """One process: the mean loss of the samples the dp groups hold, one SGD step, the same second forward."""
    policy = _build()
    samples = SAMPLES[:1] if sp == 2 else SAMPLES
    batches = [make_batch(policy, case) for case in samples]
    prompts = [_prompt(policy, rank) for rank in range(2)]  # encoded before the step, as on the ranks
    optimizer = _optimizer(policy)
    losses = [_loss_of(policy, batch, None) for batch in batches]
    (sum(losses) / len(losses)).backward()
    grads = {name: p.grad.detach().clone() for name, p in policy.named_parameters()}
    optimizer.step()
    with torch.no_grad():
        second = [_loss_of(policy, batch, None) for batch in batches]
    params = {name: p.detach().clone() for name, p in policy.named_parameters()}
    generated = [
        policy.generate(*prompts[rank], max_new_tokens=MAX_NEW_TOKENS[rank], do_sample=False, stop_token_ids=[0])
        for rank in range(2)
    ]
    generated = [out.response_ids for out in generated]
    return {"losses": losses, "second": second, "grads": grads, "params": params, "generated": generated}


@pytest.fixture(scope="module", params=[2, 1], ids=["sp2_dp1", "sp1_dp2"])
def runs(request, tmp_path_factory) -> tuple[int, list[dict], dict]:
    sp = request.param
    ranks = run_ranks(_worker, tmp_path_factory.mktemp(f"fsdp_sp{sp}"), sp)
    return sp, ranks, _reference(sp)


def test_parameters_are_sharded(runs):
    _, ranks, _ = runs
    assert all(r["sharded"] for r in ranks)


def test_loss_gradients_and_step_equal_single_process(runs):
    sp, ranks, ref = runs
    for rank, result in enumerate(ranks):
        sample = 0 if sp == 2 else rank
        torch.testing.assert_close(result["loss"], ref["losses"][sample].detach(), **GRAD_TOL)
        torch.testing.assert_close(result["second_loss"], ref["second"][sample], **GRAD_TOL)
        for name, want in ref["grads"].items():
            torch.testing.assert_close(result["grads"][name], want, **GRAD_TOL, msg=name)
        for name, want in ref["params"].items():
            torch.testing.assert_close(result["params"][name], want, **PARAM_TOL, msg=name)


def test_generation_with_different_lengths_per_rank(runs):
    _, ranks, ref = runs
    lengths = [r["generated"].shape[1] for r in ranks]
    assert lengths[0] < lengths[1], "rank 1 must decode more steps than rank 0 for this test to mean anything"
    for rank, result in enumerate(ranks):
        assert torch.equal(result["generated"], ref["generated"][rank])


def test_full_state_dicts_round_trip(runs):
    _, ranks, ref = runs
    saved, optim = ranks[0]["state_dict"], ranks[0]["optim"]
    assert ranks[1]["state_dict"] == {}, "only rank 0 holds the full state"
    for name, want in ref["params"].items():
        torch.testing.assert_close(saved[name], want, **PARAM_TOL, msg=name)
    momentum = {name: state["momentum_buffer"] for name, state in optim["state"].items()}
    assert {name: t.shape for name, t in momentum.items()} == {name: p.shape for name, p in ref["params"].items()}
    reloaded_params, reloaded_optim = ranks[0]["reloaded"]
    for name, tensor in saved.items():
        assert torch.equal(reloaded_params[name], tensor), name
    for name, state in optim["state"].items():
        for key, tensor in state.items():
            assert torch.equal(reloaded_optim["state"][name][key], tensor), (name, key)
