"""What every command that learns from data does first: load, split (or reuse a manifest),
optionally subsample, and record the split and any leakage in the run directory."""

from __future__ import annotations

from dataclasses import dataclass

from .data import ImageDataset, Split, load_dataset, load_manifest, make_split, save_manifest, subsample
from .errors import warn
from .fileio import write_json
from .runs import Run


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


def load_and_split(opts: DataOptions) -> tuple[ImageDataset, Split]:
    from .data.folders import DEFAULT_MAX_MEMORY

    memory = DEFAULT_MAX_MEMORY if opts.max_memory_mb is None else opts.max_memory_mb << 20
    ds = load_dataset(opts.data, data_dir=opts.data_dir, image_size=opts.image_size,
                      channels=opts.channels, coarse_labels=opts.coarse_labels, max_memory=memory)
    split = load_manifest(ds, opts.split) if opts.split else make_split(ds, opts.val_fraction, opts.test_fraction, opts.seed)
    if opts.max_train or opts.max_eval:
        split = subsample(split, ds.labels, {"train": opts.max_train, "val": opts.max_eval, "test": opts.max_eval}, opts.seed)
    if split.leakage:
        n = sum(len(g["items"]) for g in split.leakage)
        example = ", ".join(f"{i['id']} ({i['split']})" for i in split.leakage[0]["items"][:3])
        warn(f"leakage: {len(split.leakage)} groups ({n} images) of identical images sit in more than one split, "
             f"e.g. {example}; see leakage.json in the run directory")
    return ds, split


def saved_options(run: Run) -> DataOptions:
    """The data options an earlier run recorded, pinned to its saved split: a resumed run sees the same
    items in the same splits."""
    import json

    opts = DataOptions(**json.loads((run.path / "config.json").read_text())["options"]["data"])
    opts.split = str(run.path / "split.csv")
    return opts


def record_split(run: Run, ds: ImageDataset, split: Split) -> None:
    save_manifest(ds, split, run.file("split.csv"))
    write_json(run.file("leakage.json"), {"groups": len(split.leakage), "duplicates": split.leakage})


def split_summary(ds: ImageDataset, split: Split) -> str:
    sizes = split.sizes()
    text = (f"{ds.describe()}. Split ({split.method}): train {sizes['train']}, val {sizes['val']}, "
            f"test {sizes['test']}. Manifest: `split.csv` (pass it back with `--split` to reproduce).")
    if split.leakage:
        text += f"\n\n**Leakage:** {len(split.leakage)} groups of identical images cross splits (`leakage.json`)."
    else:
        text += "\n\nNo identical images cross splits."
    for note in ds.notes:
        text += f"\n\nNote: {note}"
    if ds.skipped:
        text += f"\n\n{len(ds.skipped)} unreadable files were skipped:\n" + "\n".join(
            f"- `{rel}`: {reason}" for rel, reason in ds.skipped[:50])
    return text
