"""Training speed on CPU: images/s per epoch for workshop-cnn and resnet18 at 32 px (bf16 autocast vs
fp32, through classlab's engine), and MNIST: time to 99.0% test accuracy with a small BN CNN.

    python benchmarks/speed.py                  # throughput and mnist
    python benchmarks/speed.py --parts mnist
    python benchmarks/speed.py --parts compile  # fastnet's step at batch 1024, eager vs torch.compile (~3 min)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SHARED = ROOT.parent / "shared"
CIFAR = SHARED / "data" / "cifar10" / "cifar10-images.zip"

from classlab import load_dataset  # noqa: E402
from classlab.inference.preprocess import Preprocessing  # noqa: E402
from classlab.models import create_model  # noqa: E402
from classlab.training import TrainConfig  # noqa: E402
from classlab.training.engine import SplitTensors, fit  # noqa: E402


def _fit(model_name, options, x_tr, y_tr, x_te, y_te, cfg, channels):
    torch.manual_seed(cfg.seed)
    model = create_model(model_name, 10, channels, x_tr.shape[1:3], **options)
    pre = Preprocessing.from_images(x_tr)
    with tempfile.TemporaryDirectory() as tmp:
        return fit(model, SplitTensors(torch.from_numpy(x_tr), torch.from_numpy(y_tr)),
                   SplitTensors(torch.from_numpy(x_te), torch.from_numpy(y_te)), cfg, pre, Path(tmp),
                   num_classes=10, progress=False)


def throughput(n: int = 5000) -> None:
    ds = load_dataset(CIFAR)
    tr, te = np.flatnonzero(ds.official_split == "train")[:n], np.flatnonzero(ds.official_split == "test")[:500]
    print(f"images/s per training epoch, CIFAR-10 32x32, {n} images, batch 128, Adam, flip-crop, "
          f"{torch.get_num_threads()} threads")
    for model in ("workshop-cnn", "resnet18"):
        for precision in ("bf16", "fp32"):
            cfg = TrainConfig(model=model, epochs=2, batch_size=128, lr=1e-3, augment="flip-crop",
                              precision=precision).validate()
            state = _fit(model, {}, ds.images[tr], ds.labels[tr], ds.images[te], ds.labels[te], cfg, 3)
            rate = state.history[-1]["images_per_s"]  # the second epoch: warm caches
            print(f"  {model:13} {precision}: {rate:7.0f} img/s  ({n / rate:5.1f} s per {n} images)", flush=True)


def mnist(epochs: int = 1, seed: int = 0) -> None:
    ds = load_dataset("mnist", data_dir=str(SHARED / "data"))
    tr, te = ds.official_split == "train", ds.official_split == "test"
    cfg = TrainConfig(model="cnn", epochs=epochs, batch_size=128, lr=0.05, optimizer="nesterov", weight_decay=5e-4,
                      schedule="onecycle", augment="none", label_smoothing=0.1, seed=seed).validate()
    # three conv blocks, each halving the resolution (28 -> 14 -> 7 -> 3): the 16 filters at full resolution keep
    # the memory-bound batch-norm, activation and pooling passes small; one epoch with one-cycle is enough
    options = {"filters": [16, 32, 64], "batch_norm": True, "dense": [128]}
    print(f"MNIST: 60,000 train / 10,000 test; cnn {options}, nesterov lr 0.05, one-cycle, batch 128, label smoothing "
          f"0.1, no augmentation, {epochs} epoch(s), seed {seed}, test scored after every epoch")
    state = _fit("cnn", options, ds.images[tr], ds.labels[tr], ds.images[te], ds.labels[te], cfg, 1)
    elapsed, reached = 0.0, None
    for h in state.history:
        elapsed += h["seconds"]
        print(f"  epoch {h['epoch']}: {elapsed:6.1f} s of training  test acc {h['val_acc']:.4f}  "
              f"{h['images_per_s']:.0f} img/s", flush=True)
        if reached is None and h["val_acc"] >= 0.99:
            reached = elapsed
    print(f"  time to 99.0%: {reached:.1f} s" if reached else "  99.0% not reached")


def compile_step(batch: int = 1024, steps: int = 4) -> None:
    """A fastnet training step (the CIFAR-10 recipe's: batch 1024, channels_last, Nesterov SGD), eager against
    torch.compile, in bf16 autocast and fp32: the fastest of ``steps`` after one warm-up (which compiles)."""
    torch.manual_seed(0)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    for bf16 in (True, False):
        for compiled in (False, True):
            model = create_model("fastnet", 10, 3, 32, bn_eps=1e-12).to(memory_format=torch.channels_last).train()
            opt = torch.optim.SGD([q for q in model.parameters() if q.requires_grad], lr=0.01, momentum=0.85,
                                  nesterov=True)
            forward = torch.compile(model) if compiled else model
            times = []
            for _ in range(steps + 1):
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = torch.nn.functional.cross_entropy(forward(x).float(), y, label_smoothing=0.2)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                times.append(time.perf_counter() - start)
            best = min(times[1:])
            print(f"  {'bf16' if bf16 else 'fp32'} {'compiled' if compiled else 'eager   '}: step {best:.3f} s "
                  f"({batch / best:.0f} img/s), first step {times[0]:.1f} s", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="throughput,mnist")
    p.add_argument("--mnist-epochs", type=int, default=1)
    p.add_argument("--seeds", default="0,1", help="MNIST: one run per seed")
    args = p.parse_args()
    t = time.perf_counter()
    if "throughput" in args.parts:
        throughput()
    if "compile" in args.parts:
        compile_step()
    if "mnist" in args.parts:
        for seed in args.seeds.split(","):
            mnist(args.mnist_epochs, int(seed))
    print(f"total {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
