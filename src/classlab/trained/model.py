"""The model behind a run's predictions, whatever kind it is: a torch network (``TrainedNetwork``), the decks'
NumPy MLP (``scratch.npz``) or k-NN on pixels (refitted on the run's own training split with its chosen k and
metric). One mechanism: ``RunResult.predict`` / ``predict_proba`` / ``evaluate``, ``classlab.load_model``, the
CLI's predict, ``classlab evaluate``, explain and the workbench all load a run's model here, reading the run
folder itself (config.json, metrics.json, best.pt), so this layer sits below ``classlab.runs``.

An evaluation's model lives in the run it evaluated, with that run's classes and data: every page, card and
explanation of an evaluation asks this module for the model instead of reading it from the evaluation's own
data (whose classes may be a subset, in another order)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ClasslabError
from ..safe_files import read_json
from .network import TrainedNetwork, decode_files, predict_top_k

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
    network: TrainedNetwork | None  # a network's model and preprocessing contract (Grad-CAM, export), else None
    description: str
    crop: float | None = None  # how files are fit to image_shape at decode (data.images.decode)

    def load_images(self, files: list[Path]) -> tuple[np.ndarray, list[Path]]:
        """The files decoded at the model's size and channels (unreadable ones skipped with a warning)."""
        if self.network is not None:
            return self.network.load_images(files)
        return decode_files(files, self.image_shape, self.channels, self.crop)

    def predict(self, inputs, top_k: int = 3) -> list[dict]:
        """Top-k labels with probabilities for image files / folders (or uint8 images at the model's size)."""
        return predict_top_k(self.predict_proba, self.load_images, self.class_names, inputs, top_k)

    def evaluate(self):
        """The run's own test split scored again (same data, same split manifest), as an ``Evaluation``."""
        from ..evaluation import evaluate

        ds, split = _own_data(self.run_dir)
        test = split.indices("test")
        proba = self.predict_proba(np.asarray(ds.images[test]))
        return evaluate(ds.labels[test], proba.argmax(1), proba, ds.class_names)


def load_run_model(run_dir: str | Path, device: str | None = "cpu") -> RunModel:
    """The model of the run at ``run_dir``: a folder with best.pt alone is enough for a network."""
    run_dir = Path(run_dir)
    if not os.path.lexists(run_dir / "best.pt") and not (run_dir / "config.json").is_file():
        raise ClasslabError(f"{run_dir} is not a run with a model (no best.pt, no config.json); give a run "
                            "directory of train, transfer, knn or the NumPy MLP")
    return run_model(run_dir, device=device)


def model_source(run_dir: str | Path) -> Path:
    """The run whose model made ``run_dir``'s predictions: the run itself, or for an evaluation the run it
    evaluated (when that is still there)."""
    run_dir = Path(run_dir)
    config = _json(run_dir / "config.json")
    if config.get("command") == "evaluate":
        source = (config.get("options") or {}).get("run")
        if isinstance(source, str) and (Path(source) / "config.json").is_file():
            return Path(source)
    return run_dir


def _json(path: Path) -> dict:
    data = read_json(path)  # None when missing, unreadable (a FIFO, huge) or malformed
    return data if isinstance(data, dict) else {}


def _network(network: TrainedNetwork, source: Path, what: str) -> RunModel:
    pre = network.preprocessing
    return RunModel(source, "network", list(network.class_names), tuple(pre.image_size), pre.channels,
                    network.predict_proba, network, f"`{source}`: a {what}", pre.crop)


def run_model(run_dir: str | Path, ds=None, train_rows: np.ndarray | None = None, device: str | None = "cpu"
              ) -> RunModel:
    """The model of the run at ``run_dir`` (``ds`` and ``train_rows``: the run's own data and training rows
    when the caller has them loaded; an evaluation's model is always read with the evaluated run's data).
    Raises ClasslabError, in words, when the run holds no model that can score images."""
    source = model_source(run_dir)
    if source != Path(run_dir):  # an evaluation: the model, its classes and its data are the evaluated run's
        ds, train_rows = None, None
    command = _json(source / "config.json").get("command")
    if os.path.lexists(source / "best.pt"):  # a FIFO or a link there is named by the checkpoint loader
        return _network(TrainedNetwork.load(source, device), source, f"network ({command})")
    if (source / "scratch.npz").is_file():
        ds = ds if ds is not None else _own_data(source)[0]
        return RunModel(source, "numpy-mlp", list(ds.class_names), tuple(ds.item_shape[:-1]), ds.channels,
                        _batched(scratch_predictor(source), ds.num_classes), None,
                        f"`{source}`: the NumPy MLP (scratch.npz)", ds.crop)
    if command == "knn" and (source / "split.csv").is_file():
        if ds is None or train_rows is None:
            ds, split = _own_data(source)
            train_rows = split.indices("train")
        metrics = _json(source / "metrics.json")
        predict = knn_predictor(metrics, ds, train_rows)
        if predict is None:
            raise ClasslabError(f"{source.name} searched a backbone's embeddings, so it cannot score images here; "
                                "run 'classlab knn DATA --features BACKBONE' on the new data instead")
        chosen = metrics.get("knn") or {}
        return RunModel(source, "knn", list(ds.class_names), tuple(ds.item_shape[:-1]), ds.channels,
                        _batched(predict, ds.num_classes), None,
                        f"`{source}`: k-NN on pixels (k={chosen.get('k', 1)}, {chosen.get('metric', 'l2')}), "
                        f"searching its {len(train_rows)} training images", ds.crop)
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


def knn_predictor(metrics: dict, ds, train: np.ndarray) -> Callable[[np.ndarray], np.ndarray] | None:
    """k-NN refitted on the run's own training split, with the k and metric its ``metrics`` (metrics.json)
    chose (pixel runs only)."""
    from ..models.knn import KNNClassifier

    selection = metrics.get("knn") or {}
    if "pixels" not in str(metrics.get("space", "pixels")):
        return None
    model = KNNClassifier(int(selection.get("k", 1)), selection.get("metric", "l2"), progress=False)
    model.fit(ds.flat(train), ds.labels[train], num_classes=ds.num_classes)
    return lambda images: model.predict_proba(images.reshape(len(images), -1))
