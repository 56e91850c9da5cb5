"""What :meth:`VideoLMPolicy.generate` returns, and the helpers it is built from."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from longvila_r1.models.embeddings import VideoEmbeddings


@dataclass
class GenerationOutput:
    """Sampled responses for a batch of left-padded prompts.

    Rows are grouped by prompt: row ``b * G + g`` is sample ``g`` of prompt ``b`` (``G`` =
    ``num_return_sequences``), the layout of ``repeat_interleave``. The full-sequence tensors, together with
    ``video_embeddings``, are exactly the inputs :meth:`VideoLMPolicy.response_logprobs` needs.

    Attributes:
        sequences: prompt + response ids. ``[B*G, P+L]``
        attention_mask: prompt mask, then ``response_mask``. ``[B*G, P+L]``
        mm_token_type_ids: prompt types, then zeros (text). ``[B*G, P+L]``
        response_ids: generated ids, padded after the stop token. ``[B*G, L]``
        response_mask: 1 on generated tokens up to and including the stop token. ``[B*G, L]``
        finished: whether the response ended with a stop token (else it hit ``max_new_tokens``). ``[B*G]``
        prompt_length: ``P``, the padded prompt length; responses start there in every row.
        video_embeddings: the prompt embeddings repeated per sample (row order as above).

    Example:
        >>> out = policy.generate(ids, mask, types, emb, max_new_tokens=32, num_return_sequences=4, seed=0)
        >>> texts = policy.tokenizer.batch_decode(out.response_ids, skip_special_tokens=True)
    """

    sequences: Tensor
    attention_mask: Tensor
    mm_token_type_ids: Tensor
    response_ids: Tensor
    response_mask: Tensor
    finished: Tensor
    prompt_length: int
    video_embeddings: VideoEmbeddings | None

    @property
    def response_lengths(self) -> Tensor:
        """Generated tokens per row, the stop token included. ``[B*G]``"""
        return self.response_mask.sum(-1)


def check_left_padded(attention_mask: Tensor) -> None:
    """Generation appends after the last column, so every prompt must end there."""
    if not bool(attention_mask[:, -1].all()):
        raise ValueError("generate needs left-padded prompts: attention_mask[:, -1] must be 1 in every row")


def check_sampling_args(
    max_new_tokens: int, do_sample: bool, temperature: float, top_p: float, top_k: int, num_return_sequences: int
) -> None:
    """Raise ``ValueError`` naming the first invalid sampling argument."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if num_return_sequences < 1:
        raise ValueError(f"num_return_sequences must be >= 1, got {num_return_sequences}")
    if do_sample and temperature <= 0:
        raise ValueError(f"temperature must be > 0 when do_sample=True, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 disables it), got {top_k}")


def generation_config(
    max_new_tokens: int,
    do_sample: bool,
    temperature: float,
    top_p: float,
    top_k: int,
    stop_ids: Sequence[int],
    pad_id: int,
    suppress_ids: Sequence[int] = (),
):
    """A transformers ``GenerationConfig``; ``top_k=0`` disables top-k (transformers' default is 50).

    ``suppress_ids`` are never sampled: the vision placeholders, which would make the sampled sequence claim
    more video tokens than there are video features when it is scored again.
    """
    from transformers import GenerationConfig

    sampling = {"temperature": temperature, "top_p": top_p, "top_k": top_k} if do_sample else {}
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        eos_token_id=list(stop_ids),
        pad_token_id=pad_id,
        suppress_tokens=list(suppress_ids) or None,
        **sampling,
    )


def stop_masks(response_ids: Tensor, stop_ids: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Mask of the tokens up to and including the first stop token, and whether a stop token occurred.

    Args:
        response_ids: generated ids. ``[B, L]``
        stop_ids: ids that end a response.

    Returns:
        ``(response_mask [B, L] long, finished [B] bool)``.
    """
    is_stop = torch.isin(response_ids, torch.as_tensor(list(stop_ids), device=response_ids.device)).long()  # [B, L]
    stops_before = is_stop.cumsum(-1) - is_stop  # [B, L]
    return (stops_before == 0).long(), is_stop.bool().any(-1)


def build_output(
    sequences: Tensor,
    attention_mask: Tensor,
    mm_token_type_ids: Tensor,
    video_embeddings: VideoEmbeddings | None,
    stop_ids: Sequence[int],
    pad_id: int,
    response_lengths: Tensor | None = None,
) -> GenerationOutput:
    """Split a ``[B, P+L]`` output into prompt and response, masking everything after a stop.

    ``response_lengths`` (``[B]``, tokens each row really generated) also masks the padding of rows that ended
    without a stop token before ``L`` (vLLM stops a sequence at its context limit); transformers' rows that do
    not stop always run to ``L``, so it needs none.
    """
    prompt_length = attention_mask.shape[1]
    response_ids = sequences[:, prompt_length:]  # [B, L]
    response_mask, finished = stop_masks(response_ids, stop_ids)  # [B, L], [B]
    if response_lengths is not None:
        positions = torch.arange(response_ids.shape[1], device=response_ids.device)  # [L]
        response_mask = response_mask * (positions < response_lengths.to(positions.device)[:, None])  # [B, L]
    # A pad id can also be a real token (<|endoftext|>), so the mask, not the ids, says where a response ends.
    response_ids = response_ids.masked_fill(response_mask == 0, pad_id)
    return GenerationOutput(
        sequences=torch.cat([sequences[:, :prompt_length], response_ids], dim=1),
        attention_mask=torch.cat([attention_mask, response_mask.to(attention_mask.dtype)], dim=1),
        mm_token_type_ids=torch.cat([mm_token_type_ids, mm_token_type_ids.new_zeros(response_ids.shape)], dim=1),
        response_ids=response_ids,
        response_mask=response_mask,
        finished=finished,
        prompt_length=prompt_length,
        video_embeddings=video_embeddings,
    )


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Put ``module`` in eval mode, then restore each submodule's own mode (not one flag for all)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch's RNG inside the block and restore the previous state after (no-op for ``seed=None``)."""
    if seed is None:
        yield
        return
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def concat_outputs(outputs: Sequence[GenerationOutput], pad_id: int) -> GenerationOutput:
    """Stack generation outputs row-wise: prompts left-padded to the widest, responses right-padded to the longest.

    Chunks of one batch share their prompt width ``P`` and differ in response width (each ``generate`` call
    stops when its own rows are done); outputs of different batches (dynamic sampling collects groups over
    several) differ in both. Padded positions get ``pad_id`` and a zero mask, as positions after a stop token
    already do, so the result is again a valid left-padded-prompt output.
    """
    prompt_width = max(o.prompt_length for o in outputs)
    response_width = max(o.response_ids.shape[1] for o in outputs)

    def left(t: Tensor, value: int) -> Tensor:  # [R, P_i] -> [R, P]
        return torch.nn.functional.pad(t, (prompt_width - t.shape[1], 0), value=value)

    def right(t: Tensor, value: int) -> Tensor:  # [R, L_i] -> [R, L]
        return torch.nn.functional.pad(t, (0, response_width - t.shape[1]), value=value)

    response_ids = torch.cat([right(o.response_ids, pad_id) for o in outputs])  # [R, L]
    response_mask = torch.cat([right(o.response_mask, 0) for o in outputs])  # [R, L]
    prompt_ids = torch.cat([left(o.sequences[:, : o.prompt_length], pad_id) for o in outputs])  # [R, P]
    prompt_mask = torch.cat([left(o.attention_mask[:, : o.prompt_length], 0) for o in outputs])  # [R, P]
    prompt_types = torch.cat([left(o.mm_token_type_ids[:, : o.prompt_length], 0) for o in outputs])  # [R, P]
    embeddings = [o.video_embeddings for o in outputs if o.video_embeddings is not None]
    return GenerationOutput(
        sequences=torch.cat([prompt_ids, response_ids], dim=1),
        attention_mask=torch.cat([prompt_mask, response_mask.to(prompt_mask.dtype)], dim=1),
        mm_token_type_ids=torch.cat([prompt_types, prompt_types.new_zeros(response_ids.shape)], dim=1),
        response_ids=response_ids,
        response_mask=response_mask,
        finished=torch.cat([o.finished for o in outputs]),
        prompt_length=prompt_width,
        video_embeddings=VideoEmbeddings.concat(embeddings) if embeddings else None,
    )
