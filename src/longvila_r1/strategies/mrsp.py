"""The MR-SP Strategy: DDP (or FSDP2) over every process plus a ``("dp", "sp")`` mesh for sequence parallelism.

The strategy owns the process groups; the LightningModules call the plain functions of
:mod:`longvila_r1.parallel` with the group it hands out:

1. ``sharded_encode_video(policy, ..., group=sequence_parallel_group(trainer))`` for the video embeddings;
2. ``sequence_parallel_logprobs(policy, ..., group=sequence_parallel_group(trainer))`` for old-policy,
   reference and training log-probs;
3. the loss computed whole, on every rank, from the gathered log-probs.

Gradients then come out right for any (dp, sp) with no rescaling: the collectives' backward sums each rank's
gradient over its ``sp`` group, so the mean over all ``dp * sp`` ranks (what DDP computes) is the mean
over the ``dp`` groups of the single-process gradient of each group's sample.

With ``shard_parameters=True`` FSDP2 replaces DDP on the same 1-D group of all ``dp * sp`` ranks: its
reduce-scatter averages over that group exactly as DDP's all-reduce does, so the argument above holds
unchanged; each rank then keeps ``1/(dp*sp)`` of every trainable parameter, gradient and optimizer state
(see :mod:`longvila_r1.strategies.fsdp`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor
from torch.distributed import ProcessGroup
from torch.distributed.device_mesh import init_device_mesh
from torch.optim import Optimizer
from typing_extensions import override

from longvila_r1.parallel.layout import ParallelLayout
from longvila_r1.parallel.ulysses import use_ulysses_attention
from longvila_r1.strategies.fsdp import (
    PolicySharding,
    full_model_state_dict,
    full_optimizer_state_dict,
    load_full_model_state_dict,
    load_full_optimizer_state_dict,
)
from longvila_r1.strategies.launcher import MRSPSpawnLauncher


class MRSPStrategy(DDPStrategy):
    """Data parallelism across ``sp`` groups, sequence parallelism (frames and tokens) inside each group.

    ``world_size = dp * sp``; ``dp`` is inferred. The ranks of one ``sp`` group read the same samples (the
    sampler is given the ``dp`` coordinates only), encode disjoint runs of frames and hold disjoint slices of
    the sequence. With ``sequence_parallel_size > 1`` the module's ``policy`` is switched to Ulysses attention
    at setup. Gloo on CPU, NCCL on GPUs (Lightning's default backend for the device); launched like DDP
    (``start_method="popen"`` under torchrun/SLURM, ``"spawn"`` for CPU tests and notebooks).

    With ``shard_parameters=True`` the policy is sharded with FSDP2 (``fully_shard`` on every decoder layer,
    every vision block and the policy itself, over all processes) instead of being replicated by DDP: each
    process holds ``1/world_size`` of the trainable weights, gradients and optimizer state, which is what lets
    a 7B policy train with AdamW on 8 GPUs. Gradients equal DDP's. Frozen parameters (e.g. a frozen vision
    tower) stay whole on every process. Generation gathers the whole policy once per ``generate`` call.
    Checkpoints hold full (unsharded) weights and optimizer state, so ``--ckpt_path`` and
    ``longvila-r1 export`` work as with DDP; the optimizer state is keyed by parameter name, so a sharded run
    resumes from a sharded run's checkpoint only. Sharding applies while fitting; ``validate`` alone runs
    replicated. Not supported: a rollout engine that holds its own copy of the weights (vLLM).

    Args:
        sequence_parallel_size: ranks that share one sample; must divide the number of processes.
        shard_parameters: shard the policy's parameters, gradients and optimizer state with FSDP2 instead of
            replicating them with DDP.
        **kwargs: :class:`~lightning.pytorch.strategies.DDPStrategy` arguments (``start_method``,
            ``process_group_backend``, ``find_unused_parameters``, ``timeout``, ...).

    Example:
        .. code-block:: yaml

            # configs/strategy/mrsp.yaml
            trainer:
              strategy:
                class_path: longvila_r1.strategies.MRSPStrategy
                init_args:
                  sequence_parallel_size: 2
                  shard_parameters: true    # configs/strategy/mrsp_fsdp.yaml

        ``longvila-r1 fit --config configs/grpo.yaml --config configs/strategy/mrsp.yaml --trainer.devices 2``
        or ``Trainer(devices=4, strategy=MRSPStrategy(sequence_parallel_size=2))``.
    """

    strategy_name = "mrsp"

    def __init__(self, sequence_parallel_size: int = 1, shard_parameters: bool = False, **kwargs: Any) -> None:
        if isinstance(sequence_parallel_size, bool) or not isinstance(sequence_parallel_size, int):
            raise TypeError(f"sequence_parallel_size must be an int, got {sequence_parallel_size!r}")
        if sequence_parallel_size < 1:
            raise ValueError(f"sequence_parallel_size must be >= 1, got {sequence_parallel_size}")
        if not isinstance(shard_parameters, bool):
            raise TypeError(f"shard_parameters must be a bool (true/false), got {shard_parameters!r}")
        super().__init__(**kwargs)
        self.sequence_parallel_size = sequence_parallel_size
        self.shard_parameters = shard_parameters
        self._layout: ParallelLayout | None = None
        self._sharding: PolicySharding | None = None

    @property
    def parallel_layout(self) -> ParallelLayout | None:
        """The layout with its device mesh, once the processes are connected (``None`` before)."""
        return self._layout

    @override
    def setup_distributed(self) -> None:
        super().setup_distributed()
        layout = ParallelLayout(self.world_size, self.global_rank, self.sequence_parallel_size)
        layout.build(self.root_device.type)
        self._layout = layout

    @property
    @override
    def distributed_sampler_kwargs(self) -> dict[str, Any]:
        # Every rank of an sp group must read the same samples: the sampler sees the dp axis only.
        layout = self._layout or ParallelLayout(self.world_size, self.global_rank, self.sequence_parallel_size)
        return {"num_replicas": layout.dp_size, "rank": layout.dp_rank}

    @override
    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if self._start_method != "popen":
            self._launcher = MRSPSpawnLauncher(
                self, start_method=self._start_method, gather_full_weights=self.shard_parameters
            )

    @override
    def setup(self, trainer: pl.Trainer) -> None:
        if self.sequence_parallel_size > 1:
            use_ulysses_attention(self._policy(f"sequence_parallel_size={self.sequence_parallel_size}").model)
        if self.shard_parameters and trainer.state.fn == TrainerFn.FITTING:
            self._check_shardable()
        super().setup(trainer)

    @override
    def configure_ddp(self) -> None:
        if not self.shard_parameters:
            super().configure_ddp()
            return
        # Called by DDPStrategy.setup before the optimizers are built, so they are built over the shards.
        policy = self._policy("shard_parameters=True")
        if self._sharding is None or self._sharding.root is not policy:  # a second fit reuses the sharding
            self._sharding = PolicySharding(init_device_mesh(self.root_device.type, (self.world_size,)))
            self._sharding.apply(policy)

    # ------------------------------------------------------------------ steps run as the sharded root's forward
    @override
    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        return self._run_step(super().training_step, *args, **kwargs)

    @override
    def validation_step(self, *args: Any, **kwargs: Any) -> Any:
        return self._run_step(super().validation_step, *args, **kwargs)

    @override
    def test_step(self, *args: Any, **kwargs: Any) -> Any:
        return self._run_step(super().test_step, *args, **kwargs)

    @override
    def predict_step(self, *args: Any, **kwargs: Any) -> Any:
        return self._run_step(super().predict_step, *args, **kwargs)

    @override
    def optimizer_step(self, optimizer: Optimizer, closure: Any, model: Any = None, **kwargs: Any) -> Any:
        output = super().optimizer_step(optimizer, closure, model, **kwargs)
        if (sharding := self._active_sharding) is not None:  # manual optimization: the step goes on with new weights
            sharding.regather()
        return output

    # ------------------------------------------------------------------ full-state checkpoints
    @override
    def lightning_module_state_dict(self) -> dict[str, Any]:
        if self._active_sharding is None:
            return super().lightning_module_state_dict()
        return full_model_state_dict(self.lightning_module)

    @override
    def optimizer_state(self, optimizer: Optimizer) -> dict[str, Tensor]:
        if self._active_sharding is None:
            return super().optimizer_state(optimizer)
        return full_optimizer_state_dict(self.lightning_module, getattr(optimizer, "_optimizer", optimizer))

    @override
    def load_model_state_dict(self, checkpoint: Mapping[str, Any], strict: bool = True) -> None:
        # Restored before setup on a fresh module (plain load); into the shards when the module was sharded by
        # an earlier fit in this process.
        if self._active_sharding is None:
            super().load_model_state_dict(checkpoint, strict=strict)
            return
        load_full_model_state_dict(self.lightning_module, dict(checkpoint["state_dict"]), strict=strict)

    @override
    def load_optimizer_state_dict(self, checkpoint: Mapping[str, Any]) -> None:
        if self._active_sharding is None:
            super().load_optimizer_state_dict(checkpoint)
            return
        for optimizer, state in zip(self.optimizers, checkpoint["optimizer_states"], strict=True):
            load_full_optimizer_state_dict(self.lightning_module, optimizer, state)

    @override
    def teardown(self) -> None:
        self._layout = None
        if self._active_sharding is None:
            super().teardown()
            return
        # As Lightning's ModelParallelStrategy: the module stays where it is, because moving DTensor shards off
        # their mesh's device breaks them (and the spawn launcher gathers them after teardown).
        self.cluster_environment.teardown()
        self.precision_plugin.teardown()
        self.accelerator.teardown()
        self.checkpoint_io.teardown()

    # ------------------------------------------------------------------ helpers
    @property
    def _active_sharding(self) -> PolicySharding | None:
        """The sharding of the current module's policy; ``None`` when it runs replicated."""
        policy = getattr(self.lightning_module, "policy", None)
        sharding = self._sharding
        return sharding if sharding is not None and policy is not None and sharding.root is policy else None

    def _run_step(self, step: Any, *args: Any, **kwargs: Any) -> Any:
        sharding = self._active_sharding
        return step(*args, **kwargs) if sharding is None else sharding.run_step(step, *args, **kwargs)

    def _policy(self, reason: str):
        policy = getattr(self.model, "policy", None)
        if policy is None:
            raise ValueError(
                f"{reason} needs a LightningModule with a `policy` (VideoLMPolicy); {type(self.model).__name__} "
                "has none"
            )
        return policy

    def _check_shardable(self) -> None:
        module = self.lightning_module
        outside = [n for n, p in module.named_parameters() if p.requires_grad and not n.startswith("policy.")]
        if outside:
            raise ValueError(f"shard_parameters=True shards the policy only; trainable parameters outside: {outside}")
        engine = getattr(module, "rollout_engine", None)
        if getattr(engine, "holds_own_weights", False):
            raise ValueError(
                f"shard_parameters=True needs a rollout engine that generates with the policy's own weights "
                f"(TransformersEngine); {type(engine).__name__} copies weights and would copy shards"
            )


def sequence_parallel_group(trainer: pl.Trainer | None) -> ProcessGroup | None:
    """The ``sp`` process group of the trainer's strategy; ``None`` without sequence parallelism.

    Example:
        >>> logprobs = sequence_parallel_logprobs(self.policy, ..., group=sequence_parallel_group(self.trainer))
    """
    layout = getattr(trainer.strategy, "parallel_layout", None) if trainer is not None else None
    return None if layout is None else layout.sp_group
