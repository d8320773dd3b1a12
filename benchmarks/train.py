"""Training benchmark: the decks' CIFAR-10 recipe as a plain PyTorch loop vs classlab's engine.

Baseline ("deck recipe"): workshop-cnn (conv32, pool, conv64, pool, dense128), Adam 1e-3, batch 64, pixels
scaled to [0, 1], a standard Dataset + DataLoader (per-sample conversion, 2 workers), fp32. Ours: classlab's
engine (uint8 tensors on the device, batch-level augmentation, bf16 where supported) with a chosen model and
recipe. Both train on the official 50,000 training images of the CIFAR-10 zip in ../shared and are scored on
the 10,000 test images after every epoch (test accuracy per epoch, as speed-run benchmarks report it).

    python benchmarks/train.py                                   # baseline 10 epochs, ours fastnet, 10-min budget
    python benchmarks/train.py --baseline-epochs 2 --ours-epochs 2   # a quick look
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
CIFAR = ROOT.parent / "shared" / "data" / "cifar10" / "cifar10-images.zip"

from classlab import load_dataset  # noqa: E402
from classlab.inference.preprocess import Preprocessing  # noqa: E402
from classlab.models import create_model  # noqa: E402
from classlab.training import TrainConfig  # noqa: E402
from classlab.training.engine import SplitTensors, fit, predict_split  # noqa: E402


class DeckDataset(torch.utils.data.Dataset):
    """What the decks' scripts do: one image at a time, scaled to [0, 1]."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return torch.from_numpy(self.images[i]).permute(2, 0, 1).float() / 255, int(self.labels[i])


def baseline(train_x, train_y, test_x, test_y, epochs: int) -> list[tuple[float, float]]:
    if not epochs:
        return []
    torch.manual_seed(0)
    model = create_model("workshop-cnn", 10, 3, 32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(DeckDataset(train_x, train_y), batch_size=64, shuffle=True, num_workers=2,
                                         persistent_workers=True)
    test = torch.from_numpy(test_x).permute(0, 3, 1, 2).float() / 255
    curve, elapsed = [], 0.0
    for epoch in range(epochs):
        model.train()
        t = time.perf_counter()
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        elapsed += time.perf_counter() - t
        model.eval()
        with torch.no_grad():
            acc = float(np.mean([(model(test[i:i + 1000]).argmax(1) == torch.from_numpy(test_y[i:i + 1000])).float().mean()
                                 for i in range(0, len(test), 1000)]))
        curve.append((elapsed, acc))
        print(f"  baseline epoch {epoch + 1}: {elapsed:7.1f} s  test acc {acc:.4f}  "
              f"{len(train_y) * (epoch + 1) / elapsed:.0f} img/s", flush=True)
    return curve


def ours(train_x, train_y, test_x, test_y, model_name: str, cfg: TrainConfig, options: dict, tmp: Path):
    torch.manual_seed(cfg.seed)
    model = create_model(model_name, 10, 3, 32, **options)
    mean = (train_x.reshape(-1, 3).mean(0) / 255).tolist()
    std = (train_x.reshape(-1, 3).std(0) / 255).tolist()
    pre = Preprocessing([32, 32], 3, mean, std)
    train = SplitTensors(torch.from_numpy(train_x), torch.from_numpy(train_y))
    test = SplitTensors(torch.from_numpy(test_x), torch.from_numpy(test_y))
    state = fit(model, train, test, cfg, pre, tmp, num_classes=10, progress=True)  # one line per epoch as it ends
    curve, elapsed = [], 0.0
    for h in state.history:
        elapsed += h["seconds"]
        curve.append((elapsed, h["val_acc"]))
        print(f"  ours epoch {h['epoch']}: {elapsed:7.1f} s  test acc {h['val_acc']:.4f}  "
              f"{h['images_per_s']:.0f} img/s", flush=True)
    # the epochs' scores are the engine's validation, in the training precision; predict runs in fp32
    proba = predict_split(model, test, pre, cfg.tta)
    print(f"  final model in fp32, as predict runs it (trained in {state.precision}): test acc "
          f"{float((proba.argmax(1) == test_y).mean()):.4f}", flush=True)
    return curve


def recompress(images: np.ndarray, quality: int) -> np.ndarray:
    """Each (H, W, 3) uint8 image encoded as a JPEG at ``quality`` with 4:2:0 chroma and decoded again."""
    import io

    from PIL import Image

    out = np.empty_like(images)
    for i, image in enumerate(images):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=quality, subsampling="4:2:0")
        out[i] = np.asarray(Image.open(buf).convert("RGB"))
    changed = np.abs(out.astype(np.int16) - images).mean()
    print(f"re-encoded {len(images)} images as JPEG quality {quality}: mean change {changed:.2f} of 255 a value")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline-epochs", type=int, default=10, help="0 skips the baseline")
    p.add_argument("--ours-epochs", type=int, default=10)
    p.add_argument("--model", default="fastnet")
    p.add_argument("--lr", type=float, default=0.375)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--tta", nargs="?", const="flip", default="flip-translate",
                   help="test-time augmentation when scoring: flip (image + mirror) or flip-translate (six views)")
    p.add_argument("--crop-padding", type=int, default=2, help="translation augmentation range in pixels")
    p.add_argument("--momentum", type=float, default=0.85)
    p.add_argument("--seed", type=int, default=0, help="ours: initialisation, order and augmentation")
    p.add_argument("--lookahead", action="store_true", help="weight averaging fed back every 5 steps")
    p.add_argument("--weight-decay", type=float, default=1.33e-3)
    p.add_argument("--alternate-flip", action="store_true", help="mirror each image on alternate epochs")
    p.add_argument("--whiten-bias-epochs", type=int, default=3, help="fastnet: epochs its whitening bias trains "
                   "(-1: always)")
    p.add_argument("--bn-eps", type=float, default=1e-5, help="fastnet: the batch norms' epsilon (speed runs: 1e-12)")
    p.add_argument("--schedule", default="onecycle", help="onecycle (rise 30%%, cosine down) or triangular "
                   "(rise 23%% from 0.2, linear down to 0.07: the speed runs')")
    p.add_argument("--precision", default="auto", help="auto (on the CPU the faster of bf16 and fp32, timed), bf16, fp32")
    p.add_argument("--holdout", type=int, default=0, help="score on this many held-out training images instead of "
                   "the test split (choosing settings without looking at the test set)")
    p.add_argument("--recompress", type=int, default=0, metavar="QUALITY",
                   help="encode every image once more as a JPEG of this quality (4:2:0, as the zip's own) before "
                   "training and scoring: what a further round of the zip's compression costs")
    args = p.parse_args()
    if args.recompress and not 1 <= args.recompress <= 100:
        p.error(f"--recompress takes a JPEG quality from 1 to 100 (0: off), got {args.recompress}")
    import tempfile

    ds = load_dataset(CIFAR)
    tr, te = ds.official_split == "train", ds.official_split == "test"
    train_x, train_y, test_x, test_y = ds.images[tr], ds.labels[tr], ds.images[te], ds.labels[te]
    if args.recompress:
        train_x, test_x = recompress(train_x, args.recompress), recompress(test_x, args.recompress)
    if args.holdout:  # a fixed random subset of the training split stands in for the test split
        order = np.random.default_rng(12345).permutation(len(train_y))
        held, kept = order[: args.holdout], np.sort(order[args.holdout :])
        train_x, train_y, test_x, test_y = train_x[kept], train_y[kept], train_x[held], train_y[held]
        print(f"held out {args.holdout} training images; scores below are on them, not on the test split")
    print(f"CIFAR-10 zip: {len(train_y)} train, {len(test_y)} scored; {torch.get_num_threads()} threads")
    print("deck recipe (workshop-cnn, Adam 1e-3, batch 64, DataLoader, fp32):")
    base = baseline(train_x, train_y, test_x, test_y, args.baseline_epochs)
    cfg = TrainConfig(model=args.model, epochs=args.ours_epochs, batch_size=args.batch_size, lr=args.lr,
                      optimizer="nesterov", momentum=args.momentum, weight_decay=args.weight_decay,
                      schedule=args.schedule, label_smoothing=0.2, augment="flip-crop", crop_padding=args.crop_padding,
                      tta=args.tta, lookahead=args.lookahead, seed=args.seed, alternate_flip=args.alternate_flip,
                      precision=args.precision)
    print(f"classlab ({args.model}, nesterov lr {args.lr} momentum {args.momentum} wd {args.weight_decay}, batch "
          f"{args.batch_size}, {args.schedule}, flip-crop {args.crop_padding} px, label smoothing 0.2, {args.ours_epochs} "
          f"epochs, TTA {args.tta}{', lookahead' if args.lookahead else ''}"
          f"{', alternating flip' if args.alternate_flip else ''}, whitening bias {args.whiten_bias_epochs} epochs, "
          f"BN eps {args.bn_eps:g}):")
    with tempfile.TemporaryDirectory() as tmp:
        options = {"whiten_bias_epochs": None if args.whiten_bias_epochs < 0 else args.whiten_bias_epochs,
                   "bn_eps": args.bn_eps} if args.model == "fastnet" else {}
        mine = ours(train_x, train_y, test_x, test_y, args.model, cfg.validate(), options, Path(tmp))
    if not base:
        print(f"\nbest {max(a for _, a in mine):.4f} in {mine[-1][0]:.0f} s of training")
        return
    target = base[-1][1]
    reach = next((t for t, a in mine if a >= target), None)
    print(f"\nbaseline final test accuracy {target:.4f} after {base[-1][0]:.0f} s of training")
    if reach is None:
        print(f"classlab did not reach it within {mine[-1][0]:.0f} s (best {max(a for _, a in mine):.4f})")
    else:
        base_time = base[-1][0]
        print(f"classlab reached it after {reach:.0f} s: {base_time / reach:.1f}x sooner; best "
              f"{max(a for _, a in mine):.4f} in {mine[-1][0]:.0f} s")


if __name__ == "__main__":
    main()
