"""LightningCLI for ``longvila-r1 fit|validate|test``: modules and data modules chosen by ``class_path``."""

from __future__ import annotations

import importlib
import inspect
import traceback
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from lightning.pytorch.cli import LightningCLI
from typing_extensions import override

from longvila_r1.data.datamodule import LongVideoReasonDataModule
from longvila_r1.modules.policy_module import VideoPolicyModule

# Constructor arguments of the library's modules and data modules that default to the run's `seed_everything`.
SEED_ARGUMENTS = ("seed", "rollout_seed")


class ConfigError(ValueError):
    """A class named in the config refused its arguments: the config section, the class and the reason."""


class LongVilaCLI(LightningCLI):
    """LightningCLI whose data module follows the model: tokenizer and video preprocessing come from ``model.path``.

    The seeds the model and data module leave unset (``seed``, ``rollout_seed``) are the run's ``seed_everything``.

    Example:
        ``longvila-r1 fit --config configs/sft.yaml --trainer.max_steps 50``
    """

    @override
    def add_arguments_to_parser(self, parser) -> None:
        # One source of truth: the data module tokenises and preprocesses for the model being trained.
        parser.link_arguments("model.init_args.path", "data.init_args.model_path")
        parser.link_arguments("model.init_args.family", "data.init_args.model_family")

    @override
    def before_instantiate_classes(self) -> None:
        # `seed_everything` seeds torch's global generators, but the library draws from its own seeds (weight
        # init, data order, rollouts) so that a resumed run never depends on the global state. A seed left unset
        # (None) follows `seed_everything`, so `--seed_everything 1` gives another run; one set explicitly wins.
        config = self.config[self.subcommand] if self.subcommand else self.config
        seed = config.get("seed_everything")
        if seed is None or isinstance(seed, bool):  # False: no seeding asked for, the seeds stay at 0
            return
        for section in ("model", "data"):
            init_args = config.get(f"{section}.init_args")
            for key in SEED_ARGUMENTS:
                if init_args is not None and key in init_args and init_args[key] is None:
                    init_args[key] = seed

    @override
    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except (ValueError, TypeError, OSError) as error:
            # jsonargparse reports a constructor's refusal as "Does not validate against any of the Union
            # subtypes" with the whole config namespace; the constructor's own message is the cause it wraps.
            cause = _innermost_cause(error)
            if cause is error:
                raise
            config = self.config[self.subcommand] if self.subcommand else self.config
            where = _section_that_raised(cause, config)
            raise ConfigError(f"{where}: {cause}" if where else str(cause)) from error


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


def _innermost_cause(error: BaseException) -> BaseException:
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def _section_that_raised(error: BaseException, config: Any) -> str | None:
    """``"model (longvila_r1.modules.GRPOModule)"``: the configured class whose constructor raised ``error``."""
    frames = [frame.filename for frame in traceback.extract_tb(error.__traceback__)]
    for key, class_path in _class_paths(config):
        module_name, _, name = class_path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), name)
            files = {inspect.getsourcefile(base) for base in cls.__mro__ if base.__module__.startswith(module_name)}
        except (ImportError, AttributeError, TypeError):
            continue
        if files & set(frames):
            return f"{key} ({class_path})"
    return None


def _class_paths(config: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every ``(key, class_path)`` of a parsed config: ``("model", ...)``, ``("trainer.callbacks[0]", ...)``."""
    for key, value in config.items():  # a jsonargparse Namespace iterates flattened: "model.class_path", ...
        name = f"{prefix}.{key}" if prefix else key
        section, _, leaf = name.rpartition(".")
        if leaf == "class_path" and isinstance(value, str):
            yield section, value
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if hasattr(item, "items"):
                    yield from _class_paths(item, f"{name}[{index}]")
