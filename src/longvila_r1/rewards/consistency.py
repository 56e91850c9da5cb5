"""A process reward: the answered letter must be the option the reasoning concluded with.

An outcome reward pays a response whose reasoning concludes one option and whose answer names another, as long
as the letter happens to be right; a policy trained on it learns nothing about answering what it reasoned.
``ConsistencyReward`` pays only agreement between the two, so together with ``AccuracyReward`` a right answer
reached through the reasoning earns more than a lucky one.

Example:
    >>> options = ["blue circle", "red square", "green cube", "white cone"]
    >>> agree = RewardInput('<think>That matches the option "red square".</think><answer>B</answer>', "B", options)
    >>> differ = RewardInput('<think>That matches the option "green cube".</think><answer>B</answer>', "B", options)
    >>> ConsistencyReward()([agree, differ])
    tensor([1., 0.])
"""

from __future__ import annotations

import re

from typing_extensions import override

from longvila_r1.data.synth.questions import CONCLUSION_PHRASE
from longvila_r1.evaluation.answer import LETTERS, extract_answer
from longvila_r1.rewards.base import Reward, RewardInput

# The conclusion of the synthetic LongVideo-Reason chains: `That matches the option "red square".`
SYNTHETIC_CONCLUSION = re.escape(CONCLUSION_PHRASE) + r' "(?P<option>[^"]*)"'


class ConsistencyReward(Reward):
    """1.0 when the response's answer is the letter of the option its reasoning concluded with, else 0.0.

    The conclusion is the last match of ``conclusion_pattern`` (a regex with a group named ``option``) in the
    response; its text is compared with the options case- and space-insensitively. A response with no
    conclusion, a conclusion that is none of the options, or no answer scores 0.0, and so does a record without
    options (there is nothing to agree with).

    Args:
        weight: the factor in the total reward.
        conclusion_pattern: where the reasoning names its answer; the default reads the synthetic chains
            (``That matches the option "red square".``).
        name: the log key; ``consistency`` by default.

    Example:
        .. code-block:: yaml

            rewards:
              - class_path: longvila_r1.rewards.AccuracyReward
              - class_path: longvila_r1.rewards.ConsistencyReward
                init_args: {weight: 0.5}
    """

    def __init__(
        self, weight: float = 1.0, conclusion_pattern: str = SYNTHETIC_CONCLUSION, name: str | None = None
    ) -> None:
        super().__init__(weight=weight, name=name)
        try:
            self.conclusion = re.compile(conclusion_pattern, re.IGNORECASE)
        except re.error as error:
            raise ValueError(f"conclusion_pattern {conclusion_pattern!r} is not a regex: {error}") from error
        if "option" not in self.conclusion.groupindex:
            raise ValueError(f"conclusion_pattern {conclusion_pattern!r} needs a group named 'option': (?P<option>...)")

    @override
    def score(self, sample: RewardInput) -> float:
        if not sample.options:
            return 0.0
        conclusions = list(self.conclusion.finditer(sample.response))
        if not conclusions:
            return 0.0
        concluded = _normalised(conclusions[-1].group("option"))
        options = [_normalised(option) for option in sample.options]
        if options.count(concluded) != 1:
            return 0.0
        return float(extract_answer(sample.response, sample.options) == LETTERS[options.index(concluded)])


def _normalised(text: str) -> str:
    return " ".join(text.lower().split())
