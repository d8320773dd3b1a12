"""A Keras-style model summary: layer, output shape, parameters, trainable; with totals."""

from __future__ import annotations

import torch
from torch import nn


def summary_rows(model: nn.Module, input_shape: tuple[int, ...]) -> list[dict]:
    """One row per leaf module in call order, from a forward pass on the model's own device
    (build the model on the meta device for an instant summary of any size)."""
    rows, hooks = [], []
    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]

    def hook(name):
        def record(module, inputs, output):
            shape = list(output.shape) if isinstance(output, torch.Tensor) else "?"
            params = sum(p.numel() for p in module.parameters(recurse=False))
            trainable = sum(p.numel() for p in module.parameters(recurse=False) if p.requires_grad)
            rows.append({"layer": name or type(module).__name__, "type": type(module).__name__,
                         "output_shape": [-1, *shape[1:]] if shape != "?" else shape,
                         "params": params, "trainable": trainable})
        return record
    for name, module in leaves:
        hooks.append(module.register_forward_hook(hook(name)))
    device = next(model.parameters()).device
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return rows


def summary_table(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[str, dict]:
    rows = summary_rows(model, input_shape)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    width = max([28, *(len(f"{r['layer']} ({r['type']})") + 2 for r in rows)])
    lines = [f"{'Layer (type)':<{width}}{'Output Shape':<24}{'Param #':>12}  Trainable", "=" * (width + 47)]
    for r in rows:
        name = f"{r['layer']} ({r['type']})"
        shape = "(" + ", ".join("None" if d == -1 else str(d) for d in r["output_shape"]) + ")"
        flag = "-" if r["params"] == 0 else "yes" if r["trainable"] == r["params"] else "partly" if r["trainable"] else "no"
        lines.append(f"{name:<{width}}{shape:<24}{r['params']:>12,}  {flag}")
    lines += ["=" * (width + 47), f"Total params: {total:,}", f"Trainable params: {trainable:,}",
              f"Non-trainable params: {total - trainable:,}"]
    return "\n".join(lines) + "\n", {"layers": rows, "total_params": total, "trainable_params": trainable,
                                     "input_shape": list(input_shape)}
