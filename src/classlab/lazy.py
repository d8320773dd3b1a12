"""Lazy package exports (PEP 562): a package names what it offers and where each name lives, and a name's
module is imported on first use, so reading a config class (the CLI's flags) does not import torch."""

from __future__ import annotations

import importlib
import warnings


def lazy_exports(package: str, where: dict[str, str], moved: dict[str, str] | None = None):
    """(``__getattr__``, ``__all__``) for ``package``: ``where`` maps each exported name to the module,
    relative to the package, that defines it. ``moved`` maps names the package no longer offers to the
    absolute module that has them now: they still resolve, for one release, with a DeprecationWarning."""
    moved = moved or {}

    def __getattr__(name):
        if name in where:
            return getattr(importlib.import_module(where[name], package), name)
        if name in moved:
            warnings.warn(f"{package}.{name} moved to {moved[name]}.{name}; the old path goes away in the next "
                          "release", DeprecationWarning, stacklevel=2)
            return getattr(importlib.import_module(moved[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return __getattr__, list(where)
