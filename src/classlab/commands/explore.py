"""``classlab explore``: look at the data before modelling it (the decks' stop 1)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..data.dataset import SPLIT_NAMES, ImageDataset, channel_stats
from ..data.options import DataOptions, load_and_split, record_split, split_summary
from ..fileio import atomic_write_text, write_json
from ..plots import bar_chart_png, image_grid_png
from ..runs import RunResult, RunWriter

MAX_GRID_CLASSES = 20
SAMPLES_PER_CLASS = 8


def dataset_stats(ds: ImageDataset, assignment: np.ndarray) -> dict:
    counts = {s: ds.class_counts(np.flatnonzero(assignment == s)).tolist() for s in SPLIT_NAMES}
    total = ds.class_counts()
    mean, std = channel_stats(ds.images)
    dup_groups = [n for n in Counter(ds.content_hashes()).values() if n > 1]
    return {
        "name": ds.name, "source": ds.source, "images": len(ds), "num_classes": ds.num_classes,
        "class_names": ds.class_names, "image_shape": list(ds.item_shape), "channels": ds.channels,
        "volume": ds.is_volume, "class_counts": dict(zip(ds.class_names, total.tolist())),
        "class_counts_by_split": {s: dict(zip(ds.class_names, v)) for s, v in counts.items()},
        "imbalance_ratio": float(total.max() / max(total.min(), 1)),
        "channel_mean": mean, "channel_std": std,
        "original_sizes": ds.original_sizes, "colour_modes": ds.modes,
        "duplicate_groups": len(dup_groups), "duplicate_images": int(sum(dup_groups)),
        "skipped_files": [{"file": f, "reason": r} for f, r in ds.skipped], "notes": ds.notes,
    }


def stats_text(st: dict) -> str:
    shape = "x".join(map(str, st["image_shape"]))
    lines = [f"{st['name']}: {st['images']} images, {st['num_classes']} classes, each {shape} "
             f"({'volume' if st['volume'] else 'image'}, {st['channels']} channel(s))",
             f"per-channel mean {[round(v, 4) for v in st['channel_mean']]}, std {[round(v, 4) for v in st['channel_std']]} (pixels / 255)",
             f"imbalance ratio (largest / smallest class) {st['imbalance_ratio']:.2f}",
             f"identical images: {st['duplicate_images']} in {st['duplicate_groups']} groups", "",
             f"{'class':>20}  {'train':>7}  {'val':>7}  {'test':>7}  {'total':>7}"]
    by = st["class_counts_by_split"]
    for name in st["class_names"]:
        lines.append(f"{name[:20]:>20}  {by['train'][name]:7d}  {by['val'][name]:7d}  {by['test'][name]:7d}  "
                     f"{st['class_counts'][name]:7d}")
    if st["original_sizes"]:
        lines += ["", "original sizes: " + ", ".join(f"{k} ({v})" for k, v in list(st["original_sizes"].items())[:8])]
    if st["colour_modes"]:
        lines.append("colour modes: " + ", ".join(f"{k} ({v})" for k, v in st["colour_modes"].items()))
    return "\n".join(lines) + "\n"


def sample_rows(ds: ImageDataset, seed: int = 0) -> tuple[list[tuple[str, np.ndarray]], str]:
    rng = np.random.default_rng(seed)
    classes = np.arange(ds.num_classes)
    note = ""
    if len(classes) > MAX_GRID_CLASSES:
        classes = np.unique(np.linspace(0, ds.num_classes - 1, MAX_GRID_CLASSES).round().astype(int))
        note = f" ({len(classes)} of {ds.num_classes} classes, evenly spaced)"
    rows = []
    for c in classes:
        idx = np.flatnonzero(ds.labels == c)
        pick = np.sort(rng.choice(idx, size=min(SAMPLES_PER_CLASS, len(idx)), replace=False))
        images = np.asarray(ds.images[pick])
        if ds.is_volume:
            images = images[:, images.shape[1] // 2]  # the middle slice of each volume
        rows.append((ds.class_names[c], images))
    return rows, note


def explore(opts: DataOptions, runs_dir: str | Path | None = None) -> RunResult:
    ds, split = load_and_split(opts)
    run = RunWriter("explore", ds.name, runs_dir)
    run.write_config(vars(opts), opts.seed)
    record_split(run.run_dir, ds, split)
    st = dataset_stats(ds, split.assignment)
    write_json(run.file("stats.json"), st)
    text = stats_text(st)
    atomic_write_text(run.file("stats.txt"), text)
    rows, note = sample_rows(ds, opts.seed)
    image_grid_png(rows, run.file("samples.png"), f"{ds.name}: samples per class{note}")
    by = st["class_counts_by_split"]
    bar_chart_png(ds.class_names, {s: np.array([by[s][c] for c in ds.class_names]) for s in SPLIT_NAMES},
                  run.file("class_distribution.png"), f"{ds.name}: images per class and split", "images")
    report = run.write_report(f"Exploring {ds.name}", [
        ("Data", split_summary(ds, split)),
        ("Statistics", f"```\n{text}```\nAll numbers: `stats.json`."),
        ("Samples", f"One row per class{note}.\n\n![samples](samples.png)"),
        ("Class distribution", "![class distribution](class_distribution.png)"),
    ])
    return RunResult(run.run_dir, "explore", report, details={"stats": st, "text": text})
