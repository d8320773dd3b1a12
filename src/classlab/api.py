"""The Python API: one function per command, each returning a ``RunResult`` (``classlab.runs``).

``options`` are the command's configuration fields (``TrainConfig``, ``TransferConfig``...),
``data_options`` are ``DataOptions`` fields (image_size, channels, seed, max_train, ...). A result with
a trained model also predicts: ``run.predict(files)``, ``run.predict_proba(array)``, ``run.evaluate()``.
"""

from __future__ import annotations

from .data.options import DataOptions
from .runs import RunResult


def _data(data, data_options: dict | None) -> DataOptions:
    return DataOptions(data=str(data), **(data_options or {}))


def train(data="digits", model: str = "mlp", *, runs_dir=None, progress: bool = True, data_options: dict | None = None,
          **options) -> RunResult:
    """Train ``model`` (a name from ``classlab models``, NumPy's scratch-mlp included) on ``data``."""
    from .commands.train import run_train
    from .training.config import TrainConfig

    cfg = TrainConfig.from_dict({"model": model, **options}).validate()
    return run_train(_data(data, data_options), cfg, runs_dir, progress=progress)


def transfer(data="digits", backbone: str = "mobilenet_v2", *, runs_dir=None, progress: bool = True,
             data_options: dict | None = None, **options) -> RunResult:
    """Transfer ``backbone`` (a torchvision name or a classlab run directory) to ``data``. ``options`` are
    TransferConfig fields (mode, image_size, dense, head_epochs, finetune_epochs, unfreeze, bn, ...)."""
    from .backbones.config import TransferConfig
    from .commands.transfer import run_transfer

    tc = TransferConfig.from_dict({"backbone": str(backbone), **options})
    return run_transfer(_data(data, data_options), tc, runs_dir, progress=progress)


def knn(data="digits", k=(1, 3, 5), metric: str = "l2", *, device: str | None = None, runs_dir=None,
        progress: bool = True, features: dict | None = None, data_options: dict | None = None) -> RunResult:
    """Exact k-NN on pixels (or, with ``features={"backbone": ...}``, on embeddings); k chosen on validation."""
    from .commands.knn import run_knn

    ks = [k] if isinstance(k, int) else list(k)
    return run_knn(_data(data, data_options), ks, metric, device, runs_dir, progress, features)


def explore(data="digits", *, runs_dir=None, data_options: dict | None = None) -> RunResult:
    from .commands.explore import explore as run_explore

    return run_explore(_data(data, data_options), runs_dir)


def check(data, *, data_dir=None, min_size: int = 16, runs_dir=None) -> RunResult:
    """The dataset doctor; ``details["findings"]`` holds everything it found."""
    from .commands.check import run_check

    return run_check(str(data), data_dir, min_size, runs_dir)


def workshop(data="digits", *, budget: float | None = None, weights: str | None = None, runs_dir=None,
             progress: bool = False, data_options: dict | None = None) -> RunResult:
    """The decks' path (explore, k-NN, scratch MLP, MLP, CNN, transfer), compared on the same test images."""
    from .commands.workshop import run_workshop

    return run_workshop(_data(data, data_options), budget, runs_dir, weights, progress)


def explain(run, *, top: int = 64, method: str = "auto", layer: str | None = None, tsne: bool = False) -> RunResult:
    """Explain a run (a RunResult or a run directory): top losses, confused pairs with a grid per confusion
    cell, Grad-CAM or occlusion maps, calibration with a fitted temperature, an embedding map."""
    from .commands.explain import explain as run_explain

    return run_explain(getattr(run, "run_dir", run), top, method, layer, tsne)


def compare(*runs, common: bool = False, runs_dir=None, images: bool = True) -> RunResult:
    """Compare runs (RunResults or run directories) with the first, on the same test images."""
    from .commands.compare import compare_runs

    return compare_runs([getattr(r, "run_dir", r) for r in runs], runs_dir, common=common, images=images)


def evaluate_run(run, data, *, data_dir=None, runs_dir=None, **options) -> RunResult:
    """Score a trained run (a RunResult or a run directory) on other labelled images, with the full report.
    ``options`` are EvaluateConfig fields: split ("auto", "test", "val", "train", "all"), drop_seen,
    max_images, coarse_labels, device, seed."""
    from .commands.evaluate import EvaluateConfig, run_evaluate
    from .errors import ClasslabError

    unknown = sorted(set(options) - set(EvaluateConfig.__dataclass_fields__))
    if unknown:
        raise ClasslabError(f"evaluate_run has no option {', '.join(unknown)}; it takes "
                            f"{', '.join(EvaluateConfig.__dataclass_fields__)}")
    return run_evaluate(getattr(run, "run_dir", run), str(data), data_dir, EvaluateConfig(**options), runs_dir)


def load_model(run, *, device: str | None = "cpu"):
    """The model of any run (a RunResult or a run directory): a network (train, transfer), k-NN on pixels
    (refitted on its training split), the NumPy MLP, or an evaluation's evaluated model. It has
    ``.predict(files_or_array, top_k)``, ``.predict_proba(uint8 images)``, ``.class_names`` and
    ``.load_images(files)``; ``.network`` is the ``TrainedNetwork`` of a network (None otherwise)."""
    from .trained.model import load_run_model

    return load_run_model(getattr(run, "run_dir", run), device)
