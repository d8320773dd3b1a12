"""Training: one engine, plain PyTorch. ``TrainConfig`` (torch-free), ``fit`` / ``Trainer`` (engine.py),
batches (batches.py), augmentation (augment.py), optimizers and schedules (optim.py).

Names are imported lazily, so reading ``TrainConfig`` (the CLI's flags) does not import torch.
The ``classlab train`` pipeline is ``classlab.commands.train``.
"""

_NAMES = {"TrainConfig": ".config", "fit": ".engine", "Trainer": ".engine", "FitState": ".engine",
          "SplitTensors": ".batches", "StreamedSplit": ".batches", "run_train": "..commands.train",
          "train": "..api"}
__all__ = list(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        import importlib

        return getattr(importlib.import_module(_NAMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
