"""``classlab evaluate RUN DATA``: a trained model scored on other labelled images (Keras' ``model.evaluate``,
fastai's ``learn.validate(dl=...)``), with the report its own test split got.

The images are decoded at the run's size and channels and go through its saved preprocessing contract and
test-time augmentation. Classes are matched by name; images of a class the model does not know are refused.
The images the model trained or validated on (by pixel hash, from the run's split manifest) are counted and
can be left out (``drop_seen``): a score on them says nothing about new data. The result is a normal run
(split.csv marks the evaluated images as its test split), so ``compare``, ``explain`` and the workbench read it.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..data.dataset import ImageDataset
from ..data.options import DataOptions, record_split
from ..data.safe_files import UnreadableFile, read_file
from ..data.split import Split, subsample
from ..errors import ClasslabError, warn
from ..runs import Run, RunResult
from .results import save_outputs, score_test, test_section

SPLITS = ("auto", "test", "val", "train", "all")


@dataclass(frozen=True)
class EvaluateConfig:
    split: str = "auto"  # auto: the data's official test split where it has one, else every image
    drop_seen: bool = False  # leave out images identical to the run's training or validation images
    max_images: int | None = None  # a stratified sample of at most this many
    coarse_labels: bool = False  # CIFAR-100's 20 superclasses
    tta: str | None = None  # the run's own test-time augmentation unless given (none, flip, flip-translate)
    device: str | None = "cpu"
    batch_size: int = 256
    seed: int = 0


def chosen_rows(ds: ImageDataset, split: str) -> np.ndarray:
    """Indices of the images to score: ``split`` of the data's own split (train/val/test), or all of them."""
    if split not in SPLITS:
        raise ClasslabError(f"--split takes one of {', '.join(SPLITS)}, got '{split}'")
    official = ds.official_split
    has = set(official) if official is not None else set()
    if split == "auto":
        split = "test" if "test" in has else "all"
    if split == "all":
        return np.arange(len(ds))
    if split not in has:
        given = f"only the splits {', '.join(sorted(has))}" if has else "no split of its own"
        raise ClasslabError(f"{ds.name} has {given}; use --split all to score every image")
    return np.flatnonzero(official == split)


def model_labels(ds: ImageDataset, rows: np.ndarray, model_classes: list[str]) -> np.ndarray:
    """The rows' labels as the model's class indices (matched by name); a class it does not know is refused."""
    index = {name: i for i, name in enumerate(model_classes)}
    present = sorted(set(ds.labels[rows].tolist()))
    unknown = [ds.class_names[c] for c in present if ds.class_names[c] not in index]
    if unknown:
        shown = ", ".join(f"'{c}'" for c in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        known = ", ".join(f"'{c}'" for c in model_classes[:10]) + (" ..." if len(model_classes) > 10 else "")
        raise ClasslabError(f"the data has images of classes the model does not know: {shown}; the model's classes "
                            f"are {known} (class folders must be named as in training)")
    mapping = np.array([index.get(name, -1) for name in ds.class_names], dtype=np.int64)
    return mapping[ds.labels]


def seen_hashes(run_dir: Path) -> set[str] | None:
    """Pixel hashes of the images the run trained or validated on (its split.csv), or None without one."""
    path = run_dir / "split.csv"
    if not path.is_file():
        return None
    try:
        text = read_file(path, 1 << 30).decode("utf-8", "surrogateescape")
    except UnreadableFile as e:
        raise ClasslabError(f"cannot read the run's split manifest: {e}") from None
    return {r.get("hash") for r in csv.DictReader(io.StringIO(text, newline="")) if r.get("split") in ("train", "val")}


def _scored_split(ds: ImageDataset, rows: np.ndarray, seen: np.ndarray, cfg: EvaluateConfig) -> Split:
    assignment = np.full(len(ds), "unused", dtype=object)
    assignment[rows[~seen] if cfg.drop_seen else rows] = "test"
    method = "every image" if len(rows) == len(ds) else "the data's own test split" if cfg.split == "auto" \
        else f"the data's own {cfg.split} split"
    if cfg.drop_seen and seen.any():
        method += f", less {int(seen.sum())} images seen in training"
    split = Split(assignment, method, cfg.seed)
    if cfg.max_images:
        split = subsample(split, ds.labels, {"test": cfg.max_images}, cfg.seed)
    if not len(split.indices("test")):
        raise ClasslabError("no images left to score: the run trained or validated on every one of them (without "
                            "--drop-seen they are scored, with a warning)")
    return split


def run_evaluate(run_dir: str | Path, data: str, data_dir: str | None = None, cfg: EvaluateConfig = EvaluateConfig(),
                 runs_dir: str | Path | None = None) -> RunResult:
    from ..data.registry import load_dataset
    from ..inference.trained_run import TrainedRun

    run_dir = Path(run_dir).resolve()  # recorded absolute: the workbench and explain find the model from anywhere
    if not (run_dir / "best.pt").exists():
        raise ClasslabError(f"{run_dir} holds no trained model (best.pt); evaluate runs of train or transfer "
                            "(k-NN keeps its training images instead: run 'classlab knn' on the new data)")
    trained = TrainedRun.load(run_dir, cfg.device)
    if cfg.tta is not None:
        from ..inference.tta import TTA_MODES

        if cfg.tta not in TTA_MODES:
            raise ClasslabError(f"--tta takes one of {', '.join(TTA_MODES)}, got '{cfg.tta}'")
        trained = replace(trained, tta=cfg.tta)
    pre = trained.preprocessing
    size = pre.image_size[0] if len(set(pre.image_size)) == 1 else tuple(pre.image_size)
    options = DataOptions(data=str(data), data_dir=data_dir, image_size=size if len(pre.image_size) == 2 else None,
                          channels=pre.channels, coarse_labels=cfg.coarse_labels)
    ds = load_dataset(options.data, data_dir=data_dir, image_size=options.image_size, channels=options.channels,
                      coarse_labels=cfg.coarse_labels)
    rows = chosen_rows(ds, cfg.split)
    ds = replace(ds, labels=model_labels(ds, rows, trained.class_names), class_names=list(trained.class_names))
    hashes, known = ds.content_hashes(), seen_hashes(run_dir)
    seen = np.array([known is not None and hashes[i] in known for i in rows], dtype=bool)
    if seen.any() and not cfg.drop_seen:
        warn(f"{int(seen.sum())} of the {len(rows)} images are identical to images {run_dir.name} trained or "
             "validated on, which flatters the score; --drop-seen leaves them out")
    split = _scored_split(ds, rows, seen, cfg)
    test = split.indices("test")
    proba = trained.predict_proba(ds.subset(test).images, cfg.batch_size, progress=True)

    run = Run("evaluate", data, runs_dir)
    run.write_config({"data": asdict(options), "run": str(run_dir), **asdict(cfg)}, cfg.seed)
    record_split(run.path, ds, split)
    extra = {"evaluated_run": str(run_dir), "images": int(len(test)), "images_seen_in_training": int(seen.sum()),
             "seen_left_out": bool(cfg.drop_seen), "tta": trained.tta, "temperature": trained.temperature}
    # images of some of the model's classes: macro averages over the classes present, as scikit-learn's default
    ev = score_test(run, ds, test, proba, cfg.seed, {"evaluate": extra}, average_over="present")
    save_outputs(run.path, ds, {"test": (test, proba)})
    report = run.write_report(f"{run_dir.name} evaluated on {ds.name}", [
        ("Model", _model_text(run_dir, trained, known, int(seen.sum()), cfg.drop_seen)),
        ("Data", f"{ds.describe()}, decoded at the run's size and channels. Scored: {len(test)} images "
                 f"({split.method}{'; a stratified sample' if cfg.max_images and cfg.max_images < len(rows) else ''}). "
                 "Manifest: `split.csv`."),
        test_section(ev),
    ])
    return RunResult(run.path, run.command, report, ev.metrics, ev, [], {"evaluate": extra})


def _model_text(run_dir: Path, trained, known: set | None, seen: int, dropped: bool) -> str:
    text = (f"`{run_dir}`: {len(trained.class_names)} classes, its preprocessing contract "
            f"({trained.preprocessing.source} normalisation), test-time augmentation {trained.tta}")
    text += f", temperature {trained.temperature:.3f} (calibration.json)." if trained.temperature != 1 else "."
    if known is None:
        return text + " The run has no split manifest, so overlap with its training images was not checked."
    if not seen:
        return text + " None of the scored images is identical to one it trained or validated on."
    return text + (f" {seen} images identical to ones it trained or validated on were "
                   f"{'left out' if dropped else 'scored (they flatter the score; --drop-seen leaves them out)'}.")
