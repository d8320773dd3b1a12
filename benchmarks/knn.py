"""k-NN benchmark: classlab's exact k-NN vs scikit-learn's brute-force KNeighborsClassifier.

Same training/test data, same k; predictions compared item by item; wall time ratio printed; classlab
with ``algorithm="brute"`` (every distance computed, no lower bounds) timed beside, both after a warm-up
and as the best of two alternated runs; the throughput of our search (GOP/s, counting 2*Q*N*D multiply-adds as for a matrix product) printed
beside this machine's measured int8 and float32 matrix-product peaks.

    python benchmarks/knn.py                      # MNIST 60k/10k and CIFAR-10 50k/10k from ../shared
    python benchmarks/knn.py --dataset mnist --max-test 2000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared" / "data"

from classlab import KNNClassifier, load_dataset  # noqa: E402


def peak_gops(m=2048, k=3072, n=8192, repeats=3) -> dict[str, float]:
    a8 = torch.randint(-128, 127, (m, k), dtype=torch.int8)
    b8 = torch.randint(-128, 127, (n, k), dtype=torch.int8).t()  # the layout k-NN uses (training rows)
    af, bf = a8.float(), b8.float()
    out8, outf = torch.empty(m, n, dtype=torch.int32), torch.empty(m, n)
    out = {}
    for name, fn in (("int8 _int_mm", lambda: torch._int_mm(a8, b8, out=out8)),
                     ("float32 matmul", lambda: torch.matmul(af, bf, out=outf))):
        fn()
        best = min(_timed(fn) for _ in range(repeats))
        out[name] = 2 * m * k * n / best / 1e9
    return out


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench(name: str, spec, k: int, max_test: int | None, max_train: int | None) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    ds = load_dataset(spec)
    train = np.flatnonzero(ds.official_split == "train")[:max_train]
    test = np.flatnonzero(ds.official_split == "test")[:max_test]
    Xtr, ytr, Xte, yte = ds.flat(train), ds.labels[train], ds.flat(test), ds.labels[test]
    q, n, d = len(Xte), len(Xtr), Xtr.shape[1]
    print(f"\n{name}: train {n} x {d}, test {q}, k={k}, {torch.get_num_threads()} threads")

    images, queries = ds.pixels(train), ds.pixels(test)

    def search(algorithm):  # fit and predict, timed together
        start = time.perf_counter()
        pred = KNNClassifier(k, "l2", device="cpu", progress=False, algorithm=algorithm).fit(images, ytr).predict(queries)
        return pred, time.perf_counter() - start
    KNNClassifier(k, progress=False).fit(images[:5000], ytr[:5000]).predict(queries[:200])  # warm-up: kernels, threads
    # auto and brute (every distance: what the lower bounds save) alternated, best of two each: this
    # host's timings wander by 10-30% between runs
    timings, ours, brute = {"auto": [], "brute": []}, None, None
    for algorithm in ("auto", "brute", "auto", "brute"):
        pred, seconds = search(algorithm)
        timings[algorithm].append(seconds)
        ours, brute = (pred, brute) if algorithm == "auto" else (ours, pred)
    t_ours, t_brute = min(timings["auto"]), min(timings["brute"])

    # scikit-learn's own recipe: brute force on the pixel rows as float64 (exact for uint8 pixels).
    t = time.perf_counter()
    ref = KNeighborsClassifier(k, algorithm="brute").fit(Xtr.astype(np.float64), ytr).predict(Xte.astype(np.float64))
    t_sk = time.perf_counter() - t

    same = int((ours == ref).sum())
    print(f"  classlab      {t_ours:8.2f} s   accuracy {np.mean(ours == yte):.4f}   {2 * q * n * d / t_ours / 1e9:6.0f} "
          f"GOP/s (of a full product's work)")
    print(f"  classlab brute{t_brute:8.2f} s   (algorithm='brute': every distance; same predictions: "
          f"{np.array_equal(brute, ours)})")
    print(f"  scikit-learn  {t_sk:8.2f} s   accuracy {np.mean(ref == yte):.4f}")
    print(f"  identical predictions: {same}/{q}    speed-up vs scikit-learn: {t_sk / t_ours:.1f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=("mnist", "cifar10", "all"), default="all")
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--max-test", type=int)
    p.add_argument("--max-train", type=int)
    args = p.parse_args()
    peaks = peak_gops()
    print("matrix-product peak on this machine: " + ", ".join(f"{k} {v:.0f} GOP/s" for k, v in peaks.items()))
    if args.dataset in ("mnist", "all"):
        bench("MNIST", SHARED / "mnist", args.k, args.max_test, args.max_train)
    if args.dataset in ("cifar10", "all"):
        bench("CIFAR-10 (zip)", SHARED / "cifar10" / "cifar10-images.zip", args.k, args.max_test, args.max_train)


if __name__ == "__main__":
    main()
