"""MR-SP stage 1: frame-sharded vision encoding.

The vision towers of Qwen2-VL, Qwen2.5-VL and Qwen3-VL never mix temporal patch groups: attention runs
per group (``cu_seqlens`` has one segment per group, Qwen2.5-VL's windows are cut inside a group), the
rotary and learned position embeddings depend on (h, w) only, and the merger pools 2x2 blocks of one
group. So the first ``k`` groups of a video, encoded as a video of ``t = k``, give exactly the first
``k * h * w / merge**2`` rows of the whole video's embeddings (the test checks it for all three families).

A batch's groups are laid end to end (video 0's groups, then video 1's, ...) and cut into one contiguous
run per rank, balanced by patch count. A run is a contiguous range of rows both of ``pixel_values_videos``
and of the embeddings, so each rank encodes its rows and an all-gather in rank order rebuilds the batch.

Example:
    >>> emb = sharded_encode_video(policy, pixel_values_videos, video_grid_thw, group=layout.sp_group)
    >>> emb.embeds.shape  # every rank holds the whole batch's embeddings: [N, D]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributed import ProcessGroup

from longvila_r1.models.embeddings import VideoEmbeddings
from longvila_r1.parallel.collectives import gather_along_dim, group_rank, group_size


@dataclass(frozen=True)
class FrameShards:
    """How the temporal patch groups of a batch of videos are split over ``world`` ranks.

    Attributes:
        grid_thw: the batch's grids (t, h, w). ``[V, 3]``
        merge_size: spatial merge factor of the vision tower.
        starts: index of each rank's first group in the batch's list of groups; ``starts[world]`` is the
            number of groups. A rank whose ``starts[r] == starts[r + 1]`` encodes nothing.

    Example:
        >>> shards = FrameShards.plan(torch.tensor([[3, 4, 4], [2, 4, 4]]), merge_size=2, world=2)
        >>> shards.starts, shards.local_grid(1).tolist(), shards.token_counts
        ([0, 3, 5], [[2, 4, 4]], [12, 8])
    """

    grid_thw: Tensor
    merge_size: int
    starts: list[int]

    @classmethod
    def plan(cls, grid_thw: Tensor, merge_size: int, world: int) -> FrameShards:
        """Give each group to the rank whose share of the batch's patches it starts in."""
        patches = cls._group_patches(grid_thw)  # [G]
        total = int(patches.sum())
        first_patch = torch.cumsum(patches, 0) - patches  # [G]
        owner = (first_patch * world).div(max(total, 1), rounding_mode="floor")  # [G], non-decreasing
        starts = [int((owner < rank).sum()) for rank in range(world + 1)]
        return cls(grid_thw=grid_thw, merge_size=merge_size, starts=starts)

    @staticmethod
    def _group_patches(grid_thw: Tensor) -> Tensor:
        """Patches of each temporal group, for all groups of all videos in order. ``[G]``"""
        t, hw = grid_thw[:, 0].cpu(), (grid_thw[:, 1] * grid_thw[:, 2]).cpu()
        return torch.repeat_interleave(hw, t)

    @property
    def world(self) -> int:
        return len(self.starts) - 1

    def _pieces(self, rank: int) -> list[tuple[int, int, int, int]]:
        """(video, groups, h, w) of each video piece that ``rank`` encodes, in order."""
        start, end = self.starts[rank], self.starts[rank + 1]
        pieces, first = [], 0
        for video, (t, h, w) in enumerate(self.grid_thw.tolist()):
            overlap = min(end, first + t) - max(start, first)
            if overlap > 0:
                pieces.append((video, overlap, h, w))
            first += t
        return pieces

    def local_grid(self, rank: int) -> Tensor:
        """The grids of the video pieces of ``rank``: a video of fewer groups per piece. ``[V_r, 3]``"""
        rows = [[groups, h, w] for _, groups, h, w in self._pieces(rank)]
        return torch.tensor(rows, dtype=self.grid_thw.dtype, device=self.grid_thw.device).reshape(-1, 3)

    def patch_range(self, rank: int) -> tuple[int, int]:
        """Rows ``[start, end)`` of ``pixel_values_videos`` that ``rank`` encodes."""
        bounds = torch.cat([torch.zeros(1, dtype=torch.long), self._group_patches(self.grid_thw).cumsum(0)])
        return int(bounds[self.starts[rank]]), int(bounds[self.starts[rank + 1]])

    @property
    def token_counts(self) -> list[int]:
        """Embedding rows (merged video tokens) produced by each rank."""
        return [(end - start) // self.merge_size**2 for start, end in map(self.patch_range, range(self.world))]


def sharded_encode_video(
    policy,
    pixel_values_videos: Tensor,
    video_grid_thw: Tensor,
    second_per_grid_ts: Tensor | None = None,
    group: ProcessGroup | None = None,
) -> VideoEmbeddings:
    """:meth:`VideoLMPolicy.encode_video` with the temporal groups split over the ranks of ``group``.

    Every rank of the group must call it with the same (whole-batch) inputs. Each rank runs the vision tower
    on its run of groups only; the gathered result equals the unsharded encoding on every rank, and in
    backward the gradient of each rank's rows (summed over the ranks, see
    :mod:`~longvila_r1.parallel.collectives`) flows into the vision tower of the rank that encoded them.

    Args:
        policy: a :class:`~longvila_r1.models.VideoLMPolicy`.
        pixel_values_videos: flattened patches of all videos. ``[N_patches, 3*T_p*P*P]``
        video_grid_thw: patch grid of each video. ``[V, 3]``
        second_per_grid_ts: Qwen2.5-VL only, seconds per temporal patch of each video. ``[V]``
        group: the sequence-parallel group; ``None`` encodes everything here.

    Returns:
        The embeddings of the whole batch (deepstack features included for Qwen3-VL). ``[N, D]``
    """
    if group is None or group_size(group) == 1:
        return policy.encode_video(pixel_values_videos, video_grid_thw, second_per_grid_ts)
    if video_grid_thw.shape[0] == 0:
        raise ValueError("sharded_encode_video needs at least one video (video_grid_thw is empty)")
    shards = FrameShards.plan(video_grid_thw, policy.merge_size, group_size(group))
    start, end = shards.patch_range(group_rank(group))
    if end > start:
        local = policy.encode_video(pixel_values_videos[start:end], shards.local_grid(group_rank(group)))
        embeds, deepstack = local.embeds, local.deepstack
    else:
        embeds, deepstack = _idle_encoding(policy, pixel_values_videos, video_grid_thw)
    sizes = shards.token_counts
    return VideoEmbeddings(
        embeds=gather_along_dim(embeds, 0, group, sizes),  # [N, D]
        grid_thw=video_grid_thw,
        merge_size=policy.merge_size,
        deepstack=None if deepstack is None else [gather_along_dim(f, 0, group, sizes) for f in deepstack],
        second_per_grid_ts=second_per_grid_ts,
    )


def _idle_encoding(policy, pixel_values_videos: Tensor, video_grid_thw: Tensor) -> tuple[Tensor, list[Tensor] | None]:
    """No rows, for a rank without groups (fewer groups than ranks), still tied to the vision tower.

    It encodes the batch's last temporal group and keeps none of the rows: every vision parameter gets a
    (zero) gradient on this rank as on the others, which DDP expects, and the rank joins the collective of
    the backward pass that the other ranks wait for.
    """
    _, h, w = video_grid_thw[-1].tolist()
    grid = video_grid_thw.new_tensor([[1, h, w]])
    out = policy.encode_video(pixel_values_videos[-h * w :], grid)
    return out.embeds[:0], None if out.deepstack is None else [f[:0] for f in out.deepstack]
