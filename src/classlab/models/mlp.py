"""Fully connected models: softmax regression and the multilayer perceptron."""

from __future__ import annotations

import math

from torch import nn

from ..errors import ClasslabError
from .blocks import check_dropout, make_activation
from .registry import register


def _inputs(in_channels, image_size) -> int:
    return in_channels * math.prod(image_size)


@register("logreg", "softmax regression on flattened pixels")
def logreg(num_classes, in_channels, image_size):
    return nn.Sequential(nn.Flatten(), nn.Linear(_inputs(in_channels, image_size), num_classes))


@register("mlp", "multilayer perceptron: hidden sizes, activation, dropout")
def mlp(num_classes, in_channels, image_size, hidden=(128,), activation: str = "relu", dropout: float = 0.0):
    hidden = [hidden] if isinstance(hidden, int) else list(hidden)
    if not hidden or min(hidden) < 1:
        raise ClasslabError(f"mlp needs at least one hidden layer of positive size, got {hidden}")
    dropout = check_dropout(dropout)
    layers, width = [nn.Flatten()], _inputs(in_channels, image_size)
    for h in hidden:
        layers += [nn.Linear(width, h), make_activation(activation)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
