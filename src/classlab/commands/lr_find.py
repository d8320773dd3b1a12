"""Learning-rate range test (Smith 2015, as fastai's lr_find): raise the learning rate exponentially
batch by batch from a fresh model and watch the loss; suggest where it falls fastest."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..data.options import DataOptions, load_and_split, record_split
from ..device import pick_device
from ..errors import ClasslabError
from ..fileio import save_figure, write_csv, write_json
from ..inference.preprocess import Preprocessing, to_input
from ..models import create_model
from ..runs import RunResult, RunWriter
from ..training.config import TrainConfig
from ..training.optim import loss_fn, make_optimizer, set_determinism


def lr_find(opts: DataOptions, cfg: TrainConfig, start: float = 1e-7, end: float = 10.0, steps: int = 100,
            runs_dir=None) -> RunResult:
    if not 0 < start < end:
        raise ClasslabError(f"the range must satisfy 0 < start < end, got {start}..{end}")
    if steps < 10:
        raise ClasslabError(f"use at least 10 steps, got {steps}")
    cfg.validate()
    set_determinism(cfg)
    device = pick_device(cfg.device)
    ds, split = load_and_split(opts)
    train = split.indices("train")
    cfg = cfg.for_split(len(train))
    run = RunWriter("lr-find", ds.name, runs_dir)
    run.write_config({"data": vars(opts), "train": cfg.to_dict(), "start": start, "end": end, "steps": steps}, cfg.seed)
    record_split(run.run_dir, ds, split)
    model = create_model(cfg.model, ds.num_classes, ds.channels, ds.item_shape[:-1], **cfg.model_options).to(device)
    generator = torch.Generator().manual_seed(cfg.seed)
    picks = torch.randint(0, len(train), (steps, cfg.batch_size), generator=generator)
    # Only the images the test will draw (at most steps x batch) are decoded: folders too large for
    # memory stay lazy, and a 100-step test on a big dataset does not read all of it.
    needed, where = torch.unique(picks, return_inverse=True)
    rows = train[needed.numpy()]
    drawn = np.ascontiguousarray(ds.images[rows])
    pre = Preprocessing.from_images(drawn)  # mean/std of the drawn images: plenty for a range test
    images = torch.from_numpy(drawn).to(device)
    labels = torch.from_numpy(ds.labels[rows]).to(device)
    lrs, losses = _sweep(model, images, labels, where.to(device), pre, cfg, ds.num_classes, start, end, steps)
    if len(lrs) < 5:
        raise ClasslabError(f"the loss diverged within {len(lrs)} steps; lower the start of the range (--start)")
    log_lr, arr = np.log10(lrs), np.array(losses)
    slope = np.gradient(arr, log_lr)
    steepest = float(lrs[int(np.argmin(slope[: int(np.argmin(arr)) + 1]))])
    min_over_10 = float(lrs[int(np.argmin(arr))] / 10)
    write_csv(run.file("lr_find.csv"), ["lr", "smoothed_loss"], zip(lrs, losses))
    result = {"suggested_lr": steepest, "steepest": steepest, "min_loss_lr_over_10": min_over_10,
              "steps_run": len(lrs)}
    write_json(run.file("lr_find.json"), result)
    _plot(lrs, losses, steepest, run.file("lr_find.png"))
    report = run.write_report(f"Learning-rate finder: {cfg.model} on {ds.name}", [
        ("Suggestion", f"Steepest descent of the loss at **lr = {steepest:.2e}** (minimum loss / 10: "
                       f"{min_over_10:.2e}).\n\n![lr finder](lr_find.png)")])
    return RunResult(run.run_dir, "lr-find", report, details=result)


def _sweep(model, images, labels, where, pre, cfg: TrainConfig, num_classes: int, start: float, end: float,
           steps: int) -> tuple[list[float], list[float]]:
    """One step per learning rate, growing geometrically from ``start`` to ``end`` on the batches ``where``
    picks; (rates, smoothed losses) up to where the loss diverges."""
    optimizer = make_optimizer(replace(cfg, lr=start), model.parameters())
    criterion = loss_fn(cfg, num_classes, None)
    factor = (end / start) ** (1 / (steps - 1))
    lrs, losses, smooth, best = [], [], 0.0, math.inf
    model.train()
    for step in range(steps):
        lr = start * factor**step
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = criterion(model(to_input(images[where[step]], pre)), labels[where[step]])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = loss.item()
        smooth = 0.98 * smooth + 0.02 * value if step else value  # exponential moving average, bias-free start
        if not math.isfinite(value) or (step > 10 and smooth > 4 * best):
            break  # diverged: the rest of the range says nothing
        best = min(best, smooth)
        lrs.append(lr)
        losses.append(smooth)
    return lrs, losses


def _plot(lrs, losses, suggested, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(lrs, losses)
    ax.axvline(suggested, color="red", linestyle="--", label=f"suggested {suggested:.1e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("smoothed training loss")
    ax.set_title("Learning-rate range test")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
