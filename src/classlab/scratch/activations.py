"""Activation functions and their derivatives, in NumPy, as the decks write them.

Each derivative takes the same input ``z`` as its function (the pre-activation), so the chain rule
reads ``dz = da * derivative(z)``. Softmax subtracts the row maximum first: the same probabilities,
without overflow for large logits (the deck's ``exp(x) / sum(exp(x))`` overflows above ~709).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def sigmoid(z):
    # exp of a negative number only, so large |z| neither overflows nor warns
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_derivative(z):
    s = sigmoid(z)
    return s * (1 - s)


def tanh(z):
    return np.tanh(z)


def tanh_derivative(z):
    return 1 - np.tanh(z) ** 2


def relu(z):
    return np.maximum(z, 0)


def relu_derivative(z):
    return (z > 0).astype(np.result_type(z, np.float32))  # 0 at z = 0, as torch's autograd takes it


def leaky_relu(z, slope: float = 0.01):
    return np.where(z > 0, z, slope * z)


def leaky_relu_derivative(z, slope: float = 0.01):
    return np.where(z > 0, 1.0, slope).astype(np.result_type(z, np.float32))


def softmax(z, axis: int = -1):
    """Numerically stable softmax along ``axis``."""
    z = np.asarray(z, dtype=np.float64 if np.asarray(z).dtype.kind in "iub" else np.asarray(z).dtype)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


ACTIVATIONS = {
    "sigmoid": (sigmoid, sigmoid_derivative),
    "tanh": (tanh, tanh_derivative),
    "relu": (relu, relu_derivative),
    "leaky_relu": (leaky_relu, leaky_relu_derivative),
}


def plot_activations(path, x_range=(-6.0, 6.0)) -> Path:
    """One panel per activation, each with its derivative, as the decks plot them; a PNG."""
    import matplotlib.pyplot as plt

    from ..fileio import save_figure

    x = np.arange(x_range[0], x_range[1], 0.01)
    fig, axes = plt.subplots(1, len(ACTIVATIONS) + 1, figsize=(4 * (len(ACTIVATIONS) + 1), 3.6))
    for ax, (name, (f, df)) in zip(axes, ACTIVATIONS.items()):
        ax.plot(x, f(x), label="f(x)")
        ax.plot(x, df(x), label="f'(x)")
        ax.set_title(f"{name} & derivative")
        ax.grid(alpha=0.3)
        ax.legend()
    logits = np.array([1, 0.3, 3, 0.5])
    axes[-1].bar([str(v) for v in logits], softmax(logits))
    axes[-1].set_title("softmax([1, 0.3, 3, 0.5])")
    axes[-1].set_ylabel("probability")
    return save_figure(fig, path)
