"""The inference contract, below training: the preprocessing contract (preprocess.py), test-time augmentation
as named functions (tta.py) and the one batched predict loop (predict.py). Training, transfer learning's
cached features and every trained model use these; what uses a trained run (load it, explain it, export it)
is ``classlab.trained``, above evaluation.

Names are imported lazily, so reading the TTA mode names does not import torch.
"""

from ..lazy import lazy_exports

_NAMES = {"Preprocessing": ".preprocess", "to_input": ".preprocess", "forward_tta": ".tta", "TTA_MODES": ".tta",
          "predict_batches": ".predict"}
__getattr__, __all__ = lazy_exports(__name__, _NAMES)
