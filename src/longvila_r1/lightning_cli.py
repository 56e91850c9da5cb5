"""LightningCLI for ``longvila-r1 fit|validate|test``: modules and data modules chosen by ``class_path``."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from lightning.pytorch.cli import LightningCLI
from typing_extensions import override

from longvila_r1.data.datamodule import LongVideoReasonDataModule
from longvila_r1.modules.policy_module import VideoPolicyModule


class LongVilaCLI(LightningCLI):
    """LightningCLI whose data module follows the model: tokenizer and video preprocessing come from ``model.path``.

    Example:
        ``longvila-r1 fit --config configs/sft.yaml --trainer.max_steps 50``
    """

    @override
    def add_arguments_to_parser(self, parser) -> None:
        # One source of truth: the data module tokenises and preprocesses for the model being trained.
        parser.link_arguments("model.init_args.path", "data.init_args.model_path")
        parser.link_arguments("model.init_args.family", "data.init_args.model_family")


def run_lightning_cli(args: Sequence[str], run: bool = True) -> LongVilaCLI:
    """Run a LightningCLI subcommand (``args[0]`` is ``fit``, ``validate`` or ``test``).

    With ``run=False`` no subcommand is given: the CLI only parses ``args`` and instantiates the trainer, model
    and data module (useful in tests and notebooks).
    """
    # `longvila-r1` hands LightningCLI its own argv explicitly; the "args and sys.argv both given" warning is noise.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    return LongVilaCLI(
        model_class=VideoPolicyModule,
        datamodule_class=LongVideoReasonDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,  # the modules build optimizer + schedule from their own init args
        args=list(args),
        run=run,
    )
