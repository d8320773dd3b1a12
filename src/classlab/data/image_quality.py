"""Image quality from each image's 32x32 grayscale thumbnail (the one the near-duplicate search makes): very
dark or bright, near-constant, blurry and extreme-aspect-ratio images, as the doctor reports them."""

from __future__ import annotations

import numpy as np

from .near_duplicates import grayscale_32


def quality(images=None, gray32: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per image: mean brightness and contrast (0..255), and sharpness (variance of the Laplacian of the
    32x32 grayscale thumbnail; low means blurry). In blocks of 2,048 thumbnails (8 MB), so the temporaries
    stay in cache: 60,000 thumbnails in 0.4 s instead of 1.8 s at once."""
    gray = grayscale_32(images) if gray32 is None else gray32
    n = len(gray)
    out = {k: np.empty(n, dtype=np.float32) for k in ("brightness", "contrast", "sharpness")}
    for start in range(0, n, 2048):
        g = gray[start : start + 2048]
        inner = g[:, 1:-1, 1:-1]  # the 4-neighbour Laplacian of every thumbnail at once (borders left out)
        laplacian = g[:, :-2, 1:-1] + g[:, 2:, 1:-1] + g[:, 1:-1, :-2] + g[:, 1:-1, 2:] - 4 * inner
        out["brightness"][start : start + 2048] = g.mean((1, 2))
        out["contrast"][start : start + 2048] = g.std((1, 2))
        out["sharpness"][start : start + 2048] = laplacian.var((1, 2))
    return out


def quality_findings(scores: dict[str, np.ndarray], aspect: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Indices of very dark and very bright images (below 20 and a quarter of the dataset's median brightness;
    the mirror image for bright), low-information (near-constant), blurry (sharpness under a tenth of the
    dataset's median) and extreme-aspect-ratio (over 3:1) images."""
    sharp, light = scores["sharpness"], scores["brightness"]
    typical = float(np.median(light))
    # absolute and relative: MNIST's black backgrounds make its typical image dark, which is not a finding
    found = {"very_dark": np.flatnonzero((light < 20) & (light < 0.25 * typical)),
             "very_bright": np.flatnonzero((light > 235) & (light > typical + 0.75 * (255 - typical))),
             "low_information": np.flatnonzero(scores["contrast"] < 4),
             "blurry": np.flatnonzero((sharp < 0.1 * np.median(sharp)) & (scores["contrast"] >= 4))}
    if aspect is not None:
        found["extreme_aspect_ratio"] = np.flatnonzero((aspect > 3) | (aspect < 1 / 3))
    return found
