"""Trained runs, above evaluation: the model of any run loaded back (model.py: a network, the decks' NumPy
MLP or k-NN on pixels, one ``RunModel``; network.py: a network with its preprocessing contract), what it
predicts, how it explains itself (attribution.py: Grad-CAM, occlusion; explainers.py picks one per model),
what its layers look like (visualize.py) and the files it exports to (export.py).

Names are imported lazily.
"""

from ..lazy import lazy_exports

_NAMES = {"RunModel": ".model", "load_run_model": ".model", "TrainedNetwork": ".network", "export_run": ".export"}
__getattr__, __all__ = lazy_exports(__name__, _NAMES)
