"""Transfer-learning benchmark: the decks' laptop setting on the CIFAR-10 zip, MobileNetV2 at 96 px.

10,000 training images (stratified from the official training split), 2,000 test images (from the
official test split), dense 128, 5 epochs, in the same run on this machine:

- ours, frozen features + head: ``classlab transfer --mode features`` (features computed once and
  cached), then a second head on the warm cache (the cache's speed-up);
- ours, the tuned head: ``--schedule cosine --head-augment flip --tta flip`` (mirror images' features
  cached too), three seeds, with and without the flip averaging;
- the decks' script ported as a plain PyTorch loop: frozen MobileNetV2 run on every batch of every
  epoch, pixels scaled to [0, 1] with no ImageNet normalisation (the scaling bug), validated on test;
- ours fine-tuned: ``--mode both`` (the head above, then fine-tuning);
- k-NN on MobileNetV2 embeddings vs k-NN on pixels, on CIFAR-10 and MNIST subsets.

    TORCH_HOME=/tmp/th python benchmarks/transfer.py            # TORCH_HOME/hub/checkpoints holds the weights
    python benchmarks/transfer.py --parts head,baseline        # a subset of the parts
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared"
CIFAR = SHARED / "data" / "cifar10" / "cifar10-images.zip"
WEIGHTS = SHARED / "weights" / "mobilenet_v2-b0353104.pth"

from classlab.commands.knn import run_knn  # noqa: E402
from classlab.commands.transfer import run_transfer  # noqa: E402
from classlab.data.options import DataOptions, load_and_split  # noqa: E402
from classlab.backbones.config import TransferConfig  # noqa: E402

SETTING = dict(image_size=96, dense=128, dropout=0.2, head_epochs=5, batch_size=32, lr=1e-3, seed=0)


def cifar_options(**kw) -> DataOptions:
    return DataOptions(data=str(CIFAR), max_train=10_000, max_eval=2_000, **kw)


TUNED_HEAD = dict(schedule="cosine", head_augment="flip", tta="flip")


def ours(mode: str, runs: Path, finetune_epochs: int = 5, **options) -> dict:
    t = time.perf_counter()
    config = TransferConfig(mode=mode, finetune_epochs=finetune_epochs, **{**SETTING, **options})
    result = run_transfer(cifar_options(), config, runs)
    wall = time.perf_counter() - t
    return {"wall": wall, "stages": result.details["stages"], "accuracy": result.accuracy,
            "chosen": result.details["chosen_stage"]}


def baseline() -> dict:
    """The decks' script as a plain loop: frozen backbone forward every epoch, pixels / 255 only."""
    from torchvision.models import mobilenet_v2

    ds, split = load_and_split(cifar_options())
    tr, te = split.indices("train"), split.indices("test")
    to_t = lambda idx: torch.from_numpy(np.ascontiguousarray(ds.images[idx])).permute(0, 3, 1, 2)
    x_train, y_train, x_test, y_test = to_t(tr), torch.from_numpy(ds.labels[tr]), to_t(te), torch.from_numpy(ds.labels[te])
    torch.manual_seed(0)
    net = mobilenet_v2()
    net.load_state_dict(torch.load(WEIGHTS, weights_only=True))
    base = net.features.eval().requires_grad_(False)
    head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(1280, 128),
                               torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    prep = lambda x: F.interpolate(x.float() / 255, size=96, mode="bilinear", align_corners=False)  # the bug: no normalisation
    curve, t0 = [], time.perf_counter()
    for epoch in range(SETTING["head_epochs"]):
        head.train()
        for i in torch.randperm(len(x_train)).split(SETTING["batch_size"]):
            with torch.no_grad():
                f = base(prep(x_train[i]))
            loss = F.cross_entropy(head(f), y_train[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        head.eval()
        with torch.no_grad():
            pred = torch.cat([head(base(prep(x_test[j : j + 256]))).argmax(1) for j in range(0, len(x_test), 256)])
        curve.append((time.perf_counter() - t0, float((pred == y_test).float().mean())))
        print(f"  baseline epoch {epoch + 1}: {curve[-1][0]:6.1f} s  test acc {curve[-1][1]:.4f}", flush=True)
    return {"wall": curve[-1][0], "accuracy": curve[-1][1], "curve": curve}


def knn(data: str, runs: Path, data_dir: str | None = None) -> dict:
    opts = lambda: DataOptions(data=data, data_dir=data_dir, max_train=10_000, max_eval=2_000)
    out = {}
    for name, features in (("pixels", None), ("mobilenet_v2", {"backbone": "mobilenet_v2", "image_size": 96})):
        t = time.perf_counter()
        r = run_knn(opts(), (1, 3, 5, 7), runs_dir=runs, features=features)
        out[name] = {"wall": time.perf_counter() - t, "accuracy": r.accuracy, "k": r.details["k"]}
        print(f"  k-NN on {name:12} ({data}): test acc {out[name]['accuracy']:.4f}  k={r['k']}  "
              f"{out[name]['wall']:.1f} s (features included, cold cache)", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="head,baseline,finetune,knn")
    p.add_argument("--finetune-epochs", type=int, default=5)
    p.add_argument("--tta", action="store_true", help="ours with flip test-time averaging (mirrored features cached)")
    args = p.parse_args()
    if args.tta:
        SETTING["tta"] = "flip"
    parts = args.parts.split(",")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; TORCH_HOME={os.environ.get('TORCH_HOME')}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CLASSLAB_CACHE"] = str(Path(tmp) / "cache")  # a cold cache to start from
        runs = Path(tmp) / "runs"
        if "head" in parts:
            cold = ours("features", runs)
            warm = ours("features", runs)
            f_cold, f_warm = cold["stages"]["features"], warm["stages"]["features"]
            results["ours_features"] = {"cold": cold, "warm": warm}
            print(f"ours, frozen features + head (cold cache): test acc {cold['accuracy']:.4f}, wall {cold['wall']:.1f} s "
                  f"(features {f_cold['feature_seconds']:.1f} s, head {f_cold['head_seconds']:.1f} s)")
            print(f"ours, second head on the warm cache:       test acc {warm['accuracy']:.4f}, wall {warm['wall']:.1f} s "
                  f"(features {f_warm['feature_seconds']:.1f} s, head {f_warm['head_seconds']:.1f} s)")
            head_cold = f_cold["feature_seconds"] + f_cold["head_seconds"]
            head_warm = f_warm["feature_seconds"] + f_warm["head_seconds"]
            print(f"  a head on the warm cache vs recomputing the features: {head_cold / head_warm:.1f}x faster "
                  f"({head_warm:.1f} s vs {head_cold:.1f} s, features + head)", flush=True)
        if "head" in parts:
            tuned = {}
            for seed in (0, 1, 2):
                for tta in ("flip", "none"):
                    tuned[seed, tta] = r = ours("features", runs, **{**TUNED_HEAD, "tta": tta, "seed": seed})
                    f = r["stages"]["features"]
                    print(f"ours, tuned head, seed {seed}, tta {tta:4}: test acc {r['accuracy']:.4f}, wall {r['wall']:.1f} s "
                          f"(features {f['feature_seconds']:.1f} s, head {f['head_seconds']:.1f} s)", flush=True)
            results["ours_tuned_head"] = {f"seed {k[0]} tta {k[1]}": v["accuracy"] for k, v in tuned.items()}
            for tta in ("flip", "none"):
                accs = [tuned[seed, tta]["accuracy"] for seed in (0, 1, 2)]
                print(f"ours, tuned head, tta {tta:4}: mean test acc {np.mean(accs):.4f} (min {min(accs):.4f})")
        if "baseline" in parts:
            print("decks' script ported (plain loop, frozen backbone every epoch, pixels / 255, no normalisation):")
            results["baseline"] = b = baseline()
            print(f"baseline: test acc {b['accuracy']:.4f}, wall {b['wall']:.1f} s", flush=True)
        if "finetune" in parts:
            ft = ours("both", runs, args.finetune_epochs)
            results["ours_both"] = ft
            s = ft["stages"]["finetune"]
            print(f"ours, head then fine-tuned ({args.finetune_epochs} epochs): test acc {s['accuracy']:.4f} "
                  f"(features stage {ft['stages']['features']['accuracy']:.4f}; chosen on validation: {ft['chosen']}), "
                  f"fine-tuning {s['train_seconds']:.1f} s, wall {ft['wall']:.1f} s", flush=True)
        if "knn" in parts:
            results["knn_cifar10"] = knn(str(CIFAR), runs)
            results["knn_mnist"] = knn("mnist", runs, str(SHARED / "data"))
    print(json.dumps(results, default=str)[:4000])


if __name__ == "__main__":
    main()
