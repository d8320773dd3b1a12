"""``classlab check DATA --embeddings BACKBONE``: the doctor's embedding pass. A pretrained backbone's
features (through the transfer package and its feature cache) find what a perceptual hash cannot: shifted
and cropped near-duplicates, outliers far from every other image, and images whose nearest neighbours carry
another label.

The near-duplicate threshold is calibrated on the user's own data: copies of a sample of their images are
made (1-3 px shifts and crops, JPEG re-encoding), and the threshold is the cosine similarity that keeps 90%
of those copies, but never below what 1 in 1,000 pairs of images of the sample reach.
"""

from __future__ import annotations

import io
import time

import numpy as np

CALIBRATION_SAMPLE = 200
NEIGHBOURS = 10


def _copies(images: np.ndarray, rng) -> np.ndarray:
    """One synthetic near-duplicate per image: a 1-3 px shift, a 1-3 px crop resized back, or a JPEG
    re-encode, in turn."""
    from PIL import Image

    out = []
    for k, a in enumerate(images):
        s = int(rng.integers(1, 4))
        if k % 3 == 0:
            b = np.roll(a, s, axis=1)
            b[:, :s] = a[:, :1]
        elif k % 3 == 1:
            pil = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
            w, h = pil.size
            b = np.asarray(pil.crop((s, s, w - s, h - s)).resize((w, h), Image.Resampling.BILINEAR))
            b = b[..., None] if b.ndim == 2 else b
        else:
            buf = io.BytesIO()
            Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(buf, "JPEG", quality=60)
            b = np.asarray(Image.open(buf))
            b = b[..., None] if b.ndim == 2 else b
        out.append(b)
    return np.stack(out)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def similar_pairs(unit: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """(i, j, cosine) with i < j and cosine >= threshold: blockwise float32 products, exact."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(unit, dtype=np.float32))
    found = []
    for start in range(0, len(x), 512):
        sim = x[start : start + 512] @ x.T
        i, j = torch.nonzero(sim >= threshold, as_tuple=True)
        later = j > i + start
        i, j = i[later], j[later]
        found += zip((i + start).tolist(), j.tolist(), sim[i, j].tolist())
    return found


def embedding_pass(ds, backbone: str = "mobilenet_v2", weights: str | None = None, image_size: int | None = None,
                   progress: bool = False) -> dict:
    """Near-duplicate pairs, outliers and neighbour-label disagreements of ``ds`` in a backbone's feature space."""
    from ..backbones.features import cached_features, compute_features
    from ..backbones.plan import plan_backbone
    from ..device import pick_device
    from ..evaluation.label_issues import find_label_issues, out_of_sample_knn

    plan = plan_backbone(backbone, weights, progress)
    pre, in_channels = plan.contract(ds, image_size)
    net, _ = plan.backbone_only(in_channels)
    device = pick_device("auto")
    t0 = time.perf_counter()
    features, from_cache = cached_features(net, ds.images, ds.labels, pre, device, plan.spec, progress=progress)
    feature_seconds = time.perf_counter() - t0
    unit = _unit(features.numpy())
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(len(ds), min(CALIBRATION_SAMPLE, len(ds)), replace=False))
    originals = np.asarray(ds.images[sample])
    copies = _unit(compute_features(net, _copies(originals, rng), pre, device, progress=False).numpy())
    copy_sim = np.sum(copies * unit[sample], axis=1)
    random_sim = (unit[sample] @ unit[sample].T)[np.triu_indices(len(sample), 1)]
    # the similarity that keeps 90% of the synthetic copies, but above all but 0.1% of the sample's pairs (a
    # higher quantile would be set by the data's own near-duplicates, which the sample may contain)
    threshold = float(max(np.quantile(copy_sim, 0.10), np.quantile(random_sim, 0.999) if len(random_sim) else 0))
    pairs = similar_pairs(unit, threshold)
    probs = out_of_sample_knn(unit, ds.labels, ds.num_classes, k=NEIGHBOURS, metric="cosine")
    # outliers: the mean similarity to the nearest other images, far below the dataset's (robust z < -4)
    from ..models.knn import KNNClassifier

    knn = KNNClassifier(1, "cosine", progress=False).fit(unit, ds.labels, num_classes=ds.num_classes)
    dist, _ = knn.kneighbors(unit, min(NEIGHBOURS + 1, len(ds)))
    closeness = 1 - dist[:, 1:].mean(1)
    median = np.median(closeness)
    mad = np.median(np.abs(closeness - median)) * 1.4826 + 1e-9
    outliers = np.flatnonzero((closeness - median) / mad < -4)
    disagree = find_label_issues(ds.labels, probs)
    return {"backbone": plan.weights, "threshold": threshold, "features_from_cache": bool(from_cache),
            "feature_seconds": round(feature_seconds, 2),
            "calibration": {"copies_kept": float(np.mean(copy_sim >= threshold)),
                            "copy_similarity_median": float(np.median(copy_sim))},
            "pairs": pairs, "outliers": outliers[np.argsort(closeness[outliers])].tolist(),
            "neighbours_disagree": [(int(i), int(s)) for i, s in zip(disagree["issues"], disagree["suggested"])]}
