"""``classlab evaluate RUN DATA``: a trained model scored on other labelled images (Keras' ``model.evaluate``,
fastai's ``learn.validate(dl=...)``), with the report its own test split got.

The images are decoded at the run's size and channels and, for a network, go through its saved preprocessing
contract and test-time augmentation; a pixel k-NN run is refitted on its training split, the NumPy MLP read
from scratch.npz, so the decks' whole path is evaluated alike. Classes are matched by name; images of a class
the model does not know are refused.
The images the model trained or validated on (by pixel hash, from the run's split manifest) are counted and
can be left out (``drop_seen``): a score on them says nothing about new data. The result is a normal run
(split.csv marks the evaluated images as its test split), so ``compare``, ``explain`` and the workbench read it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.dataset import ImageDataset
from ..data.options import DataOptions, record_split
from ..data.split import Split, subsample
from ..errors import ClasslabError, warn
from ..runs import RunResult, RunWriter
from ..runs.outputs import save_outputs, score_test, test_section
from ..safe_files import UnreadableFile, read_csv

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
        rows = read_csv(path)
    except UnreadableFile as e:
        raise ClasslabError(f"cannot read the run's split manifest: {e}") from None
    return {r.get("hash") for r in rows if r.get("split") in ("train", "val")}


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


@dataclass
class Scorer:
    """What evaluate needs of a run's model: its classes, the size and channels its images are decoded at,
    class probabilities of uint8 images (an array or a dataset's lazy images), and a line for the report."""

    class_names: list[str]
    image_size: tuple[int, ...]
    channels: int
    crop: float | None  # how image files are fit to image_size (the run's preprocessing contract)
    predict: Callable
    tta: str
    temperature: float
    text: str


def model_scorer(run_dir: Path, cfg: EvaluateConfig) -> Scorer:
    """The run's model (``classlab.trained.model``): a network through its preprocessing contract, TTA (or
    cfg.tta) and temperature; a pixel k-NN run (refitted on its own training split, with its chosen k and
    metric) or the NumPy MLP (scratch.npz): the decks' first steps, scored like the networks."""
    from ..inference.tta import TTA_MODES
    from ..trained.model import run_model

    network = (run_dir / "best.pt").exists()
    if not network:
        result = RunResult.load(run_dir) if (run_dir / "config.json").is_file() else None
        if result is None or result.command == "evaluate":
            raise ClasslabError(f"{run_dir} holds no model to evaluate; give a run of train, transfer, knn or the "
                                "NumPy MLP")
        if cfg.tta not in (None, "none"):
            raise ClasslabError("--tta needs a network; k-NN and the NumPy MLP score each image once")
    elif cfg.tta is not None and cfg.tta not in TTA_MODES:
        raise ClasslabError(f"--tta takes one of {', '.join(TTA_MODES)}, got '{cfg.tta}'")
    model = run_model(run_dir, device=cfg.device)
    if model.network is None:
        return Scorer(model.class_names, model.image_shape, model.channels, model.crop, model.predict_proba, "none",
                      1.0, model.description + ".")
    trained = model.network if cfg.tta is None else replace(model.network, tta=cfg.tta)
    pre = trained.preprocessing
    text = (f"`{run_dir}`: {len(trained.class_names)} classes, its preprocessing contract ({pre.source} "
            f"normalisation), test-time augmentation {trained.tta}")
    text += f", temperature {trained.temperature:.3f} (calibration.json)." if trained.temperature != 1 else "."
    return Scorer(list(trained.class_names), tuple(pre.image_size), pre.channels, pre.crop,
                  lambda images: trained.predict_proba(images, cfg.batch_size, progress=True), trained.tta,
                  trained.temperature, text)


def run_evaluate(run_dir: str | Path, data: str, data_dir: str | None = None, cfg: EvaluateConfig = EvaluateConfig(),
                 runs_dir: str | Path | None = None) -> RunResult:
    from ..data.registry import load_dataset

    run_dir = Path(run_dir).resolve()  # recorded absolute: the workbench and explain find the model from anywhere
    scorer = model_scorer(run_dir, cfg)
    size = scorer.image_size[0] if len(set(scorer.image_size)) == 1 else tuple(scorer.image_size)
    options = DataOptions(data=str(data), data_dir=data_dir, image_size=size if len(scorer.image_size) == 2 else None,
                          channels=scorer.channels, coarse_labels=cfg.coarse_labels, crop=scorer.crop)
    loaded = load_dataset(options.data, data_dir=data_dir, image_size=options.image_size, channels=options.channels,
                          coarse_labels=cfg.coarse_labels, crop=options.crop)
    rows = chosen_rows(loaded, cfg.split)
    hashes, known = loaded.content_hashes(), seen_hashes(run_dir)
    # scored with the model's class indices; the manifest keeps the data's own labels (images outside the
    # chosen split may be of classes the model does not know), so the data reloads against it unchanged
    ds = replace(loaded, labels=model_labels(loaded, rows, scorer.class_names), class_names=list(scorer.class_names))
    seen = np.array([known is not None and hashes[i] in known for i in rows], dtype=bool)
    if seen.any() and not cfg.drop_seen:
        warn(f"{int(seen.sum())} of the {len(rows)} images are identical to images {run_dir.name} trained or "
             "validated on, which flatters the score; --drop-seen leaves them out")
    split = _scored_split(ds, rows, seen, cfg)
    test = split.indices("test")
    proba = scorer.predict(ds.subset(test).images)

    run = RunWriter("evaluate", data, runs_dir)
    run.write_config({"data": asdict(options), "run": str(run_dir), **asdict(cfg)}, cfg.seed)
    record_split(run.run_dir, loaded, split)
    extra = {"evaluated_run": str(run_dir), "images": int(len(test)), "images_seen_in_training": int(seen.sum()),
             "seen_left_out": bool(cfg.drop_seen), "tta": scorer.tta, "temperature": scorer.temperature}
    # images of some of the model's classes: macro averages over the classes present, as scikit-learn's default
    ev = score_test(run, ds, test, proba, cfg.seed, {"evaluate": extra}, average_over="present")
    save_outputs(run.run_dir, ds, {"test": (test, proba)})
    report = run.write_report(f"{run_dir.name} evaluated on {ds.name}", [
        ("Model", _model_text(scorer.text, known, int(seen.sum()), cfg.drop_seen)),
        ("Data", f"{ds.describe()}, decoded at the run's size and channels. Scored: {len(test)} images "
                 f"({split.method}{'; a stratified sample' if cfg.max_images and cfg.max_images < len(rows) else ''}). "
                 "Manifest: `split.csv`."),
        test_section(ev),
    ])
    return RunResult(run.run_dir, run.command, report, ev.metrics, ev, [], {"evaluate": extra})


def _model_text(text: str, known: set | None, seen: int, dropped: bool) -> str:
    if known is None:
        return text + " The run has no split manifest, so overlap with its training images was not checked."
    if not seen:
        return text + " None of the scored images is identical to one it trained or validated on."
    return text + (f" {seen} images identical to ones it trained or validated on were "
                   f"{'left out' if dropped else 'scored (they flatter the score; --drop-seen leaves them out)'}.")
