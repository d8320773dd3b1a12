"""Inference: the preprocessing contract (preprocess.py), test-time augmentation as named functions
(tta.py), the one batched predict loop (predict.py), a trained run as an object (trained_run.py),
export (export.py) and looking inside a CNN (visualize.py).

Names are imported lazily, so reading the TTA mode names does not import torch.
"""

from ..lazy import lazy_exports

_NAMES = {"Preprocessing": ".preprocess", "to_input": ".preprocess", "forward_tta": ".tta", "TTA_MODES": ".tta",
          "predict_batches": ".predict", "TrainedRun": ".trained_run", "export_run": ".export"}
__getattr__, __all__ = lazy_exports(__name__, _NAMES)
