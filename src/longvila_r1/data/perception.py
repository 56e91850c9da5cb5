"""Synthetic videos with per-token perception targets: the data of stage 0 (vision-tower pretraining).

One item is one video of a set written by ``longvila-r1 data synth``: its preprocessed frames and the
:class:`~longvila_r1.data.synth.perception.PerceptionTargets` of every merged token, read from the scene the
generator simulates again from ``synth_config.json`` (the videos were rendered from the same simulation, so the
targets and the pixels always agree). Bad videos raise or are skipped and counted, as in
:class:`~longvila_r1.data.dataset.LongVideoReasonDataset`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from longvila_r1.data.clip_cache import PreprocessedClipCache
from longvila_r1.data.dataset import (
    ON_ERROR,
    FrameSampling,
    LongVideoReasonDataset,
    SkippedSample,
    VideoSample,
    preprocess_clip,
)
from longvila_r1.data.qwen_vl import VideoProcessorConfig
from longvila_r1.data.records import VideoQARecord
from longvila_r1.data.synth.generator import synth_settings, video_name, video_records
from longvila_r1.data.synth.perception import PerceptionTargets, perception_targets
from longvila_r1.data.video import VideoDecodeError

SYNTH_CONFIG = "synth_config.json"
_VIDEO_INDEX = re.compile(r"vid_(\d+)\.mp4$")


@dataclass
class PerceptionSample:
    """One video: pixels ``[N_patches, C*tp*p*p]``, its grid ``(t, h, w)`` and the targets of its merged tokens."""

    index: int
    video_path: str
    pixel_values_videos: torch.Tensor
    video_grid_thw: torch.Tensor
    second_per_grid_ts: float
    targets: PerceptionTargets


def load_synth_settings(data_dir: str | Path) -> dict[str, Any]:
    """The generator settings of a synthetic set (``DIR/synth_config.json``), validated.

    Raises:
        FileNotFoundError: ``data_dir`` was not written by ``longvila-r1 data synth``.
        ValueError: the file is not a valid generator config (the message names the file).
    """
    path = Path(data_dir) / SYNTH_CONFIG
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: perception targets come from the scenes of a synthetic set; write one with "
            f"`longvila-r1 data synth --output-dir {data_dir}`"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        arguments = {
            name: config[name]
            for name in ("num_videos", "frames", "seed", "difficulty", "fps", "size", "questions_per_video")
        }
        return synth_settings(**arguments, split_fractions=config["split_fractions"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a synthetic set's generator config ({exc!r})") from exc


def unique_videos(records: Sequence[VideoQARecord]) -> list[VideoQARecord]:
    """The first record of every distinct video, in order (stage 0 trains once per video, not per question)."""
    first: dict[str, VideoQARecord] = {}
    for record in records:
        first.setdefault(str(record.video_path), record)
    return list(first.values())


class SceneTargets:
    """The perception targets of the videos of one synthetic set, simulated once per video and then kept.

    Args:
        settings: the set's generator settings (:func:`load_synth_settings`).
        merge_size / temporal_patch_size: the model's token grid (from its video preprocessing).

    Example:
        >>> targets = SceneTargets(load_synth_settings("outputs/demo/data"), 2, 2)  # doctest: +SKIP
        >>> targets("outputs/demo/data/videos/vid_00042.mp4", frame_indices, grid).count.shape  # doctest: +SKIP
        torch.Size([32])
    """

    def __init__(self, settings: dict[str, Any], merge_size: int, temporal_patch_size: int) -> None:
        self.settings = settings
        self.merge_size = merge_size
        self.temporal_patch_size = temporal_patch_size
        self._kept: dict[tuple[str, tuple[int, ...]], PerceptionTargets] = {}  # a few KB per video

    def __call__(self, video_path: str, frame_indices: Sequence[int], grid_thw: torch.Tensor) -> PerceptionTargets:
        """Targets of the merged tokens of ``video_path`` sampled at ``frame_indices`` into ``grid_thw``.

        Raises:
            ValueError: the video is not one of the set's, or the grid does not fit the frames.
        """
        key = (str(video_path), tuple(int(i) for i in frame_indices))
        targets = self._kept.get(key)
        if targets is None:
            scene, _ = video_records(self.scene_index(key[0]), self.settings)
            targets = perception_targets(scene, key[1], grid_thw, self.merge_size, self.temporal_patch_size)
            self._kept[key] = targets
        return targets

    def scene_index(self, video_path: str) -> int:
        """The generator index of a video of the set (``videos/vid_00042.mp4`` -> 42)."""
        match = _VIDEO_INDEX.search(video_path)
        index = int(match.group(1)) if match else -1
        if not 0 <= index < self.settings["num_videos"] or not video_path.endswith(video_name(index)):
            raise ValueError(
                f"not a video of this synthetic set (expected videos/vid_NNNNN.mp4 with NNNNN < "
                f"{self.settings['num_videos']}); perception targets exist only for generated videos"
            )
        return index


class SyntheticPerceptionDataset(Dataset):
    """The distinct videos of some records of a synthetic set, with their perception targets.

    Args:
        records: questions of the set (one item per distinct video they name).
        settings: the set's generator settings (:func:`load_synth_settings`).
        frames: frame sampling.
        processor: the model's video preprocessing.
        on_error: ``"raise"`` a ``ValueError`` naming the video, or ``"skip"`` it (the collator counts it).
        video_cache_bytes: keep up to this many bytes of preprocessed videos in memory, so every epoch after
            the first decodes nothing.

    Example:
        >>> settings = load_synth_settings("outputs/demo/data")  # doctest: +SKIP
        >>> records = load_records("outputs/demo/data/train.jsonl")  # doctest: +SKIP
        >>> sample = SyntheticPerceptionDataset(records, settings, processor=processor)[0]  # doctest: +SKIP
        >>> sample.targets.count.shape  # 8 temporal groups x 2x2 cells at 16 frames of 56x56  # doctest: +SKIP
        torch.Size([32])
    """

    def __init__(
        self,
        records: Sequence[VideoQARecord],
        settings: dict[str, Any],
        frames: FrameSampling | None = None,
        processor: VideoProcessorConfig | None = None,
        on_error: Literal["raise", "skip"] = "raise",
        video_cache_bytes: int = 0,
    ) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.videos = unique_videos(records)
        self.settings = settings
        self.frames = frames or FrameSampling()
        self.processor = processor or VideoProcessorConfig()
        self.on_error = on_error
        self.clip_cache = PreprocessedClipCache(video_cache_bytes)
        self.targets = SceneTargets(settings, self.processor.merge_size, self.processor.temporal_patch_size)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> PerceptionSample | SkippedSample:
        record = self.videos[index]
        try:
            return self._build(index, record)
        except (VideoDecodeError, ValueError) as exc:
            message = f"video {record.video_path} (record id {record.id!r}): {exc}"
            if self.on_error == "raise":
                raise ValueError(message) from exc
            return SkippedSample(index=index, record_id=record.id, reason=message)

    def _build(self, index: int, record: VideoQARecord) -> PerceptionSample:
        path = str(record.video_path)
        clip = self.clip_cache.get_or_build(path, lambda: preprocess_clip(path, self.frames, self.processor))
        targets = self.targets(path, clip.indices, clip.grid)
        duration = clip.duration if clip.duration > 0 else len(clip.indices) / self.settings["fps"]
        return PerceptionSample(
            index=index,
            video_path=path,
            pixel_values_videos=clip.pixels,
            video_grid_thw=clip.grid,
            second_per_grid_ts=self.processor.temporal_patch_size * duration / len(clip.indices),
            targets=targets,
        )


class WithPerceptionTargets(Dataset):
    """A :class:`LongVideoReasonDataset` of a synthetic set whose samples also carry perception targets.

    For CoT-SFT with an auxiliary perception loss (``model.perception_loss_weights``): each
    :class:`VideoSample` gets the :class:`PerceptionTargets` of its merged video tokens, and the collator
    gathers them under ``batch["targets"]``. A video that is not one of the set's raises, or is skipped and
    counted, as the wrapped dataset's ``on_error`` says.

    Example:
        >>> sft_set = LongVideoReasonDataset(records, tokenizer, task="sft", processor=processor)  # doctest: +SKIP
        >>> sample = WithPerceptionTargets(sft_set, load_synth_settings("outputs/demo/data"))[0]  # doctest: +SKIP
        >>> sample.perception_targets.count.shape  # doctest: +SKIP
        torch.Size([32])
    """

    def __init__(self, dataset: LongVideoReasonDataset, settings: dict[str, Any]) -> None:
        self.dataset = dataset
        processor = dataset.processor
        self.targets = SceneTargets(settings, processor.merge_size, processor.temporal_patch_size)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> VideoSample | SkippedSample:
        sample = self.dataset[index]
        if isinstance(sample, SkippedSample):
            return sample
        try:
            targets = self.targets(str(sample.record.video_path), sample.frame_indices, sample.video_grid_thw)
        except ValueError as exc:
            message = f"sample {index} (record id {sample.record.id!r}, video {sample.record.video_path}): {exc}"
            if self.dataset.on_error == "raise":
                raise ValueError(message) from exc
            return SkippedSample(index=index, record_id=sample.record.id, reason=message)
        return replace(sample, perception_targets=targets)


class PerceptionBatchCollator:
    """:class:`PerceptionSample` items -> one batch: concatenated patches and targets, one grid per video.

    Skipped items are dropped and their reasons listed under ``"skipped"``, as :class:`VideoBatchCollator` does.

    Example:
        >>> loader = DataLoader(dataset, batch_size=8, collate_fn=PerceptionBatchCollator())  # doctest: +SKIP
    """

    def __call__(self, items: Sequence[PerceptionSample | SkippedSample]) -> dict[str, Any]:
        samples = [item for item in items if isinstance(item, PerceptionSample)]
        skipped = [item.reason for item in items if isinstance(item, SkippedSample)]
        if not samples:
            return {"size": 0, "skipped": skipped}
        return {
            "size": len(samples),
            "pixel_values_videos": torch.cat([s.pixel_values_videos for s in samples]),
            "video_grid_thw": torch.stack([s.video_grid_thw for s in samples]),  # [B, 3]
            "second_per_grid_ts": torch.tensor([s.second_per_grid_ts for s in samples], dtype=torch.float32),
            "targets": PerceptionTargets.concat([s.targets for s in samples]),
            "video_paths": [s.video_path for s in samples],
            "indices": [s.index for s in samples],
            "skipped": skipped,
        }
