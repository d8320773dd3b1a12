"""Configurable plain CNNs, and the decks' own networks expressed with them."""

from __future__ import annotations

from torch import nn

from ..errors import ClasslabError
from .blocks import check_dropout, make_activation, per_block
from .registry import register


def _padding(value, kernel: int):
    if value == "same":
        if kernel % 2 == 0:
            raise ClasslabError(f"'same' padding needs an odd kernel, got {kernel}")
        return kernel // 2
    if value == "valid":
        return 0
    if isinstance(value, int) and value >= 0:
        return value
    raise ClasslabError(f"padding must be 'same', 'valid' or a non-negative int, got {value!r}")


@register("cnn", "configurable CNN: filters, kernel, padding, stride, pooling, batch norm, dropout, dense")
def cnn(num_classes, in_channels, image_size, filters=(32, 64), kernel=3, padding="same", stride=1, pool=2,
        pool_type: str = "max", batch_norm: bool = False, dropout: float = 0.0, dense=(128,),
        activation: str = "relu"):
    """Blocks of conv -> [batch norm] -> activation -> [pool]; then flatten -> dense layers -> output.
    ``kernel``, ``padding``, ``stride`` and ``pool`` are one value for all blocks or one per block
    (pool 0 = none). ``dropout`` applies before each dense layer."""
    filters = [filters] if isinstance(filters, int) else list(filters)
    if not filters or min(filters) < 1:
        raise ClasslabError(f"cnn needs at least one block with a positive number of filters, got {filters}")
    n = len(filters)
    kernels, paddings = per_block(kernel, n, "kernel"), per_block(padding, n, "padding")
    strides, pools = per_block(stride, n, "stride"), per_block(pool, n, "pool")
    if pool_type not in ("max", "avg"):
        raise ClasslabError(f"pool_type must be 'max' or 'avg', got {pool_type!r}")
    dropout = check_dropout(dropout)
    layers, channels = [], in_channels
    for f, k, p, s, pl in zip(filters, kernels, paddings, strides, pools):
        layers.append(nn.Conv2d(channels, f, k, stride=s, padding=_padding(p, k), bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(f))
        layers.append(make_activation(activation))
        if pl:
            layers.append(nn.MaxPool2d(pl) if pool_type == "max" else nn.AvgPool2d(pl))
        channels = f
    layers.append(nn.Flatten())
    dense = [dense] if isinstance(dense, int) else list(dense or [])
    for d in dense:
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers += [nn.LazyLinear(d), make_activation(activation)]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.LazyLinear(num_classes))
    model = nn.Sequential(*layers)
    return _materialise(model, in_channels, image_size)


def _materialise(model: nn.Module, in_channels: int, image_size) -> nn.Module:
    """Resolve LazyLinear input sizes with one dry forward on the same device the model is on."""
    import torch

    device = next(model.parameters()).device
    with torch.no_grad():
        model.eval()(torch.zeros(1, in_channels, *image_size, device=device))
    return model.train()


@register("workshop-cnn", "the CIFAR-10 deck's network: conv32, pool, conv64, pool, dense128", photo_size=32)
def workshop_cnn(num_classes, in_channels, image_size, dropout: float = 0.0):
    return cnn(num_classes, in_channels, image_size, filters=(32, 64), kernel=3, padding="valid", pool=2,
               dense=(128,), dropout=dropout)


@register("lenet5", "LeNet-5: conv6 5x5, avg-pool, conv16 5x5, avg-pool, dense 120, 84 (tanh)", photo_size=32)
def lenet5(num_classes, in_channels, image_size, activation: str = "tanh"):
    # LeCun et al. 1998 took 32x32 inputs; 28x28 MNIST gets the customary padding of 2 on the first conv.
    first_padding = 2 if min(image_size) < 32 else 0
    return cnn(num_classes, in_channels, image_size, filters=(6, 16), kernel=5, padding=(first_padding, 0),
               pool=2, pool_type="avg", dense=(120, 84), activation=activation)
