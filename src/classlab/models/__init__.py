"""Models: one registry. ``create_model(name, num_classes, in_channels, image_size, **options)``."""

from .registry import count_parameters, create_model, get_entry, list_models, register
from .summary import summary_table

__all__ = ["count_parameters", "create_model", "get_entry", "list_models", "register", "summary_table"]
