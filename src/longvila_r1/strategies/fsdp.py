"""FSDP2 parameter sharding of a :class:`~longvila_r1.models.VideoLMPolicy`, for :class:`MRSPStrategy`.

Every private torch and Lightning name the sharding needs is confined to this module.

Groups (one all-gather and one reduce-scatter each): every decoder layer, every vision block, and the root
(the policy: embeddings, LM head, final norm, the vision patch embedding and merger(s)). Frozen parameters are
left out (``ignored_params``): they stay whole on every rank, as under DDP, so a frozen vision tower encodes
without collectives and ranks may hit the embedding cache differently.

Three things differ from a model whose only entry point is ``forward``:

1. The modules call the policy through several methods and plain functions (``encode_video``,
   ``sequence_parallel_logprobs``, which reads ``lm_head.weight`` directly), so the root's own parameters are
   gathered for a whole step: :meth:`PolicySharding.run_step` runs the step *as* the root's forward, which is
   how FSDP2 gathers them and how it later reduce-scatters their gradients.
2. In a step that takes several optimizer steps (GRPO's manual optimization), the backward reshards the root
   and the optimizer updates the shards; :meth:`PolicySharding.regather` gathers the new values for the next
   forward of the same step.
3. Generation runs one decoder forward per new token, and ranks stop after different numbers of tokens: with
   per-layer all-gathers a rank that finished would leave the others waiting forever. ``policy.generate`` is
   wrapped to gather every group once for the whole call (the full model on each rank for the call's duration)
   and reshard after, so decoding runs no collective at all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, fully_shard

# Full tensors, gathered one at a time and kept on rank 0's CPU only: a 7B checkpoint never sits whole on a GPU.
SAVE_OPTIONS = StateDictOptions(full_state_dict=True, cpu_offload=True)
# Every rank reads the checkpoint file (as under DDP) and keeps its own shard of each full tensor.
LOAD_OPTIONS = StateDictOptions(full_state_dict=True)


class PolicySharding:
    """FSDP2 over a policy's decoder layers, vision blocks and root, on a 1-D mesh of all ranks.

    Args:
        mesh: the data-parallel mesh the parameters are sharded over (``world_size`` ranks, 1-D).

    Example:
        >>> sharding = PolicySharding(init_device_mesh("cuda", (dist.get_world_size(),)))
        >>> sharding.apply(module.policy)  # before the optimizer is built
        >>> loss = sharding.run_step(module.training_step, batch, 0)  # root parameters gathered meanwhile
        >>> loss.backward()  # gradients reduce-scattered (averaged over all ranks, as DDP's all-reduce)
    """

    def __init__(self, mesh: DeviceMesh) -> None:
        if mesh.ndim != 1:
            raise ValueError(f"PolicySharding needs a 1-D mesh over all ranks, got {mesh.ndim} dims")
        self.mesh = mesh
        self.root: nn.Module | None = None
        self._in_step = False

    def apply(self, policy: nn.Module) -> None:
        """Shard ``policy`` in place (collective): blocks first, then the root, then wrap ``generate``."""
        frozen = {p for p in policy.parameters() if not p.requires_grad}
        for block in _blocks(policy):
            if any(p.requires_grad for p in block.parameters()):
                fully_shard(block, mesh=self.mesh, ignored_params=frozen)
        fully_shard(policy, mesh=self.mesh, ignored_params=frozen)
        self.root = policy
        # FSDP2 makes the first module to run forward the root of the groups below it; an empty step now makes
        # it the policy even if a vision block runs first (a rollout encoding before the first training step).
        self.run_step(lambda: None)
        policy.reshard()
        _wrap_method(policy, "generate", self._generate)

    def run_step(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn(*args, **kwargs)`` as the root's forward: its parameters stay gathered until the backward."""
        root = self._require_root()
        if self._in_step:  # generation inside a training or validation step
            return fn(*args, **kwargs)

        def redirected(*inner_args: Any, **inner_kwargs: Any) -> Any:
            del root.forward  # the policy's own forward again for anything inside the step
            return fn(*inner_args, **inner_kwargs)

        root.forward = redirected
        self._in_step = True
        try:
            return root(*args, **kwargs)
        finally:
            root.__dict__.pop("forward", None)
            self._in_step = False

    def regather(self) -> None:
        """Gather the root's updated parameters after an optimizer step inside a step (manual optimization)."""
        if self._in_step:
            self._require_root().unshard()

    @contextmanager
    def gathered(self) -> Iterator[None]:
        """Keep every group gathered (no collective per forward) while the context is open; reshard after."""
        inner = [m for m in self._require_root().modules() if isinstance(m, FSDPModule) and m is not self.root]
        for module in inner:
            module.set_reshard_after_forward(False, recurse=False)
            module.unshard()
        try:
            yield
        finally:
            for module in inner:
                module.reshard()
                module.set_reshard_after_forward(True, recurse=False)

    def _generate(self, generate: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # No grad around the root's forward too, or FSDP would register backward hooks on the outputs.
        with self.gathered(), torch.no_grad():
            return self.run_step(generate, *args, **kwargs)

    def _require_root(self) -> nn.Module:
        if self.root is None:
            raise RuntimeError("PolicySharding.apply(policy) has not been called")
        return self.root


def full_model_state_dict(module: nn.Module) -> dict[str, Any]:
    """The unsharded state dict (collective): full CPU tensors on rank 0, empty elsewhere; keys as unsharded."""
    return get_model_state_dict(module, options=SAVE_OPTIONS)


def full_optimizer_state_dict(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The unsharded optimizer state (collective), keyed by parameter name, on rank 0's CPU.

    An optimizer that has not stepped yet is saved empty and left empty: torch fills an empty state by running
    a zero-learning-rate step, which would count a step in AdamW's bias correction, so a checkpoint taken before
    the first update (or after updates skipped together) would change the training that follows it.
    """
    if optimizer.state:
        return get_optimizer_state_dict(module, optimizer, options=SAVE_OPTIONS)
    state = get_optimizer_state_dict(module, optimizer, options=SAVE_OPTIONS)
    optimizer.state.clear()
    return {**state, "state": {}}


def load_full_model_state_dict(module: nn.Module, state_dict: dict[str, Any], strict: bool = True) -> None:
    """Load a full state dict into a sharded module; each rank keeps its shard."""
    options = StateDictOptions(full_state_dict=True, strict=strict)
    set_model_state_dict(module, state_dict, options=options)


def load_full_optimizer_state_dict(module: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load what :func:`full_optimizer_state_dict` saved into the optimizer of a sharded module."""
    set_optimizer_state_dict(module, optimizer, state, options=LOAD_OPTIONS)
    if not state["state"]:  # saved before any update: torch's zero-lr initialisation step must not count
        optimizer.state.clear()


def _blocks(policy: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a Qwen-VL policy: decoder layers, then vision blocks."""
    inner = policy.model.model
    return [*inner.language_model.layers, *inner.visual.blocks]


def _wrap_method(module: nn.Module, name: str, wrapper: Callable[..., Any]) -> None:
    # Patched on the instance, as torch's `register_fsdp_forward_method` patches forward-like methods.
    method = getattr(module, name)
    setattr(module, name, functools.wraps(method)(functools.partial(wrapper, method)))
