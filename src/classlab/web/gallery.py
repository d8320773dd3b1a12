"""A run's test images as a gallery (what FiftyOne's grid does for a run): filtered by true class, predicted
class, right or wrong, confidence, a near-duplicate in the training data, a suspected label issue, sorted by
loss or confidence, a page at a time; and explain's embedding map as points the page draws, each linked to its
image."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ClasslabError
from ..safe_files import check_path, read_json

PAGE = 48
SORTS = {"loss": "highest loss first", "-loss": "lowest loss first", "confidence": "most confident first",
         "-confidence": "least confident first", "id": "by name"}
MAP_POINTS = 3000  # points drawn on the map (a sample of larger test sets)


@dataclass(frozen=True)
class Filters:
    true: int | None = None
    predicted: int | None = None
    correct: str = ""  # "", "right", "wrong"
    min_confidence: float = 0.0
    max_confidence: float = 1.0
    near_duplicate: bool = False
    label_issue: bool = False
    sort: str = "loss"
    page: int = 1

    @classmethod
    def from_query(cls, query, num_classes: int) -> "Filters":
        """The filters a query string asks for; anything malformed falls back to no filter (a link from an old
        page or a hand-edited URL shows the whole gallery, not an error)."""
        def index(name):
            text = query.get(name, "")
            return int(text) if text.isdigit() and int(text) < num_classes else None

        def fraction(name, default):
            try:
                value = float(query.get(name, default))
            except ValueError:
                return default
            return min(max(value, 0.0), 1.0) if math.isfinite(value) else default
        page = query.get("page", "1")
        return cls(index("true"), index("predicted"), query.get("correct", "") if query.get("correct") in
                   ("right", "wrong") else "", fraction("min", 0.0), fraction("max", 1.0), query.get("dup") == "1",
                   query.get("issue") == "1", query.get("sort") if query.get("sort") in SORTS else "loss",
                   int(page) if page.isdigit() and 0 < int(page) < 1_000_000 else 1)


def test_outputs(run_dir: Path) -> dict:
    """ids, labels, probabilities and class names of the run's test split (probabilities.npz)."""
    path = run_dir / "probabilities.npz"
    if not path.is_file():
        raise ClasslabError("this run kept no per-image probabilities (probabilities.npz); run it again to browse "
                            "its test images")
    check_path(path)
    with np.load(path, allow_pickle=False) as z:
        return {"ids": z["test_ids"].astype(str), "y": z["test_labels"].astype(np.int64),
                "proba": z["test_probs"].astype(np.float64), "names": [str(n) for n in z["class_names"]]}


def near_duplicate_ids(run_dir: Path) -> set[str]:
    """Test images with a near-duplicate in the training or validation split (leakage.json, --dedupe's pairs)."""
    leakage = read_json(run_dir / "leakage.json")
    leakage = leakage if isinstance(leakage, dict) else {}
    found = set()
    for pair in leakage.get("near_duplicates_across_splits") or []:  # {"ids": [a, b], "splits": [sa, sb], ...}
        if isinstance(pair, dict) and isinstance(pair.get("ids"), list) and isinstance(pair.get("splits"), list):
            found |= {str(i) for i, s in zip(pair["ids"], pair["splits"]) if s == "test"}
    for group in leakage.get("duplicates") or []:  # identical images: {"items": [{"id", "split", ...}]}
        for item in group.get("items", []) if isinstance(group, dict) else []:
            if isinstance(item, dict) and item.get("split") == "test":
                found.add(str(item.get("id")))
    return found


def label_issue_rows(y: np.ndarray, proba: np.ndarray) -> set[int]:
    """Test images whose label is suspect: confident learning (evaluation.label_issues, as cleanlab) on the
    model's test probabilities, which are out of sample (the model never trained on a test image)."""
    from ..evaluation.label_issues import find_label_issues

    if len(y) < 2 or proba.ndim != 2 or proba.shape[1] < 2:
        return set()
    return {int(i) for i in find_label_issues(y, proba)["issues"]}


def gallery(run_dir: Path, filters: Filters) -> dict:
    """One page of the filtered, sorted test images, with what the filter form needs."""
    out = test_outputs(run_dir)
    ids, y, proba, names = out["ids"], out["y"], out["proba"], out["names"]
    predicted = proba.argmax(1)
    confidence = proba.max(1)
    loss = -np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, 1))
    dups = near_duplicate_ids(run_dir)
    issues = label_issue_rows(y, proba)
    keep = (confidence >= filters.min_confidence) & (confidence <= filters.max_confidence)
    if filters.true is not None:
        keep &= y == filters.true
    if filters.predicted is not None:
        keep &= predicted == filters.predicted
    if filters.correct:
        keep &= (predicted == y) == (filters.correct == "right")
    if filters.near_duplicate:
        keep &= np.isin(ids, list(dups))
    if filters.label_issue:
        keep &= np.isin(np.arange(len(y)), list(issues))
    chosen = np.flatnonzero(keep)
    key = {"loss": -loss, "-loss": loss, "confidence": -confidence, "-confidence": confidence}.get(filters.sort)
    chosen = chosen[np.argsort(key[chosen], kind="stable")] if key is not None else chosen[np.argsort(ids[chosen])]
    pages = max(1, -(-len(chosen) // PAGE))
    page = min(filters.page, pages)
    shown = chosen[(page - 1) * PAGE: page * PAGE]
    items = [{"id": str(ids[i]), "true": names[y[i]], "predicted": names[predicted[i]], "right": bool(predicted[i] == y[i]),
              "confidence": float(confidence[i]), "loss": float(loss[i]), "near_duplicate": str(ids[i]) in dups,
              "label_issue": int(i) in issues} for i in shown]
    return {"items": items, "count": int(len(chosen)), "total": int(len(y)), "page": page, "pages": pages,
            "names": names, "near_duplicates": len(dups), "label_issues": len(issues)}


def embedding_map(run_dir: Path) -> dict | None:
    """explain's 2-D map of the test embeddings (explain/embedding_map.npz) as points in [0, 1] for the page,
    or None before the run is explained."""
    path = run_dir / "explain" / "embedding_map.npz"
    if not path.is_file():
        return None
    check_path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            ids, xy, y, pred = z["ids"].astype(str), z["points"].astype(np.float64), z["labels"], z["predicted"]
            method, names = str(z["method"]), [str(n) for n in z["class_names"]]
    except (OSError, ValueError, KeyError):
        return None
    if len(ids) > MAP_POINTS:
        pick = np.sort(np.random.default_rng(0).choice(len(ids), MAP_POINTS, replace=False))
        ids, xy, y, pred = ids[pick], xy[pick], y[pick], pred[pick]
    low, high = xy.min(0), xy.max(0)
    unit = (xy - low) / np.where(high > low, high - low, 1)
    points = [{"id": str(i), "x": float(p[0]), "y": float(p[1]), "c": int(t), "wrong": bool(t != q)}
              for i, p, t, q in zip(ids, unit, y, pred)]
    return {"points": points, "method": method, "names": names}
