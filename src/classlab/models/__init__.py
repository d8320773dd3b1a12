"""Models: one registry. ``create_model(name, num_classes, in_channels, image_size, **options)``.

As timm does, the registry (registry.py) imports no family; this package imports every family, one per
file, and each registers its builders on import. A new family is a new file here and a line below.
"""

from . import classic, cnn, fast, mlp, numpy_mlp, transfer, volume  # noqa: F401  (registration on import)
from .registry import count_parameters, create_model, get_entry, list_models, register
from .summary import summary_table

__all__ = ["count_parameters", "create_model", "get_entry", "list_models", "register", "summary_table"]
