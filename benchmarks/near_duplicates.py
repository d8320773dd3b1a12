"""Near-duplicate finder, measured on near-duplicates as people make them: real CIFAR-10 images (the zip in
../shared) copied with a 1-4 px shift, a 5-20% crop at a random place, a 5-20% centred zoom, a rotation of up
to 5 degrees, a colour change plus a 1-3 px shift, and a JPEG re-encode, mixed into a real sample. Recall per
transformation; every pair found that was not planted is counted, and a strip of them is saved to look at
(precision is judged by eye: CIFAR-10 has real near-duplicates of its own); time. Then the whole zip: pairs,
those that cross train/test, time.

    python benchmarks/near_duplicates.py [--n 5000] [--copies 1200] [--out DIR]   # pip install -e '.[bench]'

Peer in the same run, on the same images: imagededup's PHash at its default threshold (10 bits), an optional
benchmark extra (never a runtime dependency).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from classlab import load_dataset  # noqa: E402
from classlab.data import near_duplicates as nd  # noqa: E402

ZIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "cifar10-images.zip"


def _moved(a, dx, dy):
    pad = np.pad(a, ((4, 4), (4, 4), (0, 0)), mode="edge")  # the uncovered edge repeats the border
    return pad[4 - dy : 4 - dy + a.shape[0], 4 - dx : 4 - dx + a.shape[1]].copy()


def shift(a, r):
    s = int(r.integers(1, 5))
    dx, dy = [(s, 0), (0, s), (s, s), (-s, 0), (0, -s), (-s, s)][int(r.integers(0, 6))]
    return _moved(a, dx, dy)


def _box(a, r, centred):
    f = r.uniform(0.05, 0.20)
    h, w = a.shape[:2]
    ch, cw = round(h * (1 - f)), round(w * (1 - f))
    y, x = ((h - ch) // 2, (w - cw) // 2) if centred else (int(r.integers(0, h - ch + 1)), int(r.integers(0, w - cw + 1)))
    return np.asarray(Image.fromarray(a).crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.BILINEAR))


def crop(a, r):
    return _box(a, r, centred=False)


def zoom(a, r):
    return _box(a, r, centred=True)


def rotate(a, r):
    big = np.pad(a, ((8, 8), (8, 8), (0, 0)), mode="edge")
    return np.asarray(Image.fromarray(big).rotate(r.uniform(-5, 5), Image.Resampling.BILINEAR))[8:-8, 8:-8].copy()


def colour_shift(a, r):
    b = ImageEnhance.Color(Image.fromarray(a)).enhance(r.uniform(0.6, 1.4))
    b = np.asarray(ImageEnhance.Brightness(b).enhance(r.uniform(0.8, 1.2)))
    return _moved(b, int(r.integers(1, 4)), 0)


def jpeg(a, r):
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=int(r.integers(40, 80)))
    return np.asarray(Image.open(buf).convert("RGB"))


TRANSFORMS = (shift, crop, zoom, rotate, colour_shift, jpeg)


def imagededup_pairs(images: np.ndarray, threshold: int = 10) -> set | None:
    try:
        from imagededup.methods import PHash
    except ImportError:
        return None
    hasher = PHash(verbose=False)
    encodings = {str(i): hasher.encode_image(image_array=im) for i, im in enumerate(images)}
    found = hasher.find_duplicates(encoding_map=encodings, max_distance_threshold=threshold)
    return {(min(int(a), int(b)), max(int(a), int(b))) for a, dup in found.items() for b in dup}


def report(name: str, found: set, planted: dict, truth: set, seconds: float) -> None:
    per = "  ".join(f"{f.__name__} {len(mine & found) / len(mine):.2f}" for f, mine in planted.items())
    print(f"| {name} | {len(truth & found) / len(truth):.3f} | {per} | {len(found - truth)} | {seconds:.1f} s |")


def strip(images: np.ndarray, pairs: list, path: Path, what: str = "pairs not planted") -> None:
    """The pairs side by side, enlarged 3x, in rows of 8 pairs: what precision is judged on."""
    tiles = [np.concatenate([images[i], images[j]], 1).repeat(3, 0).repeat(3, 1) for i, j in pairs]
    if not tiles:
        return
    h, w = tiles[0].shape[:2]
    rows = [tiles[k : k + 8] + [np.full_like(tiles[0], 255)] * (8 - len(tiles[k : k + 8])) for k in range(0, len(tiles), 8)]
    sheet = np.concatenate([np.concatenate([np.pad(t, ((4, 4), (4, 4), (0, 0)), constant_values=255) for t in row], 1)
                            for row in rows])
    Image.fromarray(sheet).save(path)
    print(f"  {len(pairs)} {what}, side by side: {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=5000, help="real images in the sample")
    p.add_argument("--copies", type=int, default=1200, help="near-duplicates planted (a sixth per transformation)")
    p.add_argument("--out", default="/tmp", help="where the strips of unplanted pairs go")
    p.add_argument("--skip-whole", action="store_true", help="not the whole zip")
    args = p.parse_args()
    ds = load_dataset(str(ZIP))
    rng = np.random.default_rng(0)
    sample = np.asarray(ds.images[rng.choice(len(ds), args.n, replace=False)])
    sources = rng.choice(args.n, args.copies, replace=False)
    kinds = [TRANSFORMS[k % len(TRANSFORMS)] for k in range(args.copies)]
    copies = np.stack([f(sample[s], rng) for s, f in zip(sources, kinds)])
    images = np.concatenate([sample, copies])
    truth = {(int(s), args.n + k) for k, s in enumerate(sources)}
    planted = {f: {(int(s), args.n + k) for k, (s, g) in enumerate(zip(sources, kinds)) if g is f} for f in TRANSFORMS}
    print(f"{args.n} real CIFAR-10 images + {args.copies} planted near-duplicates\n")
    print("| method | recall | recall per transformation | pairs not planted | time |\n|---|---|---|---|---|")
    t0 = time.perf_counter()
    ours = {(i, j) for i, j, *_ in nd.find(images)}
    report("classlab check (hash views + aligned confirmation)", ours, planted, truth, time.perf_counter() - t0)
    t0 = time.perf_counter()
    peer = imagededup_pairs(images)
    if peer is None:
        print("| imagededup PHash | skipped: pip install -e '.[bench]' | | | |")
    else:
        report("imagededup PHash, threshold 10", peer, planted, truth, time.perf_counter() - t0)
    out = Path(args.out)
    strip(images, sorted(ours - truth)[:48], out / "near_duplicates_classlab_unplanted.png")
    if peer is not None:
        extra = sorted(peer - truth)
        strip(images, [extra[k] for k in np.random.default_rng(1).permutation(len(extra))[:48]],
              out / "near_duplicates_imagededup_unplanted.png")
    if args.skip_whole:
        return
    t0 = time.perf_counter()
    whole = nd.find(ds.images)
    seconds = time.perf_counter() - t0
    split = ds.official_split
    cross = [(i, j) for i, j, *_ in whole if split[i] != split[j]]
    tests = {i if split[i] == "test" else j for i, j in cross}
    groups = nd.groups(whole, len(ds))
    print(f"\nCIFAR-10 zip ({len(ds):,} images): {len(whole)} near-duplicate pairs in {seconds:.1f} s; {len(cross)} cross "
          f"train/test, involving {len(tests)} test images; {len(groups)} groups, the largest of {len(groups[0]) if groups else 0}")
    # precision on real data is judged by eye: 96 of the reported pairs at random, in two strips of 48
    sampled = [whole[k][:2] for k in np.random.default_rng(0).permutation(len(whole))[:96]]
    for half in range(2):
        strip(ds.images, sampled[48 * half : 48 * (half + 1)], out / f"near_duplicates_whole_sample_{half + 1}.png",
              "pairs of the whole zip, sampled at random")


if __name__ == "__main__":
    main()
