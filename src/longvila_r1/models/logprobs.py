"""Per-token log-probabilities and entropies from hidden states, without a full-vocabulary fp32 tensor.

The log-prob of one label only needs ``logit[label] - logsumexp(logits)``. Computing it in chunks of tokens,
and only for the tokens that are scored (the response), keeps the peak at ``[chunk, V]`` fp32 instead of
``[B, S, V]``; under autograd each chunk is recomputed in backward so the peak holds there too.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint


def score_mask(
    input_ids: Tensor,
    attention_mask: Tensor | None,
    response_mask: Tensor | None = None,
    prompt_lengths: Tensor | int | None = None,
) -> Tensor:
    """Which next-token predictions to score: ``[B, S-1]`` bool, entry ``t`` scoring token ``t+1``.

    Args:
        input_ids: ``[B, S]``
        attention_mask: 0 on padding. ``[B, S]``
        response_mask: 1 on the tokens to score. ``[B, S]``
        prompt_lengths: alternatively, the index of each row's first scored token (``[B]`` or an int).

    With neither, every non-padding token after the first is scored.
    """
    if response_mask is not None and prompt_lengths is not None:
        raise ValueError("pass response_mask or prompt_lengths, not both")
    valid = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    if response_mask is not None:
        if response_mask.shape != input_ids.shape:
            raise ValueError(f"response_mask shape {tuple(response_mask.shape)} != input_ids {tuple(input_ids.shape)}")
        valid = valid & response_mask.bool()
    elif prompt_lengths is not None:
        starts = torch.as_tensor(prompt_lengths, device=input_ids.device).reshape(-1, 1)  # [B or 1, 1]
        valid = valid & (torch.arange(input_ids.shape[1], device=input_ids.device) >= starts)
    return valid[:, 1:]


def _chunk_stats(hidden: Tensor, labels: Tensor, weight: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    logits = F.linear(hidden, weight).float() / temperature  # [C, V]
    lse = torch.logsumexp(logits, dim=-1)  # [C]
    logprobs = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1) - lse  # [C]
    entropy = lse - (torch.softmax(logits, dim=-1) * logits).sum(-1)  # [C]
    return logprobs, entropy


def token_logprobs(
    hidden: Tensor,
    labels: Tensor,
    lm_head: nn.Linear,
    temperature: float = 1.0,
    chunk_size: int = 1024,
) -> tuple[Tensor, Tensor]:
    """Log-prob of each label and the entropy of each predictive distribution.

    Args:
        hidden: final hidden states of the positions that predict ``labels``. ``[N, D]``
        labels: the next-token ids. ``[N]``
        lm_head: the output projection (bias-free, as in every Qwen-VL model).
        temperature: the sampling temperature; logits are divided by it, as the sampler did.
        chunk_size: tokens per chunk.

    Returns:
        ``(logprobs, entropy)``, both fp32 ``[N]``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if lm_head.bias is not None:
        raise ValueError("lm_head with a bias is not supported")
    recompute = torch.is_grad_enabled() and (hidden.requires_grad or lm_head.weight.requires_grad)
    logprobs, entropies = [], []
    for start in range(0, hidden.shape[0], chunk_size):
        args = (hidden[start : start + chunk_size], labels[start : start + chunk_size], lm_head.weight, temperature)
        stats = checkpoint(_chunk_stats, *args, use_reentrant=False) if recompute else _chunk_stats(*args)
        logprobs.append(stats[0])
        entropies.append(stats[1])
    if not logprobs:
        empty = hidden.new_zeros(0, dtype=torch.float32)
        return empty, empty
    return torch.cat(logprobs), torch.cat(entropies)
