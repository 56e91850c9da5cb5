"""torchmetrics for multiple-choice video QA: accuracy overall, per category and per duration bucket; format rate."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import torch
from torchmetrics import Metric

from longvila_r1.data.records import CATEGORIES
from longvila_r1.evaluation.answer import extract_answer, is_well_formatted

# VideoMME's duration groups, as upper bounds in seconds: short < 2 min, medium < 15 min, long beyond. VideoMME's
# own videos fall in 0-2, 4-15 and 30-60 min; these cut-offs close its gaps so that numeric durations and its
# labels ("short", "medium", "long") land in the same buckets. ``None`` is the open end.
DEFAULT_DURATION_BUCKETS: dict[str, float | None] = {"short": 120.0, "medium": 900.0, "long": None}


class VideoQAMetrics(Metric):
    """Accuracy, accuracy per category and per duration bucket, and format rate over generated responses.

    States are sums reduced with ``sum`` across processes, so under DDP each sample counts exactly once when each
    rank scores its own samples. Under sequence parallelism, where all ranks of a sequence-parallel group hold the
    same sample, only one rank per group may call :meth:`update` (the others still join the sum with zeros).
    Samples without a known category count in the overall figures only; samples without a duration count in no
    duration bucket.

    Keys of :meth:`compute`: ``acc``, ``format_rate``, ``acc/<category>`` and ``acc/duration/<bucket>`` for every
    category and bucket that has samples.

    Args:
        categories: the category names reported separately.
        duration_buckets: bucket name -> upper bound in seconds (exclusive), in increasing order; the last bound
            must be ``None`` (open-ended). A sample's duration is either seconds or a bucket name (a benchmark's
            label, e.g. VideoMME's ``"short"``).
        **kwargs: passed to :class:`torchmetrics.Metric` (e.g. ``process_group`` to sync over the data-parallel
            axis only).

    Example:
        >>> metric = VideoQAMetrics()
        >>> metric.update(["<think>x</think><answer>B</answer>", "A"], ["B", "B"], ["temporal", "spatial"],
        ...               durations=[95.0, "long"])
        >>> {k: round(v.item(), 2) for k, v in metric.compute().items()}  # doctest: +NORMALIZE_WHITESPACE
        {'acc': 0.5, 'format_rate': 0.5, 'acc/temporal': 1.0, 'acc/spatial': 0.0,
         'acc/duration/short': 1.0, 'acc/duration/long': 0.0}

        .. code-block:: yaml

            # VideoMME-style buckets for LongVideo-Reason durations in seconds
            duration_buckets: {short: 120, medium: 900, long: null}
    """

    full_state_update = False

    def __init__(
        self,
        categories: Sequence[str] = CATEGORIES,
        duration_buckets: Mapping[str, float | None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.categories = tuple(categories)
        if len(set(self.categories)) != len(self.categories):
            raise ValueError(f"categories must be unique, got {self.categories}")
        self.buckets = DurationBuckets(duration_buckets)
        slots = len(self.categories) + 1  # the last slot collects samples with no or unknown category
        self.add_state("correct", default=torch.zeros(slots, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros(slots, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("formatted", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        buckets = len(self.buckets.names)
        self.add_state("duration_correct", default=torch.zeros(buckets, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("duration_total", default=torch.zeros(buckets, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self,
        responses: Sequence[str],
        answers: Sequence[str],
        categories: Sequence[str | None] | None = None,
        options: Sequence[Sequence[str] | None] | None = None,
        durations: Sequence[float | str | None] | None = None,
    ) -> None:
        """Score a batch of responses against the ground-truth letters.

        Args:
            responses: generated texts.
            answers: correct letters.
            categories: category of each sample (``None``: overall figures only).
            options: option texts of each sample, to read answers given as text.
            durations: seconds or a bucket name per sample (``None``: no duration bucket).
        """
        size = len(responses)
        categories = categories or [None] * size
        options = options or [None] * size
        durations = durations or [None] * size
        for response, answer, category, opts, duration in zip(
            responses, answers, categories, options, durations, strict=True
        ):
            correct = int(extract_answer(response, opts) == answer)
            slot = self.categories.index(category) if category in self.categories else len(self.categories)
            self.total[slot] += 1
            self.correct[slot] += correct
            self.formatted += int(is_well_formatted(response))
            bucket = self.buckets.index(duration)
            if bucket is not None:
                self.duration_total[bucket] += 1
                self.duration_correct[bucket] += correct

    def compute(self) -> dict[str, torch.Tensor]:
        total = self.total.sum().clamp(min=1)
        out = {"acc": self.correct.sum() / total, "format_rate": self.formatted / total}
        for slot, name in enumerate(self.categories):
            if self.total[slot] > 0:
                out[f"acc/{name}"] = self.correct[slot] / self.total[slot]
        for slot, name in enumerate(self.buckets.names):
            if self.duration_total[slot] > 0:
                out[f"acc/duration/{name}"] = self.duration_correct[slot] / self.duration_total[slot]
        return out


class DurationBuckets:
    """Named duration buckets: seconds or a bucket name (a benchmark's label) -> bucket.

    Args:
        buckets: bucket name -> upper bound in seconds (exclusive), in increasing order; the last bound must be
            ``None`` (open-ended). ``None`` takes :data:`DEFAULT_DURATION_BUCKETS`.

    Example:
        >>> buckets = DurationBuckets()
        >>> buckets.name(95.0), buckets.name(600), buckets.name("Long"), buckets.name(None)
        ('short', 'medium', 'long', None)
    """

    def __init__(self, buckets: Mapping[str, float | None] | None = None) -> None:
        buckets = DEFAULT_DURATION_BUCKETS if buckets is None else buckets
        if not isinstance(buckets, Mapping) or not buckets:
            raise ValueError(f"duration_buckets must be a non-empty mapping of name -> upper bound, got {buckets!r}")
        self.names = tuple(str(name).lower() for name in buckets)
        self.bounds = tuple(None if bound is None or math.isinf(bound) else float(bound) for bound in buckets.values())
        if len(set(self.names)) != len(self.names) or not all(self.names):
            raise ValueError(f"duration_buckets names must be non-empty and unique, got {list(buckets)}")
        if self.bounds[-1] is not None or None in self.bounds[:-1]:
            raise ValueError(f"duration_buckets: only the last bucket must be open-ended (null), got {dict(buckets)}")
        finite = self.bounds[:-1]
        if any(bound <= 0 for bound in finite) or any(b <= a for a, b in pairwise(finite)):
            raise ValueError(f"duration_buckets bounds must be positive and increasing, got {dict(buckets)}")

    def index(self, duration: float | str | None) -> int | None:
        """Index of the bucket of ``duration`` (seconds or a bucket name), ``None`` for no duration.

        Raises:
            ValueError: for an unknown bucket name or a negative or non-finite number of seconds.
        """
        if duration is None:
            return None
        if isinstance(duration, str):
            if duration.lower() not in self.names:
                raise ValueError(f"unknown duration label {duration!r}; expected one of {self.names}")
            return self.names.index(duration.lower())
        seconds = float(duration)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"duration must be a non-negative number of seconds, got {duration!r}")
        return next(i for i, bound in enumerate(self.bounds) if bound is None or seconds < bound)

    def name(self, duration: float | str | None) -> str | None:
        """Name of the bucket of ``duration``, ``None`` for no duration."""
        slot = self.index(duration)
        return None if slot is None else self.names[slot]
