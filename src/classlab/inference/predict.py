"""The one batched inference loop: preprocessing + test-time augmentation + batching.

Validation in the engine, test scoring, ``TrainedNetwork.predict_proba``, export's parity check and a frozen
backbone's features all go through ``predict_batches``; they differ only in where batches come from.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import numpy as np
import torch

from ..progress import bar as progress_bar
from .preprocess import Preprocessing, to_input
from .tta import averaged_log_probs, forward_tta, tta_mode

# Pixels of one inference batch on the CPU: 16 images at 224 px. A 256-image batch of 224 px photos held
# gigabytes of MobileNetV2 activations (a 1.2 GB tensor per expansion layer) for no gain in speed.
INFERENCE_PIXELS = 16 * 224 * 224


def inference_batch(pre: Preprocessing, device, batch_size: int = 256) -> int:
    """``batch_size``, smaller on the CPU for large inputs so one batch's activations stay bounded."""
    if torch.device(device).type != "cpu":
        return batch_size
    return max(1, min(batch_size, max(8, INFERENCE_PIXELS // math.prod(pre.model_size))))


def array_batches(images, batch_size: int, device: torch.device) -> Iterable[torch.Tensor]:
    """uint8 batches of a NumPy array or a lazily decoded image set, moved to ``device`` one at a time."""
    for start in range(0, len(images), batch_size):
        yield torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).to(device)


@torch.no_grad()
def predict_batches(model, batches: Iterable, pre: Preprocessing, *, tta: str | bool = "none", bf16: bool = False,
                    channels_last: bool = False, view: Callable | None = None, out_device=None,
                    progress: bool = False, total: int | None = None, desc: str = "predicting") -> torch.Tensor:
    """Outputs (logits, TTA-averaged log-probabilities, or features) for every row the batches yield, in order.

    A batch is a uint8 image tensor (or float feature rows), or a pair (rows, views) where ``views`` (V, B, ...)
    holds precomputed augmented versions (e.g. cached mirror-image features): under TTA their probabilities
    are averaged with the rows' own, in place of image transforms. ``view`` transforms every normalised batch
    first (``tta.mirror`` computes mirror images' features). ``out_device`` collects results there
    (default: where the model ran)."""
    model.eval()
    averaging = tta_mode(tta) != "none"
    out = []
    with progress_bar(total=total, desc=desc, unit="image", enabled=progress) as bar:
        for batch in batches:
            rows, views = batch if isinstance(batch, tuple) else (batch, None)
            x = to_input(rows, pre, channels_last)
            if view is not None:
                x = view(x)
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
                if views is not None and averaging:
                    alternatives = [to_input(v, pre, channels_last) for v in views]
                    y = averaged_log_probs([model(v) for v in [x, *alternatives]])
                else:
                    y = forward_tta(model, x, tta)
            y = y.float().flatten(1)
            out.append(y if out_device is None else y.to(out_device))
            bar.update(len(rows))
    return torch.cat(out) if out else torch.empty(0)


def predict_proba_array(model, images: np.ndarray, pre: Preprocessing, device, tta: str = "none",
                        batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """Class probabilities of uint8 (N, [D,] H, W, C) images under the contract, on the CPU."""
    batch_size = inference_batch(pre, device, batch_size)
    logits = predict_batches(model, array_batches(images, batch_size, device), pre, tta=tta, out_device="cpu",
                             progress=progress, total=len(images))
    return logits.softmax(1).numpy()


def last_linear(model) -> "torch.nn.Linear | None":
    """The model's final nn.Linear (its classifier): what goes into it is the penultimate embedding."""
    found = None
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            found = module
    return found


@torch.no_grad()
def predict_with_embeddings(model, batches, pre: Preprocessing, **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(outputs as predict_batches gives them without TTA, the penultimate embeddings of every row), in one pass:
    a hook on the classifier keeps what goes into it. Embeddings are None for a model without nn.Linear."""
    layer, kept = last_linear(model), []
    if layer is None:
        return predict_batches(model, batches, pre, **kwargs), None
    hook = layer.register_forward_pre_hook(lambda _m, args: kept.append(args[0].detach().float().flatten(1).cpu()))
    try:
        out = predict_batches(model, batches, pre, **{**kwargs, "tta": "none"})
    finally:
        hook.remove()
    return out, torch.cat(kept) if kept else torch.empty(0)
