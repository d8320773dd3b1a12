"""Near-duplicates by content, and image quality: what exact pixel hashes miss.

A perceptual hash (pHash, as the imagehash package computes it): the image in grayscale at 32x32, its 2D
DCT, and one bit per low-frequency coefficient (the top-left 8x8) above their median. Re-encoding,
rescaling, small colour and brightness changes change few of the 64 bits; different pictures differ in about
half. But most near-duplicates people make are shifted, cropped or zoomed copies of a shot, and a 3 px shift
of a 32 px thumbnail changes a third of the bits. So each image is also hashed in ``VIEWS``: its thumbnail
moved by a few pixels, and zoomed in (a centre 80-90% of it, itself moved), as a copy made that way would look;
a pair is a candidate when any view of one is within ``MAX_DISTANCE`` bits of the other's plain hash (an exact
radius search, blockwise with int8 matrix products as the k-NN package's search, no pairwise table in memory).

A candidate is confirmed by the thumbnails' correlation *after alignment*: the view that matched, moved by up
to two pixels more, against the other thumbnail (``MIN_SIMILARITY``); assuming the alignment instead (comparing
the thumbnails as they are) turned a 1-3 px shift into a correlation of 0.5-0.9. A pair just short of it is
tried in every plain move of either image too (``best_alignment``: a shifted copy's hashes can match closest in
a zoomed view). Their fine detail must then correlate too (``MIN_DETAIL``): different pictures of one
silhouette share a layout but not their edges. Groups are built so that every member confirms against the
group's representative (``groups``), never by chains of single links.
"""

from __future__ import annotations

import functools

import numpy as np

MAX_DISTANCE = 10  # bits of 64 for a candidate pair (benchmarks/README.md: measured on CIFAR-10)
SURE_DISTANCE = 4  # this close (the plain thumbnails' hashes), the hash alone decides
# (zoom, dx, dy) of each view hashed besides the plain one: moves of 3 px one way (a search of every image's views
# against every other image's plain hash covers the opposite move from the other side), and centre zooms of 90%
# and 80% moved by up to 2 px either way (crops of 5-20%). Measured on planted copies of CIFAR-10 images:
# benchmarks/near_duplicates.py and benchmarks/README.md.
VIEWS = ((1.0, 0, 0), (1.0, 3, 0), (1.0, 0, 3), (1.0, 3, 3), (1.0, 3, -3),
         *((zoom, dx, dy) for zoom in (0.9, 0.8) for dx in (-2, 0, 2) for dy in (-2, 0, 2)))
CANDIDATES_PER_IMAGE = 4  # more candidate pairs than this per image: the hash cannot tell the pictures apart
NEIGHBOURS = 128  # each image's nearest others by layout whose views are compared (coarse_neighbours)
ROWS, COLUMNS = 1024, 4096  # the search's tile (int32 products: 16 MB)
MIN_SIDE = 16  # smaller images (8x8 digits) hold too little detail to hash
MIN_SIMILARITY = 0.9  # otherwise the aligned thumbnails must correlate this well (hash collisions of different
# pictures, e.g. two planes on a blue sky, correlate far less; benchmarks/README.md for recall and precision)
# ...and their fine detail (each thumbnail less its 3 x 3 local mean, aligned the same way) this well: two different
# ships of one silhouette on one sea correlate at 0.90-0.93 in their layout, but their edges do not. On the whole
# CIFAR-10 zip, of the pairs with detail 0.3-0.4 about 4 in 10 were two different pictures, 0.4-0.5 about 2 in 10,
# 0.5-0.6 about 1 in 30; planted copies lost 0.7 points of recall at 0.4 (benchmarks/README.md)
MIN_DETAIL = 0.4
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
    gray32 = grayscale_32(images) if gray32 is None else gray32
    return view_hashes(gray32, views=1)[0]


@functools.lru_cache(maxsize=1)
def _view_dct() -> np.ndarray:
    """(1024, len(VIEWS) * 64): a flattened thumbnail times this is each view's low 8 x 8 DCT coefficients.
    Both the view (bilinear resampling, edges repeated) and the DCT are linear, so one matrix product hashes
    every view: 60,000 thumbnails in about 2 s, where resampling and transforming each view took 20 times that."""
    from scipy.fft import dctn

    basis = np.eye(1024, dtype=np.float32).reshape(1024, 32, 32)
    return np.concatenate([dctn(view(basis, *v), axes=(1, 2), norm="ortho")[:, :8, :8].reshape(1024, 64)
                           for v in VIEWS], axis=1).astype(np.float32)


def view_hashes(gray32: np.ndarray, views: int = len(VIEWS), block: int = 8192) -> np.ndarray:
    """(views, N, 64) uint8: the perceptual hash of each of the first ``views`` VIEWS of every thumbnail (one bit
    per low-frequency DCT coefficient above the view's median), in blocks of thumbnails."""
    weights = _view_dct()[:, : 64 * views]
    out = np.empty((views, len(gray32), 64), np.uint8)
    for start in range(0, len(gray32), block):
        part = np.ascontiguousarray(gray32[start : start + block], dtype=np.float32).reshape(-1, 1024)
        low = (part @ weights).reshape(len(part), views, 64)
        out[:, start : start + block] = (low > np.median(low, axis=2, keepdims=True)).transpose(1, 0, 2)
    return out


class TooAlike(Exception):
    """The hash cannot tell this dataset's pictures apart (e.g. handwritten digits: every '1' hashes alike)."""


def near_duplicate_pairs(bits: np.ndarray, max_distance: int = MAX_DISTANCE,
                         max_pairs: int | None = None) -> list[tuple[int, int, int]]:
    """(i, j, Hamming distance) with i < j for every pair of ``bits`` rows within ``max_distance`` bits."""
    return [(q, b, d) for q, b, d in radius_pairs(bits, bits, max_distance, max_pairs, same=True)]


def radius_pairs(queries: np.ndarray, base: np.ndarray, max_distance: int, max_pairs: int | None = None,
                 same: bool = False) -> list[tuple[int, int, int]]:
    """(query row, base row, Hamming distance) for every pair within ``max_distance`` bits: an exact radius
    search, in tiles. With bits as +-1 int8, a.b = width - 2 * Hamming, so one int8 matrix product per tile of
    ``ROWS`` x ``COLUMNS`` and one comparison with a constant find the pairs. The products are float32 (exact:
    sums of 64 terms of +-1): torch's int8 product (torch._int_mm) is fast only where the CPU has VNNI, and 50
    times slower than float32 on an AVX2 laptop. ``same``: queries and base are one set; each pair once."""
    import torch

    n, width = base.shape
    x = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32) * 2 - 1)
    xt = torch.from_numpy(np.ascontiguousarray(base, dtype=np.float32) * 2 - 1).T.contiguous()
    least = width - 2 * max_distance - 0.5
    found = []
    for start in range(0, len(x), ROWS):
        q = x[start : start + ROWS]
        for first in range(start if same else 0, n, COLUMNS):
            dot = q @ xt[:, first : first + COLUMNS]
            i, j = torch.nonzero(dot >= least, as_tuple=True)
            if same:
                keep = j + first > i + start  # each pair once
                i, j = i[keep], j[keep]
            found += zip((i + start).tolist(), (j + first).tolist(),
                         ((width - dot[i, j].round().int()) // 2).tolist())
        if max_pairs is not None and len(found) > max_pairs:
            raise TooAlike(f"more than {max_pairs:,} candidate pairs")
    return found


def view(gray32: np.ndarray, zoom: float, dx: float, dy: float) -> np.ndarray:
    """Thumbnails as a copy made by zooming in to ``zoom`` of the picture and moving it (dx, dy) pixels would
    look: resampled bilinearly, edges repeated (a zoom below 1 shows the centre larger)."""
    if (zoom, dx, dy) == (1.0, 0, 0):
        return gray32
    import torch
    import torch.nn.functional as F

    n = len(gray32)
    theta = torch.tensor([[zoom, 0.0, 2 * dx / 32], [0.0, zoom, 2 * dy / 32]], dtype=torch.float32).expand(n, 2, 3)
    grid = F.affine_grid(theta, [n, 1, 32, 32], align_corners=False)
    t = torch.from_numpy(np.ascontiguousarray(gray32, dtype=np.float32))[:, None]
    return F.grid_sample(t, grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0].numpy()


def coarse_neighbours(gray32: np.ndarray, k: int = NEIGHBOURS, block: int = 512) -> np.ndarray:
    """(N, k + 1) indices of each thumbnail's nearest by layout (itself among them): its 4 x 4 grid of block
    means, standardised (brightness and contrast removed). Moved, cropped, zoomed or recoloured copies keep their
    layout, so at 60,000 images 91% of planted copies are among the 64 nearest. An exact search, in blocks of
    rows (float32 products, then the k smallest per row): about 3 s for 60,000, where a k-d tree took 2 minutes."""
    import torch

    x = gray32 - gray32.mean((1, 2), keepdims=True)
    x /= x.std((1, 2), keepdims=True) + 1e-3
    layout = torch.from_numpy(np.ascontiguousarray(x.reshape(len(x), 4, 8, 4, 8).mean((2, 4)).reshape(len(x), 16),
                                                    dtype=np.float32))
    minus_norms = -(layout * layout).sum(1)[None]
    twice = (2 * layout).T.contiguous()
    k = min(k + 1, len(layout))
    out = np.empty((len(layout), k), np.int64)
    for start in range(0, len(layout), block):
        # the nearest have the largest 2 q.x - |x|^2 (|q|^2 is the same along a row): one product, one pass
        closeness = torch.addmm(minus_norms, layout[start : start + block], twice)
        out[start : start + block] = torch.topk(closeness, k).indices.numpy()
    return out


def candidates(gray32: np.ndarray, max_distance: int = MAX_DISTANCE) -> dict[tuple[int, int], tuple[int, int, int]]:
    """{(i, j) with i < j: (hash distance, the image whose view matched, that view's index in VIEWS)}. Two
    sources: every pair whose plain hashes are within ``max_distance`` (an exact radius search: re-encodes and
    colour changes, never missed), and among each image's ``coarse_neighbours``, the pairs where some view of
    one is within ``max_distance`` of the other's plain hash (moves, crops, zooms; a search of every view
    against every image would cost 23 radius searches). The closest match is kept per pair."""
    n = len(gray32)
    hashes = view_hashes(gray32)  # (views, n, 64)
    limit = max(1000, n)  # far more than images: the hash cannot tell this data's pictures apart
    found = {(i, j): (d, i, 0) for i, j, d in radius_pairs(hashes[0], hashes[0], max_distance, limit, same=True)}
    # near-constant thumbnails hash to noise: they pair by brightness alone (find decides), nearest first
    flat = np.flatnonzero(gray32.reshape(n, -1).std(axis=1) < FLAT_CONTRAST)
    flat = flat[np.argsort(gray32[flat].mean((1, 2)), kind="stable")]
    brightness = gray32[flat].mean((1, 2))
    for k in range(len(flat)):
        for m in range(k + 1, len(flat)):
            if brightness[m] - brightness[k] > FLAT_BRIGHTNESS:
                break
            key = (min(flat[k], flat[m]), max(flat[k], flat[m]))
            found.setdefault((int(key[0]), int(key[1])), (0, int(key[0]), 0))
        if len(found) > limit:
            raise TooAlike(f"more than {limit:,} candidate pairs")
    if n < 3:
        return found
    near = coarse_neighbours(gray32)
    a = np.repeat(np.arange(n), near.shape[1])
    b = near.reshape(-1)
    a, b = np.minimum(a, b), np.maximum(a, b)
    # distinct pairs by a sort (with identical layouts, an image's own row need not come first): np.unique hashes
    # in NumPy 2, 5.5 s for 7.7 million pairs against the sort's 0.7
    pairs = np.sort((a * n + b)[a != b])
    pairs = pairs[np.concatenate(([True], pairs[1:] != pairs[:-1]))]
    a, b = pairs // n, pairs % n
    packed = np.packbits(hashes, axis=2).view(np.uint64)[..., 0]  # (views, n): 64 bits each
    # Each pair's closest match over every view of either image, as one uint16 key: distance << 6 | 2 view +
    # direction (the smallest key is the smallest distance, then the first view), so the loop is a running
    # minimum instead of masked updates of three arrays (12 s -> 4 s for 7.7 million pairs of 60,000 images).
    best = np.full(len(a), 65 << 6, np.uint16)
    for v in range(1, len(VIEWS)):
        for direction, (one, other) in enumerate(((a, b), (b, a))):
            d = np.bitwise_count(packed[v, one] ^ packed[0, other]).astype(np.uint16)
            np.minimum(best, (d << 6) | (2 * v + direction), out=best)
    keep = np.flatnonzero((best >> 6) <= max_distance)
    code = (best[keep] & 63).astype(np.int64)
    chosen = np.zeros(len(a), np.int64)
    chosen[keep] = code >> 1
    viewed = a.copy()
    viewed[keep] = np.where(code & 1, b[keep], a[keep])
    best = (best >> 6).astype(np.int64)
    if len(keep) > CANDIDATES_PER_IMAGE * max(n, 250):
        raise TooAlike(f"{len(keep):,} candidate pairs among {n:,} images")
    for i, j, d, w, v in zip(a[keep].tolist(), b[keep].tolist(), best[keep].tolist(), viewed[keep].tolist(),
                             chosen[keep].tolist()):
        if (i, j) not in found or d < found[(i, j)][0]:
            found[(i, j)] = (d, w, v)
    return found


ALIGN_MARGIN = 4  # the viewed thumbnail's border left out of the comparison: a moved copy's edge is filled in
ALIGN_REACH = 2  # pixels either way around the view's alignment searched by the comparison


def aligned_similarity(gray32: np.ndarray, viewed: np.ndarray, others: np.ndarray, views: np.ndarray,
                       block: int = 8192, inverse: bool = False) -> np.ndarray:
    """Per pair: the best normalised cross-correlation (Pearson's r over a window) of image ``viewed``'s view
    ``views`` (an index into VIEWS), its border of ALIGN_MARGIN pixels left out, with image ``others``'
    thumbnail, over moves of up to ALIGN_REACH pixels around that view's alignment. One grouped convolution
    per block of pairs gives every move's dot product; window means and norms come from average pooling.
    ``inverse``: the view undone instead (``others`` seen as ``viewed`` would look), so that the image whose
    border a move filled in is the one whose border is left out."""
    import torch
    import torch.nn.functional as F

    side = 32 - 2 * ALIGN_MARGIN
    inset = ALIGN_MARGIN - ALIGN_REACH  # the other thumbnail, cut to the window plus the reach
    out = np.empty(len(viewed), np.float32)
    for v in np.unique(views):
        rows = np.flatnonzero(views == v)
        for start in range(0, len(rows), block):
            part = rows[start : start + block]
            zoom, dx, dy = VIEWS[v]
            spec = (1 / zoom, -dx / zoom, -dy / zoom) if inverse else (zoom, dx, dy)
            a = view(gray32[viewed[part]], *spec)[:, ALIGN_MARGIN : 32 - ALIGN_MARGIN, ALIGN_MARGIN : 32 - ALIGN_MARGIN]
            a = a - a.mean((1, 2), keepdims=True)
            a /= np.linalg.norm(a.reshape(len(a), -1), axis=1)[:, None, None] + 1e-6
            b = torch.from_numpy(np.ascontiguousarray(gray32[others[part]][:, inset : 32 - inset, inset : 32 - inset]))
            dots = F.conv2d(b[None], torch.from_numpy(np.ascontiguousarray(a))[:, None], groups=len(part))[0]
            mean = F.avg_pool2d(b[:, None], side, 1)[:, 0]
            spread = torch.sqrt(torch.clamp(F.avg_pool2d(b[:, None] ** 2, side, 1)[:, 0] - mean ** 2, min=1e-6)) * side
            out[part] = (dots / spread).amax((1, 2)).numpy()
    return out


def local_detail(gray32: np.ndarray) -> np.ndarray:
    """Each thumbnail less its 3 x 3 local mean (edges repeated): the fine detail a copy keeps and a look-alike
    picture does not."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(gray32, dtype=np.float32))[:, None]
    return (t - F.avg_pool2d(F.pad(t, (1, 1, 1, 1), mode="replicate"), 3, 1))[:, 0].numpy()


def _both_ways(gray32: np.ndarray, viewed: np.ndarray, others: np.ndarray, views: np.ndarray) -> np.ndarray:
    """The better of the matched view of one against the other and the view undone on the other against the
    one (so the image whose border a move filled in is the one whose border is left out)."""
    return np.maximum(aligned_similarity(gray32, viewed, others, views),
                      aligned_similarity(gray32, others, viewed, views, inverse=True))


MOVES = 5  # VIEWS[:MOVES] are the plain thumbnail and its moves: every alignment a shifted copy can need
REALIGN_FROM = 0.8  # pairs whose matched view correlates this well, but not MIN_SIMILARITY, try every move too


def best_alignment(gray32: np.ndarray, viewed: np.ndarray, others: np.ndarray, views: np.ndarray,
                   similarity: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairs short of MIN_SIMILARITY in the view their hashes matched in, tried in every move of either image:
    a shifted copy's hashes can match closest in a zoomed view, whose alignment is off by a pixel (a 0.82-0.89
    correlation). Returns (similarity, viewed, others, views), each pair in its best alignment."""
    similarity, viewed, others, views = similarity.copy(), viewed.copy(), others.copy(), views.copy()
    retry = np.flatnonzero((similarity < MIN_SIMILARITY) & (similarity >= REALIGN_FROM))
    one, two = viewed[retry], others[retry]
    for v in range(MOVES):
        for first, second in ((one, two), (two, one))[: 1 if v == 0 else 2]:  # a move of either image
            tried = _both_ways(gray32, first, second, np.full(len(retry), v))
            better = tried > similarity[retry]
            rows = retry[better]
            similarity[rows], viewed[rows], others[rows], views[rows] = tried[better], first[better], second[better], v
    return similarity, viewed, others, views


def find(images=None, max_distance: int = MAX_DISTANCE, gray32: np.ndarray | None = None
         ) -> list[tuple[int, int, int, float]]:
    """Near-duplicate pairs (i, j, hash distance in bits, aligned thumbnail similarity) of uint8 images (an
    array, or a list of images of any sizes; or their ``grayscale_32``): hash candidates over every view,
    confirmed by the aligned correlation of the thumbnails (centred, unit-norm)."""
    gray32 = grayscale_32(images) if gray32 is None else gray32
    if len(gray32) < 2:
        return []
    # Natural photos have a few near-duplicates per hundred images; far more candidates than images means the
    # hash cannot separate this data's pictures (TooAlike), and the search stops early instead of listing them.
    found = candidates(gray32, max_distance)
    if not found:
        return []
    keys = np.array(list(found), dtype=np.int64)
    d, viewed, views = (np.array([found[tuple(k)][m] for k in keys.tolist()], dtype=np.int64) for m in range(3))
    others = np.where(viewed == keys[:, 0], keys[:, 1], keys[:, 0])
    # both ways: the matched view of one against the other, and the view undone on the other against the one
    similarity = _both_ways(gray32, viewed, others, views)
    sure = (d <= SURE_DISTANCE) & (views == 0)
    similarity, viewed, others, views = best_alignment(gray32, viewed, others, views, similarity)
    check = np.flatnonzero(~sure & (similarity >= MIN_SIMILARITY))
    detail = np.ones(len(keys), np.float32)  # pairs the hash decides, or the layout rejects, need no detail
    detail[check] = _both_ways(local_detail(gray32), viewed[check], others[check], views[check])
    brightness = gray32.mean((1, 2))
    flat = gray32.reshape(len(gray32), -1).std(axis=1) < FLAT_CONTRAST
    out = []
    for (i, j), dist, is_sure, sim, fine in zip(keys.tolist(), d.tolist(), sure.tolist(), similarity.tolist(),
                                                detail.tolist()):
        if flat[i] or flat[j]:
            # A near-constant image has no AC coefficients worth hashing and no correlation to measure (a solid
            # red and a solid white image hash alike): only its brightness can say it matches another flat one.
            alike = bool(flat[i] and flat[j] and abs(brightness[i] - brightness[j]) <= FLAT_BRIGHTNESS)
        else:
            alike = is_sure or (sim >= MIN_SIMILARITY and fine >= MIN_DETAIL)
        if alike:
            out.append((i, j, dist, round(sim, 4)))
    out.sort()
    if len(out) > max(100, len(gray32) // 5):
        raise TooAlike(f"{len(out):,} near-duplicate pairs among {len(gray32):,} images")
    return out


def groups(pairs, n: int) -> list[list[int]]:
    """Groups of near-duplicates, largest first, in which every member is a confirmed pair with the group's
    first image (its representative): the image with the most confirmed pairs starts a group with all its
    ungrouped partners, and so on. Single links never chain two different pictures into one group (as 70
    catalogue shots of white cars did when groups were connected components)."""
    partners: dict[int, set[int]] = {}
    for a, b, *_ in pairs:
        partners.setdefault(a, set()).add(b)
        partners.setdefault(b, set()).add(a)
    grouped: set[int] = set()
    out = []
    for rep in sorted(partners, key=lambda k: (-len(partners[k]), k)):
        if rep in grouped:
            continue
        members = sorted(m for m in partners[rep] if m not in grouped)
        if members:
            out.append([rep, *members])
            grouped.update([rep, *members])
    return sorted(out, key=lambda g: (-len(g), g[0]))
