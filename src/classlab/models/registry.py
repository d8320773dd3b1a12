"""One registry for every model, timm-style: ``create_model(name, num_classes, in_channels, image_size, **options)``.

Each family lives in its own file and registers its builders with ``@register``; the registry imports no
family (``classlab.models`` imports them all, so any use of the registry sees every entry); a second registration
of a name is refused (as torchvision's ``register_model`` does). An entry's ``kind`` says what its builder
returns: a torch ``nn.Module``, or a NumPy model (``scratch-mlp``, trained by its own loop); ``hidden``
entries (transfer learning's network, built by ``classlab transfer``) are rebuilt from checkpoints but
not offered to ``classlab train`` or listed by ``classlab models``. Shapes are checked
up front on PyTorch's meta device (no memory, no compute), so an image too small for an
architecture is a clear message, not an error from deep inside a forward pass.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..errors import ClasslabError

_REGISTRY: dict[str, "ModelEntry"] = {}


@dataclass
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    description: str
    volume: bool = False  # takes (C, D, H, W) volumes instead of (C, H, W) images
    kind: str = "torch"  # "torch": an nn.Module; "numpy": a classlab.scratch model with its own training loop
    hidden: bool = False  # built by another command (transfer), not offered by `classlab train` / `classlab models`
    # the side a photo folder is decoded at for this model trained from scratch (without --image-size): what
    # it was designed for (32: the decks' and LeCun's nets, the CIFAR speed-run net), else 64, or 128 for the
    # ImageNet architectures (their ImageNet stem takes over from 64 px); benchmark-sized data is smaller
    photo_size: int = 64

    @property
    def options(self) -> list[str]:
        skip = {"num_classes", "in_channels", "image_size"}
        return [p for p in inspect.signature(self.builder).parameters if p not in skip]


KINDS = ("torch", "numpy")


def register(name: str, description: str, volume: bool = False, kind: str = "torch", hidden: bool = False,
             photo_size: int = 64):
    if kind not in KINDS:
        raise ValueError(f"model kind must be one of {KINDS}, got {kind!r}")

    def wrap(builder):
        if name in _REGISTRY:
            raise ValueError(f"a model named '{name}' is already registered ({_REGISTRY[name].builder.__module__}); "
                             "choose another name")
        _REGISTRY[name] = ModelEntry(name, builder, description, volume, kind, hidden, photo_size)
        return builder
    return wrap


def list_models(include_hidden: bool = False) -> list[str]:
    """The names ``classlab train`` accepts (with ``include_hidden``, also those other commands build)."""
    return sorted(n for n, e in _REGISTRY.items() if include_hidden or not e.hidden)


def get_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        raise ClasslabError(f"unknown model '{name}'; known models: {', '.join(list_models())}")
    return _REGISTRY[name]


def normalise_size(image_size, volume: bool) -> tuple[int, ...]:
    dims = 3 if volume else 2
    if isinstance(image_size, int):
        size = (image_size,) * dims
    else:
        size = tuple(int(s) for s in image_size)
    if len(size) != dims or min(size) < 1:
        kind = "D x H x W" if volume else "H x W"
        raise ClasslabError(f"image_size must be one positive int or {dims} of them ({kind}), got {image_size}")
    return size


def create_model(name: str, num_classes: int, in_channels: int = 3, image_size=32, **options) -> nn.Module:
    """Build a registered model for ``num_classes`` outputs from (in_channels, *image_size) inputs."""
    entry = get_entry(name)
    if entry.kind == "numpy":  # no forward pass to check shapes with: its builder validates its own options
        try:
            return entry.builder(num_classes=num_classes, in_channels=in_channels,
                                 image_size=normalise_size(image_size, entry.volume), **options)
        except (TypeError, ValueError) as e:
            raise ClasslabError(f"model '{name}' cannot be built with {options} ({e})") from None
    if num_classes < 2:
        raise ClasslabError(f"num_classes must be at least 2, got {num_classes}")
    if in_channels < 1:
        raise ClasslabError(f"in_channels must be at least 1, got {in_channels}")
    size = normalise_size(image_size, entry.volume)
    unknown = set(options) - set(entry.options)
    if unknown:
        raise ClasslabError(f"model '{name}' has no option {', '.join(sorted(unknown))}; "
                            f"its options: {', '.join(entry.options) or 'none'}")
    try:
        check_input_size(entry, num_classes, in_channels, size, options)
        return entry.builder(num_classes=num_classes, in_channels=in_channels, image_size=size, **options)
    except (TypeError, ValueError) as e:  # an option of the wrong kind, e.g. -o hidden=abc
        shown = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "its defaults"
        raise ClasslabError(f"model '{name}' cannot be built with {shown} ({e}); "
                            f"see 'classlab summary {name} --help' for its options") from None


def _meta_forward(entry: ModelEntry, num_classes, in_channels, size, options) -> bool:
    try:
        with torch.device("meta"):
            model = entry.builder(num_classes=num_classes, in_channels=in_channels, image_size=size, **options)
            out = model.eval()(torch.empty(2, in_channels, *size))
        return tuple(out.shape) == (2, num_classes)
    except (RuntimeError, ValueError):
        return False


def check_input_size(entry: ModelEntry, num_classes, in_channels, size, options) -> None:
    if _meta_forward(entry, num_classes, in_channels, size, options):
        return
    def works(side: int) -> bool:
        return _meta_forward(entry, num_classes, in_channels, (side,) * len(size), options)
    # The smallest square input that works, to suggest it: double until one works, then bisect.
    low, high = max(size), max(size) * 2
    while not works(high):
        low, high = high, high * 2
        if high > 2048:
            raise ClasslabError(f"'{entry.name}' cannot take {in_channels}x{'x'.join(map(str, size))} inputs "
                                "with these options")
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if works(mid) else (mid, high)
    raise ClasslabError(f"images of {'x'.join(map(str, size))} are too small for '{entry.name}': it needs "
                        f"at least {high}x{high}; pass --image-size {high} (or larger)")


def count_parameters(model) -> tuple[int, int]:
    """(total, trainable) parameters of a torch model, or of a NumPy model (all trainable)."""
    if not isinstance(model, nn.Module):
        total = model.num_parameters()
        return total, total
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
