"""3D CNNs for volumes (C x D x H x W), e.g. MedMNIST-3D."""

from __future__ import annotations

from torch import nn

from ..errors import ClasslabError
from .blocks import check_dropout
from .registry import register


@register("cnn3d", "3D CNN for volumes: conv3d-BN-ReLU-maxpool blocks, global pool, linear", volume=True)
def cnn3d(num_classes, in_channels, image_size, filters=(16, 32, 64), dropout: float = 0.0):
    filters = [filters] if isinstance(filters, int) else list(filters)
    if not filters or min(filters) < 1:
        raise ClasslabError(f"cnn3d needs at least one block with a positive number of filters, got {filters}")
    layers, channels = [], in_channels
    for f in filters:
        layers += [nn.Conv3d(channels, f, 3, padding=1, bias=False), nn.BatchNorm3d(f), nn.ReLU(inplace=True),
                   nn.MaxPool3d(2)]
        channels = f
    layers += [nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Dropout(check_dropout(dropout)), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)
