"""Seeded stratified splits, saved manifests that reproduce them, and leakage detection."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ClasslabError
from ..fileio import write_csv
from ..safe_files import UnreadableFile, read_file
from .dataset import SPLIT_NAMES, ImageDataset


@dataclass
class Split:
    """Which split ('train' / 'val' / 'test') each item of a dataset belongs to."""

    assignment: np.ndarray  # object array of split names, aligned with the dataset
    method: str  # "official+val", "stratified", "manifest", ...
    seed: int | None = None
    leakage: list[dict] = field(default_factory=list)
    # near-duplicate pairs across splits found by --dedupe (ids, splits, hash distance, similarity)
    near_duplicates: list[dict] = field(default_factory=list)
    corrections: list = field(default_factory=list)  # the label corrections applied (data.corrections)

    def indices(self, name: str) -> np.ndarray:
        return np.flatnonzero(self.assignment == name)

    def sizes(self) -> dict[str, int]:
        return {s: int((self.assignment == s).sum()) for s in SPLIT_NAMES}


def _stratified(labels: np.ndarray, candidates: np.ndarray, fraction: float, seed: int, what: str):
    """Split candidates into (kept, taken) with `fraction` of each class taken, stratified."""
    from sklearn.model_selection import train_test_split

    if fraction <= 0:
        return candidates, candidates[:0]
    counts = np.bincount(labels[candidates])
    present = counts[counts > 0]
    n_take = int(np.ceil(fraction * len(candidates)))
    need = int(np.ceil(1 / fraction)) if fraction < 1 else 2
    if present.min() < 2 or n_take < len(present):
        raise ClasslabError(
            f"too few images to carve a stratified {what} split of {fraction:.0%}: the smallest class has "
            f"{present.min()} image(s) and there are {len(present)} classes; give each class at least {need} "
            f"images, or change --val-fraction / --test-fraction")
    kept, taken = train_test_split(candidates, test_size=n_take, stratify=labels[candidates], random_state=seed)
    return np.sort(kept), np.sort(taken)


def make_split(ds: ImageDataset, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0) -> Split:
    """Official test split kept where the source has one, validation carved out of train (stratified);
    otherwise a stratified train/val/test split (the decks' 80/10/10 by default).

    A source with train/ and val/ but no test/ (PyTorch's hymenoptera, ImageNet) holds val/ out for scoring:
    it becomes the test split, and validation is carved out of train. Keeping it as validation and carving a
    test split out of train instead scored hymenoptera's transfer run on 25 photos (0.80) instead of 153."""
    for name, f in (("val", val_fraction), ("test", test_fraction)):
        if not 0 <= f < 1:
            raise ClasslabError(f"--{name}-fraction must be in [0, 1), got {f}")
    if val_fraction + test_fraction >= 1:
        raise ClasslabError("--val-fraction plus --test-fraction must leave some images for training")
    n = len(ds)
    assignment = np.full(n, "train", dtype=object)
    official = ds.official_split
    if official is not None and (official == "test").any():
        assignment[:] = official
        method = "official"
        if not (official == "val").any():
            train = np.flatnonzero(official == "train")
            _, val = _stratified(ds.labels, train, val_fraction, seed, "validation")
            assignment[val] = "val"
            method = "official test, stratified validation from train"
    elif official is not None and (official == "val").any():  # given train/val, no test: val is held out
        assignment[official == "val"] = "test"
        train = np.flatnonzero(official == "train")
        _, val = _stratified(ds.labels, train, val_fraction, seed, "validation")
        assignment[val] = "val"
        method = "official validation folder as the test split, stratified validation from train"
    else:
        rest, test = _stratified(ds.labels, np.arange(n), test_fraction, seed, "test")
        # val_fraction is of the whole dataset, so rescale it to the remainder.
        _, val = _stratified(ds.labels, rest, val_fraction / (1 - test_fraction), seed + 1, "validation")
        assignment[test], assignment[val] = "test", "val"
        method = "stratified"
    split = Split(assignment, method, seed)
    split.leakage = find_leakage(ds, split)
    return split


def find_leakage(ds: ImageDataset, split: Split) -> list[dict]:
    """Groups of pixel-identical images that sit in more than one split (images left unused by a
    subsample are not in any split)."""
    groups = defaultdict(list)
    for i, h in enumerate(ds.content_hashes()):
        if split.assignment[i] not in ("unused", "dropped"):
            groups[h].append(i)
    leaks = []
    for h, members in groups.items():
        if len(members) > 1 and len({split.assignment[i] for i in members}) > 1:
            leaks.append({"hash": h, "items": [{"id": ds.ids[i], "index": i, "split": split.assignment[i],
                                                "label": ds.class_names[ds.labels[i]]} for i in members]})
    return leaks


def drop_near_duplicates(ds: ImageDataset, split: Split, target: str = "test") -> Split:
    """The split with every ``target`` image that has a near-duplicate in train (or, for test, validation)
    marked "dropped" (what the
    ciFAIR study did by hand for CIFAR's test set), so the score is on images the model has not seen a copy
    of. The manifest records them."""
    from ..errors import warn
    from . import near_duplicates as nd

    gray = nd.dataset_thumbnails(ds.images) if len(ds) else None
    try:
        pairs = nd.find(gray32=gray) if gray is not None and min(ds.item_shape[:2]) >= nd.MIN_SIDE else []
    except nd.TooAlike as e:
        warn(f"--dedupe {target} skipped: {e}; the perceptual hash cannot tell this data's pictures apart")
        return split
    a = split.assignment
    seen = {"train", "val"} - {target}  # what the model learns from or is selected on
    dropped = sorted({i if a[i] == target else j for i, j, *_ in pairs
                      if (a[i] == target and a[j] in seen) or (a[j] == target and a[i] in seen)})
    assignment = a.copy()
    assignment[dropped] = "dropped"
    if dropped:
        warn(f"--dedupe {target}: dropped {len(dropped)} {target} images that have a near-duplicate in "
             f"{' or '.join(sorted(seen))} "
             f"(e.g. {ds.ids[dropped[0]]}); split.csv marks them 'dropped'")
    crossing = [{"ids": [ds.ids[i], ds.ids[j]], "splits": [a[i], a[j]], "hash_distance": bits,
                 "similarity": similarity} for i, j, bits, similarity in pairs if a[i] != a[j]]
    return Split(assignment, split.method + f", {len(dropped)} {target} near-duplicates of seen images dropped",
                 split.seed, _leakage_after(split.leakage, assignment), crossing)


def _leakage_after(leakage: list[dict], assignment: np.ndarray) -> list[dict]:
    """The groups that still leak once some images are set aside as "unused"."""
    kept = []
    for group in leakage:
        items = [{**item, "split": assignment[item["index"]]} for item in group["items"]
                 if assignment[item["index"]] not in ("unused", "dropped")]
        if len({item["split"] for item in items}) > 1:
            kept.append({**group, "items": items})
    return kept


def subsample(split: Split, labels: np.ndarray, limits: dict[str, int | None], seed: int = 0) -> Split:
    """Keep at most limits[name] items of each split (stratified), for quick runs on big datasets."""
    assignment = split.assignment.copy()
    for name, limit in limits.items():
        idx = split.indices(name)
        if limit is not None and len(idx) > limit:
            from sklearn.model_selection import train_test_split

            counts = np.bincount(labels[idx])
            strat = labels[idx] if counts[counts > 0].min() >= 2 and limit >= (counts > 0).sum() else None
            keep, _ = train_test_split(idx, train_size=limit, stratify=strat, random_state=seed)
            dropped = np.setdiff1d(idx, keep)
            assignment[dropped] = "unused"
    return Split(assignment, split.method + f", subsampled {limits}", split.seed,
                 _leakage_after(split.leakage, assignment), split.near_duplicates, split.corrections)


MANIFEST_HEADER = ["id", "label", "hash", "split"]


def save_manifest(ds: ImageDataset, split: Split, path: str | Path) -> Path:
    hashes = ds.content_hashes()
    rows = ((ds.ids[i], ds.class_names[ds.labels[i]], hashes[i], split.assignment[i]) for i in range(len(ds)))
    return write_csv(path, MANIFEST_HEADER, rows)


def load_manifest(ds: ImageDataset, path: str | Path) -> Split:
    """Reproduce a saved split exactly. Fails if the data changed: a missing item, a new item,
    or an image whose pixels differ from the ones recorded."""
    path = Path(path)
    if path.is_dir():
        path = path / "split.csv"
    if not path.exists():
        raise ClasslabError(f"split manifest {path} not found; pass the split.csv of an earlier run")
    try:
        text = read_file(path, 1 << 30).decode("utf-8", "surrogateescape")
    except UnreadableFile as e:
        raise ClasslabError(f"cannot read the split manifest: {e}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames != MANIFEST_HEADER:
        raise ClasslabError(f"{path} is not a classlab split manifest (expected columns {', '.join(MANIFEST_HEADER)})")
    rows = {}
    for line, r in enumerate(reader, start=2):
        if None in r.values() or None in r:
            raise ClasslabError(f"{path}, line {line}: expected {len(MANIFEST_HEADER)} columns")
        if r["id"] in rows:
            raise ClasslabError(f"{path} lists '{r['id']}' twice (lines with one id each are expected); "
                                "was it edited or concatenated by hand?")
        rows[r["id"]] = r
    index = {item: i for i, item in enumerate(ds.ids)}
    missing = [k for k in rows if k not in index]
    new = [k for k in ds.ids if k not in rows]
    if missing or new:
        detail = f"{len(missing)} listed items are gone (e.g. {missing[0]})" if missing else f"{len(new)} items are new (e.g. {new[0]})"
        raise ClasslabError(f"the data no longer matches {path}: {detail}; make a new split instead of --split")
    hashes = ds.content_hashes()
    changed = [k for k, r in rows.items() if r["hash"] != hashes[index[k]]]
    if changed:
        raise ClasslabError(f"{len(changed)} images differ from {path} (e.g. {changed[0]}); "
                            "the manifest was made with other pixels (image size, channels or edited files)")
    relabelled = [k for k, r in rows.items() if r["label"] != ds.class_names[ds.labels[index[k]]]]
    if relabelled:
        k = relabelled[0]
        raise ClasslabError(f"{len(relabelled)} images have other labels than in {path} (e.g. {k}: "
                            f"'{rows[k]['label']}' there, '{ds.class_names[ds.labels[index[k]]]}' now); "
                            "the data was relabelled: make a new split instead of --split")
    assignment = np.array([rows[k]["split"] for k in ds.ids], dtype=object)
    bad = set(assignment) - set(SPLIT_NAMES) - {"unused", "dropped"}
    if bad:
        raise ClasslabError(f"{path} has unknown split names {sorted(bad)}")
    split = Split(assignment, f"manifest {path}")
    split.leakage = find_leakage(ds, split)
    return split
