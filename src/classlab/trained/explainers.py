"""Attribution maps for any run's model (``run_model``): Grad-CAM where it is a convolutional network,
occlusion otherwise (or when asked). Occlusion only needs the model's ``predict_proba`` on uint8 images, which
every kind of run has: a torch network, the NumPy MLP and k-NN on pixels."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import ClasslabError
from .model import RunModel

METHODS = ("auto", "gradcam", "occlusion")


def attribute(model: RunModel, images: np.ndarray, targets: np.ndarray, method: str = "auto",
              layer: str | None = None) -> tuple[np.ndarray | None, str]:
    """((n, H, W) maps in [0, 1] or None, what was done or why not) for the model's class indices ``targets``."""
    if method not in METHODS:
        raise ClasslabError(f"unknown attribution method '{method}'; choose one of {', '.join(METHODS)}")
    run = model.network
    if run is not None:
        import torch

        from ..inference.preprocess import to_input
        from .attribution import conv_layers, grad_cam, target_layer

        if method != "occlusion" and images.ndim == 4 and (conv_layers(run.model) or layer):
            name, module = target_layer(run.model, layer)
            x = to_input(torch.from_numpy(np.ascontiguousarray(images)), run.preprocessing)
            maps = grad_cam(run.model, x, torch.from_numpy(np.asarray(targets, np.int64)), module, images.shape[1:3])
            return maps, f"Grad-CAM at layer `{name}`"
        if method == "gradcam":
            target_layer(run.model, layer)  # raises the one-line reason
    elif method == "gradcam":
        raise ClasslabError(f"Grad-CAM needs a convolutional network; {model.run_dir.name} holds a {model.kind} "
                            "model: use --method occlusion")
    return _occlude(model.predict_proba, images, targets)


def _occlude(predict: Callable, images: np.ndarray, targets: np.ndarray):
    from .attribution import occlusion

    if images.ndim != 4:
        return None, "Occlusion was not computed: it explains 2D images, not volumes."
    return occlusion(predict, images, np.asarray(targets)), "Occlusion (the probability lost under a grey patch)"
