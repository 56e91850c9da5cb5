"""The rollouts of one GRPO step, row-aligned with what the rewards and the loss need."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from longvila_r1.data.collate import select_videos
from longvila_r1.models.generation import GenerationOutput, concat_outputs
from longvila_r1.rewards import RewardInput


@dataclass
class RolloutBatch:
    """``B*G`` sampled responses (row ``b*G + g`` is sample ``g`` of prompt ``b``) and their prompts' labels.

    Attributes:
        output: the engine's output (sequences, masks, per-row video embeddings).
        texts: decoded responses, ``B*G``.
        answers / options / categories / ids / references: ground truth per row (repeated over a group);
            ``references`` are the records' reference reasoning chains (``None`` where a record has none).
        videos: the ``B`` prompts' video inputs (``pixel_values_videos``, ``video_grid_thw``,
            ``second_per_grid_ts``), for re-encoding with gradients when the vision tower trains.
    """

    output: GenerationOutput
    texts: list[str]
    answers: list[str]
    options: list[Any]
    categories: list[str | None]
    ids: list[str | None]
    references: list[str | None]
    videos: dict[str, torch.Tensor]

    @property
    def num_prompts(self) -> int:
        return int(self.videos["video_grid_thw"].shape[0])

    @classmethod
    def from_generation(
        cls, output: GenerationOutput, texts: list[str], batch: dict[str, Any], group_size: int
    ) -> RolloutBatch:
        def per_row(values: list[Any]) -> list[Any]:
            return [value for value in values for _ in range(group_size)]

        return cls(
            output=output,
            texts=texts,
            answers=per_row(batch["answers"]),
            options=per_row(batch["options"]),
            categories=per_row(batch["categories"]),
            ids=per_row(batch["ids"]),
            references=per_row(batch.get("references", [None] * batch["size"])),
            videos=select_videos(batch, range(batch["size"])),
        )


def reward_inputs(rollout: RolloutBatch) -> list[RewardInput]:
    """One :class:`~longvila_r1.rewards.RewardInput` per sampled response."""
    lengths = rollout.output.response_lengths.tolist()
    finished = rollout.output.finished.tolist()
    return [
        RewardInput(
            response=text,
            answer=answer,
            options=options,
            response_length=int(length),
            finished=bool(done),
            record_id=record_id,
            category=category,
            reference=reference,
        )
        for text, answer, options, length, done, record_id, category, reference in zip(
            rollout.texts,
            rollout.answers,
            rollout.options,
            lengths,
            finished,
            rollout.ids,
            rollout.categories,
            rollout.references,
            strict=True,
        )
    ]


def group_rows(groups: Sequence[int], group_size: int) -> list[int]:
    """Row indices of whole groups: ``[g*G, ..., g*G + G-1]`` for each group ``g`` in order."""
    return [g * group_size + k for g in groups for k in range(group_size)]


def select_groups(rollout: RolloutBatch, groups: Sequence[int], group_size: int) -> RolloutBatch:
    """Only the groups ``groups`` (prompt positions) of ``rollout``, rows and prompt videos alike."""
    rows = group_rows(groups, group_size)
    out = rollout.output
    index = torch.tensor(rows, device=out.sequences.device)
    output = replace(
        out,
        sequences=out.sequences[index],
        attention_mask=out.attention_mask[index],
        mm_token_type_ids=out.mm_token_type_ids[index],
        response_ids=out.response_ids[index],
        response_mask=out.response_mask[index],
        finished=out.finished[index],
        video_embeddings=None if out.video_embeddings is None else out.video_embeddings.select(rows),
    )
    return RolloutBatch(
        output=output,
        texts=[rollout.texts[r] for r in rows],
        answers=[rollout.answers[r] for r in rows],
        options=[rollout.options[r] for r in rows],
        categories=[rollout.categories[r] for r in rows],
        ids=[rollout.ids[r] for r in rows],
        references=[rollout.references[r] for r in rows],
        videos=select_videos(rollout.videos, list(groups)),
    )


def split_groups(rollout: RolloutBatch, group_size: int) -> list[RolloutBatch]:
    """One single-group :class:`RolloutBatch` per prompt (the payloads of dynamic sampling's buffer)."""
    return [select_groups(rollout, [g], group_size) for g in range(rollout.num_prompts)]


def merge_rollouts(parts: Sequence[RolloutBatch], pad_id: int) -> RolloutBatch:
    """Concatenate rollouts of different batches (prompts and responses re-padded to common widths)."""
    videos = {key: torch.cat([part.videos[key] for part in parts]) for key in parts[0].videos}
    return RolloutBatch(
        output=concat_outputs([part.output for part in parts], pad_id),
        texts=[t for part in parts for t in part.texts],
        answers=[a for part in parts for a in part.answers],
        options=[o for part in parts for o in part.options],
        categories=[c for part in parts for c in part.categories],
        ids=[i for part in parts for i in part.ids],
        references=[r for part in parts for r in part.references],
        videos=videos,
    )
