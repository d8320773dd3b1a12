"""Honest scores on small data: when a held-out test split would hold a few images per class, accuracy is
estimated by stratified k-fold cross-validation instead, and the run's model trains on every image.

Each fold is an ordinary run of the same command (its own folder under ``RUN/folds/``, pinned to a fold
manifest), so what a fold does is exactly what the command does; the run then scores the out-of-fold
probabilities of all images: every image predicted by a model that never saw it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.dataset import ImageDataset
from ..data.options import DataOptions
from ..data.split import Split, save_manifest
from ..errors import ClasslabError, warn, warnings_silenced

MIN_TEST_PER_CLASS = 5  # a test split with fewer images per class (on average) means little
FOLDS = 5


@dataclass
class CrossValidation:
    folds: int
    proba: np.ndarray  # out-of-fold probabilities, aligned with the dataset
    fold_accuracy: list[float]
    reason: str
    runs: list[str]

    def text(self) -> str:
        accs = ", ".join(f"{a:.3f}" for a in self.fold_accuracy)
        return (f"**Small data: scored by {self.folds}-fold cross-validation.** {self.reason}, so instead every "
                f"image was held out once: {self.folds} models, each trained on the other folds with these same "
                f"settings, predicted the fold they never saw (fold accuracies {accs}; their runs are in "
                f"`folds/`). The test results below are those out-of-fold predictions over all {len(self.proba)} "
                "images; the run's own model trained on every image, with no validation split.")

    def to_dict(self) -> dict:
        return {"folds": self.folds, "fold_accuracy": self.fold_accuracy, "reason": self.reason, "runs": self.runs}


def small_data_reason(opts: DataOptions, ds: ImageDataset, split: Split) -> str | None:
    """Why the planned test split means too little to score on, or None. Only for splits classlab drew itself:
    a manifest, an official test split or a cap the user asked for (--max-eval) stays as given."""
    if opts.split or opts.max_eval or opts.max_train or opts.dedupe or split.method != "stratified":
        return None
    test = len(split.indices("test"))
    if test == 0 or test >= MIN_TEST_PER_CLASS * ds.num_classes:  # none asked for (--test-fraction 0), or enough
        return None
    folds = fold_count(ds.labels)
    if folds < 2:
        return None
    return (f"A test split of {test} images ({test / ds.num_classes:.1f} per class; at least {MIN_TEST_PER_CLASS} "
            "per class are needed for its score to mean much) would decide the score by one or two images")


def fold_count(labels: np.ndarray) -> int:
    return int(min(FOLDS, np.bincount(labels)[np.bincount(labels) > 0].min()))


def require_train_and_test(split: Split, small: str | None, resumed: bool, opts: DataOptions, what: str) -> None:
    """A run needs training images, and test images unless cross-validation scores it; a run that was scored
    by cross-validation is not resumed (its folds take seconds: start it again)."""
    if len(split.indices("train")) and (len(split.indices("test")) or small):
        return
    again = resumed and "cross-validation" in split.method + str(opts.split)
    raise ClasslabError(f"{what} needs train and test images; check --val-fraction / --test-fraction"
                        + (" (a run scored by cross-validation is not resumed: start it again)" if again else ""))


def everything_trains(ds: ImageDataset, split: Split) -> Split:
    """The final model's split: every image in train (the score comes from the folds)."""
    return replace(split, assignment=np.full(len(ds), "train", dtype=object),
                   method=f"all images train the model; scored by {fold_count(ds.labels)}-fold cross-validation")


def cross_validate(ds: ImageDataset, opts: DataOptions, seed: int, folder: Path, reason: str,
                   run_fold: Callable[[DataOptions, Path], object], progress: bool = True) -> CrossValidation:
    """Run ``run_fold(options pinned to fold k's manifest, runs folder)`` for each stratified fold and gather the
    out-of-fold probabilities from each fold run's probabilities.npz."""
    from sklearn.model_selection import StratifiedKFold

    k = fold_count(ds.labels)
    warn(reason + f"; scored by {k}-fold cross-validation instead, and the model trains on all {len(ds)} images")
    folder.mkdir(parents=True, exist_ok=True)
    proba = np.zeros((len(ds), ds.num_classes), dtype=np.float32)
    accuracies, runs = [], []
    index = {item: i for i, item in enumerate(ds.ids)}
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(ds)), ds.labels)
    for fold, (_, held_out) in enumerate(folds, 1):
        if progress:
            print(f"cross-validation: fold {fold} of {k} ({len(held_out)} images held out)", flush=True)
        assignment = np.full(len(ds), "train", dtype=object)
        assignment[held_out] = "test"
        manifest = save_manifest(ds, Split(assignment, f"fold {fold} of {k}", seed), folder / f"fold-{fold}.csv")
        with warnings_silenced():  # the folds would repeat the run's own notes five times
            result = run_fold(replace(opts, split=str(manifest)), folder)
        with np.load(Path(result.run_dir) / "probabilities.npz") as saved:
            rows = np.array([index[str(i)] for i in saved["test_ids"]])
            proba[rows] = saved["test_probs"]
        accuracies.append(float(result.accuracy))
        runs.append(Path(result.run_dir).name)
    return CrossValidation(k, proba, accuracies, reason, runs)
