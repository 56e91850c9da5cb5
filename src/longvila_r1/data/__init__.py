"""Long-video data: reading, records, Qwen-VL preprocessing, the synthetic generator and the DataModule.

``LongVideoReasonDataModule`` and stage 0's ``SyntheticPerceptionDataModule`` are imported on first use, so
``longvila_r1.data.video`` and friends load without importing Lightning.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LongVideoReasonDataModule", "SyntheticPerceptionDataModule"]


def __getattr__(name: str) -> Any:
    if name == "LongVideoReasonDataModule":
        from longvila_r1.data.datamodule import LongVideoReasonDataModule

        return LongVideoReasonDataModule
    if name == "SyntheticPerceptionDataModule":
        from longvila_r1.data.perception_datamodule import SyntheticPerceptionDataModule

        return SyntheticPerceptionDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
