"""VideoQAMetrics: keys, per-category and per-duration-bucket accuracy, bucket validation."""

from __future__ import annotations

import pytest

from longvila_r1.evaluation import VideoQAMetrics

RIGHT, WRONG = "<think>x</think><answer>A</answer>", "Answer: B"


def _values(metric: VideoQAMetrics) -> dict[str, float]:
    return {key: round(value.item(), 4) for key, value in metric.compute().items()}


def test_keys_without_durations_are_unchanged() -> None:
    metric = VideoQAMetrics()
    metric.update([RIGHT, WRONG], ["A", "A"], ["temporal", "unknown"])
    assert _values(metric) == {"acc": 0.5, "format_rate": 0.5, "acc/temporal": 1.0}


def test_seconds_and_labels_share_the_default_buckets() -> None:
    metric = VideoQAMetrics()
    durations = [0.0, 119.99, "short", 120.0, "Medium", 899.0, 900.0, "long", None]
    responses = [RIGHT, WRONG, WRONG, RIGHT, RIGHT, WRONG, RIGHT, RIGHT, WRONG]
    metric.update(responses, ["A"] * len(responses), durations=durations)
    values = _values(metric)
    assert values["acc/duration/short"] == pytest.approx(1 / 3, abs=1e-4)
    assert values["acc/duration/medium"] == pytest.approx(2 / 3, abs=1e-4)
    assert values["acc/duration/long"] == 1.0
    assert metric.duration_total.sum().item() == 8  # the sample without a duration is in no bucket
    assert metric.total.sum().item() == 9


def test_custom_buckets_and_missing_ones_are_not_reported() -> None:
    metric = VideoQAMetrics(duration_buckets={"clip": 30, "scene": 300, "film": None})
    metric.update([RIGHT, WRONG], ["A", "A"], durations=[10, 10_000])
    assert _values(metric) == {"acc": 0.5, "format_rate": 0.5, "acc/duration/clip": 1.0, "acc/duration/film": 0.0}


@pytest.mark.parametrize(
    ("buckets", "message"),
    [
        ({}, "non-empty"),
        ({"a": 10, "b": 5, "c": None}, "increasing"),
        ({"a": 10, "b": 20}, "open-ended"),
        ({"a": None, "b": None}, "open-ended"),
        ({"a": 10, "A": None}, "unique"),
        ({"a": -1, "b": None}, "positive"),
    ],
)
def test_bucket_validation(buckets: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VideoQAMetrics(duration_buckets=buckets)


@pytest.mark.parametrize("duration", ["very long", -3.0, float("nan")])
def test_bad_durations_raise(duration) -> None:
    with pytest.raises(ValueError, match="duration"):
        VideoQAMetrics().update([RIGHT], ["A"], durations=[duration])


def test_reset_clears_duration_states() -> None:
    metric = VideoQAMetrics()
    metric.update([RIGHT], ["A"], durations=[5.0])
    metric.reset()
    assert metric.duration_total.sum().item() == 0
