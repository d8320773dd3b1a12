"""Which training labels are likely wrong? Confident learning (Northcutt et al. 2021, as cleanlab) on
out-of-sample probabilities: no image is scored by a model that saw its own label.

``out_of_sample_knn`` gives those probabilities by leave-one-out k-NN (each image's k nearest *other*
training images vote, in embedding space for networks or pixel space otherwise). ``find_label_issues``
then counts the confident joint: per class j a threshold t_j, the mean probability of j over the images
labelled j; an image is confidently of class j when p_j >= t_j (the largest such p when several are);
images confidently of another class than their label are issues, ranked by normalised margin
p_given - max_{j != given} p_j (most negative first), cleanlab's default ranking.
"""

from __future__ import annotations

import numpy as np


def out_of_sample_knn(rows: np.ndarray, labels: np.ndarray, num_classes: int, k: int = 10,
                      metric: str = "l2") -> np.ndarray:
    """(N, K) vote shares of each row's k nearest other rows (itself left out), smoothed so that no class
    has probability exactly 0."""
    from ..models.knn import KNNClassifier

    model = KNNClassifier(1, metric, progress=False).fit(rows, labels, num_classes=num_classes)
    _, idx = model.kneighbors(rows, min(k + 1, len(rows)))
    others = np.empty((len(rows), idx.shape[1] - 1), dtype=np.int64)
    for r in range(len(rows)):  # drop the row itself (usually first; a duplicate image may come before it)
        row = idx[r][idx[r] != r]
        others[r] = row[: others.shape[1]]
    votes = np.zeros((len(rows), num_classes))
    np.add.at(votes, (np.arange(len(rows))[:, None].repeat(others.shape[1], 1), labels[others]), 1)
    smoothing = 0.1
    return (votes + smoothing / num_classes) / (others.shape[1] + smoothing)


def find_label_issues(labels: np.ndarray, pred_probs: np.ndarray) -> dict:
    """{"issues": indices ranked most suspicious first, "suggested": confident class per issue,
    "margin": their normalised margins, "thresholds": per-class t_j}."""
    labels = np.asarray(labels, np.int64)
    n, k = pred_probs.shape
    thresholds = np.array([pred_probs[labels == j, j].mean() if np.any(labels == j) else 1.0 for j in range(k)])
    above = pred_probs >= thresholds[None] - 1e-12
    confident = np.where(above.any(1), np.argmax(np.where(above, pred_probs, -1), 1), -1)
    flagged = np.flatnonzero((confident >= 0) & (confident != labels))
    others = pred_probs.copy()
    others[np.arange(n), labels] = -1
    margin = pred_probs[np.arange(n), labels] - others.max(1)
    order = flagged[np.argsort(margin[flagged], kind="stable")]
    return {"issues": order, "suggested": confident[order], "margin": margin[order], "thresholds": thresholds}


def precision_recall(flagged: np.ndarray, truly_wrong: np.ndarray) -> tuple[float, float]:
    flagged, truly_wrong = set(np.asarray(flagged).tolist()), set(np.asarray(truly_wrong).tolist())
    hits = len(flagged & truly_wrong)
    return hits / max(len(flagged), 1), hits / max(len(truly_wrong), 1)
