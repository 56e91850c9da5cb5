"""Answer extraction and metrics shared by rewards and evaluation."""

from longvila_r1.evaluation.answer import extract_answer, is_well_formatted, strip_reasoning
from longvila_r1.evaluation.metrics import VideoQAMetrics

__all__ = ["VideoQAMetrics", "extract_answer", "is_well_formatted", "strip_reasoning"]
