"""Convolution and pooling as the decks teach them: a kernel sliding over the input, one dot product
per output position. Naive loops over output positions, vectorised only over channels, so the code
reads like the picture; the tests check it against ``torch.nn.functional`` to 1e-6.

Like every deep-learning library (and the decks' worked example), "convolution" here is
cross-correlation: the kernel is not flipped. Layout is PyTorch's: (N, C, H, W) inputs and
(out_channels, in_channels, kH, kW) kernels; 3D adds a depth axis.
"""

from __future__ import annotations

import itertools

import numpy as np

from ..errors import ClasslabError


def output_size(n_in: int, kernel: int, padding: int = 0, stride: int = 1) -> int:
    """The decks' formula: n_out = floor((n_in + 2p - k) / s) + 1."""
    if kernel < 1 or stride < 1 or padding < 0:
        raise ClasslabError(f"kernel and stride must be at least 1 and padding at least 0 (got k={kernel}, "
                            f"s={stride}, p={padding})")
    n_out = (n_in + 2 * padding - kernel) // stride + 1
    if n_out < 1:
        raise ClasslabError(f"a {kernel}-wide kernel with padding {padding} does not fit an input of {n_in} "
                            f"(n_out = floor(({n_in} + 2*{padding} - {kernel}) / {stride}) + 1 = {n_out}); "
                            f"use a smaller kernel or more padding")
    return n_out


def _windows(x: np.ndarray, kernel: tuple, stride: tuple, padding: tuple, pad_value: float = 0.0):
    """Yield (output index, window) over the spatial axes (the last len(kernel) axes) of x."""
    dims = len(kernel)
    pad = [(0, 0)] * (x.ndim - dims) + [(p, p) for p in padding]
    xp = np.pad(x, pad, constant_values=pad_value)
    sizes = [output_size(x.shape[x.ndim - dims + d], kernel[d], padding[d], stride[d]) for d in range(dims)]
    for out in itertools.product(*(range(s) for s in sizes)):
        sl = tuple(slice(o * s, o * s + k) for o, s, k in zip(out, stride, kernel))
        yield out, xp[(Ellipsis, *sl)]


def _tuple(v, dims: int) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * dims


def _conv(x, w, b, stride, padding, dims):
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    if x.ndim != dims + 2 or w.ndim != dims + 2 or x.shape[1] != w.shape[1]:
        raise ClasslabError(f"conv{dims}d wants x (N, C{', D' if dims == 3 else ''}, H, W) and w (out, C, "
                            f"{'kD, ' if dims == 3 else ''}kH, kW) with the same C; got {x.shape} and {w.shape}")
    kernel, stride, padding = w.shape[2:], _tuple(stride, dims), _tuple(padding, dims)
    sizes = [output_size(x.shape[2 + d], kernel[d], padding[d], stride[d]) for d in range(dims)]
    out = np.zeros((x.shape[0], w.shape[0], *sizes))
    flat_w = w.reshape(w.shape[0], -1)
    for pos, window in _windows(x, kernel, stride, padding):
        # one dot product per (image, filter): the window, flattened, against each flattened kernel
        out[(slice(None), slice(None), *pos)] = window.reshape(x.shape[0], -1) @ flat_w.T
    if b is not None:
        out += np.asarray(b, np.float64).reshape(1, -1, *([1] * dims))
    return out


def conv2d(x, w, b=None, stride=1, padding=0) -> np.ndarray:
    return _conv(x, w, b, stride, padding, 2)


def conv3d(x, w, b=None, stride=1, padding=0) -> np.ndarray:
    return _conv(x, w, b, stride, padding, 3)


def _pool(x, kernel, stride, padding, dims, kind):
    x = np.asarray(x, np.float64)
    kernel = _tuple(kernel, dims)
    stride = _tuple(stride if stride is not None else kernel, dims)
    padding = _tuple(padding, dims)
    sizes = [output_size(x.shape[x.ndim - dims + d], kernel[d], padding[d], stride[d]) for d in range(dims)]
    out = np.zeros((*x.shape[:-dims], *sizes))
    # Max pooling pads with -inf (padding never wins); average pooling counts the zero padding, as torch does.
    for pos, window in _windows(x, kernel, stride, padding, -np.inf if kind == "max" else 0.0):
        flat = window.reshape(*window.shape[:-dims], -1)
        out[(Ellipsis, *pos)] = flat.max(-1) if kind == "max" else flat.mean(-1)
    return out


def max_pool2d(x, kernel=2, stride=None, padding=0) -> np.ndarray:
    return _pool(x, kernel, stride, padding, 2, "max")


def avg_pool2d(x, kernel=2, stride=None, padding=0) -> np.ndarray:
    return _pool(x, kernel, stride, padding, 2, "avg")


def max_pool3d(x, kernel=2, stride=None, padding=0) -> np.ndarray:
    return _pool(x, kernel, stride, padding, 3, "max")


def avg_pool3d(x, kernel=2, stride=None, padding=0) -> np.ndarray:
    return _pool(x, kernel, stride, padding, 3, "avg")
