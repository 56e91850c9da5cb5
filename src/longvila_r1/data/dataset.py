"""Map-style dataset of LongVideo-Reason records: decode, sample frames, preprocess, tokenise.

One item is everything a CoT-SFT step (prompt + reasoning + answer, with labels) or a GRPO step (prompt +
ground truth) needs for one question. A bad record or video either raises, naming the record, the file and
the reason, or (``on_error="skip"``) becomes a :class:`SkippedSample` that the collator drops and counts, so
a long run is never lost to one sample and no failure is ever silently replaced by other data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from longvila_r1.data.clip_cache import PreprocessedClip, PreprocessedClipCache
from longvila_r1.data.qwen_vl import VideoProcessorConfig, group_timestamps, num_video_tokens, preprocess_video
from longvila_r1.data.qwen_vl_prompt import DEFAULT_SYSTEM_PROMPT, build_prompt
from longvila_r1.data.records import VideoQARecord
from longvila_r1.data.synth.perception import PerceptionTargets
from longvila_r1.data.video import VideoDecodeError, read_video

TASKS = ("sft", "rl")
ON_ERROR = ("raise", "skip")


@dataclass(frozen=True)
class FrameSampling:
    """How frames are taken from each video (see :func:`longvila_r1.data.video.read_video`).

    Args:
        num_frames: frames sampled uniformly over the whole video (the default mode).
        fps: sample at this rate instead of a fixed count (``num_frames`` must then be ``None``).
        max_frames: cap on the frames of one video in ``fps`` mode.
        backend: ``"auto"`` (decord, then PyAV), ``"decord"`` or ``"pyav"``.
    """

    num_frames: int | None = 16
    fps: float | None = None
    max_frames: int | None = None
    backend: str = "auto"

    def __post_init__(self) -> None:
        if (self.num_frames is None) == (self.fps is None):
            raise ValueError(f"set exactly one of num_frames and fps, got num_frames={self.num_frames}, fps={self.fps}")
        if self.num_frames is not None and self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")


class SampleError(RuntimeError):
    """A sample cannot be built; the message names the record id, the video file and the reason."""


@dataclass
class SkippedSample:
    """Placeholder for a sample dropped under ``on_error="skip"``; the collator counts and drops it."""

    index: int
    record_id: str | None
    reason: str


@dataclass
class VideoSample:
    """One preprocessed question. Tensors are 1-D ``[S]`` except the pixel values ``[N, C*tp*p*p]``."""

    index: int
    record: VideoQARecord
    input_ids: torch.Tensor
    mm_token_type_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None
    prompt_length: int
    pixel_values_videos: torch.Tensor
    video_grid_thw: torch.Tensor
    second_per_grid_ts: float
    frame_indices: list[int] = field(default_factory=list)
    perception_targets: PerceptionTargets | None = None  # per merged video token, for an auxiliary loss


class LongVideoReasonDataset(Dataset):
    """Records -> model-ready samples.

    Args:
        records: the questions.
        tokenizer: the model's tokenizer (with its chat template).
        task: ``"sft"`` (prompt + ``record.response()`` with labels on the response) or ``"rl"`` (prompt only,
            ending with the assistant header, ready for generation).
        frames: frame sampling settings.
        processor: Qwen-VL video preprocessing settings of the model.
        on_error: ``"raise"`` a :class:`SampleError` or ``"skip"`` the sample (returns :class:`SkippedSample`).
        max_length: maximum tokens of one sample (prompt + response); longer samples are errors.
        system_prompt: the system turn of every prompt.
        video_cache_bytes: keep up to this many bytes of preprocessed videos in memory (per worker process), so
            a video asked about several times, or seen again next epoch, is decoded once; ``0`` disables it.

    Example:
        >>> ds = LongVideoReasonDataset(load_records("data/train.jsonl"), load_tiny_tokenizer())  # doctest: +SKIP
        >>> sample = ds[0]; sample.input_ids.shape, sample.video_grid_thw.tolist()  # doctest: +SKIP
        (torch.Size([187]), [8, 4, 4])
    """

    def __init__(
        self,
        records: Sequence[VideoQARecord],
        tokenizer: Any,
        task: Literal["sft", "rl"] = "sft",
        frames: FrameSampling | None = None,
        processor: VideoProcessorConfig | None = None,
        on_error: Literal["raise", "skip"] = "raise",
        max_length: int | None = None,
        system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
        video_cache_bytes: int = 0,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.records = list(records)
        self.tokenizer = tokenizer
        self.task = task
        self.frames = frames or FrameSampling()
        self.processor = processor or VideoProcessorConfig()
        self.on_error = on_error
        self.max_length = max_length
        self.system_prompt = system_prompt
        self.clip_cache = PreprocessedClipCache(video_cache_bytes)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> VideoSample | SkippedSample:
        record = self.records[index]
        try:
            return self._build(index, record)
        except (VideoDecodeError, SampleError, ValueError) as exc:
            message = f"sample {index} (record id {record.id!r}, video {record.video_path}): {exc}"
            if self.on_error == "raise":
                raise SampleError(message) from exc
            return SkippedSample(index=index, record_id=record.id, reason=message)

    def _build(self, index: int, record: VideoQARecord) -> VideoSample:
        clip = self.clip_cache.get_or_build(
            str(record.video_path), lambda: preprocess_clip(record.video_path, self.frames, self.processor)
        )
        encoding = build_prompt(
            self.tokenizer,
            record.problem,
            record.options,
            self.system_prompt,
            video_grid_thw=clip.grid,
            merge_size=self.processor.merge_size,
            response=record.response() if self.task == "sft" else None,
            timestamps=self._group_times(clip.timestamps) if self.processor.timestamp_tokens else None,
        )
        if self.max_length is not None and len(encoding) > self.max_length:
            video_tokens = num_video_tokens(clip.grid, self.processor.merge_size)
            raise SampleError(
                f"{len(encoding)} tokens ({video_tokens} of them video) exceed "
                f"max_length={self.max_length}; lower the frames per video or raise max_length"
            )
        return VideoSample(
            index=index,
            record=record,
            input_ids=encoding.input_ids,
            mm_token_type_ids=encoding.mm_token_type_ids,
            attention_mask=encoding.attention_mask,
            labels=encoding.labels,
            prompt_length=encoding.prompt_length,
            pixel_values_videos=clip.pixels,
            video_grid_thw=clip.grid,
            second_per_grid_ts=self._seconds_per_group(clip.timestamps, clip.duration),
            frame_indices=list(clip.indices),
        )

    def _group_times(self, timestamps: torch.Tensor) -> list[float]:
        return group_timestamps(timestamps.tolist(), self.processor.temporal_patch_size)

    def _seconds_per_group(self, timestamps: torch.Tensor, duration: float) -> float:
        # Qwen2.5-VL spaces temporal M-RoPE positions by real time: temporal_patch_size / sampled fps.
        sampled_fps = len(timestamps) / duration if duration > 0 else 24.0
        return self.processor.temporal_patch_size / sampled_fps


def preprocess_clip(path: str | Path, frames: FrameSampling, processor: VideoProcessorConfig) -> PreprocessedClip:
    """Decode the sampled frames of one video and preprocess them for the model (one cache entry)."""
    clip = read_video(
        path, num_frames=frames.num_frames, fps=frames.fps, max_frames=frames.max_frames, backend=frames.backend
    )
    pixels, grid = preprocess_video(clip.frames, processor)
    return PreprocessedClip(pixels, grid, clip.timestamps, clip.duration, tuple(int(i) for i in clip.indices))
