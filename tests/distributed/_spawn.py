"""Run a function on a real gloo process group of a few CPU processes and collect what each rank returns."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank: int, world: int, workdir: str, fn, args: tuple) -> None:
    # Two processes share two cores with other jobs: one thread each keeps them from oversubscribing.
    torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    dist.init_process_group("gloo", init_method=f"file://{workdir}/store", rank=rank, world_size=world)
    try:
        result = fn(rank, world, *args)
        torch.save(result, Path(workdir, f"rank{rank}.pt"))
        if dist.is_initialized():
            # A rank that tears down its gloo group while a peer still finishes its last collective makes that
            # peer fail with "connection closed by peer"; meet first. (On failure, mp.spawn kills the others.)
            dist.barrier()
    finally:
        if dist.is_initialized():  # ``fn`` may have left the group itself
            dist.destroy_process_group()


def run_ranks(fn, workdir: Path, *args, world: int = 2) -> list:
    """Spawn ``world`` processes that each call ``fn(rank, world, *args)`` inside a gloo group.

    ``fn`` must be a module-level function (it is pickled by name) and return something ``torch.save`` can
    write; the results come back in rank order.
    """
    mp.spawn(_worker, args=(world, str(workdir), fn, args), nprocs=world, join=True)
    return [torch.load(Path(workdir, f"rank{rank}.pt"), weights_only=False) for rank in range(world)]


def grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Each parameter's gradient (zeros where none reached it), by name, detached."""
    return {
        name: (torch.zeros_like(p) if p.grad is None else p.grad.detach().clone())
        for name, p in module.named_parameters()
    }
