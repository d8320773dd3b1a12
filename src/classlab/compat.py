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
    "classlab.predictor": ("classlab.inference.trained_run",),
    "classlab.export": ("classlab.inference.export",),
    "classlab.visualize": ("classlab.inference.visualize",),
    "classlab.knn_run": ("classlab.commands.knn",),
    "classlab.doctor": ("classlab.commands.check",),
    "classlab.training.run": ("classlab.commands.train", "classlab.commands.results", "classlab.training.batches"),
    "classlab.training.lr_find": ("classlab.commands.lr_find",),
    "classlab.training.checkpoint": ("classlab.checkpoint",),
    "classlab.training.tensors": ("classlab.inference.preprocess", "classlab.training.augment",
                                  "classlab.models.transfer", "classlab.training.config"),
    "classlab.transfer.run": ("classlab.commands.transfer", "classlab.transfer.config"),
    "classlab.scratch.run": ("classlab.commands.scratch",),
}
# classlab.explore and classlab.workshop are now the API's functions (classlab.explore(...)), so their old
# modules are not aliased: an alias would replace the function on the package.


class _Alias(types.ModuleType):
    def __getattr__(self, name):
        for target in self.__targets__:
            module = importlib.import_module(target)
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"module {self.__name__!r} (moved to {', '.join(self.__targets__)}) has no {name!r}")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        module = _Alias(spec.name)
        module.__targets__ = MOVED[spec.name]
        return module

    def exec_module(self, module):
        warnings.warn(f"{module.__name__} moved to {' / '.join(module.__targets__)}; the old path goes away in the "
                      "next release", DeprecationWarning, stacklevel=3)


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
