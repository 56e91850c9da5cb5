"""SampledAnswerMetrics: sample accuracy, pass@k and majority vote against hand-counted tables."""

from __future__ import annotations

import pytest

from longvila_r1.evaluation import SampledAnswerMetrics

OPTIONS = ["red circle", "blue square", "green triangle", "white star"]


def _answer(letter: str) -> str:
    return f"<think>...</think><answer>{letter}</answer>"


@pytest.mark.parametrize(
    ("samples", "gold", "hits", "passed", "majority"),
    [
        ([_answer("B"), _answer("B"), _answer("A")], "B", 2, 1, 1),
        ([_answer("A"), _answer("B"), _answer("A")], "B", 1, 1, 0),  # solved once, but outvoted
        ([_answer("C"), _answer("D"), _answer("A")], "B", 0, 0, 0),
        (["no letter here", "still none", _answer("B")], "B", 1, 1, 1),  # unanswered samples do not vote
        ([_answer("B"), _answer("A"), "nothing"], "B", 1, 1, 1),  # a tie goes to the letter sampled first
        ([_answer("A"), _answer("B"), "nothing"], "B", 1, 1, 0),
        (["nothing", "nothing", "nothing"], "B", 0, 0, 0),
        (["the blue square", "<answer>B</answer>", "A"], "B", 2, 1, 1),  # option text counts as its letter
    ],
)
def test_one_question(samples, gold, hits, passed, majority):
    metric = SampledAnswerMetrics(num_samples=3)
    metric.update([samples], [gold], [OPTIONS])
    got = {k: v.item() for k, v in metric.compute().items()}
    assert got == pytest.approx({"sample_acc": hits / 3, "pass@3": passed, "maj@3": majority})


def test_sums_over_batches_and_resets():
    metric = SampledAnswerMetrics(num_samples=2)
    metric.update([[_answer("A"), _answer("A")], [_answer("B"), _answer("C")]], ["A", "C"])
    metric.update([[_answer("D"), _answer("D")]], ["A"])
    got = {k: round(v.item(), 4) for k, v in metric.compute().items()}
    assert got == {"sample_acc": round(3 / 6, 4), "pass@2": round(2 / 3, 4), "maj@2": round(1 / 3, 4)}
    metric.reset()
    assert metric.questions.item() == 0 and metric.passed.item() == 0


def test_rejects_a_wrong_number_of_samples():
    metric = SampledAnswerMetrics(num_samples=2)
    with pytest.raises(ValueError, match="expected 2 samples per question, got 3"):
        metric.update([[_answer("A")] * 3], ["A"])
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        SampledAnswerMetrics(num_samples=0)
