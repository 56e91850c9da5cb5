"""A process reward: how much of the record's reference reasoning the response's reasoning states.

An outcome reward says only whether the final letter was right: one bit per response, and a right letter
reached through a wrong chain (a colour misread, then a lucky guess) earns as much as a right chain. Records with
a reference chain (the synthetic set's, or an annotated CoT dataset's) can pay for the chain itself:
``ReferenceChainReward`` is the F1 overlap of the word n-grams of the two chains. The templates both chains share
score alike for every sample of a group, so within a group the reward separates the samples by what they state
about the video (which object appeared when, where, in which colour), which is what the model has to perceive.

Example:
    >>> reference = "<think>at 0:00 a red triangle appears in the top left.</think><answer>C</answer>"
    >>> right = RewardInput("<think>at 0:00 a red triangle appears in the top left.</think><answer>C</answer>", "C",
    ...     reference=reference)
    >>> wrong = RewardInput("<think>at 0:00 a blue triangle appears in the top left.</think><answer>C</answer>", "C",
    ...     reference=reference)
    >>> ReferenceChainReward(n=2)([right, wrong])
    tensor([1.0000, 0.7778])
"""

from __future__ import annotations

import re
from collections import Counter

from typing_extensions import override

from longvila_r1.rewards.base import Reward, RewardInput

_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL | re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9]+(?::[0-9]+)?")  # words, numbers and clock times ("0:03")


class ReferenceChainReward(Reward):
    """F1 (0 to 1) between the word ``n``-grams of the response's reasoning and the record's reference reasoning.

    The reasoning is the text inside ``<think>...</think>`` (an unclosed ``<think>`` runs to the end); a response
    or reference without one is read whole, up to its ``<answer>``. Words are compared lower-cased, punctuation
    dropped. A record without a reference (``RewardInput.reference`` is ``None``) scores 0.0 for every sample, so
    it changes no advantage; an empty reasoning scores 0.0.

    Args:
        weight: the factor in the total reward.
        n: the n-gram length (1: bag of words; the default 3 also checks which words go together, so "red
            triangle" and "blue square" do not match "blue triangle" and "red square").
        name: the log key; ``reference_chain`` by default.

    Example:
        .. code-block:: yaml

            rewards:
              - class_path: longvila_r1.rewards.AccuracyReward
              - class_path: longvila_r1.rewards.ReferenceChainReward
                init_args: {weight: 0.5}
    """

    def __init__(self, weight: float = 1.0, n: int = 3, name: str | None = None) -> None:
        super().__init__(weight=weight, name=name)
        if n < 1:
            raise ValueError(f"n of ReferenceChainReward must be >= 1, got {n}")
        self.n = n

    @override
    def score(self, sample: RewardInput) -> float:
        if not sample.reference:
            return 0.0
        stated, expected = self._ngrams(sample.response), self._ngrams(sample.reference)
        overlap = sum((stated & expected).values())
        if overlap == 0:
            return 0.0
        precision = overlap / sum(stated.values())
        recall = overlap / sum(expected.values())
        return 2 * precision * recall / (precision + recall)

    def _ngrams(self, text: str) -> Counter[tuple[str, ...]]:
        match = _THINK.search(text)
        reasoning = match.group(1) if match else re.split(r"<answer>", text, flags=re.IGNORECASE)[0]
        words = _WORD.findall(reasoning.lower())
        return Counter(tuple(words[i : i + self.n]) for i in range(len(words) - self.n + 1))
