"""The image card: one image as the run sees it. The original, what the model was given after the
preprocessing contract (resized, channel-converted), the top-k classes, where the evidence is (Grad-CAM or
occlusion) and the nearest training images. One ``RunExplainer`` per run, kept by the app, so the model,
the data and the training-image search are built once."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import numpy as np

from ..runs import RunResult
from .charts import topk_svg
from .images import png_bytes

NEIGHBOURS = 5


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def overlay(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """A map in [0, 1] blended over the image in jet at 45%, as explain's grids draw it."""
    import matplotlib

    rgb = np.repeat(image, 3, -1) if image.shape[-1] == 1 else image
    jet = matplotlib.colormaps["jet"](np.clip(heat, 0, 1))[..., :3]
    return (0.55 * rgb + 0.45 * 255 * jet).clip(0, 255).astype(np.uint8)


class RunExplainer:
    """Predictions, attribution and neighbours for any image, for one run with a model (a network, the
    NumPy MLP or k-NN)."""

    def __init__(self, run_dir: Path, datasets):
        self.run_dir, self.datasets = run_dir, datasets
        self.result = RunResult.load(run_dir)
        self.ds, self.split, self.index = datasets.get(run_dir)
        self.train_rows = self.split.indices("train")
        self._model, self._space = None, None
        self._lock = threading.Lock()

    @property
    def model(self):
        """The run's model (``trained.model.run_model``), built once; for an evaluation, the evaluated run's."""
        if self._model is None:
            from ..trained.model import run_model

            self._model = run_model(self.result.run_dir, self.ds, self.train_rows)
        return self._model

    @property
    def class_names(self) -> list[str]:
        """The model's classes, in the order of its probabilities (an evaluation's data may hold fewer)."""
        return list(self.model.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.ds.item_shape)

    @property
    def input_crop(self) -> float | None:
        """How an uploaded file is fit to input_shape: as the model's training images were (decode's crop)."""
        return self.model.crop

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_proba(images))

    def model_input(self, image: np.ndarray) -> np.ndarray | None:
        """The image after the preprocessing contract's resize and channel steps (None without a torch model)."""
        if self.model.network is None or image.ndim != 3:
            return None
        import torch

        from ..inference.preprocess import to_float

        pre = self.model.network.preprocessing
        x = to_float(torch.from_numpy(np.ascontiguousarray(image[None])), pre)[0]
        return (x.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()

    @property
    def neighbours_ready(self) -> bool:
        """Whether the training images' search space is built (the first one embeds every training image: seconds
        on a photo model, so a card asks for its neighbours separately until then)."""
        return self._space is not None or self.train_rows is None or not len(self.train_rows)

    def neighbours(self, image: np.ndarray) -> list[dict]:
        with self._lock:
            return self._neighbours(image)

    def warm(self) -> None:
        """Load what a first card needs (torch, the model), ahead of the first click."""
        with self._lock:
            _ = self.model

    def card(self, image: np.ndarray, top_k: int = 5, neighbours: bool = True, original: np.ndarray | None = None) -> dict:
        """Everything the card shows for one uint8 image at the run's size and channels (``original``: the
        image before it was brought to that size, when there was one: an upload)."""
        with self._lock:
            proba = self.predict_proba(image[None])[0]
            names = self.class_names
            order = np.argsort(-proba, kind="stable")[:max(1, min(top_k, len(names)))]
            top = [(names[c], float(proba[c])) for c in order]
            card = {"top": top, "top_svg": topk_svg(top), "original": data_uri(png_bytes(image if original is None else original, 192))}
            seen = self.model_input(image)
            if seen is not None:
                card["seen"] = data_uri(png_bytes(seen, 192))
                card["seen_size"] = "x".join(map(str, seen.shape[:2]))
            card["steps"] = self.model.network.preprocessing.describe() if self.model.network is not None else []
            card["attribution"], card["method"] = self._attribution(image, int(order[0]))
            card["neighbours"] = self._neighbours(image) if neighbours else []
            return card

    def _attribution(self, image: np.ndarray, target: int) -> tuple[str | None, str]:
        from ..trained.explainers import attribute

        if image.ndim != 3:
            return None, "attribution explains 2D images"
        maps, used = attribute(self.model, image[None], np.array([target]), "auto", None)
        if maps is None:
            return None, used
        return data_uri(png_bytes(overlay(image, np.asarray(maps[0])), 192)), used.replace("`", "")

    def _neighbours(self, image: np.ndarray) -> list[dict]:
        from ..commands.explain import TrainSpace

        if self.train_rows is None or not len(self.train_rows):
            return []  # an evaluation: no training images of its own to show
        if self._space is None:
            self._space = TrainSpace(self.result, self.ds, self.train_rows)
        idx = self._space.nearest(image[None], NEIGHBOURS)[0]
        rows = [int(self._space.rows[j]) for j in idx]
        return [{"id": self.ds.ids[r], "label": self.ds.class_names[self.ds.labels[r]]} for r in rows]
