"""Training: one engine, plain PyTorch."""

from .config import TrainConfig
from .run import run_train

__all__ = ["TrainConfig", "run_train"]
