"""Run directories: ``runs/<date>-<time>-<command>-<data>/`` holding everything a run produced. ``RunWriter``
is a run folder being written (by a command); ``RunResult`` is a finished run read back (what every command
returns, and what any run directory reads as); the model a run holds, loaded, is ``classlab.trained.RunModel``.
Each names its folder ``run_dir``. outputs.py writes what every scored run leaves behind; tracking.py logs a
run to MLflow."""

from __future__ import annotations

import os
import platform
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import ClasslabError
from ..fileio import atomic_write_text, numbered_paths, write_csv, write_json
from ..safe_files import read_json


def default_runs_dir() -> Path:
    return Path(os.environ.get("CLASSLAB_RUNS", "runs"))


def versions() -> dict[str, str]:
    """Installed versions, read from package metadata (importing torchvision just to ask costs seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    out = {"classlab": __version__, "python": sys.version.split()[0], "platform": platform.platform()}
    for package in ("torch", "torchvision", "numpy", "scikit-learn", "pillow", "matplotlib"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "not installed"
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(str(text)).stem if os.sep in str(text) else str(text)).strip("-")[:40] or "data"


class RunWriter:
    """A fresh run directory. Files are written atomically; config.json first, so even a run
    that dies early says what it was."""

    def __init__(self, command: str, data: str, runs_dir: str | Path | None = None):
        base = Path(runs_dir) if runs_dir else default_runs_dir()
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        for path in numbered_paths(base, f"{stamp}-{command}-{_slug(data)}"):
            try:
                path.mkdir(parents=True, exist_ok=False)  # atomic: two runs started in one second get two folders
                break
            except FileExistsError:
                continue
            except OSError as e:
                raise ClasslabError(f"cannot create a run directory in {base} ({e.strerror or e}); choose a "
                                    "writable folder with --runs-dir or $CLASSLAB_RUNS") from None
        self.run_dir, self.command, self.data = path, command, data

    @classmethod
    def existing(cls, path: str | Path) -> "RunWriter":
        """An earlier run directory, to continue (``--resume``)."""
        path = Path(path)
        config = _read_json(path / "config.json")
        if not isinstance(config, dict):
            raise ClasslabError(f"{path} is not a classlab run directory (no readable config.json)")
        run = cls.__new__(cls)
        run.run_dir, run.command, run.data = path, config.get("command"), config.get("data")
        return run

    def write_config(self, options: dict, seed: int | None) -> Path:
        config = {"command": self.command, "data": str(self.data), "seed": seed, "options": options,
                  "created": datetime.now().isoformat(timespec="seconds"), "argv": sys.argv, "versions": versions()}
        if os.environ.get("CLASSLAB_JOB"):  # started by the workbench, which finds its job's run by this id
            config["job"] = os.environ["CLASSLAB_JOB"]
        return write_json(self.run_dir / "config.json", config)

    def file(self, name: str) -> Path:
        return self.run_dir / name

    def write_predictions(self, ids, y_true, y_pred, proba, class_names, top: int = 3) -> Path:
        top = min(top, len(class_names)) if proba is not None else 0
        header = ["id", "true_label", "predicted_label", "correct"]
        for t in range(1, top + 1):
            header += [f"top{t}_label", f"top{t}_prob"]
        order = np.argsort(-proba, axis=1, kind="stable")[:, :top] if top else None

        def rows():
            for i, item in enumerate(ids):
                row = [item, class_names[y_true[i]], class_names[y_pred[i]], int(y_true[i] == y_pred[i])]
                for t in range(top):
                    c = order[i, t]
                    row += [class_names[c], f"{proba[i, c]:.6f}"]
                yield row
        return write_csv(self.run_dir / "predictions.csv", header, rows())

    def write_report(self, title: str, sections: list[tuple[str, str]]) -> Path:
        body = [f"# {title}", ""]
        for heading, text in sections:
            body += [f"## {heading}", "", text.rstrip(), ""]
        return atomic_write_text(self.run_dir / "report.md", "\n".join(body))


def list_runs(runs_dir: str | Path | None = None) -> list[dict]:
    """Every run under runs_dir, newest first, with its headline metrics."""
    base = Path(runs_dir) if runs_dir else default_runs_dir()
    out = []
    for d in sorted(base.glob("*/config.json"), reverse=True):
        config = _read_json(d)
        if not isinstance(config, dict):  # unreadable or malformed: not a run to list
            continue
        row = {"run": str(d.parent), "command": config.get("command"), "data": config.get("data")}
        mt = _read_json(d.parent / "metrics.json")
        if isinstance(mt, dict):
            macro = mt.get("macro_avg")
            row.update(accuracy=number(mt.get("accuracy")),
                       macro_f1=number(macro.get("f1")) if isinstance(macro, dict) else None)
        out.append(row)
    return out


def number(value) -> float | None:
    """A JSON value as a float when it is a number (not a bool), else None."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass
class RunResult:
    """A finished run: its directory and report, its test metrics (``metrics.json``), its training history,
    and what the command adds (``details``: the chosen k, the transfer stages, the workshop's table...).
    ``evaluation`` is the full ``Evaluation`` when the run was just made (``load`` reads the numbers back).
    Runs with a model (a network, k-NN on pixels, the NumPy MLP) also predict: ``predict``, ``predict_proba``,
    ``evaluate``, through ``model()``."""

    run_dir: Path
    command: str
    report: Path | None = None
    metrics: dict = field(default_factory=dict)
    evaluation: object | None = None  # classlab.evaluation.Evaluation
    history: list[dict] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    _model: object | None = field(default=None, repr=False, compare=False)  # classlab.trained.RunModel

    @property
    def accuracy(self) -> float | None:
        return self.metrics.get("accuracy")

    def __repr__(self) -> str:
        from ..notebook import run_repr

        return run_repr(self)

    def _repr_html_(self) -> str:
        """Jupyter: metrics with intervals, per-class table, confusion matrix, curves and plots inline."""
        from ..notebook import run_html

        return run_html(self)

    @property
    def macro_f1(self) -> float | None:
        return (self.metrics.get("macro_avg") or {}).get("f1")

    @classmethod
    def load(cls, run_dir: str | Path) -> "RunResult":
        """Read a run directory back (config.json, metrics.json, history.csv, report.md)."""
        run = RunWriter.existing(run_dir)
        metrics = _read_json(run.run_dir / "metrics.json")
        metrics = metrics if isinstance(metrics, dict) else {}
        report = run.run_dir / "report.md"
        return cls(run.run_dir, run.command or "", report if report.is_file() else None, metrics,
                   history=read_history(run.run_dir / "history.csv"))

    @cached_property
    def model_run_dir(self) -> Path:
        """The folder of the run whose model made this run's predictions: the run itself, or for an evaluation
        the run it evaluated (when that is still there)."""
        from ..trained.model import model_source

        return model_source(self.run_dir)

    @cached_property
    def model_dir(self) -> Path | None:
        """The folder of the run's trained network (best.pt): ``model_run_dir`` when it holds one, else None."""
        return self.model_run_dir if (self.model_run_dir / "best.pt").is_file() else None

    def model(self, device: str | None = "cpu"):
        """The run's model, whatever kind (``classlab.trained.RunModel``: a network, k-NN on pixels, the NumPy
        MLP; an evaluation's is the evaluated run's), loaded once."""
        if self._model is None:
            from ..trained.model import run_model

            self._model = run_model(self.run_dir, device=device)
        return self._model

    def trained(self, device: str | None = "cpu"):
        """The trained network with its preprocessing (``classlab.TrainedNetwork``)."""
        network = self.model(device).network if self.model_dir is not None else None
        if network is None:
            raise ClasslabError(f"{self.run_dir} is a '{self.command}' run without a trained network (best.pt); "
                                "this needs a train or transfer run")
        return network

    def predict(self, inputs, top_k: int = 3) -> list[dict]:
        return self.model().predict(inputs, top_k)

    def predict_proba(self, images):
        return self.model().predict_proba(images)

    def evaluate(self):
        return self.model().evaluate()


def _read_json(path: Path):
    """A run's JSON file, or None when it is missing, unreadable (not a regular file, too big) or malformed."""
    return read_json(path)


def read_history(path: Path) -> list[dict]:
    """history.csv back as rows of numbers (empty cells left out)."""
    import csv

    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = []
        for row in csv.DictReader(f):
            try:
                rows.append({k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v not in ("", None)})
            except ValueError:
                continue
        return rows


def __getattr__(name):
    if name == "Run":  # the 0.2 name of RunWriter, kept for one release
        import warnings

        warnings.warn("classlab.runs.Run is now classlab.runs.RunWriter (a run folder being written; its folder is "
                      ".run_dir); the old name goes away in the next release", DeprecationWarning, stacklevel=2)
        return RunWriter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

