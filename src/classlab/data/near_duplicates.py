"""Near-duplicates by content, and image quality: what exact pixel hashes miss.

A perceptual hash (pHash, as the imagehash package computes it): the image in grayscale at 32x32, its 2D
DCT, and one bit per low-frequency coefficient (the top-left 8x8) above their median. Re-encoding,
rescaling, small colour and brightness shifts and 1-3 px crops change few of the 64 bits; different
pictures differ in about half. Pairs within ``MAX_DISTANCE`` bits are candidates (an exact radius
search, blockwise with int8 matrix products as the k-NN package's search, so 60,000 images need no pairwise
table in memory); a candidate is a near-duplicate when its hash distance is tiny or its 32x32 thumbnails
correlate (``find``).
"""

from __future__ import annotations

import numpy as np

MAX_DISTANCE = 10  # bits of 64 for a candidate pair (benchmarks/README.md: measured on CIFAR-10)
SURE_DISTANCE = 4  # this close, the hash alone decides
ROWS, COLUMNS = 1024, 4096  # the search's tile (int32 products: 16 MB)
MIN_SIDE = 16  # smaller images (8x8 digits) hold too little detail to hash
MIN_SIMILARITY = 0.9  # otherwise the 32x32 grayscale thumbnails must correlate this well (hash collisions
# of different pictures, e.g. two planes on a blue sky, correlate far less)
FLAT_CONTRAST = 4.0  # thumbnails with less standard deviation (0..255) are near-constant: their hash is noise
FLAT_BRIGHTNESS = 8.0  # two near-constant images are near-duplicates only this close in mean brightness


def _gray(images: np.ndarray) -> np.ndarray:
    x = images.astype(np.float32)
    if x.shape[-1] == 3:
        return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
    return x[..., 0]


def _to_32(gray: np.ndarray) -> np.ndarray:
    """(N, H, W) -> (N, 32, 32), area-averaged (antialiased) as a thumbnail is."""
    if gray.shape[1:] == (32, 32):  # CIFAR-sized already: nothing to resize (and no torch import, ~4 s)
        return np.ascontiguousarray(gray, dtype=np.float32)
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(gray))[:, None]
    return F.interpolate(t, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)[:, 0].numpy()


def grayscale_32(images) -> np.ndarray:
    """(N, 32, 32) float grayscale thumbnails of uint8 (N, H, W, C) images, or of a list of images of
    different sizes (one size group at a time, 4,096 images at a time: bounded memory)."""
    if isinstance(images, np.ndarray):
        groups = [(np.arange(len(images)), images)]
    else:
        by_shape: dict = {}
        for i, im in enumerate(images):
            by_shape.setdefault(im.shape, []).append(i)
        groups = [(np.array(idx), np.stack([images[i] for i in idx])) for idx in by_shape.values()]
    out = np.zeros((len(images), 32, 32), dtype=np.float32)
    for idx, block in groups:
        for start in range(0, len(block), 4096):
            out[idx[start : start + 4096]] = _to_32(_gray(np.asarray(block[start : start + 4096])))
    return out


def dataset_thumbnails(images) -> np.ndarray:
    """``grayscale_32`` of a dataset's images, block by block (lazily decoded folders stay bounded in memory)."""
    from .dataset import iter_blocks

    blocks = [grayscale_32(block) for _, block in iter_blocks(images)]
    return np.concatenate(blocks) if blocks else np.zeros((0, 32, 32), np.float32)


def phash(images=None, gray32: np.ndarray | None = None) -> np.ndarray:
    """(N, 64) uint8 bits of the perceptual hash of the images (or of their ``grayscale_32`` thumbnails)."""
    from scipy.fft import dctn

    gray32 = grayscale_32(images) if gray32 is None else gray32
    low = dctn(gray32, axes=(1, 2), norm="ortho")[:, :8, :8].reshape(len(gray32), 64)
    return (low > np.median(low, axis=1, keepdims=True)).astype(np.uint8)


class TooAlike(Exception):
    """The hash cannot tell this dataset's pictures apart (e.g. handwritten digits: every '1' hashes alike)."""


def near_duplicate_pairs(bits: np.ndarray, max_distance: int = MAX_DISTANCE,
                         max_pairs: int | None = None) -> list[tuple[int, int, int]]:
    """(i, j, Hamming distance) with i < j for every pair within ``max_distance`` bits: an exact radius search,
    in tiles. With bits as +-1 int8, a.b = 64 - 2 * Hamming, so one int8 matrix product per tile of
    ``ROWS`` x ``COLUMNS`` (torch._int_mm, as the k-NN search) and one comparison with a constant find the
    pairs; only tiles on or above the diagonal are computed. A 16 MB tile stays in cache for the comparison
    that follows its product: 60,000 hashes in 1.4 s on 2 cores (whole rows of 512 x 60,000: 3.0 s)."""
    import torch
    import torch.nn.functional as F

    n, width = bits.shape
    pad = (-n) % 8  # the int8 kernel wants columns in eights
    x = torch.from_numpy(np.ascontiguousarray(bits, dtype=np.int8) * 2 - 1)
    xt = F.pad(x.T.contiguous(), (0, pad))
    least = width - 2 * max_distance
    out = torch.empty((ROWS, COLUMNS), dtype=torch.int32)
    found = []
    for start in range(0, n, ROWS):
        q = x[start : start + ROWS]
        rows = len(q)
        if rows <= 16:  # the int8 kernel wants more than 16 rows
            q = torch.cat([q, torch.ones((17 - rows, width), dtype=torch.int8)])
        for first in range(start - start % 8, n + pad, COLUMNS):
            columns = xt[:, first : first + COLUMNS]
            buffer = out.view(-1)[: len(q) * columns.shape[1]].view(len(q), columns.shape[1])  # reused
            dot = torch._int_mm(q, columns, out=buffer)[:rows]
            i, j = torch.nonzero(dot >= least, as_tuple=True)
            keep = (j + first > i + start) & (j + first < n)  # each pair once; not the padding
            i, j = i[keep], j[keep]
            found += zip((i + start).tolist(), (j + first).tolist(), ((width - dot[i, j]) // 2).tolist())
        if max_pairs is not None and len(found) > max_pairs:
            raise TooAlike(f"more than {max_pairs:,} candidate pairs")
    return found


def find(images=None, max_distance: int = MAX_DISTANCE, gray32: np.ndarray | None = None
         ) -> list[tuple[int, int, int, float]]:
    """Near-duplicate pairs (i, j, hash distance in bits, thumbnail similarity) of uint8 images (an array, or
    a list of images of any sizes; or their ``grayscale_32``): hash candidates, confirmed by the thumbnails'
    correlation (centred, unit-norm thumbnails: their dot product)."""
    gray32 = grayscale_32(images) if gray32 is None else gray32
    if len(gray32) < 2:
        return []
    # Natural photos have a few near-duplicates per hundred images; far more candidates than images means the
    # hash cannot separate this data's pictures (TooAlike), and the search stops early instead of listing them.
    candidates = near_duplicate_pairs(phash(gray32=gray32), max_distance, max_pairs=max(1000, len(gray32)))
    if not candidates:
        return []
    brightness = gray32.mean((1, 2))
    thumbs = gray32 - brightness[:, None, None]
    flat = thumbs.reshape(len(thumbs), -1).std(axis=1) < FLAT_CONTRAST
    thumbs /= np.linalg.norm(thumbs.reshape(len(thumbs), -1), axis=1)[:, None, None] + 1e-6
    out = []
    for i, j, d in candidates:
        similarity = float((thumbs[i] * thumbs[j]).sum())
        if flat[i] or flat[j]:
            # A near-constant image has no AC coefficients worth hashing and no correlation to measure (a solid
            # red and a solid white image hash alike): only its brightness can say it matches another flat one.
            alike = bool(flat[i] and flat[j] and abs(brightness[i] - brightness[j]) <= FLAT_BRIGHTNESS)
        else:
            alike = d <= SURE_DISTANCE or similarity >= MIN_SIMILARITY
        if alike:
            out.append((i, j, d, round(similarity, 4)))
    if len(out) > max(100, len(gray32) // 5):
        raise TooAlike(f"{len(out):,} near-duplicate pairs among {len(gray32):,} images")
    return out


def groups(pairs, n: int) -> list[list[int]]:
    """Connected groups of near-duplicates (union-find over the pairs), largest first."""
    parent = list(range(n))

    def root(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a
    for a, b, *_ in pairs:
        parent[root(a)] = root(b)
    members: dict[int, list[int]] = {}
    for i in {x for a, b, *_ in pairs for x in (a, b)}:
        members.setdefault(root(i), []).append(i)
    return sorted((sorted(m) for m in members.values()), key=lambda m: (-len(m), m[0]))


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
