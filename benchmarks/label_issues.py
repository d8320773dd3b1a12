"""Label-issue detection, measured: flip a known share of real training labels, run classlab's confident
learning on leave-one-out k-NN probabilities, and report precision and recall of the flagged images.

    python benchmarks/label_issues.py [--data mnist] [--n 10000] [--flip 0.05] [--k 10]

Baseline in the same run: flagging the images whose given label disagrees with the plain leave-one-out
k-NN vote (argmax), the simplest thing a practitioner would try.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from classlab import load_dataset  # noqa: E402
from classlab.evaluation.label_issues import find_label_issues, out_of_sample_knn, precision_recall  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="mnist")
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--flip", type=float, default=0.05)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    ds = load_dataset(args.data, data_dir=DATA)
    rng = np.random.default_rng(args.seed)
    rows = rng.choice(np.flatnonzero(ds.official_split == "train") if ds.official_split is not None
                      else np.arange(len(ds)), args.n, replace=False)
    labels = ds.labels[rows].copy()
    flipped = rng.choice(args.n, int(args.flip * args.n), replace=False)
    labels[flipped] = (labels[flipped] + rng.integers(1, ds.num_classes, len(flipped))) % ds.num_classes
    t0 = time.perf_counter()
    probs = out_of_sample_knn(ds.flat(rows), labels, ds.num_classes, k=args.k)
    found = find_label_issues(labels, probs)
    seconds = time.perf_counter() - t0
    precision, recall = precision_recall(found["issues"], flipped)
    naive = np.flatnonzero(probs.argmax(1) != labels)
    b_precision, b_recall = precision_recall(naive, flipped)
    print(f"{args.data}: {args.n} training images, {len(flipped)} labels flipped ({args.flip:.0%}), k={args.k}")
    print(f"confident learning: {len(found['issues'])} flagged, precision {precision:.3f}, recall {recall:.3f} "
          f"({seconds:.1f} s)")
    print(f"baseline (LOO k-NN argmax != label): {len(naive)} flagged, precision {b_precision:.3f}, recall {b_recall:.3f}")
    top = found["issues"][: len(flipped)]
    print(f"top {len(flipped)} of the ranking: precision {precision_recall(top, flipped)[0]:.3f}")


if __name__ == "__main__":
    main()
