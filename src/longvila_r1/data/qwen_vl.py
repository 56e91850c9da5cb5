"""Qwen-VL video preprocessing in pure torch: the tensors HF's Qwen2-VL / Qwen2.5-VL / Qwen3-VL video processors make.

transformers' video processors all import torchvision, whose PyPI wheels do not load next to a CPU torch, so this
module reproduces them with ``torch.nn.functional.interpolate``:

1. smart resize of every frame to multiples of ``patch_size * merge_size`` within a pixel budget (per frame for
   Qwen2/2.5-VL, over the whole ``t * h * w`` volume for Qwen3-VL);
2. bicubic antialiased resize of the uint8 frames, exactly as torchvision does it;
3. fused rescale (1/255) and mean/std normalisation in float32;
4. frame count padded to a multiple of ``temporal_patch_size`` by repeating the last frame, then patchified in
   HF's order into ``pixel_values_videos`` ``[N, C * tp * p * p]`` and ``video_grid_thw`` ``[t, h, w]``.

The model then sees ``t * h * w / merge_size**2`` video tokens. The token side (prompt, ``<|video_pad|>``
expansion, ``mm_token_type_ids``, SFT labels) lives in :mod:`longvila_r1.data.qwen_vl_prompt`.

Example:
    >>> frames = torch.zeros(16, 90, 160, 3, dtype=torch.uint8)  # [T, H, W, 3] RGB
    >>> pixels, grid = preprocess_video(frames, VideoProcessorConfig.qwen2_vl(min_pixels=56 * 56, max_pixels=112 * 112))
    >>> grid.tolist(), tuple(pixels.shape), num_video_tokens(grid)
    ([8, 6, 10], (480, 1176), 120)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_STANDARD_MEAN = (0.5, 0.5, 0.5)
IMAGENET_STANDARD_STD = (0.5, 0.5, 0.5)
VIDEO_CONFIG_NAME, IMAGE_CONFIG_NAME = "video_preprocessor_config.json", "preprocessor_config.json"
_PROCESSOR_TYPES = {"qwen2_vl": "Qwen2VLVideoProcessor", "qwen3_vl": "Qwen3VLVideoProcessor"}
_PIL_BICUBIC = 3


@dataclass
class VideoProcessorConfig:
    """Settings of a Qwen-VL video processor; field names follow HF's processor attributes.

    Args:
        family: ``"qwen2_vl"`` (also Qwen2.5-VL: the pixel budget applies per frame) or ``"qwen3_vl"`` (the budget
            applies to the ``t * h * w`` volume, and prompts carry per-group timestamps).
        patch_size / merge_size / temporal_patch_size: the vision tower's patching (14/2/2, Qwen3-VL 16/2/2).
        min_pixels / max_pixels: the resize budget (HF's ``size["shortest_edge"]`` / ``size["longest_edge"]``).
        image_mean / image_std: per-channel normalisation (OpenAI CLIP for Qwen2/2.5-VL, 0.5 for Qwen3-VL).
        rescale_factor / do_resize / do_rescale / do_normalize: as in HF.
        cap_pixels_per_frame / max_video_tokens: HF's optional qwen-vl-utils style budget cap (off by default).
            ``max_video_tokens`` means the context length for Qwen2-VL and the tokens per frame for Qwen3-VL.
        timestamp_tokens: put ``<t seconds>`` before each temporal group's vision tokens (Qwen3-VL).
        extra: keys of a loaded checkpoint config that are not modelled here; written back by :meth:`to_dict`,
            ignored by ``==``.

    Example:
        >>> VideoProcessorConfig.qwen3_vl().patch_size
        16
        >>> cfg = VideoProcessorConfig.from_pretrained_dir("checkpoints/Qwen2.5-VL-7B-Instruct")  # doctest: +SKIP
    """

    family: Literal["qwen2_vl", "qwen3_vl"] = "qwen2_vl"
    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2
    min_pixels: int = 128 * 28 * 28
    max_pixels: int = 768 * 28 * 28
    image_mean: tuple[float, ...] = OPENAI_CLIP_MEAN
    image_std: tuple[float, ...] = OPENAI_CLIP_STD
    rescale_factor: float = 1 / 255
    do_resize: bool = True
    do_rescale: bool = True
    do_normalize: bool = True
    cap_pixels_per_frame: bool = False
    max_video_tokens: int = 128000
    timestamp_tokens: bool = False
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.family not in _PROCESSOR_TYPES:
            raise ValueError(f"family must be one of {sorted(_PROCESSOR_TYPES)}, got {self.family!r}")
        for name in ("patch_size", "merge_size", "temporal_patch_size", "min_pixels", "max_pixels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        self.image_mean, self.image_std = tuple(self.image_mean), tuple(self.image_std)

    @property
    def factor(self) -> int:
        """Side length every resized frame is a multiple of (``patch_size * merge_size``)."""
        return self.patch_size * self.merge_size

    @classmethod
    def qwen2_vl(cls, **overrides: Any) -> VideoProcessorConfig:
        """HF ``Qwen2VLVideoProcessor`` defaults (also used by Qwen2.5-VL)."""
        return cls(**overrides)

    @classmethod
    def qwen3_vl(cls, **overrides: Any) -> VideoProcessorConfig:
        """HF ``Qwen3VLVideoProcessor`` defaults (hub checkpoints override the pixel budget in their config)."""
        defaults = {
            "family": "qwen3_vl",
            "patch_size": 16,
            "min_pixels": 128 * 32 * 32,
            "max_pixels": 768 * 32 * 32,
            "image_mean": IMAGENET_STANDARD_MEAN,
            "image_std": IMAGENET_STANDARD_STD,
            "max_video_tokens": 768,
            "timestamp_tokens": True,
        }
        return cls(**{**defaults, **overrides})

    @classmethod
    def from_pretrained_dir(cls, path: str | Path) -> VideoProcessorConfig:
        """Read ``video_preprocessor_config.json`` (else ``preprocessor_config.json``) of a checkpoint directory.

        The processor class named in the file picks the family preset; keys the file lacks keep the preset's
        values, and keys this config does not model are kept in ``extra``.
        """
        path = Path(path)
        for name in (VIDEO_CONFIG_NAME, IMAGE_CONFIG_NAME):
            if (path / name).is_file():
                return cls.from_dict(json.loads((path / name).read_text(encoding="utf-8")))
        raise FileNotFoundError(f"no {VIDEO_CONFIG_NAME} or {IMAGE_CONFIG_NAME} in {path}")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> VideoProcessorConfig:
        """Build from a dict with HF's keys (see :meth:`from_pretrained_dir`)."""
        kind = " ".join(
            str(raw.get(k, "")) for k in ("video_processor_type", "image_processor_type", "processor_class")
        )
        base = cls.qwen3_vl() if "Qwen3VL" in kind else cls.qwen2_vl()
        if raw.get("resample", _PIL_BICUBIC) != _PIL_BICUBIC:
            raise ValueError(f"only bicubic resampling (resample=3) is implemented, got resample={raw['resample']}")
        names = {"patch_size", "merge_size", "temporal_patch_size", "image_mean", "image_std", "rescale_factor"}
        names |= {"do_resize", "do_rescale", "do_normalize", "max_video_tokens"}
        values: dict[str, Any] = {k: raw[k] for k in names if raw.get(k) is not None}
        values["cap_pixels_per_frame"] = bool(raw.get("cap_pixels_per_frame"))
        size = raw.get("size") or {}
        for key, name in (("shortest_edge", "min_pixels"), ("longest_edge", "max_pixels")):
            if size.get(key) is not None:
                values[name] = size[key]
            # Qwen2VLVideoProcessor.__init__ lets top-level min/max_pixels win over size; Qwen3-VL ignores them.
            if base.family == "qwen2_vl" and raw.get(name) is not None:
                values[name] = raw[name]
        known = names | {"size", "min_pixels", "max_pixels", "cap_pixels_per_frame", "resample"}
        return replace(base, **values, extra={k: v for k, v in raw.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        """HF-style ``video_preprocessor_config.json`` content (``timestamp_tokens`` follows the family).

        Keys read from a checkpoint that this config does not model (``extra``: ``fps``, ``do_sample_frames``,
        ...) are written back unchanged.
        """
        out = asdict(self)
        extra, family = out.pop("extra"), out.pop("family")
        out.pop("timestamp_tokens")
        size = {"shortest_edge": out.pop("min_pixels"), "longest_edge": out.pop("max_pixels")}
        out.update(image_mean=list(self.image_mean), image_std=list(self.image_std), size=size)
        head = {"video_processor_type": _PROCESSOR_TYPES[family], "resample": _PIL_BICUBIC, "do_convert_rgb": True}
        return {**extra, **head, **out}


@dataclass
class VideoBatch:
    """Several videos preprocessed for one forward pass (what HF's processor returns for a video list).

    Attributes:
        pixel_values_videos: ``[sum N_i, C * tp * p * p]`` float32, the videos' patches one after another.
        video_grid_thw: ``[V, 3]`` int64, ``(t, h, w)`` patch grid per video.
        second_per_grid_ts: ``[V]`` float32 seconds per temporal group (Qwen2.5-VL M-RoPE), or ``None``.
    """

    pixel_values_videos: torch.Tensor
    video_grid_thw: torch.Tensor
    second_per_grid_ts: torch.Tensor | None = None


def smart_resize(
    height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56, max_pixels: int = 14 * 14 * 4 * 1280
) -> tuple[int, int]:
    """Qwen2-VL's resize rule: sides multiple of ``factor``, ``h * w`` in ``[min_pixels, max_pixels]``, aspect kept.

    Same as ``transformers.models.qwen2_vl.image_processing_qwen2_vl.smart_resize``.

    Example:
        >>> smart_resize(360, 640, factor=28, min_pixels=56 * 56, max_pixels=224 * 224)
        (168, 280)
    """
    if max(height, width) / min(height, width) > 200:
        raise ValueError(
            f"absolute aspect ratio must be smaller than 200, got {max(height, width) / min(height, width)}"
        )
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def smart_resize_video(
    num_frames: int, height: int, width: int, temporal_factor: int, factor: int, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """Qwen3-VL's resize rule: like :func:`smart_resize`, but the budget bounds ``t * h * w`` of the whole video.

    Same as ``transformers.models.qwen3_vl.video_processing_qwen3_vl.smart_resize``.
    """
    if num_frames < temporal_factor:
        raise ValueError(f"t:{num_frames} must be larger than temporal_factor:{temporal_factor}")
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    if max(height, width) / min(height, width) > 200:
        raise ValueError(
            f"absolute aspect ratio must be smaller than 200, got {max(height, width) / min(height, width)}"
        )
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    t_bar = round(num_frames / temporal_factor) * temporal_factor
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt((num_frames * height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (num_frames * height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def target_size(num_frames: int, height: int, width: int, config: VideoProcessorConfig) -> tuple[int, int]:
    """The ``(height, width)`` the processor resizes ``num_frames`` frames of ``height x width`` to."""
    if config.family == "qwen3_vl":
        max_pixels = config.max_pixels
        if config.cap_pixels_per_frame:
            frame_cap = config.max_video_tokens * config.factor**2
            per_frame = max(min(frame_cap, config.max_pixels // num_frames), int(config.min_pixels * 1.05))
            max_pixels = per_frame * num_frames
        args = (config.temporal_patch_size, config.factor, config.min_pixels, max_pixels)
        return smart_resize_video(num_frames, height, width, *args)
    max_pixels = config.max_pixels
    if config.cap_pixels_per_frame:
        # An even share of a 90% slice of the context, as qwen-vl-utils bounds long videos.
        total_pixels = int(config.max_video_tokens * config.factor * config.factor * 0.9)
        share = total_pixels * config.temporal_patch_size // num_frames
        max_pixels = max(min(max_pixels, share), int(config.min_pixels * 1.05))
    return smart_resize(height, width, config.factor, config.min_pixels, max_pixels)


def resize_frames(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic antialiased resize of uint8 ``[T, C, H, W]`` frames, bit-for-bit as torchvision's ``resize``.

    On CPU torchvision hands uint8 straight to ``interpolate`` (torch has a native uint8 kernel); elsewhere it
    resizes in float32, clamps to [0, 255] and rounds. Both paths are mirrored, as is the no-op for equal sizes.
    """
    if tuple(frames.shape[-2:]) == (height, width):
        return frames
    if frames.device.type == "cpu":
        return F.interpolate(frames, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
    out = F.interpolate(frames.float(), size=(height, width), mode="bicubic", align_corners=False, antialias=True)
    return out.clamp_(0, 255).round_().to(torch.uint8)


def normalize_frames(frames: torch.Tensor, config: VideoProcessorConfig) -> torch.Tensor:
    """Rescale and normalise ``[T, C, H, W]`` frames to float32 with HF's fused arithmetic (same rounding)."""
    if config.do_rescale and config.do_normalize:
        # HF folds 1/255 into mean and std (mean * 255, std * 255) in float32, then subtracts and divides once.
        mean = torch.tensor(config.image_mean, device=frames.device) * (1.0 / config.rescale_factor)
        std = torch.tensor(config.image_std, device=frames.device) * (1.0 / config.rescale_factor)
    elif config.do_normalize:
        mean = torch.tensor(config.image_mean, device=frames.device)
        std = torch.tensor(config.image_std, device=frames.device)
    elif config.do_rescale:
        return frames * config.rescale_factor
    else:
        return frames.to(torch.float32)
    return frames.to(torch.float32).sub_(mean.view(-1, 1, 1)).div_(std.view(-1, 1, 1))


def patchify(frames: torch.Tensor, patch_size: int, merge_size: int, temporal_patch_size: int) -> torch.Tensor:
    """``[T, C, H, W]`` -> ``[t*h*w, C*tp*p*p]`` in HF's order (merge windows contiguous); pads T by repetition."""
    if pad := -frames.shape[0] % temporal_patch_size:
        frames = torch.cat((frames, frames[-1:].expand(pad, -1, -1, -1)), dim=0)
    num_frames, channels, height, width = frames.shape
    t, h, w = num_frames // temporal_patch_size, height // patch_size, width // patch_size
    m, p, tp = merge_size, patch_size, temporal_patch_size
    patches = frames.reshape(t, tp, channels, h // m, m, p, w // m, m, p)
    # [t, h/m, w/m, m, m, C, tp, p, p]: the vision tower's patch embedding reads C, tp, p, p per row.
    patches = patches.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return patches.reshape(t * h * w, channels * tp * p * p)


def unpatchify(
    patches: torch.Tensor,
    grid_thw: Sequence[int] | torch.Tensor,
    patch_size: int,
    merge_size: int,
    temporal_patch_size: int,
) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[t*h*w, C*tp*p*p]`` -> ``[t*tp, C, h*p, w*p]`` (padding frames included)."""
    t, h, w = (int(v) for v in grid_thw)
    m, p, tp = merge_size, patch_size, temporal_patch_size
    channels = patches.shape[1] // (tp * p * p)
    frames = patches.reshape(t, h // m, w // m, m, m, channels, tp, p, p).permute(0, 6, 5, 1, 3, 7, 2, 4, 8)
    return frames.reshape(t * tp, channels, h * p, w * p)


def preprocess_video(
    frames: torch.Tensor | np.ndarray, config: VideoProcessorConfig | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn uint8 RGB frames ``[T, H, W, 3]`` into ``(pixel_values_videos, video_grid_thw)`` as HF does.

    Computation stays on the frames' device; the result is float32 ``[t*h*w, 3*tp*p*p]`` and int64 ``[3]``.

    Example:
        >>> pixels, grid = preprocess_video(np.zeros((5, 56, 56, 3), np.uint8), VideoProcessorConfig(min_pixels=3136))
        >>> grid.tolist(), tuple(pixels.shape)  # 5 frames padded to 6: t = 3
        ([3, 4, 4], (48, 1176))
    """
    config = config or VideoProcessorConfig()
    # np.require copies only read-only (e.g. decoder-owned) or strided arrays, which torch.from_numpy warns about.
    video = torch.from_numpy(np.require(frames, requirements=["C", "W"])) if isinstance(frames, np.ndarray) else frames
    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != torch.uint8 or video.shape[0] == 0:
        raise ValueError(f"expected uint8 RGB frames [T, H, W, 3] with T >= 1, got {video.dtype} {tuple(video.shape)}")
    video = video.permute(0, 3, 1, 2).contiguous()  # [T, 3, H, W], the layout HF hands to torchvision
    if config.do_resize:
        video = resize_frames(video, *target_size(video.shape[0], video.shape[2], video.shape[3], config))
    elif video.shape[2] % config.factor or video.shape[3] % config.factor:
        raise ValueError(f"with do_resize=False frame sides must be multiples of {config.factor}, got {video.shape}")
    pixels = patchify(normalize_frames(video, config), config.patch_size, config.merge_size, config.temporal_patch_size)
    tp = config.temporal_patch_size
    grid = torch.tensor(
        [-(-video.shape[0] // tp), video.shape[2] // config.patch_size, video.shape[3] // config.patch_size]
    )
    return pixels.to(torch.float32), grid


def preprocess_videos(
    videos: Sequence[torch.Tensor | np.ndarray],
    config: VideoProcessorConfig | None = None,
    sampled_fps: Sequence[float | None] | None = None,
) -> VideoBatch:
    """Preprocess several videos: pixel values concatenated in order, grids stacked to ``[V, 3]``.

    Args:
        videos: uint8 ``[T, H, W, 3]`` frames per video.
        config: the processor settings (Qwen2-VL defaults when ``None``).
        sampled_fps: frames per second of each sampled frame sequence; when given, ``second_per_grid_ts`` is
            filled as Qwen2.5-VL's processor does (``temporal_patch_size / fps``, 24 fps where ``None``).

    Example:
        >>> batch = preprocess_videos([np.zeros((4, 56, 56, 3), np.uint8)] * 2, sampled_fps=[2.0, 2.0])
        >>> batch.video_grid_thw.shape, batch.second_per_grid_ts.tolist()
        (torch.Size([2, 3]), [1.0, 1.0])
    """
    config = config or VideoProcessorConfig()
    if not videos:
        raise ValueError("expected at least one video")
    outputs = [preprocess_video(video, config) for video in videos]
    seconds = None
    if sampled_fps is not None:
        if len(sampled_fps) != len(videos):
            raise ValueError(f"got {len(sampled_fps)} sampled_fps values for {len(videos)} videos")
        seconds = torch.tensor([config.temporal_patch_size / (fps or 24) for fps in sampled_fps], dtype=torch.float32)
    return VideoBatch(torch.cat([p for p, _ in outputs]), torch.stack([g for _, g in outputs]), seconds)


def num_video_tokens(video_grid_thw: torch.Tensor | Sequence[int], merge_size: int = 2) -> int:
    """Number of ``<|video_pad|>`` tokens the LLM sees for one video: ``t * h * w / merge_size**2``."""
    t, h, w = (int(v) for v in video_grid_thw)
    return t * h * w // merge_size**2


def group_timestamps(frame_times: Sequence[float], temporal_patch_size: int = 2) -> list[float]:
    """Seconds of each temporal group, as Qwen3-VL's processor computes them for the ``<t seconds>`` tokens.

    The times are padded like the frames (last one repeated), and each group is stamped with the mean of its
    first and last frame time.

    Example:
        >>> group_timestamps([0.0, 0.5, 1.0, 1.5, 2.0])
        [0.25, 1.25, 2.0]
    """
    times = [float(t) for t in frame_times]
    if not times:
        raise ValueError("expected at least one frame time")
    times += [times[-1]] * (-len(times) % temporal_patch_size)
    return [(times[i] + times[i + temporal_patch_size - 1]) / 2 for i in range(0, len(times), temporal_patch_size)]
