"""Evaluation: answer extraction and metrics shared with the rewards, benchmark loaders, subtitles, sweeps.

``BenchmarkDataModule`` is imported on first use, so the rewards can import answer extraction without Lightning.
"""

from __future__ import annotations

from typing import Any

from longvila_r1.evaluation.answer import extract_answer, is_well_formatted, strip_reasoning
from longvila_r1.evaluation.metrics import VideoQAMetrics
from longvila_r1.evaluation.sampled_metrics import SampledAnswerMetrics

__all__ = [
    "BenchmarkDataModule",
    "SampledAnswerMetrics",
    "VideoQAMetrics",
    "extract_answer",
    "is_well_formatted",
    "strip_reasoning",
]


def __getattr__(name: str) -> Any:
    if name == "BenchmarkDataModule":
        from longvila_r1.evaluation.datamodule import BenchmarkDataModule

        return BenchmarkDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
