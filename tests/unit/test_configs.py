"""Every YAML under configs/ parses against the code (LightningCLI --print_config), as litgpt tests its hub."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from longvila_r1.cli import main
from longvila_r1.lightning_cli import run_lightning_cli

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
CONFIGS = sorted(CONFIG_DIR.rglob("*.yaml"))
# A full config names a model; an overlay (demo.yaml, strategy/*.yaml) only changes a few keys of one.
BASE = [c for c in CONFIGS if "class_path" in ((yaml.safe_load(c.read_text()) or {}).get("model") or {})]
OVERLAYS = [c for c in CONFIGS if c not in BASE]
SFT = CONFIG_DIR / "sft.yaml"
GRPO = CONFIG_DIR / "grpo.yaml"
# Overlays of GRPO-only settings (the rollout engine, the demo's GRPO stage) parse on top of grpo.yaml, the others
# on top of sft.yaml.
GRPO_OVERLAY_DIRS = ("rollout",)


def base_of(overlay: Path) -> Path:
    grpo_only = overlay.relative_to(CONFIG_DIR).parts[0] in GRPO_OVERLAY_DIRS or "grpo" in overlay.stem
    return GRPO if grpo_only else SFT


def test_there_are_configs():
    assert BASE, "no configs found"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_config_starts_with_a_comment_block_naming_its_command(config):
    head = config.read_text().splitlines()[0]
    assert head.startswith("#"), f"{config} must start with a comment block saying what it is for"
    assert "longvila-r1" in config.read_text().split("\n\n")[0] or "longvila-r1" in config.read_text()


@pytest.mark.parametrize("config", BASE, ids=lambda p: p.name)
def test_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith("longvila_r1.")


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_overlay_parses_on_top_of_its_base(overlay, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(base_of(overlay)), "--config", str(overlay), "--print_config"])
    assert exit_info.value.code in (0, None)


def test_data_module_follows_the_model_path(tmp_path):
    args = ["--config", str(SFT), "--model.init_args.path", "small", "--trainer.logger", "false"]
    cli = run_lightning_cli(args, run=False)
    # One source of truth: the data module tokenises and preprocesses for the model being trained.
    assert cli.datamodule.hparams.model_path == cli.model.hparams.path == "small"


def test_an_unknown_key_fails_with_a_message(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(SFT), "--model.init_args.no_such_option", "1", "--print_config"])
    assert exit_info.value.code != 0
    assert "no_such_option" in capsys.readouterr().err


@pytest.mark.parametrize("config", [SFT, GRPO], ids=["sft", "grpo"])
def test_seed_everything_seeds_what_the_model_and_data_leave_unset(config):
    def build(*extra: str):
        args = ["--config", str(config), "--model.init_args.path", "tiny", "--trainer.logger", "false", *extra]
        return run_lightning_cli(args, run=False)

    default, reseeded = build(), build("--seed_everything", "3")
    assert default.datamodule.hparams.seed == default.model.hparams.seed == 0  # the configs' seed_everything: 0
    assert reseeded.datamodule.hparams.seed == reseeded.model.hparams.seed == 3
    if "rollout_seed" in reseeded.model.hparams:
        assert reseeded.model.hparams.rollout_seed == 3
    weights = [dict(cli.model.policy.named_parameters()) for cli in (default, reseeded)]
    assert any(not torch.equal(weights[0][name], weights[1][name]) for name in weights[0]), "same initial weights"
    explicit = build("--seed_everything", "3", "--model.init_args.seed", "5", "--data.init_args.seed", "0")
    assert (explicit.model.hparams.seed, explicit.datamodule.hparams.seed) == (5, 0)
