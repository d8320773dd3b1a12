"""The model behind a run's predictions, whatever kind it is: a torch network (``TrainedRun``), the decks'
NumPy MLP (``scratch.npz``) or k-NN on pixels (refitted on the run's own training split with its chosen k and
metric). An evaluation's model lives in the run it evaluated, with that run's classes and data: every page,
card and explanation of an evaluation asks this module for the model instead of reading it from the
evaluation's own data (whose classes may be a subset, in another order)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ClasslabError
from ..runs import RunResult

PIXEL_BATCH = 1024  # images per call of a pixel model (k-NN's distance table stays bounded)


@dataclass(frozen=True)
class RunModel:
    """What a run's model is and does: its classes (in the order of its probability columns), the size
    and channels its uint8 input images are decoded at, and class probabilities of such images."""

    run_dir: Path  # the run that holds the model (for an evaluation, the evaluated run)
    kind: str  # "network", "numpy-mlp" or "knn"
    class_names: list[str]
    image_shape: tuple[int, ...]
    channels: int
    predict_proba: Callable[[np.ndarray], np.ndarray]
    trained: object | None  # the TrainedRun of a network (Grad-CAM, the preprocessing contract), else None
    description: str

    def load_images(self, files: list[Path]) -> tuple[np.ndarray, list[Path]]:
        """The files decoded at the model's size and channels (unreadable ones skipped with a warning)."""
        if self.trained is not None:
            return self.trained.load_images(files)
        from ..inference.trained_run import decode_files

        return decode_files(files, self.image_shape, self.channels)

    def predict(self, inputs, top_k: int = 3) -> list[dict]:
        """Top-k labels with probabilities for image files / folders (or uint8 images at the model's size)."""
        from ..inference.trained_run import predict_top_k

        return predict_top_k(self.predict_proba, self.load_images, self.class_names, inputs, top_k)


def load_run_model(run_dir: str | Path, device: str | None = "cpu") -> RunModel:
    """The model of the run at ``run_dir``: a folder with best.pt alone is enough for a network."""
    from ..inference.trained_run import TrainedRun

    run_dir = Path(run_dir)
    if os.path.lexists(run_dir / "best.pt"):  # a FIFO or a link there is named by the checkpoint loader
        return _network(TrainedRun.load(run_dir, device), run_dir, "network")
    if not (run_dir / "config.json").is_file():
        raise ClasslabError(f"{run_dir} is not a run with a model (no best.pt, no config.json); give a run "
                            "directory of train, transfer, knn or the NumPy MLP")
    return run_model(RunResult.load(run_dir), device=device)


def _network(trained, source: Path, what: str) -> RunModel:
    pre = trained.preprocessing
    return RunModel(source, "network", list(trained.class_names), tuple(pre.image_size), pre.channels,
                    trained.predict_proba, trained, f"`{source}`: a {what}")


def run_model(result: RunResult, ds=None, train_rows: np.ndarray | None = None, device: str | None = "cpu"
              ) -> RunModel:
    """The model of ``result`` (``ds`` and ``train_rows``: the run's own data and training rows when the
    caller has them loaded; an evaluation's model is always read with the evaluated run's data). Raises
    ClasslabError, in words, when the run holds no model that can score images."""
    source = result.model_run
    if source != result.run_dir:  # an evaluation: the model, its classes and its data are the evaluated run's
        result, ds, train_rows = RunResult.load(source), None, None
    if result.model_dir is not None:
        return _network(result.trained(device), source, f"network ({result.command})")
    if (source / "scratch.npz").is_file():
        ds = ds if ds is not None else _own_data(source)[0]
        return RunModel(source, "numpy-mlp", list(ds.class_names), tuple(ds.item_shape[:-1]), ds.channels,
                        _batched(scratch_predictor(source), ds.num_classes), None, f"`{source}`: the NumPy MLP (scratch.npz)")
    if result.command == "knn" and (source / "split.csv").is_file():
        if ds is None or train_rows is None:
            ds, split = _own_data(source)
            train_rows = split.indices("train")
        predict = knn_predictor(result, ds, train_rows)
        if predict is None:
            raise ClasslabError(f"{source.name} searched a backbone's embeddings, so it cannot score images here; "
                                "run 'classlab knn DATA --features BACKBONE' on the new data instead")
        chosen = result.metrics.get("knn") or {}
        return RunModel(source, "knn", list(ds.class_names), tuple(ds.item_shape[:-1]), ds.channels,
                        _batched(predict, ds.num_classes), None,
                        f"`{source}`: k-NN on pixels (k={chosen.get('k', 1)}, {chosen.get('metric', 'l2')}), "
                        f"searching its {len(train_rows)} training images")
    raise ClasslabError(f"{source} holds no model to score images with; use a run of train, transfer, knn or "
                        "the NumPy MLP")


def _own_data(run_dir: Path):
    """The run's data and split, as it trained (k-NN searches its training images; the NumPy MLP's classes)."""
    from ..data.options import load_and_split, saved_options

    try:
        return load_and_split(saved_options(run_dir))
    except ClasslabError as e:
        raise ClasslabError(f"the model of {run_dir.name} needs the data it trained on, which cannot be read now "
                            f"({e})") from None


def _batched(predict: Callable[[np.ndarray], np.ndarray], num_classes: int) -> Callable:
    def batched(images) -> np.ndarray:
        parts = [predict(np.asarray(images[i:i + PIXEL_BATCH])) for i in range(0, len(images), PIXEL_BATCH)]
        return np.concatenate(parts) if parts else np.zeros((0, num_classes), np.float32)
    return batched


def scratch_predictor(folder: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The NumPy MLP saved in scratch.npz, with its standardisation."""
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


def knn_predictor(result: RunResult, ds, train: np.ndarray) -> Callable[[np.ndarray], np.ndarray] | None:
    """k-NN refitted on the run's own training split, with its chosen k and metric (pixel runs only)."""
    from ..knn import KNNClassifier

    selection = result.metrics.get("knn") or {}
    if "pixels" not in str(result.metrics.get("space", "pixels")):
        return None
    model = KNNClassifier(int(selection.get("k", 1)), selection.get("metric", "l2"), progress=False)
    model.fit(ds.flat(train), ds.labels[train], num_classes=ds.num_classes)
    return lambda images: model.predict_proba(images.reshape(len(images), -1))
