"""Evaluation: metrics -> report and plots. One module, used by every model."""

from .report import Evaluation, evaluate

__all__ = ["Evaluation", "evaluate"]
