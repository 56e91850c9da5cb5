"""The `longvila-r1` command: data jobs and command dispatch."""

from __future__ import annotations

import json

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
