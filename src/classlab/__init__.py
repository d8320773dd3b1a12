"""classlab: image classification from a folder of images or CIFAR-10 to an evaluated classifier.

The public API is imported lazily, so ``classlab check`` and ``classlab explore`` start without
paying for torch's import. Every command's function (``train``, ``transfer``, ``knn``, ``explore``,
``check``, ``workshop``) returns a ``RunResult``; ``RunResult.load(run_dir)`` reads any run back.
"""

__version__ = "0.1.0"

_API = {
    "ClasslabError": ".errors",
    "KNNClassifier": ".knn",
    "evaluate": ".evaluation",
    "load_dataset": ".data",
    "make_split": ".data",
    "DataOptions": ".data.options",
    "train": ".api",
    "transfer": ".api",
    "knn": ".api",
    "explore": ".api",
    "check": ".api",
    "workshop": ".api",
    "explain": ".api",
    "compare": ".api",
    "RunResult": ".runs",
    "TrainedRun": ".inference.trained_run",
    "create_model": ".models",
}
__all__ = [*_API, "__version__"]

from . import compat  # noqa: E402  (old module paths, kept importable for one release)

compat.install()


def __getattr__(name):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name], __name__), name)
    raise AttributeError(f"module 'classlab' has no attribute {name!r}")
