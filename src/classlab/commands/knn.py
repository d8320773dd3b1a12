"""``classlab knn``: the decks' k-NN on raw pixels, done right: k chosen on validation, the test
split scored once, the full evaluation report."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..data.options import DataOptions, load_and_split, record_split, split_summary
from ..errors import ClasslabError
from ..models.knn import KNNClassifier, check_k
from ..plots import line_plot_png
from ..runs import RunResult, RunWriter
from ..runs.outputs import save_outputs, score_test, test_section


def _embedding_rows(ds, split, plan, features: dict, device, progress: bool):
    """rows(indices) -> the backbone's (cached) embeddings of those images, and a description."""
    from ..backbones.features import cached_features
    from ..device import pick_device

    pre, in_channels = plan.contract(ds, features.get("image_size"))
    backbone, width = plan.backbone_only(in_channels)
    parts, position = [], np.full(len(ds.labels), -1, dtype=np.int64)  # image index -> its row in the table
    for s in ("train", "val", "test"):
        idx = split.indices(s)
        if len(idx):
            f, _ = cached_features(backbone, ds.subset(idx).images, ds.labels[idx], pre, pick_device(device), plan.spec,
                                   progress=progress, desc=f"features ({s})")
            position[idx] = np.arange(len(idx)) + sum(len(p) for p in parts)
            parts.append(f.numpy())
    table = np.concatenate(parts)

    def rows(indices):
        return table[position[np.asarray(indices, dtype=np.int64)]]
    return rows, (f"{width}-dimensional embeddings from `{features['backbone']}` ({plan.weights}; images resized to "
                  f"{'x'.join(map(str, pre.model_size))}, normalised as the weights expect)")


def _check_split(ks: list[int], n_train: int, n_val: int, n_test: int) -> None:
    if n_train == 0:
        raise ClasslabError("the split has no training images: k-NN needs images to search; check --split, "
                            "--val-fraction and --test-fraction")
    if ks[-1] > n_train:
        raise ClasslabError(f"k={ks[-1]} is larger than the training set ({n_train} images); use k <= {n_train}")
    if n_test == 0:
        raise ClasslabError("the split has no test images; use --test-fraction > 0 or a dataset with a test split")
    if len(ks) > 1 and n_val == 0:
        raise ClasslabError("choosing among several k needs a validation split; use --val-fraction > 0, or give one k")


def run_knn(opts: DataOptions, ks=(1, 3, 5), metric: str = "l2", device: str | None = None,
            runs_dir: str | Path | None = None, progress: bool = True, features: dict | None = None) -> RunResult:
    """k-NN on raw pixels, or with ``features`` ({"backbone", "weights", "image_size"}) on a pretrained
    backbone's embeddings (cached on disk), in the same report format."""
    ks = sorted({check_k(k) for k in ks})
    if not ks:
        raise ClasslabError("give at least one k, e.g. --k 1,3,5")
    model = KNNClassifier(ks[0], metric, device, progress=progress)  # validates metric and device up front
    plan = None
    if features:
        from ..backbones.plan import plan_backbone

        plan = plan_backbone(features["backbone"], features.get("weights"), progress)
        if plan.channels is not None:  # a run's backbone wants the channels it was trained on
            opts = replace(opts, channels=plan.channels)
    ds, split = load_and_split(opts)
    train, val, test = (split.indices(s) for s in ("train", "val", "test"))
    # images keep their shape: KNNClassifier flattens them, and bounds distances from 2x2 pixel blocks
    rows, space = ds.pixels, "flattened raw pixels"
    if plan is not None:
        rows, space = _embedding_rows(ds, split, plan, features, device, progress)
    _check_split(ks, len(train), len(val), len(test))
    run = RunWriter("knn", ds.name, runs_dir)
    run.write_config({**vars(opts), "ks": ks, "metric": metric, "device": str(model.device), "features": features},
                     opts.seed)
    record_split(run.run_dir, ds, split)

    t0 = time.perf_counter()
    model.fit(rows(train), ds.labels[train], num_classes=ds.num_classes)
    val_acc, on_val = {}, {}
    if len(val):
        on_val = model.predict_for_ks(rows(val), ks)
        for k, (pred, _) in on_val.items():
            val_acc[k] = float(np.mean(pred == ds.labels[val]))
        best = max(ks, key=lambda k: (val_acc[k], -k))  # highest validation accuracy, then the smaller k
    else:
        best = ks[0]
    on_test = model.predict_for_ks(rows(test), ks)
    seconds = time.perf_counter() - t0
    test_acc = {k: float(np.mean(p == ds.labels[test])) for k, (p, _) in on_test.items()}
    y_pred, proba = on_test[best]
    selection = {"metric": metric, "k": best, "chosen_on": "validation" if val_acc else "only k given",
                 "validation_accuracy": val_acc, "test_accuracy_by_k": test_acc, "seconds": seconds}
    ev = score_test(run, ds, test, proba, opts.seed, {"model": "knn", "knn": selection, "space": space}, y_pred)
    save_outputs(run.run_dir, ds, {**({"val": (val, on_val[best][1])} if on_val else {}), "test": (test, proba)})
    series = {"test (for reference only)": [test_acc[k] for k in ks]}
    if val_acc:
        series = {"validation": [val_acc[k] for k in ks], **series}
    line_plot_png(ks, series, run.file("accuracy_vs_k.png"), f"k-NN ({metric}) accuracy vs k", "k", "accuracy",
                  mark_x=best)
    k_table = "| k | validation accuracy | test accuracy |\n|---|---|---|\n" + "\n".join(
        f"| {k}{' (chosen)' if k == best else ''} | {val_acc.get(k, float('nan')):.4f} | {test_acc[k]:.4f} |" for k in ks)
    report = run.write_report(f"k-NN on {ds.name}" + (f" ({features['backbone']} embeddings)" if plan else ""), [
        ("Data", split_summary(ds, split)),
        ("Model", f"Exact k-NN on {space} ({rows(train[:1])[0].size} values per image), "
                  f"{metric} distance, k chosen on the validation split: **k = {best}**. "
                  f"Search took {seconds:.1f} s on {model.device}.\n\n{k_table}\n\n![accuracy vs k](accuracy_vs_k.png)"),
        test_section(ev),
    ])
    return RunResult(run.run_dir, "knn", report, ev.metrics, ev, details={"k": best, "selection": selection})
