"""MR-SP stage 2: sequence-parallel prefill of the language model, down to per-token log-probs.

Every rank of the sequence-parallel group builds the whole batch's input embeddings (text embeddings with
the cached video embeddings scattered in) and M-RoPE positions, then keeps its slice of the sequence. The
decoder runs on the slice, exchanging heads for positions inside each attention layer (Ulysses), the LM
head scores the slice's tokens, and the log-probs are gathered so every rank returns exactly what
:meth:`VideoLMPolicy.response_logprobs` returns in one process.

Steps of :func:`sequence_parallel_logprobs`:
    1. embeddings ``[B, S, D]`` and positions ``[3, B, S]`` of the whole sequence (:func:`prefill_inputs`);
    2. pad to a multiple of the group size and keep the local slice (:class:`SequenceShard`);
    3. the language model on the slice under :func:`ulysses_context` with the global key mask;
    4. log-probs of the slice's scored tokens, gathered along the sequence.

Example:
    >>> use_ulysses_attention(policy.model)  # once, at setup
    >>> emb = sharded_encode_video(policy, pixels, grid_thw, seconds, group=layout.sp_group)
    >>> logprobs = sequence_parallel_logprobs(policy, input_ids, attention_mask, mm_token_type_ids, emb,
    ...                                       prompt_lengths=prompt_len, group=layout.sp_group)  # [B, S-1]
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributed import ProcessGroup

from longvila_r1.models.embeddings import VideoEmbeddings, check_qwen3_frame_groups
from longvila_r1.models.logprobs import score_mask, token_logprobs
from longvila_r1.parallel.collectives import group_size
from longvila_r1.parallel.sequence import SequenceShard, key_padding_mask
from longvila_r1.parallel.ulysses import ulysses_context, uses_ulysses_attention


def prefill_inputs(
    policy,
    input_ids: Tensor,
    attention_mask: Tensor | None,
    mm_token_type_ids: Tensor | None,
    video_embeddings: VideoEmbeddings | None,
) -> tuple[Tensor, Tensor]:
    """Input embeddings ``[B, S, D]`` and M-RoPE position ids ``[3, B, S]`` of the whole sequence.

    The same tensors transformers builds inside the model (placeholder rows replaced by the video
    embeddings in order; positions from the model's ``get_rope_index``), computed before sharding.
    """
    model = policy.model.model
    embeds = model.get_input_embeddings()(input_ids)  # [B, S, D]
    batch, length = input_ids.shape
    if video_embeddings is None:
        positions = torch.arange(length, device=input_ids.device).expand(3, batch, length)  # [3, B, S]
        return embeds, positions
    if mm_token_type_ids is None:
        raise ValueError("mm_token_type_ids is required with videos (M-RoPE positions are computed from it)")
    if policy.family == "qwen3_vl":
        check_qwen3_frame_groups(mm_token_type_ids, video_embeddings.grid_thw)
    is_video = (input_ids == policy.video_token_id).unsqueeze(-1)  # [B, S, 1]
    if int(is_video.sum()) != video_embeddings.embeds.shape[0]:
        raise ValueError(
            f"{int(is_video.sum())} video placeholder tokens but {video_embeddings.embeds.shape[0]} video embeddings"
        )
    embeds = embeds.masked_scatter(is_video, video_embeddings.embeds.to(embeds.dtype))  # [B, S, D]
    extra = {}
    if video_embeddings.second_per_grid_ts is not None:
        extra["second_per_grid_ts"] = video_embeddings.second_per_grid_ts
    positions, _ = model.get_rope_index(
        input_ids, mm_token_type_ids, video_grid_thw=video_embeddings.grid_thw, attention_mask=attention_mask, **extra
    )  # [3, B, S]
    return embeds, positions


def _deepstack_kwargs(policy, input_ids: Tensor, video_embeddings: VideoEmbeddings | None, shard) -> dict:
    """Qwen3-VL's deepstack features of the local video tokens, in the order the model adds them."""
    if policy.family != "qwen3_vl" or video_embeddings is None or video_embeddings.deepstack is None:
        return {}
    is_video = input_ids == policy.video_token_id  # [B, S]
    row = (is_video.flatten().cumsum(0) - 1).view_as(input_ids)  # [B, S]: embedding row of each video token
    local_video = shard.shard(is_video, dim=1, value=False)  # [B, S_local]
    rows = shard.shard(row, dim=1)[local_video]  # [N_local]
    # Always passed, even with no local video token, so every rank joins the backward of the gather.
    features = [feature.index_select(0, rows) for feature in video_embeddings.deepstack]
    return {"visual_pos_masks": local_video, "deepstack_visual_embeds": features}


def sequence_parallel_hidden_states(
    policy,
    input_ids: Tensor,
    attention_mask: Tensor | None,
    mm_token_type_ids: Tensor | None,
    video_embeddings: VideoEmbeddings | None,
    group: ProcessGroup | None = None,
) -> tuple[Tensor, SequenceShard]:
    """Final-norm hidden states of this rank's slice of the sequence, and the slice. ``[B, S_local, D]``"""
    parallel = group_size(group) > 1
    if parallel and not uses_ulysses_attention(policy.model):
        raise RuntimeError("sequence parallelism needs Ulysses attention: call use_ulysses_attention(policy.model)")
    embeds, positions = prefill_inputs(policy, input_ids, attention_mask, mm_token_type_ids, video_embeddings)
    shard = SequenceShard.for_group(input_ids.shape[1], group)
    key_mask = key_padding_mask(attention_mask, shard)  # [B, S_pad] or None
    with ulysses_context(group, key_mask):
        out = policy.model.model.language_model(
            inputs_embeds=shard.shard(embeds, dim=1),  # [B, S_local, D]
            position_ids=shard.shard(positions, dim=2),  # [3, B, S_local]
            # Under sequence parallelism the model would build a mask of the local shard; the context's
            # global key mask replaces it.
            attention_mask=None if parallel else attention_mask,
            use_cache=False,
            **_deepstack_kwargs(policy, input_ids, video_embeddings, shard),
        )
    return out.last_hidden_state, shard


def _local_logprobs(
    hidden: Tensor, labels: Tensor, scored: Tensor, lm_head: nn.Linear, temperature: float, chunk_size: int
) -> tuple[Tensor, Tensor]:
    """Log-probs and entropies of the scored local tokens, zero elsewhere. ``[B, S_local]`` each"""
    rows = scored
    if not scored.any():
        # Score one token and drop it: this rank's loss must still reach its hidden states, or it would skip
        # the backward all-to-alls that the other ranks wait for.
        rows = torch.zeros_like(scored)
        rows[0, 0] = True
    logprobs, entropy = token_logprobs(hidden[rows], labels[rows], lm_head, temperature, chunk_size)  # [N]
    count = int(scored.sum())
    zeros = torch.zeros(scored.shape, dtype=torch.float32, device=hidden.device)  # [B, S_local]
    return zeros.masked_scatter(scored, logprobs[:count]), zeros.masked_scatter(scored, entropy[:count])


def sequence_parallel_logprobs(
    policy,
    input_ids: Tensor,
    attention_mask: Tensor | None,
    mm_token_type_ids: Tensor | None,
    video_embeddings: VideoEmbeddings | None,
    response_mask: Tensor | None = None,
    prompt_lengths: Tensor | int | None = None,
    temperature: float = 1.0,
    return_entropy: bool = False,
    chunk_size: int = 1024,
    group: ProcessGroup | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """:meth:`VideoLMPolicy.response_logprobs` with the sequence split over the ranks of ``group``.

    Every rank of the group passes the same whole batch and gets the same ``[B, S-1]`` fp32 log-probs
    (entry ``t`` scores token ``t+1``; zero outside the scored tokens). Each rank holds activations for
    ``ceil(S / sp)`` positions only. In backward each rank's gradient of the log-probs is summed over the
    group (:mod:`~longvila_r1.parallel.collectives`): a loss computed whole on every rank gives the
    single-process gradient as the *mean* of the ranks' gradients (DDP's average).

    Args:
        policy: a :class:`~longvila_r1.models.VideoLMPolicy` whose language model uses Ulysses attention
            (:func:`~longvila_r1.parallel.ulysses.use_ulysses_attention`) when ``group`` has several ranks.
        input_ids, attention_mask, mm_token_type_ids, video_embeddings: as in ``response_logprobs``. ``[B, S]``
        response_mask, prompt_lengths, temperature, return_entropy, chunk_size: as in ``response_logprobs``.
        group: the sequence-parallel group; ``None`` runs in one process.
    """
    mask = score_mask(input_ids, attention_mask, response_mask, prompt_lengths)  # [B, S-1]
    hidden, shard = sequence_parallel_hidden_states(
        policy, input_ids, attention_mask, mm_token_type_ids, video_embeddings, group
    )  # [B, S_local, D]
    scored = torch.cat([mask, mask.new_zeros(mask.shape[0], 1)], dim=1)  # [B, S]: position t predicts t+1
    labels = torch.cat([input_ids[:, 1:], input_ids.new_zeros(input_ids.shape[0], 1)], dim=1)  # [B, S]
    local = _local_logprobs(
        hidden,
        shard.shard(labels, dim=1),
        shard.shard(scored, dim=1, value=False),
        policy.model.lm_head,
        temperature,
        chunk_size,
    )
    logprobs = shard.gather(local[0], dim=1, group=group)[:, :-1]  # [B, S-1]
    if not return_entropy:
        return logprobs
    return logprobs, shard.gather(local[1], dim=1, group=group)[:, :-1]
