"""The rollouts of one GRPO step, row-aligned with what the rewards and the loss need."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from longvila_r1.models.generation import GenerationOutput
from longvila_r1.rewards import RewardInput


@dataclass
class RolloutBatch:
    """``B*G`` sampled responses (row ``b*G + g`` is sample ``g`` of prompt ``b``) and their prompts' labels.

    Attributes:
        output: the engine's output (sequences, masks, per-row video embeddings).
        texts: decoded responses, ``B*G``.
        answers / options / categories / ids: ground truth per row (repeated over a group).
        prompt_index: position in the data batch of each prompt (``B``), so a subset of groups can find its
            videos again.
    """

    output: GenerationOutput
    texts: list[str]
    answers: list[str]
    options: list[Any]
    categories: list[str | None]
    ids: list[str | None]
    prompt_index: list[int]

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
            prompt_index=list(range(batch["size"])),
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
        )
        for text, answer, options, length, done, record_id, category in zip(
            rollout.texts,
            rollout.answers,
            rollout.options,
            lengths,
            finished,
            rollout.ids,
            rollout.categories,
            strict=True,
        )
    ]


def select_groups(
    rollout: RolloutBatch, rewards: torch.Tensor, groups: torch.Tensor, group_size: int
) -> tuple[RolloutBatch, torch.Tensor]:
    """Keep only the groups ``groups`` (prompt positions, ``[K]``): rows, labels and rewards ``[K*G]``."""
    if groups.numel() * group_size == len(rollout.texts):
        return rollout, rewards
    rows = (groups[:, None] * group_size + torch.arange(group_size)).flatten()  # [K*G]
    out = rollout.output
    tensor_rows = rows.to(out.sequences.device)
    output = replace(
        out,
        sequences=out.sequences[tensor_rows],
        attention_mask=out.attention_mask[tensor_rows],
        mm_token_type_ids=out.mm_token_type_ids[tensor_rows],
        response_ids=out.response_ids[tensor_rows],
        response_mask=out.response_mask[tensor_rows],
        finished=out.finished[tensor_rows],
        video_embeddings=None if out.video_embeddings is None else out.video_embeddings.select(rows.tolist()),
    )
    pick = rows.tolist()
    kept = RolloutBatch(
        output=output,
        texts=[rollout.texts[r] for r in pick],
        answers=[rollout.answers[r] for r in pick],
        options=[rollout.options[r] for r in pick],
        categories=[rollout.categories[r] for r in pick],
        ids=[rollout.ids[r] for r in pick],
        prompt_index=[rollout.prompt_index[g] for g in groups.tolist()],
    )
    return kept, rewards[rows.to(rewards.device)]
