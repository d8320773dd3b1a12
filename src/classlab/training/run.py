"""``classlab train``: data -> model -> engine -> evaluation report, in one run directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.dataset import ImageDataset
from ..device import pick_device
from ..errors import ClasslabError
from ..evaluation import evaluate
from ..fileio import write_csv
from ..models import count_parameters, create_model
from ..prepare import DataOptions, load_and_split, record_split, saved_options, split_summary
from ..runs import Run
from . import distributed
from .checkpoint import load_checkpoint
from .config import TrainConfig
from .engine import FitState, SplitTensors, StreamedSplit, fit, predict_logits, set_determinism, use_bf16
from .tensors import Preprocessing

RESUMABLE_CHANGES = {"epochs", "device"}  # what may differ when a run is continued


def tensors_for(ds: ImageDataset, indices: np.ndarray, device) -> SplitTensors | StreamedSplit:
    labels = torch.from_numpy(ds.labels[indices]).to(device)
    if ds.is_lazy:  # too large for memory: decoded by DataLoader workers as batches are needed
        return StreamedSplit(ds.images.subset(indices), labels, device)
    return SplitTensors(torch.from_numpy(np.ascontiguousarray(ds.images[indices])).to(device), labels)


def _resume_state(resume: str | Path, cfg: TrainConfig, given: set[str]):
    run_dir = Run.existing(resume).path
    ckpt = load_checkpoint(run_dir / "last.pt")
    saved = TrainConfig.from_dict(ckpt["config"])
    differ = sorted(k for k in given - RESUMABLE_CHANGES if getattr(cfg, k) != getattr(saved, k))
    if differ:
        detail = ", ".join(f"{k}: saved {getattr(saved, k)!r}, given {getattr(cfg, k)!r}" for k in differ)
        raise ClasslabError(f"cannot resume {run_dir} with a different configuration ({detail}); "
                            "drop those options or start a new run")
    for k in given & RESUMABLE_CHANGES:
        setattr(saved, k, getattr(cfg, k))
    return run_dir, ckpt, saved


def run_train(opts: DataOptions, cfg: TrainConfig, runs_dir=None, resume: str | Path | None = None,
              given: set[str] | None = None, progress: bool = True) -> dict:
    """Train, pick the best epoch on validation, score the test split once, write the report."""
    if cfg.model == "scratch-mlp":  # the NumPy MLP: same run format, its own loop
        if resume:
            raise ClasslabError("scratch-mlp runs are short and cannot be resumed; start a new run")
        from ..scratch.run import run_scratch

        return run_scratch(opts, cfg, runs_dir, progress)
    ckpt = None
    if resume:
        run_dir, ckpt, cfg = _resume_state(resume, cfg, given or set())
        opts = saved_options(Run.existing(run_dir))
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
    train_idx, val_idx, test_idx = (split.indices(s) for s in ("train", "val", "test"))
    if len(train_idx) == 0 or len(test_idx) == 0:
        raise ClasslabError("training needs train and test images; check --val-fraction / --test-fraction")
    model_info = {"name": cfg.model, "num_classes": ds.num_classes, "in_channels": ds.channels,
                  "image_size": list(ds.item_shape[:-1]), "options": cfg.model_options}
    model = create_model(cfg.model, ds.num_classes, ds.channels, ds.item_shape[:-1], **cfg.model_options).to(device)
    if ckpt is not None:
        run = Run.existing(run_dir)
        pre = Preprocessing(**ckpt["preprocessing"])
    else:
        path = None
        if ddp.main:  # one run directory, made by rank 0, used by all
            run = Run("train", ds.name, runs_dir)
            run.write_config({"data": vars(opts), "train": cfg.to_dict(), "model": model_info,
                              "world_size": ddp.world}, cfg.seed)
            record_split(run, ds, split)
            path = run.path
        path = ddp.broadcast(path)
        run = Run.existing(path) if not ddp.main else run
        pre = Preprocessing.from_images(ds.subset(train_idx).images)  # lazy stays lazy: streamed in blocks
    extra = {"model_info": model_info, "class_names": ds.class_names}
    train_t, val_t = tensors_for(ds, train_idx, device), tensors_for(ds, val_idx, device)
    state: FitState = fit(model, train_t, val_t, cfg, pre, run.path, extra, resume=ckpt, progress=progress, ddp=ddp)
    ddp.barrier()  # best.pt is complete before anyone reads it
    if not ddp.main:
        return {"run_dir": run.path, "rank": ddp.rank}

    best = load_checkpoint(run.path / "best.pt", map_location=device)
    model.load_state_dict(best["model"])
    bf16 = use_bf16(cfg, device)
    model.to(memory_format=torch.contiguous_format)
    # Scored in fp32 whatever the training precision, so predict, export and re-evaluation agree with it.
    logits = predict_logits(model, tensors_for(ds, test_idx, device), pre, 256, False, False, cfg.tta)
    proba = logits.softmax(1).cpu().numpy()
    total, trainable = count_parameters(model)
    summary = {"model": model_info, "parameters": total, "trainable_parameters": trainable,
               "best_epoch": state.best_epoch, "epochs_run": state.epoch, "stopped_early": state.stopped_early,
               "train_seconds": sum(h["seconds"] for h in state.history), "bf16": bf16, "device": str(device)}
    model_text = (f"`{cfg.model}` ({total:,} parameters), {state.epoch} epochs "
                  f"({'stopped early' if state.stopped_early else 'as configured'}), best validation "
                  f"epoch {state.best_epoch}; {cfg.optimizer}, lr {cfg.lr}, batch {cfg.batch_size}, "
                  f"{cfg.schedule} schedule, augment {cfg.augment}, "
                  f"{'bf16' if bf16 else 'fp32'} on {device}. Configuration: `config.json`.")
    return write_results(run, ds, split, test_idx, proba, cfg.seed, state.history, summary,
                         f"{cfg.model} on {ds.name}", model_text, "Test results (best validation epoch, test scored once)")


def write_results(run: Run, ds: ImageDataset, split, test_idx, proba: np.ndarray, seed: int, history: list[dict],
                  summary: dict, title: str, model_text: str, test_heading: str = "Test results") -> dict:
    """What every training run leaves: metrics and plots, predictions.csv, history.csv + curves.png, report.md."""
    y_true, y_pred = ds.labels[test_idx], proba.argmax(1)
    ev = evaluate(y_true, y_pred, proba, ds.class_names, seed=seed)
    paths = ev.save(run.path, extra={"train": summary})
    run.write_predictions([ds.ids[i] for i in test_idx], y_true, y_pred, proba, ds.class_names)
    history_files(run.path, history)
    report = run.write_report(title, [
        ("Data", split_summary(ds, split)),
        ("Model and training", model_text + "\n\n![training curves](curves.png)\n\nPer epoch: `history.csv`."),
        (test_heading, f"```\n{ev.text()}```\n\n![confusion matrix](confusion_matrix.png)\n\n"
                       "![normalised confusion matrix](confusion_matrix_normalized.png)"),
    ])
    return {"run_dir": run.path, "report": report, "evaluation": ev, "history": history, **paths}


def history_files(folder: Path, history: list[dict]) -> None:
    """history.csv and curves.png (loss and accuracy, train vs validation) in ``folder``."""
    keys = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s"]
    write_csv(folder / "history.csv", keys, ([h.get(k, "") for k in keys] for h in history))
    epochs = [h["epoch"] for h in history]
    import matplotlib.pyplot as plt

    from ..fileio import save_figure

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in ((ax1, "loss"), (ax2, "acc")):
        ax.plot(epochs, [h[f"train_{metric}"] for h in history], marker="o", label="train")
        if "val_acc" in history[0]:
            ax.plot(epochs, [h[f"val_{metric}"] for h in history], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if metric == "acc" else "loss")
        ax.grid(alpha=0.3)
        ax.legend()
    ax1.set_title("Loss: a widening gap between the curves means overfitting")
    ax2.set_title("Accuracy")
    save_figure(fig, folder / "curves.png")
