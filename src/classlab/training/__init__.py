"""Training: one engine, plain PyTorch. ``TrainConfig`` (torch-free), ``fit`` / ``Trainer`` (engine.py),
batches (batches.py), augmentation (augment.py), optimizers and schedules (optim.py), precision
(precision.py), several processes (distributed.py).

Names are imported lazily, so reading ``TrainConfig`` (the CLI's flags) does not import torch.
The ``classlab train`` pipeline, above this layer, is ``classlab.commands.train``.
"""

from ..lazy import lazy_exports

_NAMES = {"TrainConfig": ".config", "fit": ".engine", "Trainer": ".engine", "FitState": ".engine",
          "SplitTensors": ".batches", "StreamedSplit": ".batches"}
# 0.2 offered these here, above their layer; they resolve with a DeprecationWarning for one release
_MOVED = {"run_train": "classlab.commands.train", "train": "classlab.api"}
__getattr__, __all__ = lazy_exports(__name__, _NAMES, _MOVED)
