"""compare_results: the before/after table of two evaluations, and its refusals."""

from __future__ import annotations

import pytest

from longvila_r1.cli import main
from longvila_r1.evaluation.compare import compare_results
from longvila_r1.evaluation.results import EvalResults


def _write(directory, answers: dict[str, tuple[str, bool]]) -> None:
    """One sample per id: (category, correct)."""
    samples = [
        {"id": i, "category": category, "duration": 16.0, "correct": correct, "well_formatted": i != "q3"}
        for i, (category, correct) in answers.items()
    ]
    EvalResults(directory).write(samples, {"model": str(directory)}, merge=False)


def test_table_reports_each_run_and_the_change(tmp_path, capsys):
    _write(
        tmp_path / "sft",
        {"q0": ("temporal", True), "q1": ("temporal", False), "q2": ("spatial", False), "q3": ("spatial", False)},
    )
    _write(
        tmp_path / "grpo",
        {"q0": ("temporal", True), "q1": ("temporal", True), "q2": ("spatial", True), "q3": ("spatial", False)},
    )
    table = compare_results([tmp_path / "sft", tmp_path / "grpo"], names=["SFT", "GRPO"])
    assert "| metric | SFT | GRPO | change |" in table
    assert "| accuracy | 25.0 | 75.0 | +50.0 |" in table
    assert "| accuracy / spatial | 0.0 | 50.0 | +50.0 |" in table
    assert "| accuracy / temporal | 50.0 | 100.0 | +50.0 |" in table
    assert "| format rate | 75.0 | 75.0 | +0.0 |" in table
    assert main(["compare", str(tmp_path / "sft"), str(tmp_path / "grpo")]) == 0
    assert "| metric | sft | grpo | change |" in capsys.readouterr().out


def test_sampled_answer_rows_appear_when_a_run_sampled(tmp_path):
    _write(tmp_path / "greedy", {"q0": ("temporal", True), "q1": ("spatial", False)})
    sampled = [
        {"id": "q0", "answer": "A", "correct": True, "well_formatted": True, "sampled_answers": ["A", "B"]},
        {"id": "q1", "answer": "C", "correct": False, "well_formatted": True, "sampled_answers": ["B", "B"]},
    ]
    EvalResults(tmp_path / "sampled").write(sampled, merge=False)
    table = compare_results([tmp_path / "greedy", tmp_path / "sampled"])
    assert "| sampled answers / accuracy | - | 25.0 | - |" in table
    # q0: A and B tie, the first sampled (A, right) wins; q1: B twice, wrong.
    assert "| pass@k | - | 50.0 | - |" in table and "| maj@k | - | 50.0 | - |" in table
    assert "pass@k" not in compare_results([tmp_path / "greedy", tmp_path / "greedy"])


def test_refuses_different_questions_and_missing_results(tmp_path):
    _write(tmp_path / "a", {"q0": ("temporal", True)})
    _write(tmp_path / "b", {"q1": ("temporal", True)})
    with pytest.raises(ValueError, match="other questions"):
        compare_results([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(FileNotFoundError, match=r"results\.json"):
        compare_results([tmp_path / "a", tmp_path / "missing"])
    with pytest.raises(ValueError, match="at least two"):
        compare_results([tmp_path / "a"])
    with pytest.raises(SystemExit):
        main(["compare", str(tmp_path / "a"), str(tmp_path / "b")])
