"""Callbacks: lifecycles and bookkeeping around the training modules (never the algorithm)."""

from longvila_r1.callbacks.eval_results import EvalResultsWriter
from longvila_r1.callbacks.rollout import RolloutCallback

__all__ = ["EvalResultsWriter", "RolloutCallback"]
