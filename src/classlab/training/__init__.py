"""Training: one engine, plain PyTorch. ``TrainConfig`` (torch-free), ``fit`` / ``Trainer`` (engine.py),
batches (batches.py), augmentation (augment.py), optimizers and schedules (optim.py), precision
(precision.py).

Names are imported lazily, so reading ``TrainConfig`` (the CLI's flags) does not import torch.
The ``classlab train`` pipeline is ``classlab.commands.train``.
"""

from ..lazy import lazy_exports

_NAMES = {"TrainConfig": ".config", "fit": ".engine", "Trainer": ".engine", "FitState": ".engine",
          "SplitTensors": ".batches", "StreamedSplit": ".batches", "run_train": "..commands.train",
          "train": "..api"}
__getattr__, __all__ = lazy_exports(__name__, _NAMES)
