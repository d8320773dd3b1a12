"""The NumPy MLP of ``classlab.scratch`` as a registry entry: ``classlab train --model scratch-mlp`` and
``classlab models`` treat it like any other model; its kind ("numpy") tells the train command to use
the NumPy training loop (``classlab.commands.scratch``) instead of the torch engine."""

from __future__ import annotations

import math

import numpy as np

from ..errors import ClasslabError
from .registry import register

DTYPES = ("float32", "float64")


@register("scratch-mlp", "the MLP written from scratch in NumPy: hidden sizes, activation, dropout", kind="numpy")
def scratch_mlp(num_classes, in_channels, image_size, hidden=(128,), activation: str = "relu", dropout: float = 0.0,
                dtype: str = "float32"):
    """The network, initialised; training settings (optimizer, lr, ...) are the train command's."""
    from ..scratch.mlp import ScratchMLP

    if dtype not in DTYPES:
        raise ClasslabError(f"scratch-mlp's dtype is float32 or float64, got '{dtype}'")
    hidden = [hidden] if isinstance(hidden, int) else list(hidden)
    model = ScratchMLP(hidden, activation, float(dropout), dtype=np.dtype(dtype))
    return model.init(in_channels * math.prod(image_size), num_classes)
