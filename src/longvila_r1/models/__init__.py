"""The policy wrapper around a Qwen-VL model, its tiny presets and the packaged tokenizer.

Example:
    >>> from longvila_r1.models import VideoLMPolicy
    >>> policy = VideoLMPolicy.build("tiny", family="qwen2_5_vl")
"""

from __future__ import annotations

from longvila_r1.models.embeddings import VideoEmbeddings
from longvila_r1.models.generation import GenerationOutput
from longvila_r1.models.logprobs import score_mask, token_logprobs
from longvila_r1.models.policy import ATTN_IMPLEMENTATIONS, DTYPES, VideoLMPolicy
from longvila_r1.models.presets import FAMILIES, PRESETS, SMALL, TINY, TinyPreset, special_token_ids, tiny_config
from longvila_r1.models.tokenizer import load_tiny_tokenizer

__all__ = [
    "ATTN_IMPLEMENTATIONS",
    "DTYPES",
    "FAMILIES",
    "PRESETS",
    "SMALL",
    "TINY",
    "GenerationOutput",
    "TinyPreset",
    "VideoEmbeddings",
    "VideoLMPolicy",
    "load_tiny_tokenizer",
    "score_mask",
    "special_token_ids",
    "tiny_config",
    "token_logprobs",
]
