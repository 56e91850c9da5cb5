"""Rewards read from the answer: accuracy and format, scored exactly as evaluation scores a response.

Both go through ``longvila_r1.evaluation.answer``, the module the validation metrics use, so a response
that earns the accuracy reward in training is one that counts as correct in ``val/acc``, and vice versa.

Example:
    >>> sample = RewardInput("<think>the cup moves last</think><answer>C</answer>", answer="C")
    >>> AccuracyReward()([sample]), FormatReward(weight=0.1)([sample])
    (tensor([1.]), tensor([1.]))
"""

from __future__ import annotations

from typing_extensions import override

from longvila_r1.evaluation.answer import extract_answer, is_well_formatted
from longvila_r1.rewards.base import Reward, RewardInput


class AccuracyReward(Reward):
    """1.0 when the response's answer is the correct letter, else 0.0.

    The answer is read by ``extract_answer``: from ``<answer>...</answer>`` when present, the tag winning
    over anything said elsewhere (``<answer>A</answer> ... the answer is B`` answers A); otherwise from the
    text outside ``<think>``, accepting ``Answer: B``, ``(B)``, ``B.`` or the text of exactly one option.

    Two switches close ways a wrong or careless response can still collect the reward:

    - ``require_format``: score 0 unless the response is well formatted
      (``<think>reasoning</think><answer>X</answer>`` and nothing else), so a bare letter, or a response
      whose unparseable tag falls back to a letter somewhere in the text, is not paid.
    - ``require_finished``: score 0 when generation hit the length limit, so a truncated reasoning that
      happens to contain an answer-looking phrase outside ``<think>`` is not paid.

    Args:
        weight: the factor in the total reward.
        require_format: pay only well-formatted responses.
        require_finished: pay only responses that ended with EOS.
        name: the log key; ``accuracy`` by default.

    Example:
        .. code-block:: yaml

            rewards:
              - class_path: longvila_r1.rewards.AccuracyReward
                init_args: {require_format: true}
              - class_path: longvila_r1.rewards.FormatReward
                init_args: {weight: 0.1}
    """

    def __init__(
        self,
        weight: float = 1.0,
        require_format: bool = False,
        require_finished: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(weight=weight, name=name)
        self.require_format = require_format
        self.require_finished = require_finished

    @override
    def score(self, sample: RewardInput) -> float:
        if self.require_finished and not sample.finished:
            return 0.0
        if self.require_format and not is_well_formatted(sample.response):
            return 0.0
        return float(extract_answer(sample.response, sample.options) == sample.answer)


class FormatReward(Reward):
    """1.0 when the response is ``<think>reasoning</think><answer>X</answer>`` and nothing else, else 0.0.

    The class weight is 1.0 like every reward's; the paper weighs format at about 0.1 of accuracy, which a
    config sets with ``init_args: {weight: 0.1}``. A reward's scale belongs in the config next to the
    rewards it is balanced against, not in a class default.

    Args:
        weight: the factor in the total reward.
        name: the log key; ``format`` by default.
    """

    @override
    def score(self, sample: RewardInput) -> float:
        return float(is_well_formatted(sample.response))
