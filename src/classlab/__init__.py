"""classlab: image classification from a folder of images or CIFAR-10 to an evaluated classifier."""

__version__ = "0.1.0"

from .data import load_dataset, make_split  # noqa: E402
from .errors import ClasslabError  # noqa: E402
from .evaluation import evaluate  # noqa: E402
from .knn import KNNClassifier  # noqa: E402

__all__ = ["ClasslabError", "KNNClassifier", "evaluate", "load_dataset", "make_split", "__version__"]
