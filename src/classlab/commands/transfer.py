"""``classlab transfer``: a pretrained backbone, a new head on cached frozen features, then fine-tuning.

Stages (``--mode``): ``features`` trains the head on features computed once and cached; ``finetune``
trains backbone and head together (backbone at a lower rate, BatchNorm statistics frozen by default);
``both`` does the first, then continues from it with the second. Each stage uses the training engine,
keeps its own checkpoints, curves and test report in a sub-folder, and the stage with the best
validation accuracy becomes the run's model (best.pt), which predict, export and evaluate use.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..backbones.config import HEAD_EPOCHS, MIN_HEAD_STEPS, TransferConfig
from ..backbones.features import ImagesDigest, cached_features, cached_precision, feature_precision
from ..backbones.plan import plan_backbone
from ..checkpoint import load_checkpoint, save_checkpoint
from ..data.options import (DataOptions, load_and_split, record_split, saved_options, split_summary,
                            with_imbalance_advice)
from ..device import pick_device
from ..errors import ClasslabError
from ..evaluation import evaluate
from ..fileio import atomic_write_bytes
from ..inference.preprocess import Preprocessing
from ..models import count_parameters, create_model
from ..runs import RunResult, RunWriter
from ..runs.outputs import history_files, save_outputs, score_test, test_section
from ..runs.tracking import mlflow_tracking
from ..training.batches import SplitTensors, tensors_for
from ..training.engine import fit, predict_split, split_outputs
from ..training.optim import set_determinism
from .cross_validation import cross_validate, everything_trains, require_train_and_test, small_data_reason


def resume_options(run_dir: str | Path) -> tuple[RunWriter, DataOptions, TransferConfig]:
    """An earlier transfer run's data options (pinned to its saved split) and configuration."""
    run = RunWriter.existing(run_dir)
    if run.command != "transfer":
        raise ClasslabError(f"{run.run_dir} is a '{run.command}' run; --resume here continues transfer runs "
                            f"(use classlab {run.command} --resume)")
    saved = json.loads((run.run_dir / "config.json").read_text())["options"]["transfer"]
    return run, saved_options(run.run_dir), TransferConfig.from_dict(saved)


def run_transfer(opts: DataOptions | None, tc: TransferConfig | None, runs_dir=None, progress: bool = True,
                 resume: str | Path | None = None) -> RunResult:
    """``resume``: an earlier (killed or finished) transfer run to continue in place: each stage picks up
    from its last.pt (a finished stage costs a cache read and no training); data and options are the
    saved ones."""
    run = None
    if resume is not None:
        run, opts, tc = resume_options(resume)
    tc.validate()
    set_determinism(tc.stage_config("head"))
    plan = plan_backbone(tc.backbone, tc.weights, progress)  # before the data: it may fix the channels
    if plan.channels is not None:  # a run's backbone wants the channels it was trained on
        opts = replace(opts, channels=plan.channels)
    if run is None and opts.image_size is None:  # photos are decoded once, at the backbone's input size
        opts = replace(opts, max_size=plan.decode_side(tc.image_size))
    ds, split, small = _load(opts, progress, resumed=run is not None, balanced=bool(tc.class_weight or tc.sampler))
    pre, in_channels = plan.contract(ds, tc.image_size, tc.gray)
    idx = {s: split.indices(s) for s in ("train", "val", "test")}
    if small:  # the stages score the images they trained on; the run's score is the folds'
        idx["test"] = np.arange(len(ds))
    device = pick_device(tc.device)
    options = plan.build_options(tc.dense, tc.dropout, tc.bn)
    model = create_model("transfer", ds.num_classes, in_channels, pre.model_size, **options)
    if plan.state is not None:  # the pretrained backbone, classifier removed and first convolution adapted
        model.backbone.load_state_dict(plan.backbone_only(in_channels)[0].state_dict())
    model.to(device)
    model_info = {"name": "transfer", "num_classes": ds.num_classes, "in_channels": in_channels,
                  "image_size": pre.model_size, "options": options}
    if run is None:
        run = RunWriter("transfer", ds.name, runs_dir)
        run.write_config({"data": vars(opts), "transfer": tc.to_dict(), "model": model_info, "weights": plan.weights,
                          "preprocessing": pre.to_dict()}, tc.seed)
        record_split(run.run_dir, ds, split)
    folds = cross_validate(ds, opts, tc.seed, run.run_dir / "folds", small,
                           lambda fold_opts, folder: run_transfer(fold_opts, tc, folder, progress=False),
                           progress) if small else None
    extra = {"model_info": model_info, "class_names": ds.class_names}
    stages = {}
    # one MLflow run for both stages (fine-tuning's epochs continue the step count)
    params = {"transfer": tc.to_dict(), "data": vars(opts), "model": model_info}
    with mlflow_tracking(tc.mlflow, run.run_dir, params) as tracking:
        if tc.mode in ("features", "both"):
            stages["features"] = _features_stage(model, ds, idx, pre, plan, tc, run, extra, device, progress,
                                                 tracking.callbacks)
        if tc.mode in ("finetune", "both"):
            stages["finetune"] = _finetune_stage(model, ds, idx, pre, tc, run, extra, device, progress,
                                                 tracking.callbacks)
        result = _finish(run, ds, split, idx, stages, model, tc, plan, folds)
        tracking.scored(result.metrics)
    return result


def _load(opts: DataOptions, progress: bool, resumed: bool, balanced: bool):
    """(dataset, split, why the data is too small for a test split or None): with a few images per class
    every image trains the model and the score comes from cross-validation (cross_validation.py)."""
    started = time.perf_counter()
    _phase(progress, f"loading {opts.data}")
    ds, split = load_and_split(opts)
    _phase(progress, f"loaded {len(ds):,} images of {'x'.join(map(str, ds.item_shape))} in "
                     f"{time.perf_counter() - started:.1f} s")
    small = None if resumed else small_data_reason(opts, ds, split)
    if small:
        split = everything_trains(ds, split)
    require_train_and_test(split, small, resumed, opts, "transfer learning")
    return with_imbalance_advice(ds, split, balanced), split, small


def _phase(progress: bool, text: str) -> None:
    """A line per phase, flushed: a log file (or the workbench's job page) sees where a long run is, where
    the terminal's progress bars (off when output is not a terminal) say nothing."""
    if progress:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def _last(out: Path, device) -> dict | None:
    """A stage's last checkpoint, to continue from (None: start the stage afresh)."""
    return load_checkpoint(out / "last.pt", map_location=device) if (out / "last.pt").is_file() else None


def _labels(ds, indices, device) -> torch.Tensor:
    return torch.from_numpy(ds.labels[indices]).to(device)


def _features_stage(model, ds, idx, pre, plan, tc, run, extra, device, progress, callbacks=None) -> dict:
    model.freeze(None)
    t0 = time.perf_counter()
    hits = {}
    # The images the head learns from take --precision's choice, as training steps do; the test split's
    # features are always fp32, so the reported scores are the ones the saved (fp32) model reproduces.
    digests = {s: ImagesDigest() for s in idx}  # each split's images hashed once for all its cache keys
    bf16, precision = _feature_precision(model, ds, idx["train"], digests["train"], pre, plan, tc, device)
    if progress:
        print(f"feature precision ({tc.precision}): {precision}", flush=True)

    def features(s, mirror=False):
        what = f"features ({s}{', mirrored' if mirror else ''})"
        _phase(progress, f"{what}: {len(idx[s]):,} images through {tc.backbone} at {'x'.join(map(str, pre.model_size))}")
        began = time.perf_counter()
        out, hit = cached_features(model.backbone, ds.rows(idx[s]), ds.labels[idx[s]], pre, device, plan.spec,
                                   bf16=bf16 and s != "test", progress=progress,
                                   desc=what, mirror=mirror,
                                   digest=digests[s])
        hits[s + (" mirrored" if mirror else "")] = hit
        _phase(progress, f"{what}: {'read from the cache' if hit else 'computed'} in {time.perf_counter() - began:.1f} s")
        return out.to(device)

    # Mirror images' features: training draws one of the pair per image per epoch (--head-augment flip),
    # validation and test average the pair's probabilities (--tta flip), as predict does on images.
    mirrored = {"train": tc.head_augment == "flip", "val": tc.tta == "flip", "test": tc.tta == "flip"}
    split = {s: SplitTensors(features(s), _labels(ds, idx[s], device),
                             features(s, mirror=True)[None] if mirrored[s] else None)
             for s in idx if len(idx[s])}
    feature_seconds = time.perf_counter() - t0
    out = run.run_dir / "features"
    cfg = tc.head_config(len(idx["train"]))
    _phase(progress, f"training the head on cached features: {cfg.epochs} epochs")
    width = split["train"].images.shape[1]
    identity = Preprocessing.for_features(width)
    val = split.get("val", SplitTensors(split["train"].images[:0], split["train"].labels[:0]))
    t1 = time.perf_counter()
    state = fit(model.head, split["train"], val, cfg, identity, out, num_classes=ds.num_classes,
                resume=_last(out, device), progress=progress, callbacks=callbacks)
    head_seconds = time.perf_counter() - t1
    model.head.load_state_dict(load_checkpoint(out / "best.pt", map_location=device)["model"])
    save_checkpoint(out / "model.pt", {**extra, "model": model.state_dict(), "preprocessing": pre.to_dict(),
                                       "config": cfg.to_dict()})
    proba, embeddings = split_outputs(model.head, split["test"], identity, cfg.tta)
    val_proba = predict_split(model.head, split["val"], identity, cfg.tta) if "val" in split else None
    return _stage_result("features", out, ds, idx, (proba, val_proba, embeddings), state, cfg, {
        "planned_epochs": cfg.epochs,
        "feature_seconds": feature_seconds, "head_seconds": head_seconds, "features_from_cache": hits,
        "feature_precision": precision,
        "feature_width": width, "trainable_parameters": count_parameters(model.head)[0]})


def _feature_precision(model, ds, train, digest, pre, plan, tc, device) -> tuple[bool, str]:
    """bf16 or fp32 for the training images' features: with ``--precision auto``, what the cache already
    holds (timings on a shared machine wander, and a flipped choice would recompute every feature), else
    measured (transfer/features.py)."""
    images = ds.rows(train)
    cached = cached_precision(images, ds.labels[train], pre, plan.spec, digest) if tc.precision == "auto" else None
    if cached is not None:
        return cached, f"{'bf16' if cached else 'fp32'} (as the cached features of these images)"
    return feature_precision(model.backbone, images, pre, device, tc.precision)


def _finetune_stage(model, ds, idx, pre, tc, run, extra, device, progress, callbacks=None) -> dict:
    unfrozen = model.freeze(tc.unfreeze)
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    groups = [{"params": list(model.head.parameters()), "lr": tc.lr}]
    if backbone:
        groups.append({"params": backbone, "lr": tc.lr * tc.backbone_lr_ratio})
    out = run.run_dir / "finetune"
    cfg = tc.finetune_config(len(idx["train"]), pre.model_size)
    train_t, val_t = tensors_for(ds, idx["train"], device), tensors_for(ds, idx["val"], device)
    _phase(progress, f"fine-tuning {unfrozen} of {len(model.blocks())} backbone blocks: {cfg.epochs} epochs of "
                     f"{len(idx['train']):,} images at {'x'.join(map(str, pre.model_size))}")
    t0 = time.perf_counter()
    state = fit(model, train_t, val_t, cfg, pre, out, num_classes=ds.num_classes, extra_state=extra,
                resume=_last(out, device), progress=progress, param_groups=groups, callbacks=callbacks)
    seconds = time.perf_counter() - t0
    model.load_state_dict(load_checkpoint(out / "best.pt", map_location=device)["model"])
    proba, embeddings = split_outputs(model, tensors_for(ds, idx["test"], device), pre, cfg.tta)
    val_proba = predict_split(model, val_t, pre, cfg.tta) if len(idx["val"]) else None
    return _stage_result("finetune", out, ds, idx, (proba, val_proba, embeddings), state, cfg, {
        "seconds": seconds, "unfrozen_blocks": unfrozen, "blocks": len(model.blocks()),
        "trainable_parameters": count_parameters(model)[1], "backbone_lr": tc.lr * tc.backbone_lr_ratio,
        "micro_batch": cfg.micro_batch})


def _head_epochs_note(tc: TransferConfig, info: dict) -> str:
    if tc.head_epochs is not None or info["planned_epochs"] == HEAD_EPOCHS:
        return ""
    return (f" The head was given {info['planned_epochs']} epochs instead of {HEAD_EPOCHS}: on this small training "
            f"split that is about {MIN_HEAD_STEPS} steps (--head-epochs sets them).")


def _stage_result(name, out: Path, ds, idx, outputs, state, cfg, info) -> dict:
    proba, val_proba, embeddings = outputs
    y_true = ds.labels[idx["test"]]
    ev = evaluate(y_true, proba.argmax(1), proba, ds.class_names, seed=cfg.seed)
    info = {**info, "batch_size": cfg.batch_size, "best_epoch": state.best_epoch, "epochs_run": state.epoch,
            "best_val_acc": state.best_val_acc,
            "train_seconds": sum(h["seconds"] for h in state.history)}
    ev.save(out, extra={"stage": name, name: info})
    history_files(out, state.history)
    splits = {**({"val": (idx["val"], val_proba)} if val_proba is not None else {}), "test": (idx["test"], proba)}
    save_outputs(out, ds, splits, embeddings)
    return {"evaluation": ev, "proba": proba, "info": info, "dir": out, "history": state.history,
            "splits": splits, "embeddings": embeddings}


def _validation_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _finish(run, ds, split, idx, stages, model, tc, plan, folds=None) -> RunResult:
    # Model selection on validation only: the stage whose best epoch scored higher there (without a
    # validation split there is nothing to choose on: the later stage).
    # Ties in accuracy (common on a small validation split: 25 photos score in steps of 4 points) go to the
    # lower validation loss; on the tutorial's ants and bees that picked the head (94.1% on its 153 test photos)
    # over a fine-tuning that tied it on validation and scored 90.8% (benchmarks/README.md).
    def score(s):
        info = stages[s]["info"]
        val = info["best_val_acc"]
        best = next((h for h in stages[s]["history"] if h["epoch"] == info["best_epoch"]), {})
        loss = best.get("val_loss")
        return (-math.inf if val is None else val, -math.inf if loss is None else -loss, s == "finetune")
    chosen = max(stages, key=score)
    src = stages[chosen]["dir"] / ("model.pt" if chosen == "features" else "best.pt")
    atomic_write_bytes(run.run_dir / "best.pt", src.read_bytes())
    summary = {name: {"accuracy": st["evaluation"].accuracy, "macro_f1": st["evaluation"].metrics["macro_avg"]["f1"],
                      **st["info"]} for name, st in stages.items()}
    details = {"chosen_stage": chosen, "stages": summary, "weights": plan.weights,
               **({"cross_validation": folds.to_dict()} if folds is not None else {})}
    ev = score_test(run, ds, idx["test"], stages[chosen]["proba"] if folds is None else folds.proba, tc.seed, details)
    outputs = stages[chosen]["splits"] if folds is None else {"test": (idx["test"], folds.proba)}
    save_outputs(run.run_dir, ds, outputs, stages[chosen]["embeddings"])
    rows = "\n".join(
        f"| {name}{' (chosen)' if name == chosen else ''} | {_validation_text(s['best_val_acc'])} | "
        f"{s['accuracy']:.4f} | {s['macro_f1']:.4f} | {s['epochs_run']} | "
        f"{s.get('feature_seconds', 0) + s['train_seconds']:.1f} s |" for name, s in summary.items())
    table = ("| stage | validation acc | test acc | test macro F1 | epochs | time |\n|---|---|---|---|---|---|\n" + rows)
    pre = Preprocessing.from_dict(load_checkpoint(run.run_dir / "best.pt")["preprocessing"])
    contract = (f"Backbone `{tc.backbone}` with weights {plan.weights}. An image goes through:\n\n"
                + "\n".join(f"{i}. {step}" for i, step in enumerate(pre.describe(), 1))
                + "\n\nThe contract is saved in best.pt; predict, export and evaluate reuse it.")
    notes = []
    if "features" in stages:
        f = summary["features"]
        cached = ", ".join(f"{s}: {'cache' if hit else 'computed'}" for s, hit in f["features_from_cache"].items())
        head = tc.stage_config("head")
        notes.append(f"Frozen features ({f['feature_width']} per image; {cached}) took {f['feature_seconds']:.1f} s. "
                     f"Training images' features: {f['feature_precision']}; test features: fp32, as predict computes "
                     f"them. The head ({f['trainable_parameters']:,} parameters) trained in {f['head_seconds']:.1f} s "
                     f"({head.optimizer} lr {head.lr:g}, {head.schedule} schedule, batch {f['batch_size']}, "
                     f"head augment {tc.head_augment}, test-time augmentation {tc.tta}). "
                     "Curves: `features/curves.png`." + _head_epochs_note(tc, f))
    if "finetune" in stages:
        f = summary["finetune"]
        chunks = f" in chunks of {f['micro_batch']} images (gradients added up)" if f.get("micro_batch") else ""
        notes.append(f"Fine-tuning unfroze {f['unfrozen_blocks']} of {f['blocks']} backbone blocks "
                     f"({f['trainable_parameters']:,} trainable parameters), backbone lr {f['backbone_lr']:g}, head lr "
                     f"{tc.lr:g}, {tc.stage_config('finetune').schedule} schedule, BatchNorm statistics {tc.bn}, "
                     f"augment {tc.augment}, batch {f['batch_size']}"
                     f"{chunks}. Curves: `finetune/curves.png`.")
    notes.append("Each stage's full report: " + ", ".join(f"`{name}/`" for name in stages) + ".")
    if folds is not None:
        notes.append("The stages' test columns score the images they trained on (every image trains the model); "
                     "the run's score is the cross-validation's, below.")
    report = run.write_report(f"Transfer learning: {tc.backbone} on {ds.name}", [
        ("Data", split_summary(ds, split) + ("" if folds is None else "\n\n" + folds.text())),
        ("Preprocessing contract", contract),
        ("Stages (test scored once per stage; the chosen stage is picked on validation: accuracy, then loss)",
         table + "\n\n" + "\n\n".join(notes)),
        test_section(ev, f"Test results of the chosen stage ({chosen})" if folds is None else
                     "Cross-validated results (out-of-fold predictions of every image)"),
    ])
    return RunResult(run.run_dir, "transfer", report, ev.metrics, ev, stages[chosen]["history"],
                     {k: v for k, v in details.items() if k != "weights"})
