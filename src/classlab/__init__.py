"""classlab: image classification from a folder of images or CIFAR-10 to an evaluated classifier.

The public API is imported lazily, so ``classlab check`` and ``classlab explore`` start without
paying for torch's import.
"""

__version__ = "0.1.0"

_API = {
    "ClasslabError": ".errors",
    "KNNClassifier": ".knn",
    "evaluate": ".evaluation",
    "load_dataset": ".data",
    "make_split": ".data",
    "train": ".training",
    "transfer": ".transfer",
    "TrainedRun": ".predictor",
}
__all__ = [*_API, "__version__"]


def __getattr__(name):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name], __name__), name)
    raise AttributeError(f"module 'classlab' has no attribute {name!r}")
