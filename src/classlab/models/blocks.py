"""Small shared pieces: activations by name, option broadcasting."""

from __future__ import annotations

from torch import nn

from ..errors import ClasslabError

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ClasslabError(f"unknown activation '{name}'; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def per_block(value, n: int, what: str) -> list:
    """A scalar applies to every block; a list must give one value per block."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ClasslabError(f"{what} has {len(value)} values but there are {n} blocks")
        return list(value)
    return [value] * n


def check_dropout(p: float) -> float:
    if not 0 <= p < 1:
        raise ClasslabError(f"dropout must be in [0, 1), got {p}")
    return float(p)
