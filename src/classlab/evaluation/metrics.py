"""Classification metrics from the confusion matrix, in NumPy (tests cross-check them against
scikit-learn). Working from the matrix makes bootstrap resampling cheap: one bincount per draw."""

from __future__ import annotations

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class (scikit-learn's convention)."""
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def _safe_div(a, b):
    """a / b with 0 where b == 0 (scikit-learn's zero_division=0)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.divide(a, b, out=np.zeros(np.broadcast_shapes(a.shape, b.shape)), where=b != 0)


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    fp, fn = predicted - tp, support - tp
    tn = cm.sum() - tp - fp - fn
    precision, recall = _safe_div(tp, predicted), _safe_div(tp, support)
    return {
        "precision": precision,
        "recall": recall,
        "specificity": _safe_div(tn, tn + fp),
        "f1": _safe_div(2 * tp, 2 * tp + fp + fn),
        "support": support.astype(int),
        "tp": tp.astype(int), "fp": fp.astype(int), "fn": fn.astype(int), "tn": tn.astype(int),
    }


def matthews(cm: np.ndarray) -> float:
    """Multiclass Matthews correlation (Gorodkin's R_K), as scikit-learn computes it."""
    t, p = cm.sum(axis=1).astype(float), cm.sum(axis=0).astype(float)
    c, s = float(np.trace(cm)), float(cm.sum())
    cov_ytyp = c * s - t @ p
    cov_ypyp, cov_ytyt = s * s - p @ p, s * s - t @ t
    denom = np.sqrt(cov_ytyt * cov_ypyp)
    return float(cov_ytyp / denom) if denom > 0 else 0.0


def balanced_accuracy(cm: np.ndarray) -> float:
    """Mean recall over the classes present in y_true."""
    support = cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def macro_f1_batch(cms: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
    """Macro F1 of a stack of confusion matrices (B, K, K); classes absent from both truth and
    predictions still count as 0 here, as they do in scikit-learn when labels= lists them, unless
    ``classes`` (a boolean mask) says which classes to average over."""
    tp = np.diagonal(cms, axis1=1, axis2=2).astype(float)
    fp = cms.sum(axis=1) - tp
    fn = cms.sum(axis=2) - tp
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    return (f1 if classes is None else f1[:, classes]).mean(axis=1)


def top_k_accuracy(y_true: np.ndarray, proba: np.ndarray, k: int) -> float:
    """Share of items whose true class is among the k highest scores. Ties are resolved toward
    the lower class index, like scikit-learn's top_k_accuracy_score (stable sort)."""
    order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    return float(np.mean((order == y_true[:, None]).any(axis=1)))


def cross_entropy(y_true: np.ndarray, proba: np.ndarray, eps: float | None = None) -> float:
    """Mean negative log-likelihood of the true class; rows renormalised and clipped like log_loss."""
    p = proba / proba.sum(axis=1, keepdims=True)
    eps = np.finfo(p.dtype).eps if eps is None else eps
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(np.log(p[np.arange(len(y_true)), y_true])))


def bootstrap_ci(y_true: np.ndarray, y_pred: np.ndarray, k: int, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95, chunk: int = 100, classes: np.ndarray | None = None) -> dict[str, list[float]]:
    """Percentile bootstrap intervals for accuracy and macro F1 (items resampled with replacement; macro F1
    over the ``classes`` mask when given)."""
    n = len(y_true)
    rng = np.random.default_rng(seed)
    cell = y_true * k + y_pred
    acc, f1 = [], []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        draws = rng.integers(0, n, size=(b, n))
        flat = cell[draws] + (np.arange(b) * k * k)[:, None]
        cms = np.bincount(flat.ravel(), minlength=b * k * k).reshape(b, k, k)
        acc.append(np.trace(cms, axis1=1, axis2=2) / n)
        f1.append(macro_f1_batch(cms, classes))
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    return {name: [float(np.percentile(v, lo)), float(np.percentile(v, hi))]
            for name, v in (("accuracy", np.concatenate(acc)), ("macro_f1", np.concatenate(f1)))}
