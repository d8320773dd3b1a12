"""What every run that scores a test split leaves behind, written in one place: metrics and confusion-matrix
plots, predictions.csv, history.csv + curves.png, and report.md with the same test-results section."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.dataset import ImageDataset
from ..data.options import split_summary
from ..evaluation import Evaluation, evaluate
from ..fileio import atomic_write_bytes, save_figure, write_csv
from . import RunResult, RunWriter

HISTORY_KEYS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s"]


def test_section(ev: Evaluation, heading: str = "Test results") -> tuple[str, str]:
    """The report section every run has: the classification report and both confusion matrices."""
    return heading, (f"```\n{ev.text()}```\n\n![confusion matrix](confusion_matrix.png)\n\n"
                     "![normalised confusion matrix](confusion_matrix_normalized.png)\n\n"
                     "Per-image predictions: `predictions.csv`. All numbers: `metrics.json`.")


def score_test(run: RunWriter, ds: ImageDataset, test_idx: np.ndarray, proba: np.ndarray, seed: int,
               extra: dict, y_pred: np.ndarray | None = None, average_over: str = "all") -> Evaluation:
    """Evaluate test probabilities; write metrics.json (with ``extra``), the plots and predictions.csv."""
    y_true = ds.labels[test_idx]
    y_pred = proba.argmax(1) if y_pred is None else y_pred
    ev = evaluate(y_true, y_pred, proba, ds.class_names, seed=seed, average_over=average_over)
    ev.save(run.run_dir, extra=extra)
    run.write_predictions([ds.ids[i] for i in test_idx], y_true, y_pred, proba, ds.class_names)
    return ev


def save_outputs(folder: Path, ds: ImageDataset, splits: dict, embeddings: np.ndarray | None = None) -> None:
    """What explain, compare and cleanlab need, per image: ``probabilities.npz`` (for each split given as
    ``{name: (indices, probabilities)}``: ``<split>_ids``, ``<split>_labels``, ``<split>_probs``, and the class
    names), the test split again as cleanlab names it (``labels.npy``, ``pred_probs.npy``), and, for networks,
    the test split's penultimate ``embeddings.npz`` (ids, labels, embeddings). Plain arrays, no pickle."""
    arrays = {"class_names": np.array(ds.class_names, dtype=str)}
    for name, (idx, proba) in splits.items():
        idx = np.asarray(idx, dtype=np.int64)
        arrays.update({f"{name}_ids": np.array([ds.ids[i] for i in idx], dtype=str),
                       f"{name}_labels": ds.labels[idx], f"{name}_probs": np.asarray(proba, np.float32)})
    _save_npz(folder / "probabilities.npz", arrays)
    if "test" in splits:
        _save_npy(folder / "labels.npy", arrays["test_labels"])
        _save_npy(folder / "pred_probs.npy", arrays["test_probs"])
        if embeddings is not None and len(embeddings) == len(arrays["test_ids"]):
            _save_npz(folder / "embeddings.npz", {"ids": arrays["test_ids"], "labels": arrays["test_labels"],
                                                  "embeddings": np.asarray(embeddings, np.float32)})


def _save_npz(path: Path, arrays: dict) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _save_npy(path: Path, array: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())


def write_results(run: RunWriter, ds: ImageDataset, split, test_idx, proba: np.ndarray, seed: int, history: list[dict],
                  summary: dict, title: str, model_text: str, test_heading: str = "Test results",
                  val: tuple | None = None, embeddings: np.ndarray | None = None) -> RunResult:
    """What every training run leaves: metrics and plots, predictions.csv, probabilities (``val``: the
    validation split's (indices, probabilities)), embeddings, history.csv + curves.png, report.md."""
    ev = score_test(run, ds, test_idx, proba, seed, {"train": summary})
    save_outputs(run.run_dir, ds, {**({"val": val} if val is not None and len(val[0]) else {}), "test": (test_idx, proba)},
                 embeddings)
    history_files(run.run_dir, history)
    report = run.write_report(title, [
        ("Data", split_summary(ds, split)),
        ("Model and training", model_text + "\n\n![training curves](curves.png)\n\nPer epoch: `history.csv`."),
        test_section(ev, test_heading),
    ])
    return RunResult(run.run_dir, run.command, report, ev.metrics, ev, history, {"train": summary})


def history_files(folder: Path, history: list[dict]) -> None:
    """history.csv and curves.png (loss and accuracy, train vs validation) in ``folder``."""
    write_csv(folder / "history.csv", HISTORY_KEYS, ([h.get(k, "") for k in HISTORY_KEYS] for h in history))
    epochs = [h["epoch"] for h in history]
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in ((ax1, "loss"), (ax2, "acc")):
        ax.plot(epochs, [h[f"train_{metric}"] for h in history], marker="o", label="train")
        if "val_acc" in history[0]:
            ax.plot(epochs, [h[f"val_{metric}"] for h in history], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if metric == "acc" else "loss")
        ax.grid(alpha=0.3)
        ax.legend()
    ax1.set_title("Loss: a widening gap between the curves means overfitting")
    ax2.set_title("Accuracy")
    save_figure(fig, folder / "curves.png")
