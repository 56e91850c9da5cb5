"""The tokenizer and video preprocessing settings that belong to a model path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from longvila_r1.data.qwen_vl import VideoProcessorConfig

TINY = "tiny"
# The tiny preset sees 56x56 frames (2x2 merged patches of 14 px): 64x64 synthetic frames round to it.
TINY_MIN_PIXELS = 56 * 56
TINY_MAX_PIXELS = 64 * 64


def tiny_processor_config() -> VideoProcessorConfig:
    """Video preprocessing of the ``tiny`` preset (Qwen2-VL layout, frames kept around 56x56)."""
    return VideoProcessorConfig.qwen2_vl(min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS)


def load_model_processing(model_path: str) -> tuple[Any, VideoProcessorConfig]:
    """``(tokenizer, VideoProcessorConfig)`` for ``"tiny"`` or a local Hugging Face model directory.

    Example:
        >>> tokenizer, processor = load_model_processing("tiny")
        >>> processor.patch_size, processor.merge_size
        (14, 2)
    """
    if model_path == TINY:
        from longvila_r1.models.tokenizer import load_tiny_tokenizer

        return load_tiny_tokenizer(), tiny_processor_config()
    path = Path(model_path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"model path {model_path!r} is neither 'tiny' nor a local directory; models load from local paths only"
        )
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path)), VideoProcessorConfig.from_pretrained_dir(path)
