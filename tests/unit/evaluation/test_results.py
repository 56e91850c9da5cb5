"""EvalResults without a trainer: scoring, benchmark groups, duplicates across ranks, merge and replace."""

from __future__ import annotations

import json
from pathlib import Path

from longvila_r1.evaluation.results import EvalResults, format_markdown
from longvila_r1.evaluation.videomme import videomme_record

ROW = {
    "videoID": "v",
    "duration": "medium",
    "task_type": "OCR Problems",
    "domain": "Sports",
    "question": "What is written?",
    "options": ["A. yes", "B. no", "C. maybe", "D. never"],
    "answer": "B",
}


def _samples(results: EvalResults) -> list[dict]:
    return [
        results.score(videomme_record(dict(ROW, question_id="1")), "<think>x</think><answer>B</answer>"),
        results.score(videomme_record(dict(ROW, question_id="2", task_type="Counting Problem")), "It says yes."),
    ]


def test_scores_and_groups_benchmark_fields(tmp_path: Path) -> None:
    results = EvalResults(tmp_path)
    first, second = _samples(results)
    assert (first["extracted"], first["correct"], first["well_formatted"]) == ("B", True, True)
    assert (second["extracted"], second["correct"], second["well_formatted"]) == ("A", False, False)
    assert (first["duration"], first["task_type"], first["domain"]) == ("medium", "OCR Problems", "Sports")
    summary = results.write([first, second, first])  # the first sample again, as a second sp rank reports it
    assert summary["num_samples"] == 2 and summary["acc"] == 0.5 and summary["format_rate"] == 0.5
    assert summary["groups"]["duration"] == {"medium": {"n": 2, "acc": 0.5}}
    assert summary["groups"]["task_type"]["OCR Problems"] == {"n": 1, "acc": 1.0}
    table = (tmp_path / "results.md").read_text()
    assert "| task_type | Counting Problem | 1 | 0.0 |" in table and "| domain | Sports | 2 | 50.0 |" in table


def test_merge_keeps_written_samples_and_replace_drops_them(tmp_path: Path) -> None:
    results = EvalResults(tmp_path)
    first, second = _samples(results)
    results.write([first], {"run": 1})
    results.append_partial(1, [second])
    assert results.finished_ids() == {"1", "2"}
    assert results.write([], {"run": 2})["num_samples"] == 2
    assert not list(tmp_path.glob("*.partial.jsonl"))
    assert results.write([second], merge=False)["num_samples"] == 1
    assert [s["id"] for s in json.loads(results.json_path.read_text())["samples"]] == ["2"]


def test_markdown_lists_the_settings() -> None:
    summary = {"num_samples": 0, "acc": 0.0, "format_rate": 0.0, "groups": {}}
    assert format_markdown(summary, {"num_frames": 16}).startswith("# Evaluation results\n\n- num_frames: 16\n")


def test_sampled_answers_are_kept_as_letters_and_summarised(tmp_path: Path) -> None:
    results = EvalResults(tmp_path)
    record = videomme_record(dict(ROW, question_id="1"))  # answer B
    sampled = ["<answer>B</answer>", "I cannot tell", "(C)", "C. maybe"]
    sample = results.score(record, "<answer>A</answer>", sampled_responses=sampled)
    assert sample["sampled_answers"] == ["B", None, "C", "C"]
    other = results.score(videomme_record(dict(ROW, question_id="2")), "B", sampled_responses=["B", "B", "A", "D"])
    greedy_only = results.score(videomme_record(dict(ROW, question_id="3")), "B")
    assert "sampled_answers" not in greedy_only
    summary = results.write([sample, other, greedy_only])
    # 3 of 8 samples right; both questions have a right sample; majorities C (wrong) and B (right).
    assert summary["sampled"] == {"n": 2, "k": 4, "sample_acc": 3 / 8, "pass_at_k": 1.0, "maj_at_k": 0.5}
    table = (tmp_path / "results.md").read_text()
    assert "| sampled answers | pass@4 | 2 | 100.0 |" in table and "| sampled answers | maj@4 | 2 | 50.0 |" in table


def test_runs_merged_with_different_sample_counts_say_so(tmp_path: Path) -> None:
    results = EvalResults(tmp_path)
    results.write([results.score(videomme_record(dict(ROW, question_id="1")), "B", sampled_responses=["A", "B"])])
    merged = results.write([results.score(videomme_record(dict(ROW, question_id="2")), "B", sampled_responses=["A"])])
    assert merged["sampled"]["k"] == [1, 2] and merged["sampled"]["sample_acc"] == 1 / 3


def test_no_sampled_answers_no_sampled_summary(tmp_path: Path) -> None:
    results = EvalResults(tmp_path)
    summary = results.write(_samples(results))
    assert "sampled" not in summary and "sampled answers" not in (tmp_path / "results.md").read_text()
