"""A multi-layer perceptron in NumPy: forward propagation, backpropagation as the chain rule, and
mini-batch SGD, momentum or Adam. Written to be read next to the decks, and checked against finite
differences and torch autograd in the tests.

Shapes: X is (batch, features); layer l holds W[l] (in, out) and b[l] (out,). Forward keeps what the
backward pass needs: each layer's input ``a`` and pre-activation ``z``. The output layer's softmax and
the cross-entropy combine into the famous gradient ``dz = (softmax(z) - onehot(y)) / batch``.
"""

from __future__ import annotations

import numpy as np

from ..errors import ClasslabError
from .activations import ACTIVATIONS, softmax

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")


class ScratchMLP:
    def __init__(self, hidden=(64,), activation: str = "relu", dropout: float = 0.0, optimizer: str = "adam",
                 lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 0.0, batch_size: int = 64,
                 epochs: int = 10, seed: int = 0, dtype=np.float32):
        hidden = [int(h) for h in hidden] if hidden is not None else []
        if not hidden:
            raise ClasslabError("the scratch MLP needs at least one hidden layer, e.g. hidden=64 (for none, that is "
                                "softmax regression: use --model logreg)")
        if min(hidden) < 1:
            raise ClasslabError(f"hidden layer sizes must be positive, got {hidden}")
        if activation not in ACTIVATIONS:
            raise ClasslabError(f"unknown activation '{activation}'; choose one of {', '.join(ACTIVATIONS)}")
        if optimizer not in OPTIMIZERS:
            raise ClasslabError(f"the scratch MLP's optimizers are {', '.join(OPTIMIZERS)}; got '{optimizer}'")
        if not 0 <= dropout < 1:
            raise ClasslabError(f"dropout must be in [0, 1), got {dropout}")
        if not lr > 0:
            raise ClasslabError(f"the learning rate must be positive, got {lr}")
        self.hidden, self.activation, self.dropout = hidden, activation, dropout
        self.optimizer, self.lr, self.momentum, self.weight_decay = optimizer, lr, momentum, weight_decay
        self.batch_size, self.epochs, self.seed, self.dtype = batch_size, epochs, seed, np.dtype(dtype)
        self.params: list[np.ndarray] = []

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.params))

    # -- the network ---------------------------------------------------------------------------------

    def init(self, n_in: int, n_out: int) -> "ScratchMLP":
        """He initialisation for ReLU-like activations, Xavier (Glorot) for sigmoid and tanh."""
        rng = np.random.default_rng(self.seed)
        sizes = [n_in, *self.hidden, n_out]
        self.params = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            scale = np.sqrt(2 / fan_in) if "relu" in self.activation else np.sqrt(2 / (fan_in + fan_out))
            self.params += [(rng.standard_normal((fan_in, fan_out)) * scale).astype(self.dtype),
                            np.zeros(fan_out, self.dtype)]
        self._state = [np.zeros_like(p) for p in self.params], [np.zeros_like(p) for p in self.params], 0
        return self

    def forward(self, X: np.ndarray, train: bool = False, rng=None):
        """Logits and the cache backward needs. Dropout (inverted: scaled at train time) on hidden layers."""
        f, _ = ACTIVATIONS[self.activation]
        a, cache = X, []
        layers = len(self.params) // 2
        for layer in range(layers):
            W, b = self.params[2 * layer], self.params[2 * layer + 1]
            z = a @ W + b
            if layer == layers - 1:
                cache.append((a, z, None))
                return z, cache
            mask = None
            out = f(z)
            if train and self.dropout:
                mask = (rng.random(out.shape) >= self.dropout) / (1 - self.dropout)
                out = out * mask
            cache.append((a, z, mask))
            a = out.astype(self.dtype, copy=False)

    def backward(self, cache, logits: np.ndarray, y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        """Mean cross-entropy and its gradient for every parameter, by the chain rule, layer by layer."""
        _, df = ACTIVATIONS[self.activation]
        n = len(y)
        p = softmax(logits, axis=1)
        loss = float(-np.mean(np.log(np.clip(p[np.arange(n), y], np.finfo(p.dtype).tiny, None))))
        dz = p
        dz[np.arange(n), y] -= 1
        dz /= n  # d loss / d logits
        grads = [None] * len(self.params)
        for layer in range(len(cache) - 1, -1, -1):
            a, z, mask = cache[layer]
            if layer < len(cache) - 1:  # through the activation (and dropout) of this hidden layer
                da = dz
                if mask is not None:
                    da = da * mask
                dz = da * df(z)
            grads[2 * layer] = a.T @ dz
            grads[2 * layer + 1] = dz.sum(0)
            dz = dz @ self.params[2 * layer].T  # d loss / d (this layer's input)
        if self.weight_decay:
            for i in range(0, len(grads), 2):
                grads[i] = grads[i] + self.weight_decay * self.params[i]
        return loss, grads

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        """Deterministic (no dropout) loss and gradients: what gradient checks compare."""
        logits, cache = self.forward(X)
        return self.backward(cache, logits, y)

    def step(self, grads: list[np.ndarray]) -> None:
        velocity, second, t = self._state
        t += 1
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if self.optimizer == "sgd":
                p -= self.lr * g
            elif self.optimizer in ("momentum", "nesterov"):
                velocity[i] = self.momentum * velocity[i] + g
                p -= self.lr * (g + self.momentum * velocity[i] if self.optimizer == "nesterov" else velocity[i])
            else:  # Adam with bias correction, torch's defaults
                velocity[i] = 0.9 * velocity[i] + 0.1 * g
                second[i] = 0.999 * second[i] + 0.001 * g * g
                m_hat, v_hat = velocity[i] / (1 - 0.9 ** t), second[i] / (1 - 0.999 ** t)
                p -= self.lr * m_hat / (np.sqrt(v_hat) + 1e-8)
        self._state = velocity, second, t

    # -- the estimator verbs -------------------------------------------------------------------------

    def fit(self, X, y, X_val=None, y_val=None, num_classes: int | None = None, on_epoch=None) -> "ScratchMLP":
        X = np.asarray(X, self.dtype)
        y = np.asarray(y, np.int64).ravel()
        k = int(num_classes or y.max() + 1)
        if not self.params:
            self.init(X.shape[1], k)
        rng = np.random.default_rng(self.seed + 1)
        self.history = []
        for epoch in range(self.epochs):
            order = rng.permutation(len(X))
            loss_sum = correct = 0.0
            for start in range(0, len(X), self.batch_size):
                idx = order[start : start + self.batch_size]
                with np.errstate(over="ignore", invalid="ignore"):  # divergence is caught and explained below
                    logits, cache = self.forward(X[idx], train=True, rng=rng)
                    loss, grads = self.backward(cache, logits, y[idx])
                if not np.isfinite(loss) or not all(np.isfinite(g).all() for g in grads):
                    raise ClasslabError(f"the scratch MLP diverged in epoch {epoch + 1} (loss {loss}): the learning "
                                        f"rate {self.lr} is too high; try --lr {self.lr / 10:g}")
                self.step(grads)
                if not all(np.isfinite(p).all() for p in self.params):
                    raise ClasslabError(f"the scratch MLP diverged in epoch {epoch + 1} (weights overflowed to inf/NaN): "
                                        f"the learning rate {self.lr} is too high; try --lr {self.lr / 10:g}")
                loss_sum += loss * len(idx)
                correct += float(np.sum(logits.argmax(1) == y[idx]))
            row = {"epoch": epoch + 1, "train_loss": loss_sum / len(X), "train_acc": correct / len(X)}
            if X_val is not None and len(X_val):
                proba = self.predict_proba(X_val)
                row["val_loss"] = float(-np.mean(np.log(np.clip(proba[np.arange(len(y_val)), y_val],
                                                                 np.finfo(proba.dtype).tiny, None))))
                row["val_acc"] = float(np.mean(proba.argmax(1) == y_val))
            self.history.append(row)
            if on_epoch:
                on_epoch(row)
        return self

    def predict_proba(self, X) -> np.ndarray:
        out = []
        for start in range(0, len(X), 4096):
            logits, _ = self.forward(np.asarray(X[start : start + 4096], self.dtype))
            out.append(softmax(logits, axis=1))
        return np.concatenate(out)

    def predict(self, X) -> np.ndarray:
        return self.predict_proba(X).argmax(1)

    def score(self, X, y) -> float:
        return float(np.mean(self.predict(X) == np.asarray(y).ravel()))


def numerical_gradient(f, param: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central finite differences of the scalar ``f()`` with respect to ``param`` (changed in place, restored)."""
    grad = np.zeros_like(param)
    it = np.nditer(param, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = param[i]
        param[i] = old + eps
        up = f()
        param[i] = old - eps
        down = f()
        param[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad
