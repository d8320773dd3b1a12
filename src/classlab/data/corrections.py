"""Label corrections (``corrections.csv``): what a reviewer decided about suspected label issues.

One row per image: ``id, action, label`` with action ``keep`` (the label is right), ``relabel`` (to
``label``) or ``drop`` (leave the image out of training). The workbench's review page writes the file;
``classlab train ... --corrections FILE`` applies it. The user's files are never moved or changed: a
relabel changes the label the run trains on, a drop marks the image "dropped" in the split manifest.

Corrections apply to training and validation images only. Test images keep their labels, so a run
trained with corrections is scored on exactly the test set of the run it corrects and the two compare.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import ClasslabError, warn
from ..fileio import write_csv
from ..safe_files import UnreadableFile, read_file

HEADER = ["id", "action", "label"]
ACTIONS = ("keep", "relabel", "drop")
MAX_BYTES = 64 << 20


@dataclass(frozen=True)
class Correction:
    id: str
    action: str
    label: str = ""


def read_corrections(path: str | Path) -> list[Correction]:
    """The rows of a corrections file, validated; a later row for the same id replaces an earlier one."""
    path = Path(path)
    if path.is_dir():
        path = path / "corrections.csv"
    if not path.exists() and not path.is_symlink():
        raise ClasslabError(f"corrections file {path} not found; the workbench's review page writes "
                            "corrections.csv in the reviewed run's directory")
    try:
        text = read_file(path, MAX_BYTES).decode("utf-8-sig")
    except (UnreadableFile, UnicodeDecodeError, OSError) as e:
        raise ClasslabError(f"cannot read the corrections file {path}: {e}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None or [f.strip() for f in reader.fieldnames[:3]] != HEADER:
        raise ClasslabError(f"{path} is not a corrections file (expected the columns {', '.join(HEADER)})")
    rows: dict[str, Correction] = {}
    for line, r in enumerate(reader, start=2):
        item, action, label = [(r.get(k) or "").strip() for k in HEADER]
        if action not in ACTIONS:
            raise ClasslabError(f"{path}, line {line}: action '{action}' is not one of {', '.join(ACTIONS)}")
        if not item or (action == "relabel" and not label):
            raise ClasslabError(f"{path}, line {line}: an id{' and a label' if action == 'relabel' else ''} "
                                "are needed")
        rows[item] = Correction(item, action, label if action == "relabel" else "")
    return list(rows.values())


def write_corrections(path: str | Path, corrections: list[Correction]) -> Path:
    return write_csv(path, HEADER, ([c.id, c.action, c.label] for c in corrections))


def relabelled(ds, corrections: list[Correction]):
    """``ds`` with the relabel corrections applied to its labels (a new dataset; the input is unchanged).
    Unknown ids and class names are refused: a corrections file made for other data is a mistake."""
    if not corrections:
        return ds
    index = {item: i for i, item in enumerate(ds.ids)}
    classes = {name: c for c, name in enumerate(ds.class_names)}
    unknown = [c.id for c in corrections if c.id not in index]
    if unknown:
        raise ClasslabError(f"{len(unknown)} corrected images are not in {ds.name} (e.g. {unknown[0]}); "
                            "was the corrections file made for other data?")
    labels = ds.labels.copy()
    for c in corrections:
        if c.action == "relabel":
            if c.label not in classes:
                raise ClasslabError(f"correction for {c.id}: '{c.label}' is not a class of {ds.name} "
                                    f"({', '.join(ds.class_names[:10])}{'...' if ds.num_classes > 10 else ''})")
            labels[index[c.id]] = classes[c.label]
    return replace(ds, labels=labels, _hashes=ds._hashes)


def apply_corrections(ds, split, corrections: list[Correction]):
    """(dataset, split) with the corrections applied to training and validation images: relabels change
    the labels, drops mark the images "dropped". Corrections of test images are left out, with a warning."""
    from .split import Split

    index = {item: i for i, item in enumerate(ds.ids)}
    assignment = split.assignment
    on_test = [c for c in corrections if c.id in index and assignment[index[c.id]] == "test"]
    if on_test:
        warn(f"{len(on_test)} corrections concern test images (e.g. {on_test[0].id}) and are not applied: "
             "test labels stay as they are, so this run's score compares with the run it corrects")
    applied = [c for c in corrections if c not in on_test]
    ds = relabelled(ds, applied)
    dropped = [index[c.id] for c in applied if c.action == "drop" and assignment[index[c.id]] in ("train", "val")]
    if dropped:
        assignment = assignment.copy()
        assignment[np.array(dropped)] = "dropped"
    counts = {a: sum(c.action == a for c in applied) for a in ACTIONS}
    method = split.method + f", corrections ({counts['relabel']} relabelled, {len(dropped)} dropped)"
    return ds, Split(assignment, method, split.seed, split.leakage, split.near_duplicates, applied)
