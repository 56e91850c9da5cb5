"""Helpers of the vLLM engine tests: video prompts with uneven lengths, and policies whose weights moved."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from longvila_r1.data.collate import pad_sequences
from longvila_r1.data.processing import processor_config_for
from longvila_r1.data.qwen_vl import preprocess_videos
from longvila_r1.data.qwen_vl_prompt import build_prompt
from longvila_r1.models import VideoEmbeddings, VideoLMPolicy

# Frame counts and sampling rates differ per video, so the grids, prompt lengths (left padding) and Qwen2.5-VL's
# seconds per temporal group (2.0 and 0.5, scaling the M-RoPE time index) all differ between the two prompts.
FRAMES = (4, 8)
FPS = (1.0, 4.0)
QUESTIONS = ("What moves first?", "Which colour appears at the end of the clip?")


@dataclass
class VideoPrompts:
    """Left-padded prompts, their raw frames (for vLLM's pixel route) and our embeddings of them."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    mm_token_type_ids: torch.Tensor
    embeddings: VideoEmbeddings
    frames: list[np.ndarray]
    fps: tuple[float, ...]

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, VideoEmbeddings]:
        return self.input_ids, self.attention_mask, self.mm_token_type_ids, self.embeddings


def make_prompts(policy: VideoLMPolicy, seed: int = 0) -> VideoPrompts:
    generator = torch.Generator().manual_seed(seed)
    frames = [torch.randint(0, 256, (t, 64, 64, 3), generator=generator, dtype=torch.uint8).numpy() for t in FRAMES]
    batch = preprocess_videos(frames, processor_config_for("tiny"), sampled_fps=FPS)
    encodings = [
        build_prompt(policy.tokenizer, question, ["red", "blue"], video_grid_thw=grid, merge_size=policy.merge_size)
        for question, grid in zip(QUESTIONS, batch.video_grid_thw, strict=True)
    ]
    with torch.no_grad():
        embeddings = policy.encode_video(batch.pixel_values_videos, batch.video_grid_thw, batch.second_per_grid_ts)
    return VideoPrompts(
        input_ids=pad_sequences([e.input_ids for e in encodings], policy.tokenizer.pad_token_id, "left"),
        attention_mask=pad_sequences([e.attention_mask for e in encodings], 0, "left"),
        mm_token_type_ids=pad_sequences([e.mm_token_type_ids for e in encodings], 0, "left"),
        embeddings=embeddings.detach(),
        frames=frames,
        fps=FPS,
    )


def perturbed(policy: VideoLMPolicy, seed: int, scale: float = 0.05) -> VideoLMPolicy:
    """A copy of ``policy`` whose language-model weights moved, as after some optimizer steps."""
    moved = copy.deepcopy(policy)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in moved.language_parameters():
            param.add_(scale * torch.randn(param.shape, generator=generator))
    return moved
