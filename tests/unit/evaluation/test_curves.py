"""Training curves: scalars read back from real TensorBoard event files, the summary table, the PNG, the CLI."""

from __future__ import annotations

import pytest
from torch.utils.tensorboard import SummaryWriter

from longvila_r1.cli import main as cli_main
from longvila_r1.evaluation.curves import RunScalars, moving_average, plot_curves, resolve_run_dir, summary_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_run(run_dir, rewards, accuracies=()):
    writer = SummaryWriter(log_dir=str(run_dir))
    for step, value in enumerate(rewards):
        writer.add_scalar("rollout/reward", value, step)
    for step, value in accuracies:
        writer.add_scalar("val/acc", value, step)
    writer.close()
    return run_dir


def test_reads_the_scalars_of_a_run_and_takes_the_newest_version(tmp_path):
    _write_run(tmp_path / "grpo" / "version_0", [0.1, 0.2])
    _write_run(tmp_path / "grpo" / "version_10", [0.3, 0.5, 0.4], [(0, 0.25), (2, 0.5)])
    assert resolve_run_dir(tmp_path / "grpo").name == "version_10"  # numeric, not lexical, order
    run = RunScalars.load(tmp_path / "grpo", name="grpo")
    steps, values = run.series("rollout/reward")
    assert steps == [0, 1, 2] and values == pytest.approx([0.3, 0.5, 0.4])
    assert run.series("val/acc") == ([0, 2], pytest.approx([0.25, 0.5]))
    with pytest.raises(KeyError, match="has no scalar 'train/loss'; it has: rollout/reward, val/acc"):
        run.series("train/loss")


def test_missing_logs_name_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such log directory"):
        resolve_run_dir(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="holds no TensorBoard event files"):
        resolve_run_dir(tmp_path)


def test_moving_average_and_summary_table():
    assert moving_average([2.0, 4.0, 0.0, 8.0], 3) == pytest.approx([2.0, 3.0, 2.0, 4.0])
    with pytest.raises(ValueError, match="window must be >= 1"):
        moving_average([1.0], 0)
    run = RunScalars("a", {"val/acc": ([0, 100, 200], [0.40, 0.46, 0.44])})
    table = summary_table([run], ["val/acc"])
    assert "| a | val/acc | 3 | 0.4 | 0.44 | 0.46 (100) |" in table


def test_plot_writes_a_png_with_a_panel_per_tag(tmp_path):
    run = RunScalars.load(_write_run(tmp_path / "run", [float(i % 5) for i in range(60)], [(0, 0.3), (59, 0.4)]))
    path = plot_curves([run, run], ["rollout/reward", "val/acc"], tmp_path / "plots" / "curves.png", smooth=10)
    assert path.read_bytes().startswith(PNG_MAGIC) and path.stat().st_size > 10_000


def test_cli_prints_the_table_and_reports_errors(tmp_path, capsys):
    run_dir = _write_run(tmp_path / "run", [0.1, 0.3], [(1, 0.5)])
    output = tmp_path / "c.png"
    assert cli_main(["curves", str(run_dir), "--output", str(output), "--names", "grpo"]) == 0
    printed = capsys.readouterr().out
    assert "| grpo | rollout/reward | 2 | 0.1 | 0.3 | 0.3 (1) |" in printed and output.exists()
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["curves", str(run_dir), "--tags", "train/kl", "--output", str(output)])
    assert exit_info.value.code == 2
    assert "has no scalar 'train/kl'" in capsys.readouterr().err
