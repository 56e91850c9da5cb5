"""MR-SP memory and speed on CPU: per-rank peak memory of a long prefill and of a training forward+backward,
for sequence-parallel sizes 1 and 2, the time of frame-sharded vs. unsharded video encoding, and the per-rank
bytes of parameters + AdamW state with FSDP2 parameter sharding (``MRSPStrategy(shard_parameters=True)``) vs.
replicated (DDP) on 2 ranks.

Each configuration runs in fresh processes (a real gloo group of ``sp`` processes) so peak resident memory
(VmHWM, reset before each phase) belongs to that configuration alone; the model is a tiny-depth but wide
Qwen2.5-VL built from a config in code (random weights).

Usage:
    python benchmarks/mrsp_memory.py [--tokens 4096 16384] [--hidden 512] [--frames 256] \\
        [--jobs activations encode state]

Prints a table per phase with the sp=2 / sp=1 ratio of activation memory (peak minus the memory held before
the phase), the encode speed-up and the sharded / replicated ratio of parameter + optimizer bytes, all measured
in this run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor

from longvila_r1.models import VideoLMPolicy
from longvila_r1.parallel import sequence_parallel_logprobs, sharded_encode_video, use_ulysses_attention
from longvila_r1.strategies.fsdp import PolicySharding


def _rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _peak_delta_mib(fn) -> float:
    """Peak resident memory reached while ``fn`` runs, above what the process held before it."""
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)
    before = _rss_mib("VmRSS")
    fn()
    return _rss_mib("VmHWM") - before


def _policy(hidden: int, sp: int) -> VideoLMPolicy:
    policy = VideoLMPolicy.build(
        "tiny", seed=0, text_hidden=hidden, text_heads=8, text_kv_heads=8, text_intermediate=2 * hidden
    )
    if sp > 1:
        use_ulysses_attention(policy.model)
    return policy


def _prefill_and_train(rank: int, sp: int, tokens: int, hidden: int, group) -> dict[str, float]:
    policy = _policy(hidden, sp)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(20, len(policy.tokenizer), (1, tokens), generator=generator)  # [1, S] text-only prompt
    mask, types = torch.ones_like(ids), torch.zeros_like(ids)
    args = (policy, ids, mask, types, None)

    def prefill() -> None:
        with torch.no_grad():
            sequence_parallel_logprobs(*args, prompt_lengths=tokens // 2, group=group)

    def train() -> None:
        logp = sequence_parallel_logprobs(*args, prompt_lengths=tokens // 2, group=group)
        (-logp.sum() / (tokens // 2)).backward()

    prefill()  # warm-up: allocator pools and kernels
    result = {"prefill": _peak_delta_mib(prefill)}
    start = time.perf_counter()
    result["train"] = _peak_delta_mib(train)
    result["train_s"] = time.perf_counter() - start
    return result


def _encode(rank: int, sp: int, frames: int, group) -> dict[str, float]:
    policy = VideoLMPolicy.build("tiny", seed=0)
    side, patch, tp = 56, 14, 2
    grid = torch.tensor([[frames // tp, side // patch, side // patch]])
    pixels = torch.randn(int(grid.prod()), 3 * tp * patch * patch, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sharded_encode_video(policy, pixels, grid, group=group)  # warm-up
        start = time.perf_counter()
        for _ in range(3):
            sharded_encode_video(policy, pixels, grid, group=group)
    return {"encode_s": (time.perf_counter() - start) / 3}


def _state_bytes(rank: int, shard: bool, hidden: int, group) -> dict[str, float]:
    """Bytes this rank holds for the policy's parameters and AdamW state (after a step allocated the state)."""
    policy = _policy(hidden, 1)
    if shard:
        PolicySharding(init_device_mesh("cpu", (dist.get_world_size(),))).apply(policy)
    optimizer = torch.optim.AdamW(policy.parameters())
    for param in policy.parameters():
        param.grad = torch.zeros_like(param)
    optimizer.step()
    states = [t for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t)]
    return {"params": _local_mib(policy.parameters()), "optimizer": _local_mib(states)}


def _local_mib(tensors) -> float:
    local = [t.to_local() if isinstance(t, DTensor) else t for t in tensors]
    return sum(t.numel() * t.element_size() for t in local) / 2**20


def _worker(rank: int, sp: int, workdir: str, job: str, args: tuple) -> None:
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // sp))  # the same cores in total for every sp
    group = None
    if sp > 1:
        dist.init_process_group("gloo", init_method=f"file://{workdir}/store", rank=rank, world_size=sp)
        group = dist.group.WORLD
    jobs = {"memory": _prefill_and_train, "encode": _encode}
    result = _state_bytes(rank, *args, group) if job == "state" else jobs[job](rank, sp, *args, group)
    torch.save(result, Path(workdir, f"rank{rank}.pt"))
    if group is not None:
        dist.destroy_process_group()


def run(job: str, sp: int, *args) -> dict[str, float]:
    """Run ``job`` on ``sp`` fresh processes and return rank 0's figures."""
    with tempfile.TemporaryDirectory() as workdir:
        mp.spawn(_worker, args=(sp, workdir, job, args), nprocs=sp, join=True)
        return torch.load(Path(workdir, "rank0.pt"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--jobs", nargs="+", choices=JOBS, default=list(JOBS), help="which measurements to run")
    args = parser.parse_args()
    for job in args.jobs:
        JOBS[job](args)


def _report_activations(args: argparse.Namespace) -> None:
    print(f"Qwen2.5-VL, 2 layers, hidden {args.hidden}, 8 heads; per-rank peak activation memory (MiB)")
    print(f"{'tokens':>7} {'phase':>8} {'sp=1':>9} {'sp=2':>9} {'sp2/sp1':>8}")
    for tokens in args.tokens:
        one, two = run("memory", 1, tokens, args.hidden), run("memory", 2, tokens, args.hidden)
        for phase in ("prefill", "train"):
            print(f"{tokens:>7} {phase:>8} {one[phase]:>9.1f} {two[phase]:>9.1f} {two[phase] / one[phase]:>8.2f}")
        seconds = (one["train_s"], two["train_s"])
        print(f"{tokens:>7} {'train s':>8} {seconds[0]:>9.2f} {seconds[1]:>9.2f} {seconds[1] / seconds[0]:>8.2f}")


def _report_encode(args: argparse.Namespace) -> None:
    one, two = run("encode", 1, args.frames), run("encode", 2, args.frames)
    speedup = one["encode_s"] / two["encode_s"]
    print(
        f"encode {args.frames} frames (56x56): unsharded {one['encode_s']:.3f} s, sharded over 2 ranks "
        f"{two['encode_s']:.3f} s, speed-up {speedup:.2f}x"
    )


def _report_state(args: argparse.Namespace) -> None:
    replicated, sharded = run("state", 2, False, args.hidden), run("state", 2, True, args.hidden)
    print(f"hidden {args.hidden}; per-rank parameters + AdamW state on 2 ranks (MiB)")
    print(f"{'':>10} {'DDP':>9} {'FSDP2':>9} {'ratio':>8}")
    for part in ("params", "optimizer"):
        print(f"{part:>10} {replicated[part]:>9.1f} {sharded[part]:>9.1f} {sharded[part] / replicated[part]:>8.3f}")


JOBS = {"activations": _report_activations, "encode": _report_encode, "state": _report_state}


if __name__ == "__main__":
    main()
