"""``evaluate()``: every metric the decks teach, plus what a practitioner needs, in one object that
writes a text report, metrics.json and confusion-matrix PNGs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ClasslabError
from ..fileio import atomic_write_text, write_json
from . import metrics as m

TOP_K = (1, 3, 5)


@dataclass
class Evaluation:
    metrics: dict
    confusion_matrix: np.ndarray
    class_names: list[str]

    @property
    def accuracy(self) -> float:
        return self.metrics["accuracy"]

    def __repr__(self) -> str:
        macro = self.metrics.get("macro_avg", {}).get("f1")
        return (f"Evaluation({self.metrics.get('n')} images, {len(self.class_names)} classes, accuracy "
                f"{self.accuracy:.4f}" + (f", macro F1 {macro:.4f})" if macro is not None else ")"))

    def _repr_html_(self) -> str:
        """Jupyter: the metrics with their intervals, the per-class table and the confusion matrix."""
        from ..notebook import confusion_html, metrics_html

        return metrics_html(self.metrics) + confusion_html(np.asarray(self.confusion_matrix).tolist(), self.class_names)

    def text(self) -> str:
        """A classification report in scikit-learn's layout, with specificity added."""
        names = self.class_names
        width = max(12, *(len(n) for n in names))
        head = f"{'':>{width}}  {'precision':>9}  {'recall':>9}  {'specificity':>11}  {'f1-score':>9}  {'support':>8}"
        lines = [head, ""]
        for name, row in zip(names, self.metrics["per_class"]):
            lines.append(f"{name:>{width}}  {row['precision']:9.4f}  {row['recall']:9.4f}  "
                         f"{row['specificity']:11.4f}  {row['f1']:9.4f}  {row['support']:8d}")
        lines.append("")
        for avg in ("macro avg", "weighted avg"):
            a = self.metrics[avg.replace(" ", "_")]
            lines.append(f"{avg:>{width}}  {a['precision']:9.4f}  {a['recall']:9.4f}  "
                         f"{a['specificity']:11.4f}  {a['f1']:9.4f}  {self.metrics['n']:8d}")
        mt = self.metrics
        ci = mt["confidence_intervals"]
        if "macro_avg_classes" in mt:
            lines.append(f"(macro avg over the {len(mt['macro_avg_classes'])} classes present in labels or "
                         "predictions)")
        lines += ["",
                  f"accuracy           {mt['accuracy']:.4f}  (95% CI {ci['accuracy'][0]:.4f}-{ci['accuracy'][1]:.4f})",
                  f"macro F1           {mt['macro_avg']['f1']:.4f}  (95% CI {ci['macro_f1'][0]:.4f}-{ci['macro_f1'][1]:.4f})",
                  f"balanced accuracy  {mt['balanced_accuracy']:.4f}",
                  f"Matthews corr.     {mt['mcc']:.4f}"]
        for k, v in mt.get("top_k_accuracy", {}).items():
            lines.append(f"top-{k} accuracy     {v:.4f}")
        if "cross_entropy" in mt:
            lines.append(f"cross-entropy      {mt['cross_entropy']:.4f}")
        return "\n".join(lines) + "\n"

    def save(self, out_dir: str | Path, extra: dict | None = None) -> dict[str, Path]:
        """Write classification_report.txt, metrics.json (plus ``extra`` keys) and both heatmaps."""
        from ..plots import confusion_matrix_png

        out = Path(out_dir)
        payload = {**(extra or {}), **self.metrics, "class_names": self.class_names,
                   "confusion_matrix": self.confusion_matrix}
        return {
            "classification_report": atomic_write_text(out / "classification_report.txt", self.text()),
            "metrics": write_json(out / "metrics.json", payload),
            "confusion_matrix": confusion_matrix_png(self.confusion_matrix, self.class_names,
                                                     out / "confusion_matrix.png", normalize=False),
            "confusion_matrix_normalized": confusion_matrix_png(self.confusion_matrix, self.class_names,
                                                                out / "confusion_matrix_normalized.png", normalize=True),
        }


def _as_labels(y, name: str, k: int | None) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ClasslabError(f"{name} must be one label per item (1-D), got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise ClasslabError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or (k is not None and y.max() >= k)):
        raise ClasslabError(f"{name} holds class indices outside 0..{(k or 0) - 1}")
    return y


def evaluate(y_true, y_pred, proba=None, class_names=None, n_bootstrap: int = 1000, seed: int = 0,
             average_over: str = "all") -> Evaluation:
    """Score predictions: accuracy, balanced accuracy, MCC, top-k, per-class precision / recall /
    specificity / F1 / support with macro and weighted averages, cross-entropy, bootstrap 95% CIs
    and the confusion matrix. Works from 2 to hundreds of classes.

    ``average_over``: "all" classes count in the macro averages (scikit-learn with ``labels=`` listing every
    class), or only those "present" in y_true or y_pred (scikit-learn's default): for images of some of a
    model's classes, where a class never seen nor predicted would add a meaningless 0."""
    if average_over not in ("all", "present"):
        raise ClasslabError(f"average_over takes 'all' or 'present', got '{average_over}'")
    if class_names is None:
        k = int(max(np.max(y_true, initial=0), np.max(y_pred, initial=0))) + 1
        if proba is not None:
            k = max(k, np.asarray(proba).shape[1])
        class_names = [str(c) for c in range(k)]
    class_names = [str(c) for c in class_names]
    k = len(class_names)
    y_true, y_pred = _as_labels(y_true, "y_true", k), _as_labels(y_pred, "y_pred", k)
    if len(y_true) != len(y_pred):
        raise ClasslabError(f"y_true has {len(y_true)} items but y_pred has {len(y_pred)}")
    if len(y_true) == 0:
        raise ClasslabError("nothing to evaluate: no items")
    if k < 2:
        raise ClasslabError("evaluation needs at least two classes")
    cm = m.confusion(y_true, y_pred, k)
    pc = m.per_class(cm)
    counted = (cm.sum(axis=0) + cm.sum(axis=1) > 0) if average_over == "present" else np.ones(k, dtype=bool)
    support = pc["support"].astype(float)
    per_class = [{"class": name, **{key: (int(pc[key][i]) if key in ("support", "tp", "fp", "fn", "tn")
                                          else float(pc[key][i])) for key in pc}}
                 for i, name in enumerate(class_names)]
    scores = ("precision", "recall", "specificity", "f1")
    result = {
        "n": int(len(y_true)),
        "num_classes": k,
        "accuracy": float(np.trace(cm) / cm.sum()),
        "balanced_accuracy": m.balanced_accuracy(cm),
        "mcc": m.matthews(cm),
        "macro_avg": {s: float(pc[s][counted].mean()) for s in scores},
        "weighted_avg": {s: float(np.average(pc[s], weights=support)) for s in scores},
        "per_class": per_class,
    }
    if not counted.all():
        result["macro_avg_classes"] = [name for name, c in zip(class_names, counted) if c]
    if proba is not None:
        proba = np.asarray(proba, dtype=np.float64)
        if proba.shape != (len(y_true), k):
            raise ClasslabError(f"proba must have shape (n_items, n_classes) = {(len(y_true), k)}, got {proba.shape}")
        if not np.all(np.isfinite(proba)) or proba.min() < 0:
            raise ClasslabError("proba must hold finite, non-negative probabilities")
        result["top_k_accuracy"] = {str(t): m.top_k_accuracy(y_true, proba, t) for t in TOP_K if t < k}
        result["cross_entropy"] = m.cross_entropy(y_true, proba)
    result["confidence_intervals"] = {**m.bootstrap_ci(y_true, y_pred, k, n_bootstrap, seed, classes=counted),
                                      "level": 0.95, "n_bootstrap": n_bootstrap}
    return Evaluation(result, cm, class_names)
