"""Lazy package exports (PEP 562): a package names what it offers and where each name lives, and a name's
module is imported on first use, so reading a config class (the CLI's flags) does not import torch."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, where: dict[str, str]):
    """(``__getattr__``, ``__all__``) for ``package``: ``where`` maps each exported name to the module,
    relative to the package, that defines it."""
    def __getattr__(name):
        if name in where:
            return getattr(importlib.import_module(where[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return __getattr__, list(where)
