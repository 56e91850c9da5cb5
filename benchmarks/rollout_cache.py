"""Time one GRPO rollout + log-prob phase (G samples) with the video-embedding cache vs. without it.

With the cache (what GRPOModule does): each video is encoded once; the G rollouts and the old-policy and
reference log-prob passes all reuse those embeddings. Without it (a naive pipeline): the vision tower runs
for every sample's generation and again for every sample in each log-prob pass (1 + 2 passes x G).

Usage:
    python benchmarks/rollout_cache.py [--frames 64 256 1024] [--group-size 8] [--new-tokens 16]

Prints the seconds of both and the speed-up ratio per frame count, all measured in this run.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from longvila_r1.data.processing import load_model_processing
from longvila_r1.data.qwen_vl import preprocess_video
from longvila_r1.data.qwen_vl_prompt import build_prompt
from longvila_r1.data.video import read_video
from longvila_r1.data.video_writer import write_video
from longvila_r1.models import VideoLMPolicy
from longvila_r1.rollout import SamplingParams, TransformersEngine, VideoEmbeddingCache, cache_key


def _inputs(path: Path, frames: int, tokenizer, processor):
    clip = read_video(path, num_frames=frames)
    pixels, grid = preprocess_video(clip.frames, processor)
    prompt = build_prompt(tokenizer, "Which object appeared first?", ["a", "b", "c", "d"], video_grid_thw=grid)
    batch = [t[None] for t in (prompt.input_ids, prompt.attention_mask, prompt.mm_token_type_ids)]
    return clip, pixels, grid[None], batch


def _logprob_passes(policy, reference, out, embeddings_for_pass) -> None:
    inputs = (out.sequences, out.attention_mask, out.mm_token_type_ids)
    for model in (policy, reference):
        model.response_logprobs(*inputs, embeddings_for_pass(model), prompt_lengths=out.prompt_length)


@torch.no_grad()
def with_cache(policy, reference, engine, clip, pixels, grid, batch, processor, params) -> float:
    start = time.perf_counter()
    cache = VideoEmbeddingCache()
    key = cache_key(clip.path, clip.indices, processor, "bench")
    embeddings = cache.get_or_compute([key], lambda _: policy.encode_video(pixels, grid))[0]
    out = engine.generate(*batch, embeddings, params)
    _logprob_passes(policy, reference, out, lambda _: out.video_embeddings)
    return time.perf_counter() - start


@torch.no_grad()
def without_cache(policy, reference, engine, clip, pixels, grid, batch, processor, params) -> float:
    start = time.perf_counter()
    single = SamplingParams(max_new_tokens=params.max_new_tokens, n=1, seed=params.seed)
    outs = [engine.generate(*batch, policy.encode_video(pixels, grid), single) for _ in range(params.n)]
    for out in outs:  # every sample re-encodes its video in both log-prob passes
        _logprob_passes(policy, reference, out, lambda model: model.encode_video(pixels, grid))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    policy = VideoLMPolicy.build("tiny").eval()
    reference = copy.deepcopy(policy)
    tokenizer, processor = load_model_processing("tiny")
    engine = TransformersEngine()
    engine.setup(policy)
    params = SamplingParams(max_new_tokens=args.new_tokens, n=args.group_size, seed=0)
    rng = np.random.default_rng(0)
    threads = torch.get_num_threads()
    print(f"tiny Qwen2.5-VL, G={args.group_size}, {args.new_tokens} new tokens, 56x56 frames, {threads} CPU threads")
    print(f"{'frames':>7} {'video tokens':>13} {'cached s':>9} {'no cache s':>11} {'speed-up':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for frames in args.frames:
            path = write_video(Path(tmp) / f"v{frames}.mp4", rng.integers(0, 255, (frames, 64, 64, 3), dtype=np.uint8))
            clip, pixels, grid, batch = _inputs(path, frames, tokenizer, processor)
            common = (policy, reference, engine, clip, pixels, grid, batch, processor, params)
            cached = min(with_cache(*common) for _ in range(args.repeats))
            naive = min(without_cache(*common) for _ in range(args.repeats))
            tokens = int(grid.prod()) // processor.merge_size**2
            print(f"{frames:>7} {tokens:>13} {cached:>9.2f} {naive:>11.2f} {naive / cached:>8.2f}x")


if __name__ == "__main__":
    main()
