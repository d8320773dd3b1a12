"""Your own photos, no flags: classlab transfer against fastai's fine_tune on the same photos, split and backbone.

Data: ../shared/data/hymenoptera (PyTorch's transfer-learning tutorial: 244 training photos, 153 validation
photos of ants and bees, about 500 x 375). The split is the tutorial's: its validation folder is the test set
both tools are scored on (classlab's default split for a train/ + val/ folder with no test/); classlab carves its
own validation split (for choosing epochs and stages) out of the training photos, fastai trains on all of them. Backbone: torchvision's ImageNet MobileNetV2
(mobilenet_v2-b0353104.pth from the torch hub cache) for both.

Each run is a subprocess, timed and measured (peak resident memory, children included) on its own:

- classlab: ``classlab transfer FOLDER`` with its defaults (head on cached features, then fine-tuning).
- fastai: ``vision_learner(dls, mobilenet_v2)``, ``Resize(224)``, ``aug_transforms()``, ``fine_tune(3)``.
- contention: classlab's frozen-feature stage alone, then beside a 2-thread matrix-multiplying job (what a
  laptop's other work or a shared CI machine does), with and without the OpenMP spin-wait setting
  (``classlab/threads.py``); then one epoch of default fine-tuning alone and beside the same job.

    TORCH_HOME=/tmp/th .venv/bin/python benchmarks/own_photos.py     # pip install -e '.[bench]' for fastai

``--waste-sized``: the issue's 2,527-photo waste set is not on this machine; a stand-in of its shape is made
from ../shared's CIFAR-10 JPEGs: 6 classes with TrashNet's counts (594, 501, 482, 410, 403 and 137), each image
enlarged to 512 x 384 and saved as a JPEG (the photos' size, so decoding and memory cost what theirs do; the
content is CIFAR's, so accuracy is not the waste set's), 10% of each class held out as ``val/`` (the test split
for both tools). ``--unfreeze-all`` adds a classlab run that fine-tunes every block (the default before).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
HYMENOPTERA = ROOT.parent / "shared" / "data" / "hymenoptera" / "hymenoptera_data.zip"
CIFAR = ROOT.parent / "shared" / "data" / "cifar10" / "cifar10-images.zip"
# TrashNet's classes' sizes (2,527 photos; 'trash' is the 137), given to six CIFAR-10 classes
WASTE_SIZED = {"airplane": 594, "automobile": 501, "ship": 482, "truck": 410, "bird": 403, "cat": 137}
PY = sys.executable


def extract(tmp: Path) -> Path:
    with zipfile.ZipFile(HYMENOPTERA) as z:
        z.extractall(tmp)
    return tmp / "hymenoptera_data"


def waste_sized(tmp: Path) -> Path:
    """A folder of the issue's waste set's shape: see the module's docstring."""
    root = tmp / "waste_sized"
    with zipfile.ZipFile(CIFAR) as z:
        names = z.namelist()
        for cls, count in WASTE_SIZED.items():
            members = sorted(n for n in names if n.startswith(f"train/{cls}/"))[:count]
            held = max(1, round(count / 10))
            for i, name in enumerate(members):
                folder = root / ("val" if i < held else "train") / cls
                folder.mkdir(parents=True, exist_ok=True)
                with z.open(name) as f:
                    Image.open(f).convert("RGB").resize((512, 384), Image.BICUBIC).save(
                        folder / f"{cls}-{i:04d}.jpg", quality=90)
    return root


def timed(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> tuple[float, float, str]:
    """(seconds, peak resident MB of this child alone, its stdout): wait4 gives the child's own rusage (the
    process-wide RUSAGE_CHILDREN keeps the largest child so far, which a later, smaller run would report)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        child = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, cwd=cwd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - t0
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if child.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{err.read()[-3000:]}")
        return seconds, usage.ru_maxrss / 1024, out.read()


FASTAI = r'''
import sys, json, time, torch, torchvision
from pathlib import Path
from fastai.vision.all import (DataBlock, ImageBlock, CategoryBlock, get_image_files, parent_label, Resize,
                               aug_transforms, vision_learner, accuracy, model_meta, default_split, imagenet_stats)
root, weights, epochs = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
test = {str(p) for p in (root / "val").rglob("*") if p.is_file()}
def mobilenet_v2(pretrained=True, **kwargs):  # fastai has no model_meta for it: without this, StopIteration
    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(weights, weights_only=True))
    return model
model_meta[mobilenet_v2] = {"cut": -1, "split": default_split, "stats": imagenet_stats}
block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files, get_y=parent_label,
                  splitter=lambda items: ([i for i, p in enumerate(items) if str(p) not in test],
                                          [i for i, p in enumerate(items) if str(p) in test]),
                  item_tfms=Resize(224), batch_tfms=aug_transforms())
dls = block.dataloaders(root, bs=64, num_workers=0)
learn = vision_learner(dls, mobilenet_v2, metrics=accuracy)
t0 = time.perf_counter()
with learn.no_bar(), learn.no_logging():
    learn.fine_tune(epochs)
print(json.dumps({"accuracy": float(learn.validate()[1]), "train_seconds": time.perf_counter() - t0}))
'''

FEATURES = r'''
import sys, time, torch
from classlab.data import load_dataset
from classlab.models import create_model
from classlab.backbones.plan import plan_backbone
from classlab.backbones.features import compute_features
plan = plan_backbone("mobilenet_v2", None, False)
ds = load_dataset(sys.argv[1], max_size=224)
pre, channels = plan.contract(ds, None)
model = create_model("transfer", ds.num_classes, channels, pre.model_size, **plan.build_options(None, 0.2, "frozen"))
model.backbone.load_state_dict(plan.backbone_only(channels)[0].state_dict())
t0 = time.perf_counter()
compute_features(model.backbone, ds.images, pre, torch.device("cpu"), progress=False)
print(f"{time.perf_counter() - t0:.2f}")
'''

HOG = "import torch, time, sys\ntorch.set_num_threads(2)\na = torch.randn(1024, 1024)\n" \
      "end = time.time() + float(sys.argv[1])\nwhile time.time() < end:\n    a = (a @ a).clamp_(-1, 1)\n"


def classlab_runs(data: Path, tmp: Path, test_size: int, unfreeze_all: bool) -> list[dict]:
    rows = []
    runs = [("classlab transfer (defaults)", [])] + \
        ([("classlab transfer --unfreeze all", ["--unfreeze", "all"])] if unfreeze_all else [])
    for i, (label, extra) in enumerate(runs):
        seconds, peak, _ = timed([PY, "-m", "classlab", "transfer", str(data), "--runs-dir", str(tmp / "runs"), *extra],
                                 {"CLASSLAB_CACHE": str(tmp / f"cache{i}")})  # a fresh cache: features computed
        run = max((tmp / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
        metrics = json.loads((run / "metrics.json").read_text())
        if metrics["n"] != test_size:
            raise SystemExit(f"classlab's default split held out {metrics['n']} photos, not the {test_size} of val/")
        stages = {k: round(v.get("feature_seconds", 0) + v["train_seconds"], 1) for k, v in metrics["stages"].items()}
        rows.append({"run": label, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_avg"]["f1"],
                     "seconds": round(seconds, 1), "peak_mb": round(peak), "stages": stages,
                     "chosen": metrics["chosen_stage"]})
    return rows


def fastai_run(data: Path, weights: Path, epochs: int) -> dict:
    if importlib.util.find_spec("fastai") is None:  # the optional bench extra; only its child process imports it
        return {"run": f"fastai fine_tune({epochs})", "skipped": "fastai is not installed (pip install -e '.[bench]')"}
    seconds, peak, out = timed([PY, "-c", FASTAI, str(data), str(weights), str(epochs)])
    result = json.loads(out.strip().splitlines()[-1])
    return {"run": f"fastai fine_tune({epochs})", "accuracy": result["accuracy"], "seconds": round(seconds, 1),
            "peak_mb": round(peak), "train_seconds": round(result["train_seconds"], 1)}


def beside_a_2_thread_job(cmd: list[str], env: dict) -> str:
    """``cmd``'s output while a 2-thread matrix-multiplying job runs (libgomp's default spin, as another
    program's would be)."""
    hog = subprocess.Popen([PY, "-c", HOG, "600"], env={**os.environ, "GOMP_SPINCOUNT": "300000"})
    time.sleep(2)
    try:
        return timed(cmd, env)[2]
    finally:
        hog.kill()
        hog.wait()


def finetune_seconds(data: Path, tmp: Path, env: dict, shared: bool) -> float:
    """One epoch of the default fine-tuning (features cached by the runs before), its training seconds."""
    runs = tmp / ("finetune-shared" if shared else "finetune-alone")
    cmd = [PY, "-m", "classlab", "transfer", str(data), "--mode", "finetune", "--finetune-epochs", "1",
           "--runs-dir", str(runs)]
    beside_a_2_thread_job(cmd, env) if shared else timed(cmd, env)
    metrics = json.loads((next(runs.iterdir()) / "metrics.json").read_text())
    return metrics["stages"]["finetune"]["train_seconds"]


def contention(data: Path, tmp: Path) -> list[dict]:
    rows = []
    for label, env in (("classlab's default (GOMP_SPINCOUNT=1000)", {"GOMP_SPINCOUNT": "1000"}),
                       ("libgomp's own spin-wait", {"GOMP_SPINCOUNT": "300000"})):
        alone = float(timed([PY, "-c", FEATURES, str(data)], env)[2].strip())
        shared = float(beside_a_2_thread_job([PY, "-c", FEATURES, str(data)], env).strip())
        rows.append({"setting": label, "stage": "frozen features", "alone_s": alone, "beside_2_thread_job_s": shared,
                     "slowdown": round(shared / alone, 2)})
    env = {"GOMP_SPINCOUNT": "1000", "CLASSLAB_CACHE": str(tmp / "cache-contention")}
    alone, shared = finetune_seconds(data, tmp, env, False), finetune_seconds(data, tmp, env, True)
    rows.append({"setting": rows[0]["setting"], "stage": "fine-tuning, 1 epoch", "alone_s": alone,
                 "beside_2_thread_job_s": shared, "slowdown": round(shared / alone, 2)})
    return rows


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--waste-sized", action="store_true", help="the 2,527-photo stand-in instead of hymenoptera")
    parser.add_argument("--unfreeze-all", action="store_true", help="also classlab fine-tuning every block")
    parser.add_argument("--no-contention", action="store_true", help="skip the shared-machine measurement")
    args = parser.parse_args()
    weights = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints" \
        / "mobilenet_v2-b0353104.pth"
    if not weights.is_file():
        raise SystemExit(f"put mobilenet_v2-b0353104.pth into {weights.parent} (TORCH_HOME) first")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = waste_sized(tmp) if args.waste_sized else extract(tmp)
        test_size = sum(1 for p in (data / "val").rglob("*") if p.is_file())
        print(f"{data.name}: {sum(1 for p in (data / 'train').rglob('*') if p.is_file())} training photos, "
              f"{test_size} test photos (val/)", flush=True)
        rows = classlab_runs(data, tmp, test_size, args.unfreeze_all) + [fastai_run(data, weights, 3)]
        print(f"| run | test accuracy ({test_size} photos) | macro F1 | wall time | peak memory | stages |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            if "skipped" in r:
                print(f"| {r['run']} | skipped: {r['skipped']} | | | | |")
                continue
            stages = ", ".join(f"{k} {v} s" for k, v in r.get("stages", {}).items()) or \
                f"training {r.get('train_seconds')} s"
            print(f"| {r['run']} | {r['accuracy']:.3f} | {r.get('macro_f1', float('nan')):.3f} | {r['seconds']} s | "
                  f"{r['peak_mb']} MB | {stages} |")
        fast = next((r for r in rows if r["run"].startswith("fastai") and "seconds" in r), None)
        if fast:
            print(f"\nclasslab's wall time / fastai's: {rows[0]['seconds'] / fast['seconds']:.2f}")
        if args.no_contention:
            return
        print("\n| OpenMP waiting | stage | alone | beside a 2-thread job | slowdown |\n|---|---|---|---|---|")
        for r in contention(data, tmp):
            print(f"| {r['setting']} | {r['stage']} | {r['alone_s']:.1f} s | {r['beside_2_thread_job_s']:.1f} s | "
                  f"{r['slowdown']}x |")


if __name__ == "__main__":
    main()
