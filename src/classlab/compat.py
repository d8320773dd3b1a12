"""Old module paths, importable for one release after the refactoring that moved them (0.1 -> 0.2).

``import classlab.prepare`` (or ``from classlab.training.tensors import Preprocessing``) still works and
warns once with the new place. A path whose contents were split lists every new home, searched in order.
Remove this module, and its ``install()`` in ``classlab/__init__``, in the next release.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

MOVED = {
    "classlab.prepare": ("classlab.data.options",),
    "classlab.predictor": ("classlab.trained.network",),
    "classlab.export": ("classlab.trained.export",),
    "classlab.visualize": ("classlab.trained.visualize",),
    "classlab.knn_run": ("classlab.commands.knn",),
    "classlab.doctor": ("classlab.commands.check",),
    "classlab.training.run": ("classlab.commands.train", "classlab.commands.results", "classlab.training.batches"),
    "classlab.training.lr_find": ("classlab.commands.lr_find",),
    "classlab.training.checkpoint": ("classlab.checkpoint",),
    "classlab.training.tensors": ("classlab.inference.preprocess", "classlab.training.augment",
                                  "classlab.models.transfer", "classlab.training.config"),
    "classlab.transfer.run": ("classlab.commands.transfer", "classlab.backbones.config"),
    "classlab.scratch.run": ("classlab.commands.scratch",),
    # 0.2 -> 0.3: the layers of issue 28
    "classlab.data.safe_files": ("classlab.safe_files",),
    "classlab.inference.trained_run": ("classlab.trained.network",),
    "classlab.inference.export": ("classlab.trained.export",),
    "classlab.inference.visualize": ("classlab.trained.visualize",),
    "classlab.inference.attribution": ("classlab.trained.attribution",),
    "classlab.commands.run_model": ("classlab.trained.model",),
    "classlab.commands.explainers": ("classlab.trained.explainers",),
    "classlab.commands.content": ("classlab.checks.embeddings",),
    "classlab.commands.results": ("classlab.runs.outputs",),
    "classlab.training.tracking": ("classlab.runs.tracking",),
    "classlab.knn": ("classlab.models.knn",),
    "classlab.knn_kernels": ("classlab.models.knn_kernels",),
    "classlab.transfer": ("classlab.backbones", "classlab.commands.transfer"),
    "classlab.transfer.backbone": ("classlab.backbones.plan",),
    "classlab.transfer.config": ("classlab.backbones.config",),
    "classlab.transfer.features": ("classlab.backbones.features",),
    "classlab.transfer.hub_cache": ("classlab.backbones.hub_cache",),
    "classlab.transfer.timm_backbones": ("classlab.backbones.timm_source",),
    "classlab.transfer.weights": ("classlab.backbones.torchvision_source",),
}
# classlab.knn and classlab.transfer are the API's functions and were also modules: importing the old module
# binds the alias to that name on the package, so the alias forwards calls to the function. (classlab.explore
# and classlab.workshop, older modules, are not aliased.)
CALLABLE = {"classlab.knn": ("classlab.api", "knn"), "classlab.transfer": ("classlab.api", "transfer")}
PACKAGES = {"classlab.transfer"}  # old packages: their old submodules are aliased too


class _Alias(types.ModuleType):
    def __getattr__(self, name):
        for target in self.__targets__:
            module = importlib.import_module(target)
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"module {self.__name__!r} (moved to {', '.join(self.__targets__)}) has no {name!r}")

    def __call__(self, *args, **kwargs):
        if self.__name__ not in CALLABLE:
            raise TypeError(f"module {self.__name__!r} is not callable")
        module, name = CALLABLE[self.__name__]
        return getattr(importlib.import_module(module), name)(*args, **kwargs)


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        module = _Alias(spec.name)
        module.__targets__ = MOVED[spec.name]
        if spec.name in PACKAGES:
            module.__path__ = []  # a package, so that its old submodules import (through this finder)
        return module

    def exec_module(self, module):
        warnings.warn(f"{module.__name__} moved to {' / '.join(module.__targets__)}; the old path goes away in the "
                      "next release", DeprecationWarning, stacklevel=3)


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
