"""frame_sweep on the tiny random model and the synthetic eval set at two frame counts: table, JSON and plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from longvila_r1.evaluation.sweep import SweepPoint, format_sweep_table, frame_sweep, main


def test_sweep_writes_table_json_and_plot(synth_dir: Path, tmp_path: Path) -> None:
    points = frame_sweep(
        "tiny", str(synth_dir), frames=(8, 4), output_dir=tmp_path, eval_max_new_tokens=4, eval_batch_size=4,
        trainer_kwargs={"accelerator": "cpu"},
    )  # fmt: skip
    assert [p.num_frames for p in points] == [4, 8]
    assert all(p.num_samples == 4 and 0.0 <= p.acc <= 1.0 and p.seconds_per_sample > 0 for p in points)
    assert all("val/format_rate" in p.metrics for p in points)
    table = (tmp_path / "frame_sweep.md").read_text().splitlines()
    assert table[0] == "# Frame-scaling sweep" and sum(line.startswith(("| 4 |", "| 8 |")) for line in table) == 2
    saved = json.loads((tmp_path / "frame_sweep.json").read_text())
    assert [p["num_frames"] for p in saved["points"]] == [4, 8] and saved["meta"]["model"] == "tiny"
    assert (tmp_path / "frame_sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_marks_missing_categories() -> None:
    points = [SweepPoint(8, 2, 1.0, {"val/acc": 0.5, "val/acc/spatial": 1.0}), SweepPoint(16, 2, 1.0, {"val/acc": 1.0})]
    rows = format_sweep_table(points, {}).splitlines()
    assert rows[-1] == "| 16 | 2 | 100.0 | - | - | 1.000 |"


@pytest.mark.parametrize("frames", [(), (0, 8), (8.5,)])
def test_bad_frames(frames) -> None:
    with pytest.raises(ValueError, match="frames must be"):
        frame_sweep("tiny", "unused", frames=frames)


def test_command_line_rejects_missing_arguments(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--frames", "8"])
    assert "--model-path" in capsys.readouterr().err
