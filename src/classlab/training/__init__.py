"""Training: one engine, plain PyTorch."""

from .config import TrainConfig
from .run import run_train

__all__ = ["TrainConfig", "run_train", "train"]


def train(data="digits", model: str = "mlp", *, runs_dir=None, progress: bool = True, data_options: dict | None = None,
          **options):
    """Train ``model`` on ``data`` and return the finished run as a ``TrainedRun``
    (``.predict(files)``, ``.predict_proba(array)``, ``.evaluate()``, ``.run_dir``).
    ``options`` are TrainConfig fields (epochs, lr, optimizer, model_options, ...); ``data_options``
    are DataOptions fields (image_size, channels, seed, max_train, ...). For ``model="scratch-mlp"``
    (NumPy) it returns the run's result dict (run_dir, evaluation, history, report)."""
    from ..predictor import TrainedRun
    from ..prepare import DataOptions

    cfg = TrainConfig.from_dict({"model": model, **options}).validate()
    result = run_train(DataOptions(data=str(data), **(data_options or {})), cfg, runs_dir, progress=progress)
    if model == "scratch-mlp":  # a NumPy model: the run's results, not a torch TrainedRun
        return result
    return TrainedRun.load(result["run_dir"], device=cfg.device if cfg.device != "auto" else "cpu")
