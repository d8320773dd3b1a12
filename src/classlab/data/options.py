"""What every command that learns from data does first: load, split (or reuse a manifest),
optionally subsample, and record the split and any leakage in the run directory."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import ClasslabError, warn
from ..fileio import write_json
from .corrections import apply_corrections, read_corrections, relabelled, write_corrections
from .dataset import ImageDataset
from .registry import load_dataset
from .split import Split, drop_near_duplicates, load_manifest, make_split, save_manifest, subsample


@dataclass
class DataOptions:
    """Options shared by the data-consuming commands (the CLI's data flags map onto these)."""

    data: str = "digits"
    data_dir: str | None = None
    image_size: int | None = None
    channels: int | None = None
    coarse_labels: bool = False
    split: str | None = None  # a manifest (split.csv or a run directory) to reproduce
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    max_train: int | None = None
    max_eval: int | None = None  # cap on val and test, each
    max_memory_mb: int | None = None  # decode image folders lazily above this many MB of pixels
    dedupe: str | None = None  # "test": drop test images that have a near-duplicate in train
    corrections: str | None = None  # a corrections.csv (data.corrections) applied to train and val
    # set by the command, not a flag: without --image-size, images larger than this are decoded at
    # max_size x max_size, the model's input (transfer: the backbone's; train: the model's photo size)
    max_size: int | None = None
    # set by evaluate, not a flag: image files fit to image_size as the evaluated model's were (images.decode)
    crop: float | None = None

    def __post_init__(self):
        # Paths are recorded absolute (as given, links kept), so a run's data is found again from any working
        # directory: explain, resume, predict with a k-NN run, the workbench started elsewhere.
        for name in ("data", "data_dir", "split", "corrections"):
            value = getattr(self, name)
            if isinstance(value, str) and value and os.path.exists(os.path.expanduser(value)):
                setattr(self, name, os.path.abspath(os.path.expanduser(value)))


def load_data(opts: DataOptions) -> ImageDataset:
    """The dataset the options describe, decoded as they say (no split)."""
    from .folders import DEFAULT_MAX_MEMORY

    memory = DEFAULT_MAX_MEMORY if opts.max_memory_mb is None else opts.max_memory_mb << 20
    return load_dataset(opts.data, data_dir=opts.data_dir, image_size=opts.image_size,
                        channels=opts.channels, coarse_labels=opts.coarse_labels, max_memory=memory,
                        max_size=opts.max_size, crop=opts.crop)


def load_and_split(opts: DataOptions) -> tuple[ImageDataset, Split]:
    ds = load_data(opts)
    corrections = read_corrections(opts.corrections) if opts.corrections else []
    if opts.split:  # a manifest records the corrected labels and what was dropped
        ds = relabelled(ds, corrections)
        split = load_manifest(ds, opts.split)
        split.corrections = corrections
    else:  # split on the labels as given, so a corrected run keeps the test set of the run it corrects
        split = make_split(ds, opts.val_fraction, opts.test_fraction, opts.seed)
        if opts.dedupe:
            if opts.dedupe not in ("test", "val"):
                raise ClasslabError(f"--dedupe takes test or val, got '{opts.dedupe}'")
            split = drop_near_duplicates(ds, split, opts.dedupe)
        if corrections:
            ds, split = apply_corrections(ds, split, corrections)
    if opts.max_train or opts.max_eval:
        split = subsample(split, ds.labels, {"train": opts.max_train, "val": opts.max_eval, "test": opts.max_eval}, opts.seed)
    if split.leakage:
        n = sum(len(g["items"]) for g in split.leakage)
        example = ", ".join(f"{i['id']} ({i['split']})" for i in split.leakage[0]["items"][:3])
        warn(f"leakage: {len(split.leakage)} groups ({n} images) of identical images sit in more than one split, "
             f"e.g. {example}; see leakage.json in the run directory")
    return ds, split


def saved_options(run_dir: str | Path) -> DataOptions:
    """The data options an earlier run recorded, pinned to its saved split: a resumed (or re-evaluated)
    run sees the same items in the same splits."""
    run_dir = Path(run_dir)
    try:
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        options = config["options"]
        # train and transfer record the data options under "data"; explore and knn at the top level
        saved = options["data"] if isinstance(options.get("data"), dict) else options
        opts = DataOptions(**{k: v for k, v in saved.items() if k in DataOptions.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ClasslabError(f"{run_dir / 'config.json'} does not hold a run's data options; is {run_dir} a "
                            "classlab run directory?") from None
    applied = run_dir / "corrections_applied.csv"
    return replace(opts, split=str(run_dir / "split.csv"), corrections=str(applied) if applied.is_file() else None)


def record_split(folder: str | Path, ds: ImageDataset, split: Split) -> None:
    """split.csv (the manifest that reproduces the split) and leakage.json in a run directory."""
    folder = Path(folder)
    save_manifest(ds, split, folder / "split.csv")
    if split.corrections:  # the run's own copy: resume and explain see the labels it trained on
        write_corrections(folder / "corrections_applied.csv", split.corrections)
    write_json(folder / "leakage.json", {"groups": len(split.leakage), "duplicates": split.leakage,
                                         "near_duplicates_across_splits": split.near_duplicates})


def split_summary(ds: ImageDataset, split: Split) -> str:
    sizes = split.sizes()
    text = (f"{ds.describe()}. Split ({split.method}): train {sizes['train']}, val {sizes['val']}, "
            f"test {sizes['test']}. Manifest: `split.csv` (pass it back with `--split` to reproduce).")
    if split.leakage:
        text += f"\n\n**Leakage:** {len(split.leakage)} groups of identical images cross splits (`leakage.json`)."
    else:
        text += "\n\nNo identical images cross splits."
    if split.corrections:
        counts = {a: sum(c.action == a for c in split.corrections) for a in ("keep", "relabel", "drop")}
        text += (f"\n\nLabel corrections applied to train and validation: {counts['relabel']} relabelled, "
                 f"{counts['drop']} dropped, {counts['keep']} confirmed (`corrections_applied.csv`).")
    for note in ds.notes:
        text += f"\n\nNote: {note}"
    if ds.skipped:
        text += f"\n\n{len(ds.skipped)} unreadable files were skipped:\n" + "\n".join(
            f"- `{rel}`: {reason}" for rel, reason in ds.skipped[:50])
    return text


IMBALANCE_ADVICE_RATIO = 3.0  # largest over smallest class in train; issue 27's 4.3 : 1 waste photos gained 1.6 points


def with_imbalance_advice(ds: ImageDataset, split: Split, balanced: bool) -> ImageDataset:
    """The dataset, with a note (printed, and in the report's Data section) when its training split's
    largest class has IMBALANCE_ADVICE_RATIO times the images of its smallest and the loss is not already
    balanced: accuracy then rewards ignoring the small class, and --class-weight balanced is the fix."""
    counts = np.bincount(ds.labels[split.indices("train")], minlength=ds.num_classes)
    present = counts[counts > 0]
    if balanced or len(present) < 2 or present.max() < IMBALANCE_ADVICE_RATIO * present.min():
        return ds
    small, large = int(np.argmin(np.where(counts > 0, counts, counts.max() + 1))), int(np.argmax(counts))
    note = (f"classes are imbalanced {present.max() / present.min():.1f} : 1 in the training split "
            f"('{ds.class_names[large]}' {counts[large]}, '{ds.class_names[small]}' {counts[small]} images): "
            "accuracy can look good while the small classes are missed; watch their recall in the report, and "
            "consider --class-weight balanced (or --sampler balanced)")
    warn(note)
    return replace(ds, notes=[*ds.notes, note])
