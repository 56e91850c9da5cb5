"""Time GRPO training steps with one update per rollout (the default) against a separate old-policy pass.

With ``ppo_epochs=1`` and one mini-batch of all prompts, each rollout feeds exactly one optimizer step, so the
old policy is the policy being updated: ``GRPOModule`` takes the old log-probs from the update's own forward
(detached) and runs one no-grad log-prob pass (the reference) instead of two. The baseline is the general path
(old-policy pass, then reference pass, then the update), what several PPO epochs or mini-batches need.

Usage:
    python benchmarks/grpo_step.py [--steps 12] [--repeats 2] [--prompts 8] [--group-size 8] [--new-tokens 96]

Prints the median seconds per step of both (the first step of each run is left out: warm-up), the ratio, and
the largest parameter difference after the same steps (both follow the same seeded rollouts, so it should be
at the 1e-7 level).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

from longvila_r1.callbacks import RolloutCallback
from longvila_r1.data import LongVideoReasonDataModule
from longvila_r1.data.synth import generate_dataset
from longvila_r1.modules import GRPOModule


class SeparateOldPolicyPass(GRPOModule):
    """The general path: a no-grad old-policy pass before the update, as with several PPO epochs."""

    @property
    def single_update(self) -> bool:
        return False


class StepTimer(pl.Callback):
    """Wall-clock seconds of every training batch."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, *args) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, *args) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def run(module_class: type[GRPOModule], data_dir: Path, args) -> tuple[list[float], GRPOModule]:
    module = module_class(
        path=args.preset,
        group_size=args.group_size,
        max_new_tokens=args.new_tokens,
        temperature=0.6,
        freeze_vision=True,
    )
    data = LongVideoReasonDataModule(
        data_dir=str(data_dir), task="rl", num_frames=args.frames, batch_size=args.prompts, eval_batch_size=4
    )
    timer = StepTimer()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=args.steps,
        logger=False,
        callbacks=[RolloutCallback(), timer],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=data)
    return timer.seconds[1:], module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each pipeline, taking turns")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--preset", default="tiny")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be >= 2 (the first step is warm-up)")
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        generate_dataset(data_dir, num_videos=24, frames=64, seed=0, difficulty="easy", progress=False)
        seconds: dict[str, list[float]] = {"single update": [], "separate old pass": []}
        modules: dict[str, GRPOModule] = {}
        for _ in range(args.repeats):
            for name, module_class in (("single update", GRPOModule), ("separate old pass", SeparateOldPolicyPass)):
                steps, modules[name] = run(module_class, data_dir, args)
                seconds[name].extend(steps)
    fast, slow = statistics.median(seconds["single update"]), statistics.median(seconds["separate old pass"])
    params = zip(modules["single update"].parameters(), modules["separate old pass"].parameters(), strict=True)
    difference = max(float((a - b).detach().abs().max()) for a, b in params)
    shape = f"{args.prompts} prompts x G={args.group_size}, {args.new_tokens} new tokens, {args.frames} frames"
    print(f"{args.preset}: {shape}, {torch.get_num_threads()} threads")
    print("| pipeline | s / step (median) |")
    print("|---|---:|")
    print(f"| separate old-policy pass | {slow:.3f} |")
    print(f"| single update (default) | {fast:.3f} |")
    print(f"speed-up {slow / fast:.2f}x; largest parameter difference after {args.steps} steps: {difference:.1e}")


if __name__ == "__main__":
    main()
