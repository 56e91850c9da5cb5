"""Translation between our batches and vLLM's requests: prompts with video embeddings, sampling, outputs.

Plain functions, so the conventions (placeholder runs, per-prompt seeds, row order, padding) are readable in one
place and testable on their own; :class:`~longvila_r1.rollout.VLLMEngine` only wires them to a ``vllm.LLM``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from longvila_r1.data.processing import processor_config_for, save_processor_config
from longvila_r1.data.qwen_vl import IMAGE_CONFIG_NAME, VideoProcessorConfig
from longvila_r1.models.embeddings import VIDEO_TOKEN_TYPE, VideoEmbeddings, video_tokens_per_row
from longvila_r1.models.generation import GenerationOutput, build_output
from longvila_r1.rollout.engine import SamplingParams
from longvila_r1.rollout.transformers_engine import chunk_seed, video_offsets

if TYPE_CHECKING:
    from longvila_r1.models.policy import VideoLMPolicy

# vLLM clamps logit biases to [-100, 100]; -100 below every logit of a trained model keeps a token from being
# sampled, like transformers' suppress_tokens does for the vision placeholders in VideoLMPolicy.generate.
SUPPRESS_BIAS = -100.0


def collapse_video_runs(input_ids: Tensor, mm_token_type_ids: Tensor, video_token_id: int) -> list[int]:
    """A prompt's ids with each run of video placeholders cut to one ``<|video_pad|>``. ``[P] -> list``

    Our prompts hold one placeholder per video token; vLLM's processor expands a single placeholder per video
    itself (to ``t*h*w / merge**2`` tokens from ``video_grid_thw``), so the expanded prompt is ours again.
    """
    is_video = (mm_token_type_ids == VIDEO_TOKEN_TYPE).tolist()
    collapsed = []
    for position, (token, video) in enumerate(zip(input_ids.tolist(), is_video, strict=True)):
        if not video:
            collapsed.append(token)
        elif position == 0 or not is_video[position - 1]:  # the first placeholder of a run
            collapsed.append(video_token_id)
    return collapsed


def build_prompts(
    input_ids: Tensor,
    attention_mask: Tensor,
    mm_token_type_ids: Tensor,
    video_embeddings: VideoEmbeddings | None,
    video_token_id: int,
) -> list[dict[str, Any]]:
    """One vLLM prompt per row: left padding stripped, videos as precomputed embeddings (CPU, detached).

    Args:
        input_ids / attention_mask / mm_token_type_ids: left-padded prompts. ``[B, P]``
        video_embeddings: the batch's videos in placeholder order, or ``None``.
        video_token_id: the ``<|video_pad|>`` id.
    """
    rows = input_ids.shape[0]
    offsets = [0] * (rows + 1)
    if video_embeddings is not None:
        video_embeddings = video_embeddings.detach().to("cpu")
        offsets = video_offsets(video_embeddings, mm_token_type_ids)
    prompts = []
    for row in range(rows):
        keep = attention_mask[row].bool().cpu()
        ids = collapse_video_runs(input_ids[row].cpu()[keep], mm_token_type_ids[row].cpu()[keep], video_token_id)
        prompt: dict[str, Any] = {"prompt_token_ids": ids}
        if offsets[row + 1] > offsets[row]:
            videos = video_embeddings.select(range(offsets[row], offsets[row + 1]))
            prompt["multi_modal_data"] = {"video": video_inputs(videos)}
        prompts.append(prompt)
    return prompts


def video_inputs(videos: VideoEmbeddings) -> dict[str, Tensor]:
    """vLLM's embedding input for Qwen2/2.5-VL videos.

    ``second_per_grid_ts`` rides along: vLLM's Qwen2.5-VL scales the temporal M-RoPE index by it (times the
    vision config's ``tokens_per_second``) exactly as transformers does; without it vLLM assumes 1 s per group.
    """
    inputs = {"video_embeds": videos.embeds, "video_grid_thw": videos.grid_thw}
    if videos.second_per_grid_ts is not None:
        inputs["second_per_grid_ts"] = videos.second_per_grid_ts
    return inputs


def stop_ids_for(params: SamplingParams, policy: VideoLMPolicy) -> list[int]:
    """The ids that end a response: ``params.stop_token_ids``, else the tokenizer's EOS (as the policy does)."""
    return [policy.tokenizer.eos_token_id] if params.stop_token_ids is None else list(params.stop_token_ids)


def sampling_params_for(params: SamplingParams, policy: VideoLMPolicy, prompt_index: int):
    """``vllm.SamplingParams`` for prompt ``prompt_index`` of a batch sampled with ``params``.

    Each prompt gets its own seed derived from ``params.seed`` (vLLM seeds its ``n`` samples ``seed + g``), so
    prompts of one batch never share draws. ``ignore_eos`` with explicit ``stop_token_ids`` makes our stop ids
    the only ones, whatever EOS vLLM reads from the exported configs.
    """
    from vllm import SamplingParams as VLLMSamplingParams

    greedy = params.is_greedy
    return VLLMSamplingParams(
        n=params.n,
        temperature=0.0 if greedy else params.temperature,
        top_p=1.0 if greedy else params.top_p,
        top_k=0 if greedy else params.top_k,
        max_tokens=params.max_new_tokens,
        seed=chunk_seed(params.seed, prompt_index),
        stop_token_ids=stop_ids_for(params, policy),
        ignore_eos=True,
        logit_bias=dict.fromkeys(policy.vision_placeholder_ids, SUPPRESS_BIAS),
        detokenize=False,
    )


def build_generation_output(
    tokens: list[list[list[int]]],
    input_ids: Tensor,
    attention_mask: Tensor,
    mm_token_type_ids: Tensor,
    video_embeddings: VideoEmbeddings | None,
    params: SamplingParams,
    policy: VideoLMPolicy,
) -> GenerationOutput:
    """The :class:`GenerationOutput` of ``tokens[b][g]`` (sample ``g`` of prompt ``b``), as transformers gives it.

    Row ``b * n + g``; prompts stay left-padded as given; responses are right-padded with the pad id to the
    longest one; masks and ``finished`` follow the stop ids exactly as :meth:`VideoLMPolicy.generate`, and a
    response that ended without one before the longest (vLLM's context limit) is masked after its last token.
    """
    n, pad_id = params.n, policy.tokenizer.pad_token_id
    samples = [sample for prompt in tokens for sample in prompt]  # row b * n + g
    width = max(len(sample) for sample in samples)
    responses = torch.full((len(samples), width), pad_id, dtype=input_ids.dtype)  # [B*n, L]
    for row, sample in enumerate(samples):
        responses[row, : len(sample)] = torch.tensor(sample, dtype=input_ids.dtype)
    ids, mask, types = (t.repeat_interleave(n, dim=0) for t in (input_ids, attention_mask, mm_token_type_ids))
    if video_embeddings is not None and n > 1:
        video_embeddings = video_embeddings.repeat_rows(video_tokens_per_row(mm_token_type_ids), n)
    sequences = torch.cat([ids, responses.to(ids.device)], dim=1)  # [B*n, P+L]
    lengths = torch.tensor([len(sample) for sample in samples])  # [B*n]
    return build_output(sequences, mask, types, video_embeddings, stop_ids_for(params, policy), pad_id, lengths)


def write_processor_configs(policy: VideoLMPolicy, model_dir: Path, processor_path: str | None = None) -> None:
    """Write the video and image processor configs vLLM's Qwen-VL processor loads at start.

    vLLM reads the merge size (placeholder expansion) and pixel budget from them; with embedding inputs nothing
    else is used. ``processor_path`` (a preset or checkpoint) gives the real preprocessing, e.g. to feed vLLM
    pixels in a test; by default the family's HF defaults with the model's patch sizes.
    """
    if processor_path is not None:
        config = processor_config_for(processor_path, policy.family)
    else:
        sizes = {"patch_size": policy.patch_size, "merge_size": policy.merge_size}
        config = VideoProcessorConfig.qwen2_vl(temporal_patch_size=policy.temporal_patch_size, **sizes)
    save_processor_config(config, model_dir)
    image = config.to_dict()
    image.pop("video_processor_type")
    image["image_processor_type"] = "Qwen2VLImageProcessor"
    (model_dir / IMAGE_CONFIG_NAME).write_text(json.dumps(image, indent=2) + "\n", encoding="utf-8")
