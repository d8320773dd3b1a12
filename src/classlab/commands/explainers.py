"""Attribution maps for any run: Grad-CAM where the model is a convolutional network, occlusion otherwise
(or when asked). Occlusion only needs the run's ``predict_proba`` on uint8 images, which this module builds
for every kind of run: a torch model (``TrainedRun``), the NumPy MLP (``scratch.npz``) and k-NN (refitted
on the run's own training split)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import ClasslabError
from ..runs import RunResult

METHODS = ("auto", "gradcam", "occlusion")


def attribute(result: RunResult, ds, images: np.ndarray, targets: np.ndarray, method: str = "auto",
              layer: str | None = None, train_rows: np.ndarray | None = None) -> tuple[np.ndarray | None, str]:
    """((n, H, W) maps in [0, 1] or None, what was done or why not). The model is ``result.trained()`` (loaded
    once per RunResult); ``train_rows`` are the run's training images (k-NN runs refit on them)."""
    if method not in METHODS:
        raise ClasslabError(f"unknown attribution method '{method}'; choose one of {', '.join(METHODS)}")
    folder = result.run_dir
    if result.model_dir is not None:
        import torch

        from ..inference.attribution import conv_layers, grad_cam, target_layer
        from ..inference.preprocess import to_input

        run = result.trained()
        if method != "occlusion" and images.ndim == 4 and (conv_layers(run.model) or layer):
            name, module = target_layer(run.model, layer)
            x = to_input(torch.from_numpy(np.ascontiguousarray(images)), run.preprocessing)
            maps = grad_cam(run.model, x, torch.from_numpy(np.asarray(targets, np.int64)), module, images.shape[1:3])
            return maps, f"Grad-CAM at layer `{name}`"
        if method == "gradcam":
            target_layer(run.model, layer)  # raises the one-line reason
        return _occlude(run.predict_proba, images, targets)
    if method == "gradcam":
        raise ClasslabError(f"Grad-CAM needs a convolutional network; {folder.name} is a '{result.command}' run "
                            "without one: use --method occlusion")
    if result.command == "evaluate":  # the evaluated k-NN or NumPy MLP lives in another run, with its own data
        return None, "Attribution was not computed: explain the evaluated run for its model's attribution maps."
    predict = scratch_predictor(folder) if (folder / "scratch.npz").is_file() else knn_predictor(result, ds, train_rows)
    if predict is None:
        return None, "Occlusion was not computed: this k-NN run searched a backbone's embeddings, not pixels."
    return _occlude(predict, images, targets)


def _occlude(predict: Callable, images: np.ndarray, targets: np.ndarray):
    from ..inference.attribution import occlusion

    if images.ndim != 4:
        return None, "Occlusion was not computed: it explains 2D images, not volumes."
    return occlusion(predict, images, np.asarray(targets)), "Occlusion (the probability lost under a grey patch)"


def scratch_predictor(folder) -> Callable[[np.ndarray], np.ndarray]:
    """The NumPy MLP saved in scratch.npz, with its standardisation."""
    import json

    from ..scratch.mlp import ScratchMLP

    with np.load(folder / "scratch.npz", allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        params = [z[f"param{i}"] for i in range(sum(1 for k in z.files if k.startswith("param")))]
        mean, std = z["mean"], z["std"]
    model = ScratchMLP(meta["hidden"], meta["activation"])
    model.params = params

    def predict(images: np.ndarray) -> np.ndarray:
        x = (images.astype(np.float32) / 255 - mean) / std
        return model.predict_proba(x.reshape(len(images), -1))
    return predict


def knn_predictor(result: RunResult, ds, train: np.ndarray | None = None) -> Callable[[np.ndarray], np.ndarray] | None:
    """k-NN refitted on the run's own training split, with its chosen k and metric (pixel runs only)."""
    from ..data.options import load_and_split, saved_options
    from ..knn import KNNClassifier

    selection = result.metrics.get("knn") or {}
    if "pixels" not in str(result.metrics.get("space", "pixels")):
        return None
    if train is None:
        train = load_and_split(saved_options(result.run_dir))[1].indices("train")
    model = KNNClassifier(int(selection.get("k", 1)), selection.get("metric", "l2"), progress=False)
    model.fit(ds.flat(train), ds.labels[train], num_classes=ds.num_classes)
    return lambda images: model.predict_proba(images.reshape(len(images), -1))
