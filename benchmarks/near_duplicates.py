"""Near-duplicate finder, measured: synthetic near-duplicates of real CIFAR-10 images (JPEG re-encode,
1-3 px crop and resize, colour and brightness shifts, 1-3 px horizontal shift), mixed into a real
sample; recall per transformation, and precision of every pair found; then the whole CIFAR-10 zip:
near-duplicate pairs, and those that cross train/test (ciFAIR counted 286 test images, 249 the same shot).

    python benchmarks/near_duplicates.py [--n 5000] [--copies 1000]

Baseline in the same run: exact pixel hashes (what `classlab check` found before), which find none of
the synthetic copies.
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


def jpeg(a, r):
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=int(r.integers(40, 80)))
    return np.asarray(Image.open(buf).convert("RGB"))


def crop(a, r):
    c, pil = int(r.integers(1, 4)), Image.fromarray(a)
    w, h = pil.size
    return np.asarray(pil.crop((c, c, w - c, h - c)).resize((w, h), Image.Resampling.BILINEAR))


def colour(a, r):
    return np.asarray(ImageEnhance.Color(Image.fromarray(a)).enhance(r.uniform(0.7, 1.3)))


def brightness(a, r):
    return np.asarray(ImageEnhance.Brightness(Image.fromarray(a)).enhance(r.uniform(0.8, 1.2)))


def shift(a, r):
    s = int(r.integers(1, 4))
    out = np.roll(a, s, axis=1)
    out[:, :s] = a[:, :1]
    return out


def recalls(planted: dict, truth: set, found: set) -> None:
    for f, mine in planted.items():
        print(f"  recall {f.__name__:10} {len(mine & found) / len(mine):.3f}")
    print(f"  recall overall    {len(truth & found) / len(truth):.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=5000, help="real images in the sample")
    p.add_argument("--copies", type=int, default=1000, help="synthetic near-duplicates added (200 per transform)")
    p.add_argument("--embeddings", metavar="BACKBONE", help="also the embedding pass (weights in the torch hub cache)")
    args = p.parse_args()
    ds = load_dataset(str(ZIP))
    rng = np.random.default_rng(0)
    sample = ds.images[rng.choice(len(ds), args.n, replace=False)]
    transforms = (jpeg, crop, colour, brightness, shift)
    sources = rng.choice(args.n, args.copies, replace=False)
    kinds = [transforms[k % len(transforms)] for k in range(args.copies)]
    copies = np.stack([f(sample[s], rng) for s, f in zip(sources, kinds)])
    images = np.concatenate([sample, copies])
    t0 = time.perf_counter()
    pairs = nd.find(images)
    seconds = time.perf_counter() - t0
    truth = {(int(s), args.n + k) for k, s in enumerate(sources)}
    found = {(i, j) for i, j, *_ in pairs}
    print(f"{args.n} real CIFAR-10 images + {args.copies} synthetic near-duplicates; {len(pairs)} pairs found "
          f"in {seconds:.1f} s")
    planted = {f: {(int(s), args.n + k) for k, (s, g) in enumerate(zip(sources, kinds)) if g is f} for f in transforms}
    recalls(planted, truth, found)
    other = found - truth  # pairs of two originals (real near-duplicates in CIFAR-10 or false) or copy pairs
    synthetic_false = [(i, j) for i, j in other if j >= args.n]
    print(f"  pairs not planted: {len(other)} ({len(synthetic_false)} involving a copy: chains through its source)")
    exact = sum(np.array_equal(sample[s], c) for s, c in zip(sources, copies))
    print(f"  baseline, exact pixel hashes: {exact} of the {args.copies} planted copies found")
    if args.embeddings:
        from classlab.checks.embeddings import embedding_pass
        from classlab.data.dataset import ImageDataset

        mixed = ImageDataset(images=images, labels=np.zeros(len(images), dtype=np.int64) + (np.arange(len(images)) % 2),
                             class_names=["a", "b"], ids=[str(i) for i in range(len(images))], name="mixed",
                             source="benchmark")
        t0 = time.perf_counter()
        result = embedding_pass(mixed, args.embeddings)
        seconds = time.perf_counter() - t0
        found_e = {(i, j) for i, j, _ in result["pairs"]}
        print(f"embedding pass ({args.embeddings}, threshold {result['threshold']:.3f}): {len(found_e)} pairs in "
              f"{seconds:.0f} s")
        recalls(planted, truth, found_e)
        print(f"  pairs not planted: {len(found_e - truth)}")
    t0 = time.perf_counter()
    whole = nd.find(ds.images)
    split = ds.official_split
    cross = [(i, j) for i, j, *_ in whole if split[i] != split[j]]
    tests = {i if split[i] == "test" else j for i, j in cross}
    print(f"CIFAR-10 zip: {len(whole)} near-duplicate pairs in {time.perf_counter() - t0:.1f} s; {len(cross)} cross "
          f"train/test, involving {len(tests)} test images")


if __name__ == "__main__":
    main()
