"""A Teachable-Machine-sized folder: 20-30 photos per class, frozen MobileNetV2 features and a linear head.

Baseline, measured in the same run: the head trained for a fixed 5 epochs (``--head-epochs 5``, what the
default was), against the default now, which gives a small training split enough epochs for about 100 head
steps (``transfer/config.py``). The folders are CIFAR-10 JPEGs from the shared zip, upscaled to 96 px as photos
would be resized; each model is scored with ``classlab evaluate`` on 100 images per class of the official test
split that it never saw.

    TORCH_HOME=/tmp/th python benchmarks/small_folder.py     # TORCH_HOME/hub/checkpoints holds the weights
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
import zipfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
CIFAR = ROOT.parent / "shared" / "data" / "cifar10" / "cifar10-images.zip"

import classlab  # noqa: E402

SAMPLES = [("20 per class, images 0-19", 0, 20), ("30 per class, images 100-129", 100, 30)]


def folder(root: Path, names: list[str], split: str, start: int, count: int) -> Path:
    """root/<class>/ with the zip's images start..start+count of each class of ``split``, at 96 px."""
    by_class: dict[str, list[str]] = {}
    for name in names:
        if name.startswith(split + "/") and name.endswith(".jpg"):
            by_class.setdefault(name.split("/")[1], []).append(name)
    with zipfile.ZipFile(CIFAR) as z:
        for cls, files in by_class.items():
            (root / cls).mkdir(parents=True, exist_ok=True)
            for name in sorted(files)[start:start + count]:
                image = Image.open(io.BytesIO(z.read(name))).resize((96, 96), Image.BICUBIC)
                image.save(root / cls / Path(name).name)
    return root


def main() -> None:
    with zipfile.ZipFile(CIFAR) as z:
        names = z.namelist()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        holdout = folder(tmp / "holdout", names, "test", 0, 100)
        rows = []
        for label, start, count in SAMPLES:
            photos = folder(tmp / f"photos-{start}", names, "train", start, count)
            for head_epochs in (5, None):
                run = classlab.transfer(str(photos), "mobilenet_v2", mode="features", head_epochs=head_epochs,
                                        progress=False, runs_dir=tmp / "runs")
                stage = json.loads((run.run_dir / "metrics.json").read_text())["stages"]["features"]
                scored = classlab.evaluate_run(run, str(holdout), runs_dir=tmp / "runs")
                rows.append((label, "--head-epochs 5 (baseline)" if head_epochs else "default (about 100 steps)",
                             stage["epochs_run"], scored.metrics["accuracy"]))
                print(f"{rows[-1][0]:30s} {rows[-1][1]:28s} {rows[-1][2]:3d} epochs  "
                      f"held-out accuracy {rows[-1][3]:.4f}", flush=True)


if __name__ == "__main__":
    main()
