"""Precomputed video embeddings: the vision tower's output, kept so it runs once per video.

GRPO samples G responses per prompt and scores each of them again for log-probs; encoding a long video once
and reusing the result (per sample, per step, across the rollout cache) is what makes that affordable.
:class:`VideoEmbeddings` holds everything the language model needs to stand in for ``pixel_values_videos``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

VIDEO_TOKEN_TYPE = 2  # mm_token_type_ids: 0 text, 1 image, 2 video


@dataclass
class VideoEmbeddings:
    """Video-token embeddings of a batch of videos, in the order their placeholders appear in the batch.

    Attributes:
        embeds: merged video-token embeddings of all videos, concatenated. ``[N, D]``
        grid_thw: the patch grid (t, h, w) of each video before spatial merging. ``[V, 3]`` long
        merge_size: spatial merge factor; video ``i`` has ``t*h*w / merge_size**2`` tokens.
        deepstack: Qwen3-VL only, one ``[N, D]`` tensor per tapped vision block, added to the residual stream
            of the first decoder layers at the video-token positions.
        second_per_grid_ts: Qwen2.5-VL only, seconds per temporal patch of each video (M-RoPE time scale). ``[V]``

    Example:
        >>> emb = policy.encode_video(pixel_values_videos, video_grid_thw)
        >>> first, second = emb.split_per_video()
        >>> VideoEmbeddings.concat([first, second]).num_videos
        2
    """

    embeds: Tensor
    grid_thw: Tensor
    merge_size: int
    deepstack: list[Tensor] | None = None
    second_per_grid_ts: Tensor | None = None
    token_counts: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.token_counts = (self.grid_thw.prod(-1) // self.merge_size**2).tolist()
        expected = sum(self.token_counts)
        if self.embeds.shape[0] != expected:
            raise ValueError(f"embeds has {self.embeds.shape[0]} rows but grid_thw implies {expected} video tokens")
        if self.deepstack is not None and any(f.shape[0] != expected for f in self.deepstack):
            raise ValueError("every deepstack feature must have one row per video token")

    @property
    def num_videos(self) -> int:
        return len(self.token_counts)

    @property
    def nbytes(self) -> int:
        """Bytes held by the tensors (what a cache entry costs)."""
        tensors = [self.embeds, self.grid_thw, *(self.deepstack or [])]
        if self.second_per_grid_ts is not None:
            tensors.append(self.second_per_grid_ts)
        return sum(t.numel() * t.element_size() for t in tensors)

    def _map(self, fn) -> VideoEmbeddings:
        return VideoEmbeddings(
            embeds=fn(self.embeds),
            grid_thw=self.grid_thw,
            merge_size=self.merge_size,
            deepstack=None if self.deepstack is None else [fn(f) for f in self.deepstack],
            second_per_grid_ts=self.second_per_grid_ts,
        )

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> VideoEmbeddings:
        """Move the embeddings (and grids) to ``device``; cast the float tensors to ``dtype`` if given."""
        moved = self._map(lambda t: t.to(device=device, dtype=dtype))
        moved.grid_thw = self.grid_thw.to(device)
        if self.second_per_grid_ts is not None:
            moved.second_per_grid_ts = self.second_per_grid_ts.to(device)
        return moved

    def detach(self) -> VideoEmbeddings:
        """A copy cut from the autograd graph (for caching, or a frozen vision tower)."""
        return self._map(Tensor.detach)

    def select(self, video_indices: Sequence[int]) -> VideoEmbeddings:
        """The videos at ``video_indices``, in that order (repeats allowed)."""
        offsets = [0, *torch.tensor(self.token_counts).cumsum(0).tolist()]
        rows = [torch.arange(offsets[i], offsets[i + 1]) for i in video_indices]
        index = torch.cat(rows).to(self.embeds.device) if rows else torch.zeros(0, dtype=torch.long)
        videos = torch.as_tensor(list(video_indices), dtype=torch.long, device=self.grid_thw.device)
        return VideoEmbeddings(
            embeds=self.embeds.index_select(0, index),
            grid_thw=self.grid_thw.index_select(0, videos),
            merge_size=self.merge_size,
            deepstack=None if self.deepstack is None else [f.index_select(0, index) for f in self.deepstack],
            second_per_grid_ts=None
            if self.second_per_grid_ts is None
            else self.second_per_grid_ts.index_select(0, videos.to(self.second_per_grid_ts.device)),
        )

    def split_per_video(self) -> list[VideoEmbeddings]:
        """One :class:`VideoEmbeddings` per video (views, no copy of the embeddings)."""
        embeds = self.embeds.split(self.token_counts)
        deepstack = [f.split(self.token_counts) for f in self.deepstack] if self.deepstack is not None else None
        return [
            VideoEmbeddings(
                embeds=embeds[i],
                grid_thw=self.grid_thw[i : i + 1],
                merge_size=self.merge_size,
                deepstack=None if deepstack is None else [layer[i] for layer in deepstack],
                second_per_grid_ts=None if self.second_per_grid_ts is None else self.second_per_grid_ts[i : i + 1],
            )
            for i in range(self.num_videos)
        ]

    @classmethod
    def concat(cls, items: Sequence[VideoEmbeddings]) -> VideoEmbeddings:
        """Join embeddings of several batches (or single videos) into one, keeping their order."""
        if not items:
            raise ValueError("concat needs at least one VideoEmbeddings")
        first = items[0]
        if any((e.deepstack is None) != (first.deepstack is None) for e in items):
            raise ValueError("cannot concat embeddings with and without deepstack features")
        times = [e.second_per_grid_ts for e in items]
        return cls(
            embeds=torch.cat([e.embeds for e in items]),
            grid_thw=torch.cat([e.grid_thw for e in items]),
            merge_size=first.merge_size,
            deepstack=None
            if first.deepstack is None
            else [torch.cat(layer) for layer in zip(*(e.deepstack for e in items), strict=True)],
            second_per_grid_ts=None if any(t is None for t in times) else torch.cat(times),
        )

    def videos_per_row(self, video_tokens_per_row: Sequence[int]) -> list[int]:
        """How many consecutive videos fill each row, given each row's number of video tokens."""
        counts, video = [], 0
        for needed in video_tokens_per_row:
            start = video
            while needed > 0 and video < self.num_videos:
                needed -= self.token_counts[video]
                video += 1
            if needed != 0:
                raise ValueError("video tokens in input_ids do not match the videos' token counts")
            counts.append(video - start)
        if video != self.num_videos:
            raise ValueError(f"{self.num_videos - video} videos have no placeholder tokens in input_ids")
        return counts

    def repeat_rows(self, video_tokens_per_row: Sequence[int], repeats: int) -> VideoEmbeddings:
        """Embeddings for a batch whose row ``b`` is repeated ``repeats`` times in place (``repeat_interleave``)."""
        starts = [0, *torch.tensor(self.videos_per_row(video_tokens_per_row)).cumsum(0).tolist()]
        order = [v for b in range(len(starts) - 1) for _ in range(repeats) for v in range(starts[b], starts[b + 1])]
        return self.select(order)

    def to_encoder_output(self):
        """The ``mm_encoder_outputs["video"]`` object transformers expects in place of running the vision tower."""
        pooled = self.embeds.split(self.token_counts)
        if self.deepstack is None:
            from transformers.modeling_outputs import BaseModelOutputWithPooling

            return BaseModelOutputWithPooling(pooler_output=pooled)
        from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

        deepstack = [f.split(self.token_counts) for f in self.deepstack]
        return BaseModelOutputWithDeepstackFeatures(pooler_output=pooled, deepstack_features=deepstack)


def video_tokens_per_row(mm_token_type_ids: Tensor) -> list[int]:
    """Number of video placeholder tokens in each row. ``[B, S] -> B ints``"""
    return (mm_token_type_ids == VIDEO_TOKEN_TYPE).sum(-1).tolist()


def video_run_count(mm_token_type_ids: Tensor) -> int:
    """Number of maximal runs of consecutive video tokens in the batch. ``[B, S] -> int``"""
    is_video = mm_token_type_ids == VIDEO_TOKEN_TYPE  # [B, S]
    previous = torch.nn.functional.pad(is_video[:, :-1], (1, 0), value=False)  # [B, S]
    return int((is_video & ~previous).sum())


def check_qwen3_frame_groups(mm_token_type_ids: Tensor, grid_thw: Tensor) -> None:
    """Qwen3-VL wants one run of ``<|video_pad|>`` per temporal patch, with text between runs.

    Its processor writes ``<t seconds><|vision_start|><|video_pad|>*(h*w/m^2)<|vision_end|>`` per temporal
    patch, and transformers pairs each run with one per-frame grid; a whole video as a single run would get
    wrong M-RoPE positions (or a shape error), so it is rejected here with a readable message.
    """
    runs, frames = video_run_count(mm_token_type_ids), int(grid_thw[:, 0].sum())
    if runs != frames:
        raise ValueError(
            "qwen3_vl needs one run of <|video_pad|> tokens per temporal patch, separated by text "
            f"(a timestamp, <|vision_end|><|vision_start|>); found {runs} runs for {frames} temporal patches"
        )
