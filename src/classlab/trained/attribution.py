"""Why did the model say that? Grad-CAM for convolutional networks, occlusion for any model.

Grad-CAM (Selvaraju et al. 2017): the target layer's activations A (channels x h x w) weighted by the mean
gradient of the class score over each channel, summed over channels, ReLU. The stored activation is a
clone: an in-place ReLU right after the layer would otherwise overwrite it before the backward pass.
Occlusion (Zeiler and Fergus 2014) needs only predictions: slide a grey patch over the image and record
how much the probability of the class drops; it explains k-NN and the NumPy MLP as well as networks.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ClasslabError


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def target_layer(model: nn.Module, name: str | None = None) -> tuple[str, nn.Module]:
    """The last 2D convolution (the most semantic feature maps that still have a layout), or ``name``."""
    convs = conv_layers(model)
    if name is not None:
        found = dict(model.named_modules()).get(name)
        if found is None:
            raise ClasslabError(f"the model has no layer '{name}'; its convolutions: "
                                f"{', '.join(n for n, _ in convs[-5:]) or 'none'}")
        return name, found
    if not convs:
        raise ClasslabError("Grad-CAM needs a convolutional model and this one has no 2D convolution; "
                            "occlusion explains any model (explain --method occlusion)")
    return convs[-1]


def grad_cam_raw(model: nn.Module, x: torch.Tensor, target: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """(B, h, w) Grad-CAM at the layer's resolution, not normalised (what captum's LayerGradCam gives)."""
    kept = {}

    def forward_hook(_module, _inputs, output):
        kept["activation"] = output.clone()  # an in-place op after the layer must not change what we use
        output.register_hook(lambda grad: kept.__setitem__("gradient", grad))
    hook = layer.register_forward_hook(forward_hook)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)  # gradients must flow even where every weight is frozen
            scores = model(x)
            model.zero_grad(set_to_none=True)
            scores.gather(1, target.view(-1, 1)).sum().backward()
    finally:
        hook.remove()
        model.train(was_training)
    weights = kept["gradient"].mean(dim=(2, 3), keepdim=True)
    return F.relu((weights * kept["activation"]).sum(1)).detach()


def grad_cam(model: nn.Module, x: torch.Tensor, target: torch.Tensor, layer: nn.Module,
             size: tuple[int, int]) -> np.ndarray:
    """(B, H, W) maps in [0, 1] at ``size`` (the original image's), each scaled by its own maximum."""
    cam = grad_cam_raw(model, x, target, layer)[:, None]
    cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(1).values.clamp_min(1e-12).view(-1, 1, 1)
    return (cam / peak).cpu().numpy()


def occlusion(predict_proba: Callable[[np.ndarray], np.ndarray], images: np.ndarray, target: np.ndarray,
              patch: int | None = None, stride: int | None = None, batch: int = 512) -> np.ndarray:
    """(B, H, W) in [0, 1]: for each pixel, the mean drop of the target class's probability over the grey
    patches covering it (negative drops count as 0), scaled per image by its largest drop."""
    b, h, w = images.shape[:3]
    patch = patch or max(2, min(h, w) // 6)
    stride = stride or max(1, patch // 2)
    tops = list(range(0, max(h - patch, 0) + 1, stride))
    lefts = list(range(0, max(w - patch, 0) + 1, stride))
    base = predict_proba(images)[np.arange(b), target]
    heat = np.zeros((b, h, w))
    cover = np.zeros((h, w))
    for y in tops:
        for x in lefts:
            cover[y : y + patch, x : x + patch] += 1
    variants = [(y, x) for y in tops for x in lefts]
    fill = images.reshape(b, -1, images.shape[-1]).mean(1).round().astype(np.uint8)  # each image's mean colour
    for start in range(0, len(variants), max(1, batch // b)):
        chunk = variants[start : start + max(1, batch // b)]
        occluded = np.repeat(images[None], len(chunk), 0)
        for j, (y, x) in enumerate(chunk):
            occluded[j, :, y : y + patch, x : x + patch] = fill[:, None, None, :]
        proba = predict_proba(occluded.reshape(-1, *images.shape[1:])).reshape(len(chunk), b, -1)
        drops = np.clip(base[None] - proba[:, np.arange(b), target], 0, None)
        for j, (y, x) in enumerate(chunk):
            heat[:, y : y + patch, x : x + patch] += drops[j][:, None, None]
    heat /= np.maximum(cover, 1)[None]
    return heat / np.maximum(heat.reshape(b, -1).max(1), 1e-12)[:, None, None]
