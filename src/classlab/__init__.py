"""classlab: image classification from a folder of images or CIFAR-10 to an evaluated classifier.

The public API is imported lazily, so ``classlab check`` and ``classlab explore`` start without
paying for torch's import. Every command's function (``train``, ``transfer``, ``knn``, ``explore``,
``check``, ``workshop``, ``evaluate_run``) returns a ``RunResult``; ``RunResult.load(run_dir)`` reads any run
back.
"""

__version__ = "0.1.0"

from .threads import share_cores_politely  # noqa: E402

share_cores_politely()  # before the API's lazy imports bring torch in

_API = {
    "ClasslabError": ".errors",
    "KNNClassifier": ".models.knn",
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
    "evaluate_run": ".api",
    "load_model": ".api",
    "RunResult": ".runs",
    "TrainedNetwork": ".trained.network",
    "TrainedRun": ".trained.network",  # the old name of TrainedNetwork, with a DeprecationWarning
    "create_model": ".models",
}

from . import compat  # noqa: E402  (old module paths, kept importable for one release)
from .lazy import lazy_exports  # noqa: E402

compat.install()
__getattr__, __all__ = lazy_exports(__name__, _API)
__all__.append("__version__")
