"""Batch collation for video samples of different lengths, frame counts and frame sizes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from longvila_r1.data.dataset import SkippedSample, VideoSample
from longvila_r1.data.qwen_vl_prompt import IGNORE_INDEX
from longvila_r1.data.synth.perception import PerceptionTargets


def pad_sequences(
    sequences: Sequence[torch.Tensor], value: int, side: Literal["left", "right"] = "right"
) -> torch.Tensor:
    """Stack 1-D tensors into ``[B, S_max]``, padding with ``value`` on ``side``.

    Example:
        >>> pad_sequences([torch.tensor([1, 2, 3]), torch.tensor([4])], 0, "left").tolist()
        [[1, 2, 3], [0, 0, 4]]
    """
    longest = max(seq.numel() for seq in sequences)
    out = torch.full((len(sequences), longest), value, dtype=sequences[0].dtype)
    for row, seq in enumerate(sequences):
        if side == "right":
            out[row, : seq.numel()] = seq
        else:
            out[row, longest - seq.numel() :] = seq
    return out


class VideoBatchCollator:
    """Turns a list of :class:`VideoSample` (and skipped placeholders) into one batch dict.

    Token tensors are padded to the longest sample (``[B, S]``); the videos' patches are concatenated
    (``pixel_values_videos [sum N_i, C*tp*p*p]``) with one grid per sample (``video_grid_thw [B, 3]``), exactly
    the layout Qwen-VL models take, so videos of different lengths and sizes share a batch without padding
    frames. Skipped samples are dropped and reported under ``"skipped"`` (list of reasons) so the main process
    can count them, even when collation runs in a DataLoader worker.

    Args:
        pad_token_id: id used for padding ``input_ids``.
        padding_side: ``"right"`` for training, ``"left"`` for generation (prompts end together).

    Example:
        >>> collate = VideoBatchCollator(tokenizer.pad_token_id)
        >>> loader = DataLoader(dataset, batch_size=4, collate_fn=collate)  # doctest: +SKIP
    """

    def __init__(self, pad_token_id: int, padding_side: Literal["left", "right"] = "right") -> None:
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        self.pad_token_id = pad_token_id
        self.padding_side = padding_side

    def __call__(self, items: Sequence[VideoSample | SkippedSample]) -> dict[str, Any]:
        samples = [item for item in items if isinstance(item, VideoSample)]
        skipped = [item.reason for item in items if isinstance(item, SkippedSample)]
        if not samples:
            return {"size": 0, "skipped": skipped}
        side = self.padding_side
        batch: dict[str, Any] = {
            "size": len(samples),
            "input_ids": pad_sequences([s.input_ids for s in samples], self.pad_token_id, side),  # [B, S]
            "attention_mask": pad_sequences([s.attention_mask for s in samples], 0, side),  # [B, S]
            "mm_token_type_ids": pad_sequences([s.mm_token_type_ids for s in samples], 0, side),  # [B, S]
            "pixel_values_videos": torch.cat([s.pixel_values_videos for s in samples]),  # [sum N_i, C*tp*p*p]
            "video_grid_thw": torch.stack([s.video_grid_thw for s in samples]),  # [B, 3]
            "second_per_grid_ts": torch.tensor([s.second_per_grid_ts for s in samples], dtype=torch.float32),
            "prompt_lengths": torch.tensor([s.prompt_length for s in samples]),  # [B]
            "answers": [s.record.answer for s in samples],
            "categories": [s.record.category for s in samples],
            "options": [s.record.options for s in samples],
            "references": [s.record.reasoning for s in samples],  # the records' reference chains, or None
            "ids": [s.record.id for s in samples],
            # Seconds, or a benchmark's duration group (VideoMME's "short"/"medium"/"long") when the record has one.
            "durations": [s.record.extra.get("duration_label", s.record.duration) for s in samples],
            "indices": [s.index for s in samples],
            "video_paths": [str(s.record.video_path) for s in samples],
            "frame_indices": [s.frame_indices for s in samples],
            "skipped": skipped,
        }
        if all(s.labels is not None for s in samples):
            batch["labels"] = pad_sequences([s.labels for s in samples], IGNORE_INDEX, side)  # [B, S]
        if all(s.perception_targets is not None for s in samples):  # one per merged token, in embedding order
            batch["targets"] = PerceptionTargets.concat([s.perception_targets for s in samples])
        return batch


def select_video_patches(
    pixel_values_videos: Tensor, video_grid_thw: Tensor, positions: Sequence[int]
) -> tuple[Tensor, Tensor]:
    """The patches and grids of the videos at ``positions`` of a batch (to encode only the cache misses).

    Args:
        pixel_values_videos: every video's patches, one video after another. ``[sum_v t*h*w, C*T_p*P*P]``
        video_grid_thw: patch grid of each video. ``[V, 3]``
        positions: which videos to keep, in the order wanted.

    Returns:
        ``(pixel_values_videos [sum_selected t*h*w, C*T_p*P*P], video_grid_thw [len(positions), 3])``.
    """
    patches = video_grid_thw.prod(-1).tolist()  # V ints
    if sum(patches) != pixel_values_videos.shape[0]:
        raise ValueError(
            f"video_grid_thw implies {sum(patches)} patches, pixel_values_videos has "
            f"{pixel_values_videos.shape[0]} rows"
        )
    chunks = pixel_values_videos.split(patches)
    index = torch.as_tensor(list(positions), dtype=torch.long, device=video_grid_thw.device)
    selected = [chunks[i] for i in positions]
    pixels = torch.cat(selected) if selected else pixel_values_videos[:0]
    return pixels, video_grid_thw.index_select(0, index)


def select_videos(batch: dict[str, Any], positions: Sequence[int]) -> dict[str, Any]:
    """The video inputs of the samples at ``positions`` of a collated batch (one video per sample).

    Returns ``pixel_values_videos``, ``video_grid_thw`` and ``second_per_grid_ts`` for those samples only, in
    the given order, ready for ``encode_video``.

    Example:
        >>> sub = select_videos(batch, [2, 0])  # doctest: +SKIP
    """
    positions = list(positions)
    pixels, grids = select_video_patches(batch["pixel_values_videos"], batch["video_grid_thw"], positions)
    return {
        "pixel_values_videos": pixels,
        "video_grid_thw": grids,
        "second_per_grid_ts": batch["second_per_grid_ts"][positions],
    }
