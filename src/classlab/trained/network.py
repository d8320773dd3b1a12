"""A trained run as an object: load it, predict on any images, re-evaluate it.

``TrainedNetwork.load(run_dir)`` rebuilds the model from ``best.pt`` (``weights_only=True``) and applies
the run's saved preprocessing (resize, channel conversion, normalisation) to whatever it is given:
image files, folders of them, or uint8 arrays.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load_checkpoint
from ..data.images import IMAGE_EXTENSIONS, decode
from ..data.trees import is_hidden
from ..errors import ClasslabError, warn
from ..fileio import free_path, write_csv
from ..inference.predict import predict_proba_array
from ..inference.preprocess import Preprocessing
from ..inference.tta import tta_mode
from ..models import create_model
from ..safe_files import UnreadableFile, check_path, read_file


def _no_network(run_dir: Path) -> str:
    """Why a directory has no network checkpoint, and what to give instead."""
    from ..safe_files import read_json

    if not run_dir.is_dir():
        return f"{run_dir} is not a run directory (see 'classlab runs' for the runs there are)"
    config = read_json(run_dir / "config.json")  # a FIFO, a huge or a damaged file: None, never a hang
    command = config.get("command") if isinstance(config, dict) else None
    if command is None:
        return f"{run_dir} is not a classlab run directory (no best.pt, no readable config.json)"
    if command in ("train", "transfer"):
        return (f"{run_dir} has no best.pt: its training stopped before an epoch ended; "
                f"'classlab {command} --resume {run_dir}' continues it")
    return (f"{run_dir} is a {command} run, which holds no network (best.pt); this needs a train or transfer run "
            "('classlab predict' and 'classlab evaluate' take any run with a model)")


def image_files(inputs) -> list[Path]:
    """Image files from a mix of files and folders (folders recursively, hidden entries skipped)."""
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not is_hidden(d))
                files += [Path(root) / n for n in sorted(names)
                          if not is_hidden(n) and os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS]
        elif path.is_file():
            files.append(path)
        elif path.exists() or path.is_symlink():  # a FIFO, a device, a dangling or looping link
            try:
                check_path(path)
            except UnreadableFile as e:
                raise ClasslabError(f"{e}; give image files or folders of images") from None
        else:
            raise ClasslabError(f"{path} does not exist; give image files or folders of images")
    if not files:
        raise ClasslabError("no image files found in the given inputs")
    return files


@dataclass
class TrainedNetwork:
    run_dir: Path
    model: torch.nn.Module
    class_names: list[str]
    preprocessing: Preprocessing
    device: torch.device
    tta: str = "none"  # the run's test-time augmentation (--tta): none, flip or flip-translate
    # from calibration.json (classlab explain fits it on validation): probabilities are softmax(log p / T)
    temperature: float = 1.0

    @classmethod
    def load(cls, run_dir: str | Path, device: str | None = "cpu") -> "TrainedNetwork":
        from ..device import pick_device

        run_dir = Path(run_dir)
        path = run_dir / "best.pt"
        if not os.path.lexists(path):
            raise ClasslabError(_no_network(run_dir))
        ckpt = load_checkpoint(path)
        try:
            info, class_names = ckpt["model_info"], list(ckpt["class_names"])
            pre = Preprocessing.from_dict(ckpt["preprocessing"], str(path))
            tta = tta_mode((ckpt.get("config") or {}).get("tta"))
        except (KeyError, TypeError, AttributeError) as e:
            raise ClasslabError(f"{path} is not a classlab model checkpoint (missing {e})") from None
        dev = pick_device(device)
        with torch.device("meta"):  # structure only; the weights come from the checkpoint
            model = create_model(info["name"], info["num_classes"], info["in_channels"], tuple(info["image_size"]),
                                 **info["options"])
        try:
            model.load_state_dict(ckpt["model"], assign=True)
        except (RuntimeError, KeyError) as e:
            raise ClasslabError(f"the weights in {path} do not fit its model ({str(e).splitlines()[0][:200]})") from None
        return cls(run_dir, model.to(dev).eval(), class_names, pre, dev, tta, read_temperature(run_dir))

    def predict_proba(self, images: np.ndarray, batch_size: int = 256, progress: bool = False) -> np.ndarray:
        """uint8 (N, H, W, C) images already at the run's size and channels (an array, or a dataset's lazily
        decoded images) -> class probabilities."""
        expected = (*self.preprocessing.image_size, self.preprocessing.channels)
        if images.dtype != np.uint8 or tuple(images.shape[1:]) != expected:
            raise ClasslabError(f"expected uint8 images of shape (N, {', '.join(map(str, expected))}), got "
                                f"{images.dtype} {images.shape}; pass files to predict() to have them converted")
        proba = predict_proba_array(self.model, images, self.preprocessing, self.device, self.tta, batch_size, progress)
        if self.temperature != 1.0:
            from ..evaluation.calibration import apply_temperature

            proba = apply_temperature(proba.astype(np.float64), self.temperature).astype(np.float32)
        return proba

    def load_images(self, files: list[Path]) -> tuple[np.ndarray, list[Path]]:
        """Decode files with the run's size and channels; unreadable ones are skipped with a warning."""
        pre = self.preprocessing
        return decode_files(files, tuple(pre.image_size), pre.channels, pre.crop)

    def predict(self, inputs, top_k: int = 3) -> list[dict]:
        """Top-k labels with probabilities for image files / folders (or a uint8 array)."""
        return predict_top_k(self.predict_proba, self.load_images, self.class_names, inputs, top_k)



def decode_files(files: list[Path], size: tuple[int, ...], channels: int, crop: float | None = None
                 ) -> tuple[np.ndarray, list[Path]]:
    """uint8 images of the files at a model's size and channels, fit as the model's training images were
    (``crop``: data.images.decode); unreadable ones are skipped with a warning."""
    arrays, kept = [], []
    if len(size) != 2:
        raise ClasslabError("predicting on image files needs a 2D model; pass volumes as arrays")
    for f in files:
        try:
            arrays.append(decode(read_file(f), channels, tuple(size), crop))
            kept.append(f)
        except (ValueError, OSError) as e:  # safe_files.UnreadableFile is a ValueError
            warn(f"skipped {f}: {e}")
    if not arrays:
        raise ClasslabError("none of the given files could be read as an image")
    return np.stack(arrays), kept


def predict_top_k(predict_proba, load_images, class_names: list[str], inputs, top_k: int = 3) -> list[dict]:
    """[{"input", "top": [(label, probability), ...]}] for image files / folders (or a uint8 array), of any
    model given as its ``predict_proba`` and ``load_images``."""
    if isinstance(inputs, np.ndarray):
        names, proba = [str(i) for i in range(len(inputs))], predict_proba(inputs)
    else:
        images, files = load_images(image_files([inputs] if isinstance(inputs, (str, Path)) else inputs))
        names, proba = [str(f) for f in files], predict_proba(images)
    k = max(1, min(top_k, len(class_names)))
    order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    return [{"input": n, "top": [(class_names[c], float(p[c])) for c in o]} for n, p, o in zip(names, proba, order)]


def read_temperature(run_dir: Path) -> float:
    """The run's fitted temperature (calibration.json), or 1; a damaged file is a one-line error."""
    import json
    import math

    path = run_dir / "calibration.json"
    if not path.exists():
        return 1.0
    try:
        t = json.loads(read_file(path, 1 << 20).decode("utf-8"))["temperature"]
    except (ValueError, KeyError, TypeError) as e:
        raise ClasslabError(f"{path} is damaged ({e}); delete it or run 'classlab explain {run_dir}' again") from None
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
        raise ClasslabError(f"{path} holds temperature {t!r}; it must be a positive number")
    return float(t)


def write_predictions_csv(results: list[dict], path: Path) -> Path:
    k = len(results[0]["top"])
    header = ["input"] + [f"{kind}{t}" for t in range(1, k + 1) for kind in ("label", "prob")]
    rows = ([r["input"], *[v for label, p in r["top"] for v in (label, f"{p:.6f}")]] for r in results)
    return write_csv(path, header, rows)


def default_predictions_path(run_dir: Path) -> Path:
    """RUN/predict-<time>.csv, never an existing file (two calls in the same second get different names)."""
    return free_path(run_dir, f"predict-{datetime.now().strftime('%Y%m%d-%H%M%S')}", ".csv")


def __getattr__(name):
    if name == "TrainedRun":  # the 0.2 name, kept for one release
        import warnings

        warnings.warn("classlab.TrainedRun is now classlab.TrainedNetwork (a loaded network); the old name goes away "
                      "in the next release", DeprecationWarning, stacklevel=2)
        return TrainedNetwork
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
