"""Rewards: accuracy and format scored like evaluation, the overlong ramp, and RewardSet totals and failures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from jsonargparse import ArgumentParser

from longvila_r1.data.synth.events import simulate_scene
from longvila_r1.data.synth.questions import make_questions
from longvila_r1.evaluation import VideoQAMetrics
from longvila_r1.rewards import (
    AccuracyReward,
    ConsistencyReward,
    FormatReward,
    OverlongReward,
    ReferenceChainReward,
    Reward,
    RewardError,
    RewardInput,
    RewardSet,
)

OPTIONS = ["red square", "blue circle", "green star", "yellow cat"]
GOOD = "<think>the circle appears after the square</think><answer>B</answer>"


def _inputs(responses: list[str], answer: str = "B", **kwargs) -> list[RewardInput]:
    return [RewardInput(r, answer, record_id=f"r{i}", **kwargs) for i, r in enumerate(responses)]


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (GOOD, 1.0),
        ("<answer>B</answer>", 1.0),
        ("Answer: B", 1.0),
        ("(B)", 1.0),
        ("It is the blue circle.", 1.0),  # option text, matched because options are given
        ("It is the red square.", 0.0),
        ("<think>the answer is B</think><answer>A</answer> so the answer is B", 0.0),  # the tag wins
        ("<think>it must be B, the circle", 0.0),  # only reasoning, truncated: no answer
        ("I am not sure.", 0.0),
    ],
)
def test_accuracy_response_shapes(response: str, expected: float) -> None:
    assert AccuracyReward()(_inputs([response], options=OPTIONS)).tolist() == [expected]


def test_accuracy_agrees_with_the_validation_metric() -> None:
    responses = [GOOD, "Answer: B", "(A)", "<answer>I dunno</answer> B.", "the blue circle", "nothing"]
    metric = VideoQAMetrics()
    metric.update(responses, ["B"] * len(responses), options=[OPTIONS] * len(responses))
    rewards = AccuracyReward()(_inputs(responses, options=OPTIONS))
    assert rewards.mean().item() == pytest.approx(metric.compute()["acc"].item())


def test_accuracy_require_format_and_finished() -> None:
    samples = _inputs([GOOD, "Answer: B", "<answer>I dunno</answer> Answer: B"])
    assert AccuracyReward()(samples).tolist() == [1.0, 1.0, 0.0]  # a tagged answer is final, even unreadable
    assert AccuracyReward(require_format=True)(samples).tolist() == [1.0, 0.0, 0.0]
    truncated = [RewardInput(GOOD, "B", finished=False)]
    assert AccuracyReward()(truncated).tolist() == [1.0]
    assert AccuracyReward(require_finished=True)(truncated).tolist() == [0.0]


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (GOOD, 1.0),
        ("  <think>a\nb</think>\n<answer> C </answer>\n", 1.0),
        ("<answer>B</answer>", 0.0),
        ("<think></think><answer>B</answer>", 0.0),  # empty reasoning
        ("<think>x</think><answer>B</answer> and more", 0.0),
        ("<think>x</think><answer>blue circle</answer>", 0.0),  # the answer must be one letter
        ("<think>x<think>y</think></think><answer>B</answer>", 0.0),
    ],
)
def test_format(response: str, expected: float) -> None:
    assert FormatReward()(_inputs([response])).tolist() == [expected]


def _concluding(option: str, letter: str) -> str:
    reasoning = f'The circle came second. That matches the option "{option}". B. {OPTIONS[1]}: yes.'
    return f"<think>{reasoning}</think><answer>{letter}</answer>"


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (_concluding("blue circle", "B"), 1.0),  # concluded B, answered B
        (_concluding("blue circle", "A"), 0.0),  # concluded B, answered A
        (_concluding("red square", "A"), 1.0),  # consistent and wrong: consistency does not know the answer
        (_concluding("Blue  Circle", "B"), 1.0),  # case and spacing do not matter
        (_concluding("purple moon", "B"), 0.0),  # the conclusion is none of the options
        (_concluding("blue circle", "B").replace("<answer>B</answer>", ""), 0.0),  # no answer
        ("<think>the circle</think><answer>B</answer>", 0.0),  # no conclusion
        # Only the last conclusion counts: the reasoning changed its mind.
        (
            '<think>That matches the option "red square". No: that matches the option "blue circle".</think>'
            "<answer>B</answer>",
            1.0,
        ),
    ],
)
def test_consistency(response: str, expected: float) -> None:
    assert ConsistencyReward()(_inputs([response], options=OPTIONS)).tolist() == [expected]


def test_consistency_reads_the_synthetic_chains() -> None:
    scene = simulate_scene(np.random.default_rng([0, 1]), frames=128, fps=8.0, size=64, difficulty="easy")
    records = make_questions(scene, np.random.default_rng(1), letters=[2, 0], categories=["temporal", "spatial"])
    samples = [RewardInput(r["reasoning"], r["answer"], r["options"]) for r in records]
    assert ConsistencyReward()(samples).tolist() == [1.0, 1.0]
    # The same chains answering another letter disagree with their own conclusion.
    other = {"A": "B", "B": "C", "C": "D", "D": "A"}
    swapped = [
        RewardInput(s.response.replace(f"<answer>{s.answer}<", f"<answer>{other[s.answer]}<"), s.answer, s.options)
        for s in samples
    ]
    assert ConsistencyReward()(swapped).tolist() == [0.0, 0.0]


def test_consistency_without_options_custom_pattern_and_bad_patterns() -> None:
    assert ConsistencyReward()(_inputs([_concluding("blue circle", "B")])).tolist() == [0.0]
    reward = ConsistencyReward(conclusion_pattern=r"so it is the (?P<option>[a-z ]+?)\.")
    assert reward(
        _inputs(["<think>so it is the blue circle.</think><answer>B</answer>"], options=OPTIONS)
    ).tolist() == [1.0]
    with pytest.raises(ValueError, match="group named 'option'"):
        ConsistencyReward(conclusion_pattern=r"matches (.*)")
    with pytest.raises(ValueError, match="is not a regex"):
        ConsistencyReward(conclusion_pattern=r"(?P<option>")


REFERENCE = "<think>At 0:00 a red triangle appears in the top left. So the answer is C.</think><answer>C</answer>"


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (REFERENCE, 1.0),
        ("<think>at 0:00, a RED triangle appears in the top-left; so the answer is c</think>", 1.0),  # case, punct.
        # 15 words, 13 trigrams; "blue" for "red" breaks the 3 trigrams through it: 10/13 of each side.
        (REFERENCE.replace("red", "blue"), 10 / 13),
        # A 5-word chain: its 3 trigrams are all in the reference (precision 1), 3 of 13 (recall).
        ("<think>a red triangle appears in</think><answer>C</answer>", 2 * (3 / 13) / (1 + 3 / 13)),
        ("at 0:00 a red triangle appears in the top left. So the answer is C.<answer>C</answer>", 1.0),  # no tags
        ("<think>at 0:00 a red triangle appears in the top left", 2 * (8 / 13) / (1 + 8 / 13)),  # cut off
        ("<think></think><answer>C</answer>", 0.0),
        ("<think>nothing of the sort here at all</think>", 0.0),
    ],
)
def test_reference_chain(response: str, expected: float) -> None:
    got = ReferenceChainReward()(_inputs([response], reference=REFERENCE)).tolist()
    assert got == pytest.approx([expected])


def test_reference_chain_without_a_reference_scores_zero_and_n_is_checked() -> None:
    assert ReferenceChainReward()(_inputs([REFERENCE])).tolist() == [0.0]
    assert ReferenceChainReward(n=1)(
        _inputs(["<think>red triangle</think>"], reference="<think>triangle red</think>")
    ).tolist() == [1.0]
    assert ReferenceChainReward().name == "reference_chain"
    with pytest.raises(ValueError, match="n of ReferenceChainReward"):
        ReferenceChainReward(n=0)


def test_reference_chain_ranks_the_synthetic_chains_by_what_they_get_right() -> None:
    scene = simulate_scene(np.random.default_rng([0, 1]), frames=128, fps=8.0, size=64, difficulty="easy")
    (record,) = make_questions(scene, np.random.default_rng(1), letters=[2], categories=["temporal"])
    gold = record["reasoning"]
    first_colour = next(c for c in ("red", "blue", "green", "yellow", "white") if f" {c} " in gold)
    other_colour = "purple" if first_colour != "purple" else "orange"
    one_wrong = gold.replace(f" {first_colour} ", f" {other_colour} ", 1)
    all_wrong = gold.replace(f" {first_colour} ", f" {other_colour} ")
    scores = ReferenceChainReward()(_inputs([gold, one_wrong, all_wrong], reference=gold)).tolist()
    assert scores[0] == 1.0 and scores[0] > scores[1] > scores[2] > 0.5, scores


def test_names_and_weights() -> None:
    assert [r.name for r in (AccuracyReward(), FormatReward(weight=0.1), OverlongReward(10, 2))] == [
        "accuracy",
        "format",
        "overlong",
    ]
    assert FormatReward().weight == 1.0 and AccuracyReward(name="acc").name == "acc"
    with pytest.raises(ValueError, match="weight of FormatReward must be finite"):
        FormatReward(weight=float("nan"))


def test_overlong_values() -> None:
    samples = [RewardInput("x", "A", response_length=n, finished=n < 64) for n in (10, 48, 56, 64, 80)]
    reward = OverlongReward(max_length=64, buffer_length=16, penalty_factor=0.5)
    torch.testing.assert_close(reward(samples), torch.tensor([0.0, 0.0, -0.25, -0.5, -0.5]))
    assert reward.score(samples[2]) == -0.25
    with pytest.raises(ValueError, match="buffer_length must be in"):
        OverlongReward(max_length=8, buffer_length=9)


def test_reward_set_total_and_values() -> None:
    rewards = RewardSet([AccuracyReward(), FormatReward(weight=0.1), OverlongReward(20, 10, weight=2.0)])
    samples = [
        RewardInput(GOOD, "B", response_length=5),
        RewardInput("Answer: B", "B", response_length=15),
        RewardInput("<think>x</think><answer>A</answer>", "B", response_length=30),
    ]
    out = rewards(samples)
    assert out.values["accuracy"].tolist() == [1.0, 1.0, 0.0]
    assert out.values["format"].tolist() == [1.0, 0.0, 1.0]
    torch.testing.assert_close(out.values["overlong"], torch.tensor([0.0, -0.5, -1.0]))
    torch.testing.assert_close(out.total, torch.tensor([1.1, 0.0, -1.9]))
    assert out.failures == {"accuracy": 0, "format": 0, "overlong": 0}


class FlakyReward(Reward):
    """A user reward that cannot handle responses mentioning 'boom'."""

    def __init__(self, weight: float = 1.0, bonus: float = 0.5) -> None:
        super().__init__(weight=weight)
        self.bonus = bonus

    def score(self, sample: RewardInput) -> float:
        if "boom" in sample.response:
            raise KeyError("no parser for boom")
        return self.bonus if sample.category == "temporal" else 0.0


def test_custom_reward_plugs_in_with_a_derived_name() -> None:
    rewards = RewardSet([FlakyReward(bonus=0.25), AccuracyReward()])
    assert rewards.names == ["flaky", "accuracy"]
    out = rewards([RewardInput("B", "B", category="temporal"), RewardInput("B", "A")])
    assert out.total.tolist() == [1.25, 0.0]


def test_custom_reward_from_yaml_by_class_path() -> None:
    parser = ArgumentParser()
    parser.add_argument("--rewards", type=list[Reward])
    cfg = parser.parse_string(
        f"rewards:\n  - class_path: {__name__}.FlakyReward\n    init_args: {{bonus: 2.0}}\n"
        "  - class_path: longvila_r1.rewards.FormatReward\n    init_args: {weight: 0.1}\n"
    )
    flaky, fmt = parser.instantiate(cfg).rewards
    assert isinstance(flaky, FlakyReward) and flaky.bonus == 2.0 and fmt.weight == 0.1


def test_on_error_raise_names_the_reward_and_the_sample() -> None:
    rewards = RewardSet([AccuracyReward(), FlakyReward()])
    samples = _inputs(["B", "it went boom " + "x" * 200, "A"])
    with pytest.raises(RewardError, match=r"reward 'flaky' raised KeyError: .*on sample 1 \(record_id='r1'") as info:
        rewards(samples)
    assert (info.value.reward, info.value.index, info.value.record_id) == ("flaky", 1, "r1")
    assert "it went boom xxx" in str(info.value) and "x" * 100 not in str(info.value)  # a short excerpt
    assert isinstance(info.value.__cause__, KeyError)


def test_on_error_zero_counts_failures() -> None:
    rewards = RewardSet([AccuracyReward(), FlakyReward()], on_error="zero")
    samples = [RewardInput("B. boom", "B", category="temporal"), RewardInput("B", "B", category="temporal")]
    out = rewards(samples)
    assert out.values["flaky"].tolist() == [0.0, 0.5]
    assert out.total.tolist() == [1.0, 1.5]
    assert out.failures == {"accuracy": 0, "flaky": 1}
    rewards(samples)
    assert rewards.failures == {"accuracy": 0, "flaky": 2}  # running count across batches


class NonFiniteReward(Reward):
    def __call__(self, samples):  # vectorised: no per-sample score
        return torch.tensor([float("nan") if s.answer == "C" else 1.0 for s in samples])

    def score(self, sample):
        return self([sample]).item()


def test_non_finite_values_are_failures_and_wrong_shapes_always_raise() -> None:
    samples = _inputs(["x", "y"], answer="C") + _inputs(["z"], answer="A")
    with pytest.raises(RewardError, match=r"reward 'non_finite' returned nan on sample 0"):
        RewardSet([NonFiniteReward()])(samples)
    out = RewardSet([NonFiniteReward()], on_error="zero")(samples)
    assert out.values["non_finite"].tolist() == [0.0, 0.0, 1.0] and out.failures == {"non_finite": 2}

    class TooMany(Reward):
        def score(self, sample):
            return 0.0

        def __call__(self, samples):
            return torch.zeros(len(samples) + 1)

    with pytest.raises(RewardError, match=r"returned shape \(4,\) for 3 samples"):
        RewardSet([TooMany()], on_error="zero")(samples)


def test_reward_set_validation() -> None:
    with pytest.raises(ValueError, match=r"reward names must be unique, got \['accuracy'\]"):
        RewardSet([AccuracyReward(), AccuracyReward(require_format=True)])
    RewardSet([AccuracyReward(), AccuracyReward(require_format=True, name="strict_accuracy")])
    with pytest.raises(ValueError, match=r"on_error must be one of \('raise', 'zero'\)"):
        RewardSet([FormatReward()], on_error="skip")
    with pytest.raises(ValueError, match="at least one"):
        RewardSet([])
    with pytest.raises(TypeError, match="must be Reward instances"):
        RewardSet([lambda samples: torch.zeros(len(samples))])
