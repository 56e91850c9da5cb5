"""Ulysses attention, registered as a transformers attention function.

Each rank holds ``S/sp`` positions of every head. Inside attention an all-to-all trades that for all ``S``
positions of ``H/sp`` heads, SDPA runs over the whole (causal) sequence, and the inverse all-to-all gives
the positions back. Queries and keys arrive already rotated with the global M-RoPE positions of the local
tokens, so nothing else changes in the model.

The function is registered under :data:`ULYSSES_ATTENTION` and behaves like ``"sdpa"`` outside
:func:`ulysses_context`, so one model serves generation and sequence-parallel prefill alike.

Example:
    >>> use_ulysses_attention(policy.model)  # once: the text model dispatches to "ulysses_sdpa"
    >>> with ulysses_context(sp_group, key_mask):  # the model sees its local shard only
    ...     hidden = policy.model.model.language_model(inputs_embeds=local_embeds, position_ids=local_pos)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.distributed import ProcessGroup
from torch.nn import functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, sdpa_mask

from longvila_r1.parallel.collectives import all_to_all, group_size

ULYSSES_ATTENTION = "ulysses_sdpa"


@dataclass
class _UlyssesState:
    group: ProcessGroup
    key_mask: Tensor | None  # [B, S_pad] bool, True on keys that may be attended to
    _mask: Tensor | None = field(default=None, init=False)

    def attention_mask(self) -> Tensor | None:
        """Causal & key mask ``[B, 1, S, S]`` (built once per forward, shared by the layers), or ``None``."""
        if self.key_mask is None or self._mask is not None:
            return self._mask
        length = self.key_mask.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=self.key_mask.device).tril()  # [S, S]
        mask = causal & self.key_mask[:, None, None, :]  # [B, 1, S, S]
        # A padding query with no visible key would turn into NaN (and NaN gradients); let it see itself.
        self._mask = mask | torch.eye(length, dtype=torch.bool, device=mask.device)
        return self._mask


_STATE: ContextVar[_UlyssesState | None] = ContextVar("ulysses_state", default=None)


@contextmanager
def _installed(state: _UlyssesState | None) -> Iterator[None]:
    token = _STATE.set(state)
    try:
        yield
    finally:
        _STATE.reset(token)


@contextmanager
def ulysses_context(group: ProcessGroup | None, key_mask: Tensor | None = None) -> Iterator[None]:
    """Run the ``"ulysses_sdpa"`` attention layers sequence-parallel over ``group`` inside the block.

    Args:
        group: the sequence-parallel group; ``None`` leaves attention single-process (plain SDPA).
        key_mask: ``True`` on the keys that may be attended to, over the whole padded sequence, or ``None``
            for plain causal attention (see :func:`~longvila_r1.parallel.sequence.key_padding_mask`).
            ``[B, S_pad]``
    """
    with _installed(None if group is None or group_size(group) == 1 else _UlyssesState(group, key_mask)):
        yield


def checkpoint_contexts() -> tuple[AbstractContextManager, AbstractContextManager]:
    """``context_fn`` for ``torch.utils.checkpoint``: the recomputation in backward runs outside the
    :func:`ulysses_context` block, so it reinstalls the state that was active when the forward ran."""
    return nullcontext(), _installed(_STATE.get())


def replicate_kv_heads(tensor: Tensor, world: int) -> Tensor:
    """Repeat each KV head so the head count becomes ``lcm(KV, world)``, divisible by ``world``.

    ``repeat_interleave`` keeps query head ``h`` paired with (a copy of) its KV head ``h * KV // H``, so after
    scattering the heads each rank holds the KV heads of its query heads. ``[B, KV, S, D] -> [B, lcm, S, D]``
    """
    heads = tensor.shape[1]
    repeats = math.lcm(heads, world) // heads
    return tensor if repeats == 1 else tensor.repeat_interleave(repeats, dim=1)


def ulysses_attention_forward(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[Tensor, None]:
    """The ``"ulysses_sdpa"`` attention function (transformers' ``AttentionInterface`` signature).

    Outside :func:`ulysses_context` it is transformers' SDPA attention. Inside, ``attention_mask`` (built
    by the model from the local shard) is ignored: the context's global mask is used.

    Args:
        module: the attention layer.
        query: rotated queries of the local positions. ``[B, H, S_local, D]``
        key: rotated keys. ``[B, KV, S_local, D]``
        value: values. ``[B, KV, S_local, D]``

    Returns:
        ``(output, None)`` with output ``[B, S_local, H, D]``, as transformers expects.
    """
    state = _STATE.get()
    if state is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    _check_supported(module, query, kwargs, group_size(state.group))
    world = group_size(state.group)
    key, value = replicate_kv_heads(key, world), replicate_kv_heads(value, world)  # [B, KV', S_local, D]
    query = all_to_all(query, scatter_dim=1, gather_dim=2, group=state.group)  # [B, H/sp, S, D]
    key = all_to_all(key, scatter_dim=1, gather_dim=2, group=state.group)  # [B, KV'/sp, S, D]
    value = all_to_all(value, scatter_dim=1, gather_dim=2, group=state.group)  # [B, KV'/sp, S, D]
    groups = query.shape[1] // key.shape[1]
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)  # [B, H/sp, S, D]
    mask = state.attention_mask()  # [B, 1, S, S] or None
    out = F.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, dropout_p=dropout, scale=scaling, is_causal=mask is None
    )  # [B, H/sp, S, D]
    out = all_to_all(out, scatter_dim=2, gather_dim=1, group=state.group)  # [B, H, S_local, D]
    return out.transpose(1, 2).contiguous(), None


def _check_supported(module: nn.Module, query: Tensor, kwargs: dict, world: int) -> None:
    if not getattr(module, "is_causal", True):
        raise NotImplementedError("Ulysses attention supports causal (decoder) self-attention only")
    if kwargs.get("sliding_window") is not None:
        raise NotImplementedError("Ulysses attention does not support sliding-window layers")
    if query.shape[1] % world:
        raise ValueError(
            f"Ulysses attention needs the number of attention heads ({query.shape[1]}) to be divisible by "
            f"sequence_parallel_size ({world})"
        )


def register_ulysses_attention() -> None:
    """Register :data:`ULYSSES_ATTENTION` with transformers (its mask function is SDPA's). Idempotent."""
    AttentionInterface.register(ULYSSES_ATTENTION, ulysses_attention_forward)
    if ULYSSES_ATTENTION not in ALL_MASK_ATTENTION_FUNCTIONS:
        AttentionMaskInterface.register(ULYSSES_ATTENTION, sdpa_mask)


def uses_ulysses_attention(model: nn.Module) -> bool:
    """Whether the language model of a Qwen-VL ``model`` dispatches to :data:`ULYSSES_ATTENTION`."""
    return model.config.text_config._attn_implementation == ULYSSES_ATTENTION


def use_ulysses_attention(model: nn.Module) -> None:
    """Make the language model of a Qwen-VL ``model`` dispatch its attention to :data:`ULYSSES_ATTENTION`.

    Only the text model changes (the vision tower is sharded by frames, not by sequence). The model must use
    ``"sdpa"`` (or already Ulysses): SDPA is what runs outside the sequence-parallel context. With activation
    checkpointing on, it is re-enabled with :func:`checkpoint_contexts` (enable checkpointing first).
    """
    if uses_ulysses_attention(model):
        return
    current = model.config.text_config._attn_implementation
    if current != "sdpa":
        raise ValueError(
            f"sequence parallelism needs attn_implementation='sdpa' for the language model, got {current!r}"
        )
    register_ulysses_attention()
    model.set_attn_implementation({"text_config": ULYSSES_ATTENTION})
    _carry_context_into_recompute(model)


def _carry_context_into_recompute(model: nn.Module) -> None:
    # Recomputed layers must run sequence-parallel again, like the forward they replay. transformers 5.23
    # renamed the checkpointing API; older 5.x releases only have the `gradient_` names.
    kwargs = {"use_reentrant": False, "context_fn": checkpoint_contexts}
    if hasattr(model, "activation_checkpointing_enable"):
        if model.is_activation_checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    elif model.is_gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
