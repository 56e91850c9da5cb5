"""The `longvila-r1` command: data jobs and command dispatch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from longvila_r1.cli import main


def test_data_synth_then_summary(tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["data", "synth", "--output-dir", str(out), "--num-videos", "6", "--frames", "32", "--seed", "1"]) == 0
    table = capsys.readouterr().out
    assert "train" in table and "temporal" in table
    first = json.loads((out / "train.jsonl").read_text().splitlines()[0])
    assert (out / first["videos"]).is_file()
    assert main(["data", "summary", "--data-dir", str(out), "--num-frames", "8"]) == 0
    summary = capsys.readouterr().out
    assert "source frames per video: min 32" in summary
    assert "video tokens min 16" in summary  # 8 frames -> 4 temporal groups x 2 x 2 merged patches


def test_unknown_command_is_an_error(capsys):
    assert main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--difficulty", "medium"], "invalid choice: 'medium'"), (["--frames", "3"], "frames must be an integer >= ")],
)
def test_synth_rejects_bad_arguments(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "synth", "--output-dir", str(tmp_path), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_summary_of_a_missing_directory_is_one_clear_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["data", "summary", "--data-dir", str(tmp_path / "nothing")])
    assert "no split files" in capsys.readouterr().err


def test_sweep_is_a_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--help"])
    assert exit_info.value.code == 0
    assert "--frames" in capsys.readouterr().out


CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(
    ("config", "override", "message"),
    [
        ("sft.yaml", "--data.init_args.num_frames=0", "data (longvila_r1.data.LongVideoReasonDataModule): num_frames"),
        ("grpo.yaml", "--model.init_args.group_size=1", "model (longvila_r1.modules.GRPOModule): group_size must be"),
        ("grpo.yaml", "--model.init_args.path=/no/such/model", "model (longvila_r1.modules.GRPOModule): path="),
    ],
)
def test_a_value_a_constructor_refuses_is_one_line_naming_the_section(tmp_path, capsys, config, override, message):
    overrides = [override] if "path" in override else [override, "--model.init_args.path=tiny"]
    code = main(["fit", "--config", str(CONFIGS / config), *overrides, f"--trainer.default_root_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"longvila-r1 fit: error: {message}" in err
    assert "Traceback" not in err and "Namespace(" not in err


def test_a_refused_callback_argument_names_its_place_in_the_list(tmp_path, capsys):
    overlay = tmp_path / "callbacks.yaml"
    overlay.write_text(
        "trainer:\n  callbacks:\n    - class_path: longvila_r1.callbacks.RolloutCallback\n"
        "      init_args: {cache_max_bytes: -5}\n"
    )
    code = main(
        ["validate", "--config", str(CONFIGS / "grpo.yaml"), "--config", str(overlay), "--model.init_args.path=tiny"]
    )
    assert code == 2
    assert "trainer.callbacks[0] (longvila_r1.callbacks.RolloutCallback): cache_max_bytes" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"), [(None, "not found"), (b"not a checkpoint", "not a readable checkpoint")]
)
def test_export_of_a_missing_or_unreadable_checkpoint_is_one_clear_line(tmp_path, capsys, content, message):
    ckpt = tmp_path / "last.ckpt"
    if content is not None:
        ckpt.write_bytes(content)
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt", str(ckpt), "--output", str(tmp_path / "hf")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
