"""Single neurons, in NumPy: the decks' sigmoid neuron, the perceptron, and logistic regression.

``sigmoid_neuron`` is the deck's notebook exactly: four samples, three inputs (the third always 1,
standing in for a bias), weights uniform in [-1, 1) from ``np.random.seed(1)``, no bias term, and
10,000 full-batch updates ``w += X.T @ ((y - out) * sigmoid'(z))`` (gradient descent on the
squared error with step 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ClasslabError
from .activations import sigmoid, sigmoid_derivative

DECK_INPUTS = np.array([[0, 0, 1], [1, 1, 1], [1, 0, 1], [0, 1, 1]], dtype=np.float64)
DECK_TARGETS = np.array([[0, 1, 1, 0]], dtype=np.float64).T


@dataclass
class NeuronTrace:
    weights_before: np.ndarray
    outputs_before: np.ndarray
    weights_after: np.ndarray
    outputs_after: np.ndarray
    loss_curve: list[float]  # mean squared error every 100 updates

    def text(self) -> str:
        fmt = lambda a: np.array2string(a.ravel(), precision=8, suppress_small=True)
        return (f"random starting weights: {fmt(self.weights_before)}\n"
                f"outputs before training: {fmt(self.outputs_before)}\n"
                f"weights after training:  {fmt(self.weights_after)}\n"
                f"outputs after training:  {fmt(self.outputs_after)}  (targets {fmt(DECK_TARGETS)})")


def sigmoid_neuron(inputs=DECK_INPUTS, targets=DECK_TARGETS, updates: int = 10_000, seed: int = 1) -> NeuronTrace:
    np.random.seed(seed)  # the deck's global seed, so its numbers come out
    weights = 2 * np.random.random((inputs.shape[1], 1)) - 1
    before = weights.copy()
    curve = []
    for step in range(updates):
        z = inputs @ weights
        out = sigmoid(z)
        error = targets - out
        weights += inputs.T @ (error * sigmoid_derivative(z))
        if step % 100 == 0:
            curve.append(float(np.mean(error ** 2)))
    return NeuronTrace(before, sigmoid(inputs @ before), weights, sigmoid(inputs @ weights), curve)


def plot_neuron(trace: NeuronTrace, path):
    """The error falling over the updates, and the outputs against the targets before and after; a PNG."""
    import matplotlib.pyplot as plt

    from ..fileio import save_figure

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(np.arange(len(trace.loss_curve)) * 100, trace.loss_curve)
    ax1.set_yscale("log")
    ax1.set_xlabel("update")
    ax1.set_ylabel("mean squared error")
    ax1.set_title("sigmoid neuron: error while training")
    x = np.arange(len(DECK_TARGETS))
    ax2.bar(x - 0.25, trace.outputs_before.ravel(), 0.25, label="before")
    ax2.bar(x, trace.outputs_after.ravel(), 0.25, label="after")
    ax2.bar(x + 0.25, DECK_TARGETS.ravel(), 0.25, label="target")
    ax2.set_xticks(x, labels=[str(row.astype(int).tolist()) for row in DECK_INPUTS])
    ax2.set_title("outputs per input")
    ax2.legend()
    return save_figure(fig, path)


class Perceptron:
    """Rosenblatt's perceptron: a step function, updated only on mistakes (labels 0/1)."""

    def __init__(self, lr: float = 1.0, epochs: int = 100, seed: int = 0):
        self.lr, self.epochs, self.seed = lr, epochs, seed

    def fit(self, X, y) -> "Perceptron":
        X, y = np.asarray(X, np.float64), np.asarray(y).ravel()
        if set(np.unique(y)) - {0, 1}:
            raise ClasslabError("the perceptron separates two classes: labels must be 0 or 1")
        self.w, self.b = np.zeros(X.shape[1]), 0.0
        rng = np.random.default_rng(self.seed)
        for _ in range(self.epochs):
            mistakes = 0
            for i in rng.permutation(len(X)):
                update = self.lr * (y[i] - self.predict(X[i : i + 1])[0])
                self.w += update * X[i]
                self.b += update
                mistakes += update != 0
            if mistakes == 0:  # converged: every sample on the right side
                break
        return self

    def predict(self, X) -> np.ndarray:
        return (np.asarray(X, np.float64) @ self.w + self.b > 0).astype(int)

    def score(self, X, y) -> float:
        return float(np.mean(self.predict(X) == np.asarray(y).ravel()))


class LogisticNeuron:
    """Logistic regression as one sigmoid neuron with a bias, trained on the cross-entropy
    (whose gradient is simply X.T @ (p - y) / n)."""

    def __init__(self, lr: float = 0.5, epochs: int = 1000, l2: float = 0.0):
        self.lr, self.epochs, self.l2 = lr, epochs, l2

    def fit(self, X, y) -> "LogisticNeuron":
        X, y = np.asarray(X, np.float64), np.asarray(y, np.float64).ravel()
        self.w, self.b = np.zeros(X.shape[1]), 0.0
        for _ in range(self.epochs):
            p = self.predict_proba(X)[:, 1]
            self.w -= self.lr * (X.T @ (p - y) / len(X) + self.l2 * self.w)
            self.b -= self.lr * float(np.mean(p - y))
        return self

    def predict_proba(self, X) -> np.ndarray:
        p = sigmoid(np.asarray(X, np.float64) @ self.w + self.b)
        return np.stack([1 - p, p], axis=1)

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] > 0.5).astype(int)

    def score(self, X, y) -> float:
        return float(np.mean(self.predict(X) == np.asarray(y).ravel()))
