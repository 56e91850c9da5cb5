"""The spawn launcher of :class:`~longvila_r1.strategies.MRSPStrategy`.

Lightning's private ``_MultiProcessingLauncher`` is only named here.
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist
from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher
from torch import nn
from torch.distributed.tensor import DTensor
from typing_extensions import override


class MRSPSpawnLauncher(_MultiProcessingLauncher):
    """Spawn/fork launcher whose workers leave the process group together, and optionally hand back full weights.

    Lightning's launcher lets each worker return as soon as its own part is done: rank 1 exits while rank 0
    still saves the weights, and gloo's process group is then destroyed by interpreter shutdown, which
    sometimes aborts a worker ("terminate called without an active exception", SIGABRT) after a fit that
    succeeded. Here every worker that returns normally meets the others at a barrier and destroys the
    process group before it exits. A worker that raised skips both (its peers may never arrive).

    With ``gather_full_weights`` (sharded parameters), the state dict the launcher copies into the main
    process's module is gathered from every rank's shards instead of being rank 0's half of each tensor.

    Example:
        >>> launcher = MRSPSpawnLauncher(strategy, start_method="spawn", gather_full_weights=True)
    """

    def __init__(self, strategy: Any, start_method: str = "spawn", gather_full_weights: bool = False) -> None:
        super().__init__(strategy, start_method=start_method)
        self.gather_full_weights = gather_full_weights

    @override
    def _wrapping_function(self, *args: Any, **kwargs: Any) -> None:
        super()._wrapping_function(*args, **kwargs)
        leave_process_group()

    @override
    def _collect_rank_zero_results(self, trainer: Any, results: Any) -> Any:
        if not self.gather_full_weights:
            return super()._collect_rank_zero_results(trainer, results)
        # Every rank computes this state dict, so the shards are gathered there (a collective per tensor).
        handle = trainer.lightning_module.register_state_dict_post_hook(_gather_dtensors)
        try:
            return super()._collect_rank_zero_results(trainer, results)
        finally:
            handle.remove()


def leave_process_group() -> None:
    """Wait for every rank, then destroy the default process group (a no-op when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _gather_dtensors(module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    for key, value in state_dict.items():
        if isinstance(value, DTensor):
            state_dict[key] = value.full_tensor().cpu()
