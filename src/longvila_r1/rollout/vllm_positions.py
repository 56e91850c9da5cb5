"""M-RoPE positions in vLLM computed by the trainer's own transformers code.

vLLM 0.32 and transformers 5.x disagree on where text resumes after a video: vLLM (like transformers 4.x and
Qwen's reference code) continues after the largest position of the video, transformers 5.x after its spatial
extent (``start + max(h, w) / merge``), ignoring how far the (time-scaled) temporal index reached. Whenever a
video's temporal positions outrun its spatial ones, every later token, the response included, gets another
position in the rollout than in the trainer's log-probs. Measured on the tiny model: 2e-3 log-prob differences
at initial weights, different greedy tokens after a small weight update.

:func:`use_trainer_positions` makes vLLM ask the policy's ``get_rope_index`` (it only reads the config, not the
weights) for each request's positions, so rollout and training agree by construction, whatever either library
does in a later release.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from longvila_r1.models.policy import VideoLMPolicy

TOKEN_TYPES = {"image": 1, "video": 2}  # mm_token_type_ids values


def use_trainer_positions(llm, policy: VideoLMPolicy) -> None:
    """Replace ``get_mrope_input_positions`` of vLLM's in-process model with the trainer's computation."""

    def positions(model, input_tokens: list[int], mm_features: list[Any]) -> tuple[torch.Tensor, int]:
        return trainer_mrope_positions(policy, input_tokens, mm_features)

    llm.apply_model(lambda model: setattr(model, "get_mrope_input_positions", types.MethodType(positions, model)))


def trainer_mrope_positions(policy: VideoLMPolicy, input_tokens: list[int], mm_features: list[Any]):
    """``(positions [3, L], delta)`` of one vLLM request, from transformers' ``get_rope_index``.

    ``mm_features`` are vLLM's per-item features (modality, placeholder offset, processed tensors); the grids
    and Qwen2.5-VL's seconds per temporal group come from them, the token types from the placeholder ids.
    """
    ids = torch.tensor(input_tokens, dtype=torch.long)[None]  # [1, L]
    config = policy.config
    token_types = torch.zeros_like(ids)  # [1, L]
    token_types[ids == config.image_token_id] = TOKEN_TYPES["image"]
    token_types[ids == config.video_token_id] = TOKEN_TYPES["video"]
    grids: dict[str, list[torch.Tensor]] = {"image": [], "video": []}
    seconds: list[float] = []
    for feature in sorted(mm_features, key=lambda f: f.mm_position.offset):
        grids[feature.modality].append(feature.data[f"{feature.modality}_grid_thw"].data.reshape(3))
        if feature.modality == "video":
            spg = feature.data.get("second_per_grid_ts")
            seconds.append(1.0 if spg is None else float(spg.data))
    kwargs: dict[str, Any] = {
        f"{modality}_grid_thw": torch.stack(found) if found else None for modality, found in grids.items()
    }
    if policy.family == "qwen2_5_vl" and seconds:
        kwargs["second_per_grid_ts"] = torch.tensor(seconds)
    positions, delta = policy.model.model.get_rope_index(ids, mm_token_type_ids=token_types, **kwargs)
    return positions[:, 0], int(delta.reshape(-1)[0])
