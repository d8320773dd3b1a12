"""Modules that can be called: ``classlab.knn`` and ``classlab.transfer`` are both modules and the API's
functions (``classlab.knn("digits")``). Importing ``classlab.knn`` binds the module to that name on the
package, so the module forwards calls to the function."""

from __future__ import annotations

import importlib
import sys
import types


class CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        module, name = self.__call_target__
        return getattr(importlib.import_module(module), name)(*args, **kwargs)


def callable_module(module_name: str, target_module: str, target_name: str) -> None:
    module = sys.modules[module_name]
    module.__class__ = CallableModule
    module.__call_target__ = (target_module, target_name)
