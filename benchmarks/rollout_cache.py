"""Time one GRPO rollout + log-prob phase (G samples) with the video-embedding cache vs. without it.

With the cache (what GRPOModule does): each video is encoded once; the G rollouts and the old-policy and
reference log-prob passes all reuse those embeddings. Without it (a naive pipeline): the vision tower runs
for every sample's generation and again for every sample in each log-prob pass (3 x G encodings). Both
pipelines generate the G samples in one batch and score them in one batch per pass, so the ratio is the
cache's alone, not batching's. (With one update per rollout, its default, ``GRPOModule`` skips the old-policy
pass and takes those log-probs from the update: ``benchmarks/grpo_step.py`` times that; here both passes run,
the general case.)

Usage:
    python benchmarks/rollout_cache.py [--frames 64 256 1024] [--group-size 8] [--new-tokens 16]
    python benchmarks/rollout_cache.py --preset tiny --set text_hidden=512 text_heads=8 vision_hidden=256

Prints the seconds of both and the speed-up ratio per frame count, all measured in this run.

The ratio depends on how the vision tower's cost compares with the language model's (prefill and decoding
over the video tokens, two log-prob passes), so ``--preset`` and ``--set`` change the model's sizes.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from longvila_r1.data.processing import load_model_processing
from longvila_r1.data.qwen_vl import preprocess_video
from longvila_r1.data.qwen_vl_prompt import build_prompt
from longvila_r1.data.video import read_video
from longvila_r1.data.video_writer import write_video
from longvila_r1.models import VideoEmbeddings, VideoLMPolicy
from longvila_r1.rollout import SamplingParams, TransformersEngine, VideoEmbeddingCache, cache_key


def _inputs(path: Path, frames: int, tokenizer, processor):
    clip = read_video(path, num_frames=frames)
    pixels, grid = preprocess_video(clip.frames, processor)
    prompt = build_prompt(tokenizer, "Which object appeared first?", ["a", "b", "c", "d"], video_grid_thw=grid)
    batch = [t[None] for t in (prompt.input_ids, prompt.attention_mask, prompt.mm_token_type_ids)]
    return clip, pixels, grid[None], batch


def _logprob_passes(policy, reference, out, embeddings_for_pass) -> list[torch.Tensor]:
    inputs = (out.sequences, out.attention_mask, out.mm_token_type_ids)
    return [
        model.response_logprobs(*inputs, embeddings_for_pass(model), prompt_lengths=out.prompt_length)
        for model in (policy, reference)
    ]


@dataclass
class Phase:
    """Seconds of one rollout + log-prob phase, and what it produced (to check both pipelines agree)."""

    seconds: float
    sequences: torch.Tensor
    logprobs: list[torch.Tensor]

    def same_as(self, other: Phase) -> bool:
        return torch.equal(self.sequences, other.sequences) and all(
            torch.allclose(a, b, atol=1e-5) for a, b in zip(self.logprobs, other.logprobs, strict=True)
        )


@torch.no_grad()
def with_cache(policy, reference, engine, clip, pixels, grid, batch, processor, params) -> Phase:
    start = time.perf_counter()
    cache = VideoEmbeddingCache()
    key = cache_key(clip.path, clip.indices, processor, "bench")
    embeddings = cache.get_or_compute([key], lambda _: policy.encode_video(pixels, grid))[0]
    out = engine.generate(*batch, embeddings, params)
    logprobs = _logprob_passes(policy, reference, out, lambda _: out.video_embeddings)
    return Phase(time.perf_counter() - start, out.sequences, logprobs)


@torch.no_grad()
def without_cache(policy, reference, engine, clip, pixels, grid, batch, processor, params) -> Phase:
    """The same batched generation and log-prob passes, with the vision tower run once per sample per phase."""
    start = time.perf_counter()
    group = params.n
    rows = [t.repeat(group, 1) for t in batch]  # the prompt repeated G times, one sample each: same batch shape
    single = SamplingParams(max_new_tokens=params.max_new_tokens, n=1, seed=params.seed)
    out = engine.generate(*rows, _encode_per_sample(policy, pixels, grid, group), single)
    logprobs = _logprob_passes(policy, reference, out, lambda model: _encode_per_sample(model, pixels, grid, group))
    return Phase(time.perf_counter() - start, out.sequences, logprobs)


def _encode_per_sample(policy, pixels, grid, group: int) -> VideoEmbeddings:
    return VideoEmbeddings.concat([policy.encode_video(pixels, grid) for _ in range(group)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--preset", default="tiny", choices=("tiny", "small"), help="model sizes to start from")
    parser.add_argument("--set", nargs="+", default=[], metavar="FIELD=INT", help="preset fields to change")
    args = parser.parse_args()
    overrides = _preset_overrides(parser, args.set)
    torch.manual_seed(0)
    policy = VideoLMPolicy.build(args.preset, **overrides).eval()
    reference = copy.deepcopy(policy)
    tokenizer, processor = load_model_processing(args.preset)
    engine = TransformersEngine()
    engine.setup(policy)
    params = SamplingParams(max_new_tokens=args.new_tokens, n=args.group_size, seed=0)
    rng = np.random.default_rng(0)
    threads = torch.get_num_threads()
    shape = " ".join(f"{key}={value}" for key, value in overrides.items())
    print(
        f"{args.preset} Qwen2.5-VL {shape}".rstrip()
        + f", G={args.group_size}, {args.new_tokens} new tokens, 56x56 frames"
    )
    print(f"{threads} CPU threads, min of {args.repeats} repeats")
    print(f"{'frames':>7} {'video tokens':>13} {'cached s':>9} {'no cache s':>11} {'speed-up':>9} {'same output':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for frames in args.frames:
            path = write_video(Path(tmp) / f"v{frames}.mp4", rng.integers(0, 255, (frames, 64, 64, 3), dtype=np.uint8))
            clip, pixels, grid, batch = _inputs(path, frames, tokenizer, processor)
            common = (policy, reference, engine, clip, pixels, grid, batch, processor, params)
            cached = [with_cache(*common) for _ in range(args.repeats)]
            naive = [without_cache(*common) for _ in range(args.repeats)]
            cached_s, naive_s = min(p.seconds for p in cached), min(p.seconds for p in naive)
            same = "yes" if cached[0].same_as(naive[0]) else "NO"  # same tokens, log-probs within 1e-5
            tokens = int(grid.prod()) // processor.merge_size**2
            print(f"{frames:>7} {tokens:>13} {cached_s:>9.2f} {naive_s:>11.2f} {naive_s / cached_s:>8.2f}x {same:>12}")


def _preset_overrides(parser: argparse.ArgumentParser, items: list[str]) -> dict[str, int]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not value.lstrip("-").isdigit():
            parser.error(f"--set takes FIELD=INT (a TinyPreset field), got {item!r}")
        overrides[key] = int(value)
    return overrides


if __name__ == "__main__":
    main()
