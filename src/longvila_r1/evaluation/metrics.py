"""torchmetrics for multiple-choice video QA: accuracy overall and per category, and format rate."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

from longvila_r1.data.records import CATEGORIES
from longvila_r1.evaluation.answer import extract_answer, is_well_formatted


class VideoQAMetrics(Metric):
    """Accuracy, accuracy per category and format rate over generated responses.

    States are per-category sums reduced with ``sum`` across processes, so under DDP each sample counts
    exactly once (give each rank its own samples). Samples without a known category count in the overall
    figures only.

    Example:
        >>> metric = VideoQAMetrics()
        >>> metric.update(["<think>x</think><answer>B</answer>", "A"], ["B", "B"], ["temporal", "spatial"])
        >>> {k: round(v.item(), 2) for k, v in metric.compute().items()}
        {'acc': 0.5, 'format_rate': 0.5, 'acc/temporal': 1.0, 'acc/spatial': 0.0}
    """

    full_state_update = False

    def __init__(self, categories: Sequence[str] = CATEGORIES) -> None:
        super().__init__()
        self.categories = tuple(categories)
        slots = len(self.categories) + 1  # the last slot collects samples with no or unknown category
        self.add_state("correct", default=torch.zeros(slots, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros(slots, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("formatted", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self,
        responses: Sequence[str],
        answers: Sequence[str],
        categories: Sequence[str | None] | None = None,
        options: Sequence[Sequence[str] | None] | None = None,
    ) -> None:
        """Score a batch of responses against the ground-truth letters."""
        categories = categories or [None] * len(responses)
        options = options or [None] * len(responses)
        for response, answer, category, opts in zip(responses, answers, categories, options, strict=True):
            slot = self.categories.index(category) if category in self.categories else len(self.categories)
            self.total[slot] += 1
            self.correct[slot] += int(extract_answer(response, opts) == answer)
            self.formatted += int(is_well_formatted(response))

    def compute(self) -> dict[str, torch.Tensor]:
        total = self.total.sum().clamp(min=1)
        out = {"acc": self.correct.sum() / total, "format_rate": self.formatted / total}
        for slot, name in enumerate(self.categories):
            if self.total[slot] > 0:
                out[f"acc/{name}"] = self.correct[slot] / self.total[slot]
        return out
