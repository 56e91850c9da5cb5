"""The tokenizer and video preprocessing settings that belong to a model path."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from longvila_r1.data.qwen_vl import VIDEO_CONFIG_NAME, VideoProcessorConfig

# Random-init presets of `longvila_r1.models.presets`; their frames stay small: 64x64 synthetic frames
# become 56x56 (Qwen2/2.5-VL, 14 px patches) or 64x64 (Qwen3-VL, 16 px patches), a 2x2 grid of merged patches.
PRESET_NAMES = ("tiny", "small", "demo")
# Per-preset pixel statistics (mean, std per RGB channel) replacing CLIP's. The demo preset centres the inputs on
# the dark synthetic background (grey level ~40/255): empty patches become ~0 and the objects stand out. With
# CLIP statistics every background pixel is ~-1.2, every patch embedding of the random-init vision tower is
# dominated by one shared vector, the video tokens all look alike, and the language model learns to ignore them
# (measured: equal loss with each sample's own video and with another sample's).
PRESET_PIXEL_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "demo": ((0.16, 0.16, 0.16), (0.3, 0.3, 0.3)),
}
PRESET_MIN_PIXELS = 56 * 56
PRESET_MAX_PIXELS = 64 * 64
# Qwen3-VL budgets the pixels of the whole video (t * h * w), not of one frame: allow 64x64 up to 1024 frames.
QWEN3_PRESET_MIN_PIXELS = 32 * 32 * 2
QWEN3_PRESET_MAX_PIXELS = 64 * 64 * 1024


def processor_config_for(model_path: str, family: str | None = None) -> VideoProcessorConfig:
    """Video preprocessing of a preset (for its ``family``, default Qwen2.5-VL) or of a model directory.

    Example:
        >>> processor_config_for("tiny").patch_size, processor_config_for("tiny", "qwen3_vl").patch_size
        (14, 16)
        >>> processor_config_for("demo").image_mean
        (0.16, 0.16, 0.16)
    """
    if model_path in PRESET_NAMES:
        if family == "qwen3_vl":
            pixels = {"min_pixels": QWEN3_PRESET_MIN_PIXELS, "max_pixels": QWEN3_PRESET_MAX_PIXELS}
            config = VideoProcessorConfig.qwen3_vl(**pixels)
        else:
            config = VideoProcessorConfig.qwen2_vl(min_pixels=PRESET_MIN_PIXELS, max_pixels=PRESET_MAX_PIXELS)
        if model_path in PRESET_PIXEL_STATS:
            mean, std = PRESET_PIXEL_STATS[model_path]
            config = dataclasses.replace(config, image_mean=mean, image_std=std)
        return config
    return VideoProcessorConfig.from_pretrained_dir(_model_dir(model_path))


def load_model_processing(model_path: str, family: str | None = None) -> tuple[Any, VideoProcessorConfig]:
    """``(tokenizer, VideoProcessorConfig)`` for a preset name or a local Hugging Face model directory.

    Example:
        >>> tokenizer, processor = load_model_processing("tiny")
        >>> processor.patch_size, processor.merge_size
        (14, 2)
    """
    if model_path in PRESET_NAMES:
        from longvila_r1.models.tokenizer import load_tiny_tokenizer

        return load_tiny_tokenizer(), processor_config_for(model_path, family)
    from transformers import AutoTokenizer

    path = _model_dir(model_path)
    return AutoTokenizer.from_pretrained(str(path)), VideoProcessorConfig.from_pretrained_dir(path)


def save_processor_config(config: VideoProcessorConfig, output_dir: str | Path) -> Path:
    """Write ``video_preprocessor_config.json`` into a model directory (read back by ``from_pretrained_dir``)."""
    path = Path(output_dir) / VIDEO_CONFIG_NAME
    path.write_text(json.dumps(config.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path


def _model_dir(model_path: str) -> Path:
    path = Path(model_path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"model path {model_path!r} is neither a preset {PRESET_NAMES} nor a local directory; "
            "models load from local paths only"
        )
    return path
