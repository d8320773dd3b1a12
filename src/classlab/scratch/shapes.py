"""``classlab conv-size``: the decks' output-size formula applied to one layer or a stack of them.

A stack is written compactly, one token per layer: ``conv3`` (kernel 3, stride 1, padding 0),
``conv3p1`` (padding 1), ``conv3s2p1``, ``pool2`` (kernel 2; stride defaults to the kernel, as in
Keras and PyTorch), ``pool3s2``. The deck's 50x50 CNN is ``conv3p1,pool2,conv3,pool2,conv3``.
"""

from __future__ import annotations

import re

from ..errors import ClasslabError
from .conv import output_size

_TOKEN = re.compile(r"^(conv|pool)(\d+)(?:s(\d+))?(?:p(\d+))?$")


def parse_layers(text: str) -> list[dict]:
    layers = []
    for token in (t.strip().lower() for t in text.split(",") if t.strip()):
        m = _TOKEN.match(token)
        if not m:
            raise ClasslabError(f"cannot read layer '{token}'; write e.g. conv3, conv3p1, conv3s2p1, pool2, pool3s2")
        kind, k, s, p = m.group(1), int(m.group(2)), m.group(3), m.group(4)
        stride = int(s) if s is not None else (k if kind == "pool" else 1)
        layers.append({"layer": token, "kind": kind, "kernel": k, "stride": stride, "padding": int(p or 0)})
    if not layers:
        raise ClasslabError("no layers given; e.g. --layers conv3p1,pool2,conv3")
    return layers


def parse_input(text: str | int) -> list[int]:
    try:
        size = [int(v) for v in str(text).lower().split("x")]
    except ValueError:
        raise ClasslabError(f"--input takes N, HxW or DxHxW, got '{text}'") from None
    if len(size) not in (1, 2, 3) or min(size) < 1:
        raise ClasslabError(f"--input takes N, HxW or DxHxW with positive sizes, got '{text}'")
    return size * 2 if len(size) == 1 else size


def trace(input_size: list[int], layers: list[dict]) -> list[dict]:
    """Each layer with its output size, per spatial axis; stops with a message at the first impossible one."""
    size, rows = list(input_size), []
    for i, layer in enumerate(layers):
        try:
            size = [output_size(n, layer["kernel"], layer["padding"], layer["stride"]) for n in size]
        except ClasslabError as e:
            raise ClasslabError(f"layer {i + 1} ({layer['layer']}) on {'x'.join(map(str, rows[-1]['output'] if rows else input_size))}: {e}") from None
        rows.append({**layer, "output": size})
    return rows


def table(input_size: list[int], rows: list[dict]) -> str:
    lines = [f"{'layer':12} {'kernel':>6} {'stride':>6} {'padding':>7}  output",
             f"{'input':12} {'':>6} {'':>6} {'':>7}  {'x'.join(map(str, input_size))}"]
    for r in rows:
        lines.append(f"{r['layer']:12} {r['kernel']:>6} {r['stride']:>6} {r['padding']:>7}  {'x'.join(map(str, r['output']))}")
    lines.append("n_out = floor((n_in + 2p - k) / s) + 1, per axis")
    return "\n".join(lines)
