"""Random-init Qwen-VL configurations small enough for CPU tests and demos.

A preset is a :class:`TinyPreset` of sizes; :func:`tiny_config` turns one into the transformers config of a
model family, with the special token ids of the packaged tiny tokenizer (the transformers defaults point at
Qwen's 151k vocabulary and would index past a small embedding table).

Example:
    >>> config = tiny_config("qwen2_5_vl", vocab_size=512, text_layers=4)
    >>> config.text_config.num_hidden_layers, config.video_token_id
    (4, 7)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from transformers import PreTrainedConfig

from longvila_r1.models.tokenizer import (
    ENDOFTEXT,
    IM_END,
    IMAGE_PAD,
    SPECIAL_TOKENS,
    VIDEO_PAD,
    VISION_END,
    VISION_START,
)

FAMILIES = ("qwen2_5_vl", "qwen2_vl", "qwen3_vl")


@dataclass(frozen=True)
class TinyPreset:
    """Sizes of a random-init Qwen-VL model.

    The text head dim is ``text_hidden // text_heads``; M-RoPE sections are derived from it, so any even
    head dim works. Grow the model by replacing fields, e.g. ``dataclasses.replace(TINY, text_layers=4)``.

    Example:
        >>> TinyPreset(text_hidden=256, text_heads=8).text_head_dim
        32
    """

    text_layers: int = 2
    text_hidden: int = 128
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate: int = 352
    max_position_embeddings: int = 32768
    vision_depth: int = 2
    vision_hidden: int = 64
    vision_heads: int = 4
    vision_intermediate: int = 128
    merge_size: int = 2
    temporal_patch_size: int = 2
    # None picks the family's native patch size (14 for Qwen2/2.5-VL, 16 for Qwen3-VL).
    patch_size: int | None = None

    @property
    def text_head_dim(self) -> int:
        return self.text_hidden // self.text_heads

    def validate(self) -> None:
        """Raise ``ValueError`` if the sizes cannot make a working model."""
        if self.text_hidden % self.text_heads or self.text_head_dim % 2:
            raise ValueError(f"text_hidden ({self.text_hidden}) / text_heads ({self.text_heads}) must be an even int")
        if self.text_heads % self.text_kv_heads:
            raise ValueError(f"text_heads ({self.text_heads}) must be a multiple of text_kv_heads")
        if self.vision_hidden % self.vision_heads:
            raise ValueError(f"vision_hidden ({self.vision_hidden}) must be a multiple of vision_heads")


TINY = TinyPreset()
# Wider and deeper, for demos where the tiny model cannot fit the task (still ~10M parameters).
SMALL = TinyPreset(
    text_layers=4, text_hidden=256, text_heads=8, text_kv_heads=4, text_intermediate=704, vision_hidden=128
)
# The CPU demo's model: the tiny sizes, with frames normalised around the dark synthetic background rather than
# with CLIP statistics (see `longvila_r1.data.processing.PRESET_PIXEL_STATS`). With CLIP statistics every patch of
# the background becomes the same large vector, the random-init vision tower gives nearly identical video tokens,
# and the language model learns to ignore them.
DEMO = TINY
PRESETS: dict[str, TinyPreset] = {"tiny": TINY, "small": SMALL, "demo": DEMO}


def special_token_ids() -> dict[str, int]:
    """Ids of the Qwen-VL special tokens in the packaged tokenizer (fixed by its construction order)."""
    index = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    return {
        "bos_token_id": index[ENDOFTEXT],
        "pad_token_id": index[ENDOFTEXT],
        "eos_token_id": index[IM_END],
        "vision_start_token_id": index[VISION_START],
        "vision_end_token_id": index[VISION_END],
        "image_token_id": index[IMAGE_PAD],
        "video_token_id": index[VIDEO_PAD],
    }


def resolve_preset(preset: str | TinyPreset = "tiny", **overrides: int) -> TinyPreset:
    """Look up a named preset and apply field overrides, with errors naming the valid choices."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"preset={preset!r} is not one of {sorted(PRESETS)}")
        preset = PRESETS[preset]
    fields = {f.name for f in dataclasses.fields(TinyPreset)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown preset overrides {unknown}; valid fields: {sorted(fields)}")
    preset = dataclasses.replace(preset, **overrides)
    preset.validate()
    return preset


def tiny_config(
    family: str = "qwen2_5_vl",
    vocab_size: int | None = None,
    preset: str | TinyPreset = "tiny",
    **overrides: int,
) -> PreTrainedConfig:
    """Build the transformers config of a random-init tiny Qwen-VL model.

    Args:
        family: one of ``"qwen2_5_vl"``, ``"qwen2_vl"``, ``"qwen3_vl"``.
        vocab_size: embedding rows; defaults to ``len(load_tiny_tokenizer())``.
        preset: a preset name (``"tiny"``, ``"small"``, ``"demo"``) or a :class:`TinyPreset`.
        **overrides: :class:`TinyPreset` fields to replace, e.g. ``text_layers=4``.

    Example:
        >>> tiny_config("qwen3_vl").vision_config.deepstack_visual_indexes
        [0, 1]
    """
    if family not in FAMILIES:
        raise ValueError(f"family={family!r} is not one of {list(FAMILIES)}")
    sizes = resolve_preset(preset, **overrides)
    if vocab_size is None:
        from longvila_r1.models.tokenizer import load_tiny_tokenizer

        vocab_size = len(load_tiny_tokenizer())
    builder = {"qwen2_5_vl": _qwen2_5_vl, "qwen2_vl": _qwen2_vl, "qwen3_vl": _qwen3_vl}[family]
    return builder(sizes, vocab_size)


def _text_kwargs(sizes: TinyPreset, vocab_size: int, mrope_section: list[int]) -> dict:
    ids = special_token_ids()
    return {
        "vocab_size": vocab_size,
        "hidden_size": sizes.text_hidden,
        "intermediate_size": sizes.text_intermediate,
        "num_hidden_layers": sizes.text_layers,
        "num_attention_heads": sizes.text_heads,
        "num_key_value_heads": sizes.text_kv_heads,
        "max_position_embeddings": sizes.max_position_embeddings,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": mrope_section},
        "bos_token_id": ids["bos_token_id"],
        "eos_token_id": ids["eos_token_id"],
        "pad_token_id": ids["pad_token_id"],
    }


def _top_level_ids() -> dict[str, int]:
    ids = special_token_ids()
    keys = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    return {key: ids[key] for key in keys}


def _qwen2_mrope_section(head_dim: int) -> list[int]:
    # Qwen2/2.5-VL split the rotary half-dim as [1/4, 3/8, 3/8] (t, h, w): [16, 24, 24] at head dim 128.
    half = head_dim // 2
    spatial = 3 * half // 8
    return [half - 2 * spatial, spatial, spatial]


def _qwen3_mrope_section(head_dim: int) -> list[int]:
    # Qwen3-VL interleaves t/h/w over the half-dim with [24, 20, 20] at head dim 128.
    half = head_dim // 2
    spatial = 20 * half // 64
    return [half - 2 * spatial, spatial, spatial]


def _qwen2_5_vl(sizes: TinyPreset, vocab_size: int) -> PreTrainedConfig:
    from transformers import Qwen2_5_VLConfig

    vision = {
        "depth": sizes.vision_depth,
        "hidden_size": sizes.vision_hidden,
        "intermediate_size": sizes.vision_intermediate,
        "num_heads": sizes.vision_heads,
        "patch_size": sizes.patch_size or 14,
        "spatial_merge_size": sizes.merge_size,
        "temporal_patch_size": sizes.temporal_patch_size,
        "out_hidden_size": sizes.text_hidden,
        # The last block attends globally, the others in windows, as in the real model.
        "fullatt_block_indexes": [sizes.vision_depth - 1],
    }
    text = _text_kwargs(sizes, vocab_size, _qwen2_mrope_section(sizes.text_head_dim))
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **_top_level_ids())


def _qwen2_vl(sizes: TinyPreset, vocab_size: int) -> PreTrainedConfig:
    from transformers import Qwen2VLConfig

    vision = {
        "depth": sizes.vision_depth,
        "embed_dim": sizes.vision_hidden,
        "hidden_size": sizes.text_hidden,  # Qwen2-VL names the merger's output width `hidden_size`.
        "mlp_ratio": sizes.vision_intermediate // sizes.vision_hidden,
        "num_heads": sizes.vision_heads,
        "patch_size": sizes.patch_size or 14,
        "spatial_merge_size": sizes.merge_size,
        "temporal_patch_size": sizes.temporal_patch_size,
    }
    text = _text_kwargs(sizes, vocab_size, _qwen2_mrope_section(sizes.text_head_dim))
    return Qwen2VLConfig(text_config=text, vision_config=vision, **_top_level_ids())


def _qwen3_vl(sizes: TinyPreset, vocab_size: int) -> PreTrainedConfig:
    from transformers import Qwen3VLConfig

    # Deepstack taps at most 3 vision blocks and injects them into as many first decoder layers.
    taps = min(3, sizes.vision_depth, sizes.text_layers)
    vision = {
        "depth": sizes.vision_depth,
        "hidden_size": sizes.vision_hidden,
        "intermediate_size": sizes.vision_intermediate,
        "num_heads": sizes.vision_heads,
        "patch_size": sizes.patch_size or 16,
        "spatial_merge_size": sizes.merge_size,
        "temporal_patch_size": sizes.temporal_patch_size,
        "out_hidden_size": sizes.text_hidden,
        "num_position_embeddings": 256,  # a 16x16 learned grid, interpolated to any frame size
        "deepstack_visual_indexes": [i * sizes.vision_depth // taps for i in range(taps)],
    }
    text = _text_kwargs(sizes, vocab_size, _qwen3_mrope_section(sizes.text_head_dim))
    text["head_dim"] = sizes.text_head_dim
    text["rope_parameters"]["mrope_interleaved"] = True
    return Qwen3VLConfig(text_config=text, vision_config=vision, **_top_level_ids())
