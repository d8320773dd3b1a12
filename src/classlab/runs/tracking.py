"""``--mlflow [URI]``: a training run logged to MLflow as it happens. Parameters (the training configuration,
the data options, the model) when training starts, every epoch's metrics as it ends, then the test metrics,
the report, its plots and the exported model (a TorchScript bundle with classes and the preprocessing
contract, checked against PyTorch) when the run is scored. The tracking URI defaults to ``./mlruns`` (a local
store, no server); ``mlflow-skinny`` is the optional extra ``classlab[mlflow]``."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

from ..errors import ClasslabError, warn
from ..training.engine import Callback

ARTIFACTS = ("report.md", "metrics.json", "config.json", "history.csv", "classification_report.txt",
             "predictions.csv", "split.csv")


def _mlflow():
    import os

    # No telemetry calls (they wait on the network, which may be closed), and a local folder store allowed:
    # MLflow 3 keeps it "in maintenance" behind this switch, and a folder is what --mlflow PATH asks for.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        import mlflow
    except ImportError:
        raise ClasslabError("--mlflow needs MLflow: pip install 'classlab[mlflow]' (mlflow-skinny)") from None
    return mlflow


def tracking_uri(uri: str) -> str:
    """A URI as given (``http://...``, ``sqlite:///...``, ``file:...``), or a folder path made a file URI."""
    return uri if "://" in uri or uri.startswith("file:") else Path(uri).expanduser().resolve().as_uri()


def _flat(prefix: str, value, out: dict) -> dict:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = json.dumps(value) if isinstance(value, (list, tuple)) else value
    return out


class MLflowTracker(Callback):
    """One MLflow run per classlab run: started with the parameters, fed each epoch, finished with ``finish``."""

    def __init__(self, uri: str, run_dir: Path, params: dict, experiment: str = "classlab"):
        self.mlflow = _mlflow()
        try:
            self.mlflow.set_tracking_uri(tracking_uri(uri))
            self.mlflow.set_experiment(experiment)
            self.run = self.mlflow.start_run(run_name=Path(run_dir).name)
        except Exception as e:  # a bad URI, an unreachable server, a store that refuses: one line, not a trace
            raise ClasslabError(f"MLflow could not start a run at {uri} ({str(e).splitlines()[0][:300]})") from None
        self.step_offset = 0
        flat = {k: v for k, v in _flat("", params, {}).items() if v is not None}
        items = list(flat.items())
        for start in range(0, len(items), 100):  # MLflow takes at most 100 parameters per call
            self.mlflow.log_params(dict(items[start : start + 100]))
        self.mlflow.set_tag("classlab.run_dir", str(Path(run_dir).resolve()))

    def after_epoch(self, trainer, row):
        metrics = {k: float(v) for k, v in row.items() if k != "epoch" and isinstance(v, (int, float))}
        self.mlflow.log_metrics(metrics, step=self.step_offset + int(row["epoch"]))

    def after_fit(self, trainer):
        self.step_offset += trainer.state.epoch  # a second stage (fine-tuning) continues the step count

    def finish(self, run_dir: Path, metrics: dict, export: bool = True) -> None:
        """The test metrics, the report and plots, and the exported model; then the MLflow run ends."""
        try:
            scalars = {"test_accuracy": metrics.get("accuracy"), "test_balanced_accuracy": metrics.get("balanced_accuracy"),
                       "test_macro_f1": (metrics.get("macro_avg") or {}).get("f1"), "test_mcc": metrics.get("mcc"),
                       "test_cross_entropy": metrics.get("cross_entropy")}
            self.mlflow.log_metrics({k: float(v) for k, v in scalars.items() if isinstance(v, (int, float))})
            for name in ARTIFACTS:
                if (run_dir / name).is_file():
                    self.mlflow.log_artifact(str(run_dir / name))
            for png in sorted(run_dir.glob("*.png")):
                self.mlflow.log_artifact(str(png), artifact_path="plots")
            if export and (run_dir / "best.pt").is_file():
                self._log_model(run_dir)
            self.mlflow.end_run()
        except Exception:
            self.mlflow.end_run(status="FAILED")
            raise

    def _log_model(self, run_dir: Path) -> None:
        import tempfile

        from ..trained.export import export_run

        with tempfile.TemporaryDirectory() as tmp:
            try:
                bundle = export_run(run_dir, "torchscript", Path(tmp) / "model")["bundle"]
            except ClasslabError as e:  # a model TorchScript cannot trace: the checkpoint still goes
                warn(f"MLflow: the model was not exported ({e}); best.pt is logged instead")
                self.mlflow.log_artifact(str(run_dir / "best.pt"), artifact_path="model")
                return
            self.mlflow.log_artifacts(str(bundle), artifact_path="model")


class Tracking:
    """What a command's training sees of ``mlflow_tracking``: the callbacks to hand the engine, and
    ``scored(metrics)`` once the run has its test metrics."""

    def __init__(self, tracker: MLflowTracker | None):
        self.tracker, self.metrics = tracker, None
        self.callbacks = [tracker] if tracker is not None else None

    def scored(self, metrics: dict) -> None:
        self.metrics = metrics


@contextmanager
def mlflow_tracking(uri: str | None, run_dir: Path, params: dict):
    """One MLflow run around a command's training (``uri`` None: no tracking, the same code path). The MLflow
    run ends KILLED when the body raises (a kill, an error), else with the test metrics, report, plots and
    exported model the body reported through ``scored``."""
    tracker = MLflowTracker(uri, run_dir, params) if uri else None
    tracking = Tracking(tracker)
    try:
        yield tracking
    except BaseException:
        if tracker is not None:
            tracker.mlflow.end_run(status="KILLED")
        raise
    if tracker is not None:
        if tracking.metrics is None:
            tracker.mlflow.end_run()
        else:
            tracker.finish(Path(run_dir), tracking.metrics)

