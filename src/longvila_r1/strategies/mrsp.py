"""The MR-SP Strategy: DDP over every process plus a ``("dp", "sp")`` mesh for sequence parallelism.

The strategy owns the process groups; the LightningModules call the plain functions of
:mod:`longvila_r1.parallel` with the group it hands out:

1. ``sharded_encode_video(policy, ..., group=sequence_parallel_group(trainer))`` for the video embeddings;
2. ``sequence_parallel_logprobs(policy, ..., group=sequence_parallel_group(trainer))`` for old-policy,
   reference and training log-probs;
3. the loss computed whole, on every rank, from the gathered log-probs.

Gradients then come out right for any (dp, sp) with no rescaling: the collectives' backward sums each rank's
gradient over its ``sp`` group, so the mean over all ``dp * sp`` ranks (what DDP computes) is the mean
over the ``dp`` groups of the single-process gradient of each group's sample.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.strategies import DDPStrategy
from torch.distributed import ProcessGroup
from typing_extensions import override

from longvila_r1.parallel.layout import ParallelLayout
from longvila_r1.parallel.ulysses import use_ulysses_attention


class MRSPStrategy(DDPStrategy):
    """Data parallelism across ``sp`` groups, sequence parallelism (frames and tokens) inside each group.

    ``world_size = dp * sp``; ``dp`` is inferred. The ranks of one ``sp`` group read the same samples (the
    sampler is given the ``dp`` coordinates only), encode disjoint runs of frames and hold disjoint slices of
    the sequence. With ``sequence_parallel_size > 1`` the module's ``policy`` is switched to Ulysses attention
    at setup. Gloo on CPU, NCCL on GPUs (Lightning's default backend for the device); launched like DDP
    (``start_method="popen"`` under torchrun/SLURM, ``"spawn"`` for CPU tests and notebooks).

    Args:
        sequence_parallel_size: ranks that share one sample; must divide the number of processes.
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

        ``longvila-r1 fit --config configs/grpo.yaml --config configs/strategy/mrsp.yaml --trainer.devices 2``
        or ``Trainer(devices=4, strategy=MRSPStrategy(sequence_parallel_size=2))``.
    """

    strategy_name = "mrsp"

    def __init__(self, sequence_parallel_size: int = 1, **kwargs: Any) -> None:
        if isinstance(sequence_parallel_size, bool) or not isinstance(sequence_parallel_size, int):
            raise TypeError(f"sequence_parallel_size must be an int, got {sequence_parallel_size!r}")
        if sequence_parallel_size < 1:
            raise ValueError(f"sequence_parallel_size must be >= 1, got {sequence_parallel_size}")
        super().__init__(**kwargs)
        self.sequence_parallel_size = sequence_parallel_size
        self._layout: ParallelLayout | None = None

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
    def setup(self, trainer: pl.Trainer) -> None:
        if self.sequence_parallel_size > 1:
            policy = getattr(self.model, "policy", None)
            if policy is None:
                raise ValueError(
                    f"sequence_parallel_size={self.sequence_parallel_size} needs a LightningModule with a `policy` "
                    f"(VideoLMPolicy); {type(self.model).__name__} has none"
                )
            use_ulysses_attention(policy.model)
        super().setup(trainer)

    @override
    def teardown(self) -> None:
        super().teardown()
        self._layout = None


def sequence_parallel_group(trainer: pl.Trainer | None) -> ProcessGroup | None:
    """The ``sp`` process group of the trainer's strategy; ``None`` without sequence parallelism.

    Example:
        >>> logprobs = sequence_parallel_logprobs(self.policy, ..., group=sequence_parallel_group(self.trainer))
    """
    layout = getattr(trainer.strategy, "parallel_layout", None) if trainer is not None else None
    return None if layout is None else layout.sp_group
