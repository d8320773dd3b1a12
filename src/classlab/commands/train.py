"""``classlab train``: data -> model -> engine -> evaluation report, in one run directory."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load_checkpoint
from ..data.options import DataOptions, load_and_split, load_data, record_split, saved_options, with_imbalance_advice
from ..device import pick_device
from ..errors import ClasslabError, warn
from ..inference.preprocess import Preprocessing
from ..models import count_parameters, create_model, get_entry
from ..models.sizing import fit_model_to_data
from ..runs import RunResult, RunWriter
from ..runs.outputs import write_results
from ..runs.tracking import mlflow_tracking
from ..training import distributed
from ..training.batches import tensors_for
from ..training.config import TrainConfig
from ..training.engine import FitState, fit, predict_split, split_outputs
from ..training.optim import set_determinism
from .cross_validation import cross_validate, everything_trains, require_train_and_test, small_data_reason

RESUMABLE_CHANGES = {"epochs", "device", "mlflow"}  # what may differ when a run is continued


def _resume_state(resume: str | Path, cfg: TrainConfig, given: set[str]):
    run_dir = RunWriter.existing(resume).run_dir
    ckpt = load_checkpoint(run_dir / "last.pt")
    saved = TrainConfig.from_dict(ckpt["config"])
    differ = sorted(k for k in given - RESUMABLE_CHANGES if getattr(cfg, k) != getattr(saved, k))
    if differ:
        detail = ", ".join(f"{k}: saved {getattr(saved, k)!r}, given {getattr(cfg, k)!r}" for k in differ)
        raise ClasslabError(f"cannot resume {run_dir} with a different configuration ({detail}); "
                            "drop those options or start a new run")
    return run_dir, ckpt, replace(saved, **{k: getattr(cfg, k) for k in given & RESUMABLE_CHANGES})


def run_train(opts: DataOptions, cfg: TrainConfig, runs_dir=None, resume: str | Path | None = None,
              given: set[str] | None = None, progress: bool = True) -> RunResult:
    """Train, pick the best epoch on validation, score the test split once, write the report."""
    entry = get_entry(cfg.model)
    if entry.hidden:
        raise ClasslabError(f"'{cfg.model}' is built by another command (classlab {cfg.model}); "
                            "choose a model from 'classlab models'")
    if not resume and opts.image_size is None and opts.max_size is None and not entry.volume:  # model's size
        opts = replace(opts, max_size=entry.photo_size)
    if entry.kind == "numpy":  # a NumPy model (scratch-mlp): same run format, its own loop
        if resume:
            raise ClasslabError(f"{cfg.model} runs are short and cannot be resumed; start a new run")
        from .scratch import run_scratch

        return run_scratch(opts, cfg, runs_dir, progress)
    ckpt = None
    if resume:
        run_dir, ckpt, cfg = _resume_state(resume, cfg, given or set())
        opts = saved_options(run_dir)
    cfg.validate()
    set_determinism(cfg)
    ddp = distributed.setup()  # under torchrun: one process per device; a no-op otherwise
    try:
        return _train(opts, cfg, runs_dir, ckpt, run_dir if resume else None, progress, ddp)
    finally:
        distributed.teardown(ddp)


def _train(opts, cfg, runs_dir, ckpt, run_dir, progress, ddp) -> dict:
    device = pick_device(cfg.device)
    if ddp.active and device.type == "cuda":
        device = torch.device("cuda", ddp.local_rank)
    ds, split = load_and_split(opts)
    small = small_data_reason(opts, ds, split) if ckpt is None and not ddp.active else None
    if small:  # a few images per class: scored by cross-validation, the model trains on all of them
        split = everything_trains(ds, split)
    require_train_and_test(split, small, ckpt is not None, opts, "training")
    ds = with_imbalance_advice(ds, split, balanced=bool(cfg.class_weight or cfg.sampler))
    ds = with_pretrained_advice(ds, split, opts)
    train_idx, val_idx, test_idx = (split.indices(s) for s in ("train", "val", "test"))
    cfg = cfg.for_split(len(train_idx) // ddp.world)  # before config.json and the report record the batch
    ds, opts = _sized_for_model(ds, opts, cfg, len(train_idx))
    model_info = {"name": cfg.model, "num_classes": ds.num_classes, "in_channels": ds.channels,
                  "image_size": list(ds.item_shape[:-1]), "options": cfg.model_options}
    model = create_model(cfg.model, ds.num_classes, ds.channels, ds.item_shape[:-1], **cfg.model_options).to(device)
    run, pre = _run_and_contract(opts, cfg, ds, split, model_info, runs_dir, ckpt, run_dir, ddp)
    folds = cross_validate(ds, opts, cfg.seed, run.run_dir / "folds", small,
                           lambda fold_opts, folder: run_train(fold_opts, cfg, folder, progress=False),
                           progress) if small else None
    extra = {"model_info": model_info, "class_names": ds.class_names}
    train_t, val_t = tensors_for(ds, train_idx, device), tensors_for(ds, val_idx, device)
    # one MLflow run beside the classlab run, fed as training goes (rank 0 only)
    params = {"train": cfg.to_dict(), "data": vars(opts), "model": model_info}
    with mlflow_tracking(cfg.mlflow if ddp.main else None, run.run_dir, params) as tracking:
        state: FitState = fit(model, train_t, val_t, cfg, pre, run.run_dir, num_classes=ds.num_classes,
                              extra_state=extra, resume=ckpt, progress=progress, ddp=ddp,
                              callbacks=tracking.callbacks)
        ddp.barrier()  # best.pt is complete before anyone reads it
        if not ddp.main:  # rank 0 reports
            return RunResult(run.run_dir, "train", details={"rank": ddp.rank})
        result = _score_best(run, model, ds, split, cfg, pre, state, model_info, device, folds)
        tracking.scored(result.metrics)
    return result


PHOTO_SIDE = 96  # images whose files are at least this large (median shorter side) are photos, not digits or icons
FEW_PHOTOS_PER_CLASS = 1000  # fewer training photos per class than this: a CNN from scratch learns little


def with_pretrained_advice(ds, split, opts: DataOptions):
    """The dataset, with a note (printed, and in the report's Data section) when it is a few photos per class:
    a network trained from scratch on 220 ants and bees scores 56%, a pretrained one fine-tuned by ``classlab
    transfer`` 97% (benchmarks/README.md), and a newcomer should hear it before reading a near-chance score."""
    sizes = [(min(int(v) for v in size.split("x")), n) for size, n in ds.original_sizes.items()]
    sides = np.repeat([side for side, _ in sizes], [n for _, n in sizes]) if sizes else np.empty(0)
    counts = np.bincount(ds.labels[split.indices("train")], minlength=ds.num_classes)
    if not len(sides) or np.median(sides) < PHOTO_SIDE or counts.mean() >= FEW_PHOTOS_PER_CLASS:
        return ds
    note = (f"{counts.sum():,} training photos ({counts.mean():,.0f} per class) are few for a network trained "
            "from scratch: one pretrained on ImageNet and fine-tuned usually scores far higher on photos. "
            f"Try: classlab transfer {shlex.quote(str(opts.data))}")
    warn(note)
    return replace(ds, notes=[*ds.notes, note])


def _sized_for_model(ds, opts: DataOptions, cfg: TrainConfig, train_images: int):
    """(the data, its options) at an input size the model is sane for (models/sizing.py). When classlab chose
    the size, a smaller one is decoded afresh from the files, as predict will decode them, and recorded in
    the options; a model absurdly large for its training set is refused."""
    size, note = fit_model_to_data(get_entry(cfg.model), ds.num_classes, ds.channels, ds.item_shape[:-1],
                                   cfg.model_options, train_images, opts.image_size is None, cfg.allow_large_model)
    if note is None:
        return ds, opts
    warn(note)
    opts = replace(opts, max_size=min(size))  # square, at most the size checked
    smaller = load_data(opts)
    if smaller.ids != ds.ids:  # the files changed between the two reads
        raise ClasslabError(f"{opts.data} changed while it was read; run the command again")
    # labels, corrections and notes as loaded; only the pixels (and so their hashes) are new
    return replace(ds, images=smaller.images, notes=[*ds.notes, note], _hashes=None), opts


def _run_and_contract(opts, cfg, ds, split, model_info, runs_dir, ckpt, run_dir, ddp):
    """(the run directory, the preprocessing contract): a resumed run's own, or a new one's, made by rank 0
    (one run directory for all ranks) with the contract measured on the training split."""
    if ckpt is not None:
        return RunWriter.existing(run_dir), Preprocessing.from_dict(ckpt["preprocessing"])
    path = None
    if ddp.main:
        run = RunWriter("train", ds.name, runs_dir)
        run.write_config({"data": vars(opts), "train": cfg.to_dict(), "model": model_info,
                          "world_size": ddp.world}, cfg.seed)
        record_split(run.run_dir, ds, split)
        path = run.run_dir
    path = ddp.broadcast(path)
    run = RunWriter.existing(path) if not ddp.main else run
    pre = Preprocessing.from_images(ds.subset(split.indices("train")).images)  # lazy stays lazy: streamed
    return run, replace(pre, crop=ds.crop)


def _score_best(run, model, ds, split, cfg, pre, state, model_info, device, folds=None) -> RunResult:
    """The best validation epoch's weights scored once on the test split; the run's report and files. With
    ``folds`` (small data) the score is the cross-validation's out-of-fold predictions of every image."""
    test_idx, val_idx = split.indices("test"), split.indices("val")
    best = load_checkpoint(run.run_dir / "best.pt", map_location=device)
    model.load_state_dict(best["model"])
    bf16 = state.precision == "bf16"
    if folds is not None:
        test_idx = np.arange(len(ds))
    proba, embeddings = split_outputs(model, tensors_for(ds, test_idx, device), pre, cfg.tta)
    if folds is not None:
        proba = folds.proba
    val_proba = predict_split(model, tensors_for(ds, val_idx, device), pre, cfg.tta) if len(val_idx) else None
    total, trainable = count_parameters(model)
    summary = {"model": model_info, "parameters": total, "trainable_parameters": trainable,
               "best_epoch": state.best_epoch, "epochs_run": state.epoch, "stopped_early": state.stopped_early,
               "train_seconds": sum(h["seconds"] for h in state.history), "bf16": bf16, "device": str(device),
               **({"cross_validation": folds.to_dict()} if folds is not None else {})}
    model_text = (f"`{cfg.model}` ({total:,} parameters), {state.epoch} epochs "
                  f"({'stopped early' if state.stopped_early else 'as configured'}), best validation "
                  f"epoch {state.best_epoch}; {cfg.optimizer}, lr {cfg.lr}, batch {cfg.batch_size}, "
                  f"{cfg.schedule} schedule, augment {cfg.augment}, "
                  f"{'bf16' if bf16 else 'fp32'} on {device}. Configuration: `config.json`.")
    if folds is not None:
        model_text = folds.text() + "\n\n" + model_text
    return write_results(run, ds, split, test_idx, proba, cfg.seed, state.history, summary,
                         f"{cfg.model} on {ds.name}", model_text,
                         "Cross-validated results (out-of-fold predictions of every image)" if folds is not None
                         else "Test results (best validation epoch, test scored once)",
                         val=(val_idx, val_proba) if val_proba is not None else None, embeddings=embeddings)
