"""Generation throughput of the vLLM engine vs the transformers engine, and the vLLM weight-sync time.

Both engines sample the same B video prompts (cached embeddings, G samples each) with the same settings. Every
response runs to exactly ``--new-tokens`` tokens: the stop id is ``<|image_pad|>``, a vision placeholder both
engines are barred from sampling, so the token counts, and therefore the tokens/s, compare like for like. Each engine
generates once untimed first (vLLM's first call pays its warm-up), then the two take turns, ``--repeats`` times
each, and the medians are compared: on a shared machine both see the same load. The weight sync is timed after
a perturbation of the language-model weights (the vision tower is frozen, so only the language model is sent).

Needs vLLM: on CPU run it in the environment ``make test-vllm`` builds:
    .venv-vllm/bin/python benchmarks/rollout_engines.py [--preset tiny] [--prompts 8] [--group-size 8]
        [--new-tokens 64] [--frames 16] [--repeats 5] [--enforce-eager]

Prints tokens/s of both engines and their ratio, the sync seconds and the vLLM start-up seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from longvila_r1.data.collate import pad_sequences
from longvila_r1.data.processing import processor_config_for
from longvila_r1.data.qwen_vl import preprocess_videos
from longvila_r1.data.qwen_vl_prompt import build_prompt
from longvila_r1.models import VideoEmbeddings, VideoLMPolicy
from longvila_r1.rollout import RolloutEngine, SamplingParams, TransformersEngine, VLLMEngine


def make_batch(policy: VideoLMPolicy, preset: str, prompts: int, frames: int, seed: int = 0):
    """``prompts`` left-padded video prompts (random 64x64 frames, 2 fps) and their cached embeddings."""
    generator = torch.Generator().manual_seed(seed)
    videos = [
        torch.randint(0, 256, (frames, 64, 64, 3), generator=generator, dtype=torch.uint8) for _ in range(prompts)
    ]
    batch = preprocess_videos(videos, processor_config_for(preset, policy.family), sampled_fps=[2.0] * prompts)
    encodings = [
        build_prompt(policy.tokenizer, f"Question {i}: what happens?", ["a", "b", "c", "d"], video_grid_thw=grid)
        for i, grid in enumerate(batch.video_grid_thw)
    ]
    pad = policy.tokenizer.pad_token_id
    tensors = (
        pad_sequences([e.input_ids for e in encodings], pad, "left"),
        pad_sequences([e.attention_mask for e in encodings], 0, "left"),
        pad_sequences([e.mm_token_type_ids for e in encodings], 0, "left"),
    )
    with torch.no_grad():
        embeddings = policy.encode_video(batch.pixel_values_videos, batch.video_grid_thw, batch.second_per_grid_ts)
    return tensors, embeddings.detach()


def tokens_per_second(
    engines: dict[str, RolloutEngine], tensors, embeddings: VideoEmbeddings, params: SamplingParams, repeats: int
) -> dict[str, float]:
    """Median tokens/s of each engine; the engines take turns, so both see the same load on a shared machine."""
    for engine in engines.values():
        engine.generate(*tensors, embeddings, params)  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in engines}
    for repeat in range(repeats):
        for name, engine in engines.items():
            start = time.perf_counter()
            out = engine.generate(*tensors, embeddings, dataclasses.replace(params, seed=repeat))
            rates[name].append(float(out.response_lengths.sum()) / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


def sync_seconds(engine: VLLMEngine, policy: VideoLMPolicy, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        with torch.no_grad():  # an optimizer step's worth of change
            for param in policy.language_parameters():
                param.add_(1e-3 * torch.randn_like(param))
        times.append(engine.sync_weights(policy))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", help="tiny, small or a model directory")
    parser.add_argument("--prompts", type=int, default=8, help="B")
    parser.add_argument("--group-size", type=int, default=8, help="G, samples per prompt")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--enforce-eager", action="store_true", help="vLLM without torch.compile / CUDA graphs")
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    policy = VideoLMPolicy.build(args.preset, family="qwen2_5_vl", freeze_vision=True).to(device)
    tensors, embeddings = make_batch(policy, args.preset, args.prompts, args.frames)
    tensors, embeddings = tuple(t.to(device) for t in tensors), embeddings.to(device)
    stop = policy.config.image_token_id  # a placeholder neither engine samples: every response is full length
    params = SamplingParams(max_new_tokens=args.new_tokens, temperature=1.0, n=args.group_size, stop_token_ids=(stop,))

    vllm_engine = VLLMEngine(enforce_eager=args.enforce_eager, gpu_memory_utilization=0.5)
    start = time.perf_counter()
    vllm_engine.setup(policy)
    startup = time.perf_counter() - start
    transformers_engine = TransformersEngine()
    transformers_engine.setup(policy)
    engines = {"transformers": transformers_engine, "vllm": vllm_engine}
    rates = tokens_per_second(engines, tensors, embeddings, params, args.repeats)
    sync = sync_seconds(vllm_engine, policy, args.repeats)
    for engine in engines.values():
        engine.teardown()
    hf_rate, vllm_rate = rates["transformers"], rates["vllm"]

    rows = args.prompts * args.group_size
    print(
        f"{args.preset} on {device}: B={args.prompts} G={args.group_size} ({rows} rows), {args.new_tokens} new tokens"
    )
    print(f"transformers engine  {hf_rate:10.0f} tokens/s")
    print(f"vLLM engine          {vllm_rate:10.0f} tokens/s   ratio vLLM/transformers {vllm_rate / hf_rate:.2f}x")
    sent = sum(p.numel() for p in policy.language_parameters())
    print(f"vLLM weight sync     {sync:10.3f} s (language model only, {sent:,} parameters)")
    print(f"vLLM start-up        {startup:10.1f} s")


if __name__ == "__main__":
    main()
