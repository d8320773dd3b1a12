"""The training engine: plain PyTorch in named phases (as fastai's Learner), resumable at every epoch.

``Trainer.fit`` runs ``setup`` -> for each epoch: ``train_epoch`` (the hot loop, one screen) ->
``validate`` -> ``record`` (best epoch, early stopping) -> the callbacks' ``after_epoch`` (checkpoints,
the printed log, TensorBoard). ``fit(...)`` is the one-call form every command uses.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import load_checkpoint, save_checkpoint
from ..errors import ClasslabError
from ..inference.predict import inference_batch, predict_batches, predict_with_embeddings
from ..inference.preprocess import Preprocessing, normalize, to_float
from ..progress import bar as progress_bar
from .augment import AlternatingFlip, augment, mix
from .batches import SplitTensors, StreamedSplit
from .config import TrainConfig
from .distributed import Dist
from .optim import Lookahead, loss_fn, make_optimizer, make_schedule
from .precision import MEASURE_BATCH, measured_bf16, use_bf16


@dataclass
class FitState:
    epoch: int = 0  # epochs completed
    history: list[dict] = field(default_factory=list)
    best_val_acc: float | None = None  # None when there is no validation split
    # what picks the best epoch: validation accuracy, or minus the training loss without a validation split;
    # equal accuracies go to the lower validation loss (a 25-image split scores in 4-point steps, and the
    # first epoch to reach a tie was kept: hymenoptera's head stopped at epoch 1 of 25, 0.889 instead of 0.948)
    best_score: float = -math.inf
    best_val_loss: float = math.inf
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    precision: str = ""  # what the run trains in, "bf16" or "fp32"; a resumed run keeps it

    @classmethod
    def from_dict(cls, saved: dict) -> "FitState":
        known = {f.name for f in fields(cls)}
        state = cls(**{k: v for k, v in saved.items() if k in known})
        if "best_score" not in saved:  # a checkpoint from before best_score: best_val_acc held the score
            state.best_score = saved.get("best_val_acc", -math.inf)
            state.best_val_acc = state.best_score if state.history and "val_acc" in state.history[0] else None
        return state


class Callback:
    """What runs after each epoch and after training; override either."""

    def after_epoch(self, trainer: "Trainer", row: dict) -> None:
        pass

    def after_fit(self, trainer: "Trainer") -> None:
        pass


class Checkpoints(Callback):
    """last.pt every epoch, then best.pt on a new best epoch, each written atomically. If the run dies (a
    kill, a full disk) between the two, last.pt knows its epoch was the best, and resuming rewrites best.pt
    from it (``Trainer.restore``): nothing is lost either way."""

    def after_epoch(self, trainer, row):
        trainer.save("last.pt")
        if trainer.improved:
            trainer.save("best.pt")


class LiveProgress(Callback):
    """``progress.json`` in the run directory after every epoch (epoch, epochs planned, the history so far),
    written atomically, so a watcher (the workbench, a script, ``watch cat``) follows a run without torch."""

    def after_epoch(self, trainer, row):
        from ..fileio import write_json

        write_json(trainer.run_dir / "progress.json", {
            "epoch": row["epoch"], "epochs": trainer.cfg.epochs, "stage": trainer.run_dir.name,
            "stopped_early": trainer.state.stopped_early, "history": trainer.state.history})


class PrintLog(Callback):
    def after_epoch(self, trainer, row):
        val = f"  val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:.4f}" if "val_acc" in row else ""
        print(f"epoch {row['epoch']:3d}  loss {row['train_loss']:.4f}  acc {row['train_acc']:.4f}{val}  "
              f"{row['images_per_s']:.0f} images/s", flush=True)


class TensorBoard(Callback):
    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ClasslabError("--tensorboard needs the tensorboard package: pip install 'classlab[tensorboard]'") from None
        self.writer = SummaryWriter(str(log_dir))

    def after_epoch(self, trainer, row):
        for key, value in row.items():
            if key != "epoch":
                self.writer.add_scalar(key.replace("_", "/", 1) if key.startswith(("train_", "val_")) else key,
                                       value, row["epoch"])
        self.writer.flush()

    def after_fit(self, trainer):
        self.writer.close()


class Trainer:
    """Trains ``model`` in place on ``train``, picking the best epoch on ``val``. Under DDP every process takes
    its own slice of each epoch's shuffled order; only rank 0 writes. ``param_groups`` (optimizer groups, e.g. a
    lower rate for a pretrained backbone) default to the model's own (``model.param_groups(cfg)``) or every
    trainable parameter at ``cfg.lr``; frozen parameters are never handed to the optimizer. ``extra_state`` is
    saved in every checkpoint beside the model (model_info, class names)."""

    def __init__(self, model, train: SplitTensors | StreamedSplit, val: SplitTensors | StreamedSplit,
                 cfg: TrainConfig, pre: Preprocessing, run_dir: Path, *, num_classes: int | None = None,
                 extra_state: dict | None = None, progress: bool = True, ddp: Dist | None = None,
                 param_groups: list[dict] | None = None, callbacks: list[Callback] | None = None):
        self.model, self.train_split, self.val_split, self.cfg, self.pre = model, train, val, cfg, pre
        self.run_dir, self.extra_state, self.param_groups = Path(run_dir), extra_state or {}, param_groups
        self.ddp = ddp or Dist()
        self.num_classes = num_classes or int(train.labels.max()) + 1
        self.progress = progress and self.ddp.main
        self.callbacks = list(callbacks or [])
        self.state, self.improved = FitState(), False

    # -- setup ------------------------------------------------------------------------------------

    def setup(self, resume: dict | None = None) -> None:
        cfg, train, device = self.cfg, self.train_split, self.train_split.device
        n = len(train.labels)
        if cfg.batch_size > n:
            raise ClasslabError(f"--batch-size {cfg.batch_size} is larger than the training split ({n} images); "
                                f"use --batch-size {min(n, 64)} or less")
        self.per_rank = n // self.ddp.world  # equal shares: every rank must take the same number of steps
        self.steps = self.per_rank // cfg.batch_size if self.per_rank % cfg.batch_size == 1 \
            else math.ceil(self.per_rank / cfg.batch_size)  # no one-image last batch (BatchNorm cannot take it)
        if device.type == "cpu":
            # Subnormal floats (weights, Adam moments and gradients drift there) are slow on x86 CPUs: flushing
            # them to zero measured 5x more fp32 training images/s for workshop-cnn on CIFAR-10. The setting is
            # process-wide (NumPy sees it too), so fit() puts back what it found.
            torch.set_flush_denormal(True)
        self._init_from_data()
        groups = self.param_groups
        if groups is None and hasattr(self.model, "param_groups"):  # the model's own groups (fastnet's BN shifts)
            groups = self.model.param_groups(cfg)
        self.optimizer = make_optimizer(cfg, groups or [p for p in self.model.parameters() if p.requires_grad])
        self.forward = self._wrapped_model()
        self.schedule = make_schedule(cfg, self.optimizer, self.steps)
        self.counts = torch.bincount(train.labels, minlength=self.num_classes).float()
        balanced = (self.counts.sum() / (self.num_classes * self.counts.clamp_min(1))).to(device)
        self.criterion = loss_fn(cfg, self.num_classes, balanced if cfg.class_weight == "balanced" else None)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.lookahead = Lookahead(self.model, cfg.epochs * self.steps) if cfg.lookahead else None
        self.flips = AlternatingFlip(n, cfg.seed, device) if cfg.alternate_flip else None
        if resume:
            self._restore(resume)
        self.bf16 = self._choose_bf16()
        self.state.precision = "bf16" if self.bf16 else "fp32"
        # channels_last images: for bf16 everywhere; on the CPU for fp32 too, where oneDNN's convolutions
        # run faster on them (MobileNetV2 at 96 px: a training step 0.15 s against 0.23 s on NCHW-contiguous)
        self.channels_last = train.images.ndim == 4 and (self.bf16 or train.device.type == "cpu")
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def _choose_bf16(self) -> bool:
        """bf16 or fp32 (precision.py): what a resumed run trained in; else the configured or static choice,
        or with --precision auto on the CPU the faster of the two, measured on a copy of the model."""
        cfg, train = self.cfg, self.train_split
        if self.state.precision:
            return self.state.precision == "bf16"
        bf16 = use_bf16(cfg, train.device, volumes=train.images.ndim == 5)
        # under DDP the ranks could time differently and disagree; a deterministic run must not depend on timing
        if not bf16 or cfg.precision != "auto" or train.device.type != "cpu" or self.ddp.active or cfg.deterministic:
            return bf16
        size = min(cfg.batch_size, len(train.labels), MEASURE_BATCH)
        idx, images = next(iter(train.batches(torch.arange(size, device=train.device), size)))
        x = normalize(to_float(images, self.pre), self.pre)
        bf16, account = measured_bf16(self.model, x, train.labels[idx], self.criterion)
        if self.progress:
            print(f"precision (auto): {account}", flush=True)
        return bf16

    def _init_from_data(self) -> None:
        """Data-dependent initialisation (fastnet's whitening); on resume it also freezes what the first run
        froze, so the optimizer's parameter list matches its saved state."""
        if not hasattr(self.model, "init_from_data"):
            return
        train, n = self.train_split, len(self.train_split.labels)
        pick = torch.randperm(n, generator=torch.Generator().manual_seed(self.cfg.seed))[:5000].sort().values
        sample = train.take(pick.to(train.device)) if torch.is_tensor(train.images) else \
            torch.from_numpy(np.asarray(train.images[pick.numpy()]))
        self.model.init_from_data(normalize(to_float(sample.to(train.device), self.pre), self.pre))

    def _wrapped_model(self):
        forward = self.model
        if self.ddp.active:
            from torch.nn.parallel import DistributedDataParallel

            device = self.train_split.device
            # a model that freezes parameters as it trains (begin_epoch) leaves them without gradients
            forward = DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None,
                                              find_unused_parameters=hasattr(self.model, "begin_epoch"))
        if self.cfg.compile:
            forward = torch.compile(forward)  # shares parameters with `model`, which checkpoints use
        return forward

    def _restore(self, ckpt: dict) -> None:
        self._repair_best(ckpt)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["scheduler"])
        self.generator.set_state(ckpt["rng"]["generator"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        self.state = FitState.from_dict(ckpt["fit_state"])

    def _repair_best(self, last: dict) -> None:
        """best.pt from last.pt when the run stopped after writing last.pt of a best epoch, before best.pt."""
        state = last.get("fit_state", {})
        if not self.ddp.main or not state.get("epoch") or state.get("best_epoch") != state.get("epoch"):
            return
        path = self.run_dir / "best.pt"
        try:
            saved = load_checkpoint(path)["fit_state"]["epoch"] if path.is_file() else None
        except (ClasslabError, KeyError, TypeError):
            saved = None
        if saved != state["epoch"]:
            save_checkpoint(path, last)

    def save(self, name: str) -> None:
        if not self.ddp.main:
            return
        save_checkpoint(self.run_dir / name, {
            **self.extra_state, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(), "config": self.cfg.to_dict(), "preprocessing": self.pre.to_dict(),
            "rng": {"generator": self.generator.get_state(), "torch": torch.get_rng_state()},
            "fit_state": vars(self.state).copy()})

    # -- one epoch --------------------------------------------------------------------------------

    def epoch_order(self) -> torch.Tensor:
        """This rank's share of the epoch's shuffled (or class-balanced) order; the same draw on every rank."""
        labels, n, ddp = self.train_split.labels, len(self.train_split.labels), self.ddp
        if self.cfg.sampler == "balanced":  # each image drawn with probability inverse to its class size
            weights = (1.0 / self.counts.clamp_min(1))[labels.cpu()]
            order = torch.multinomial(weights, n, replacement=True, generator=self.generator)
        else:
            order = torch.randperm(n, generator=self.generator)
        return order[ddp.rank : self.per_rank * ddp.world : ddp.world].to(self.train_split.device)

    def train_epoch(self, epoch: int) -> dict:
        cfg, train, model = self.cfg, self.train_split, self.model
        model.train()
        if hasattr(model, "begin_epoch"):  # a model's own schedule, e.g. fastnet freezing its whitening bias
            model.begin_epoch(epoch)
        if self.lookahead:
            self.lookahead.begin_epoch(epoch * self.steps)
        order, drawn = self.epoch_order(), train.draw_views(self.generator)
        t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
        bar = progress_bar(range(self.steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                           enabled=self.progress)
        for step, (idx, images) in zip(bar, train.batches(order[: self.steps * cfg.batch_size], cfg.batch_size, drawn)):
            flips = self.flips(idx, epoch) if self.flips else None
            x = augment(to_float(images, self.pre), cfg.augment, self.generator, cfg.crop_padding, flips)
            y = target = train.labels[idx]
            if cfg.augment in ("mixup", "cutmix") and x.ndim == 4:
                x, target = mix(x, y, cfg.augment, self.num_classes)  # soft targets; accuracy still counts y
            logits, loss = self.train_step(normalize(x, self.pre, self.channels_last), target, epoch, step)
            if self.lookahead:
                self.lookahead.step(epoch * self.steps + step + 1)
            seen += len(y)
            loss_sum += loss * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            bar.set_postfix(**{"loss": f"{loss_sum / seen:.4f}", "acc": f"{correct / seen:.4f}",
                               "images/s": f"{seen / (time.perf_counter() - t0):.0f}"})
        if self.lookahead:
            self.lookahead.end_epoch(epoch * self.steps + self.steps)
        seconds = time.perf_counter() - t0
        return {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen,
                "lr": self.optimizer.param_groups[0]["lr"], "seconds": seconds, "images_per_s": seen / seconds}

    def train_step(self, x: torch.Tensor, target: torch.Tensor, epoch: int, step: int) -> tuple[torch.Tensor, float]:
        """One optimizer step on the batch, in chunks of --micro-batch images whose gradients add up (each
        chunk's mean loss weighted by its share of the batch), so only one chunk's activations are held."""
        cfg = self.cfg
        chunk = cfg.micro_batch or len(x)
        logits, total = [], 0.0
        try:
            self.optimizer.zero_grad(set_to_none=True)
            for part, part_target in zip(x.split(chunk), target.split(chunk)):
                with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                    out = self.forward(part)
                loss = self.criterion(out, part_target)
                if not torch.isfinite(loss):
                    raise ClasslabError(self._not_finite(loss.item(), epoch, step))
                (loss * (len(part) / len(x))).backward()
                logits.append(out.detach())
                total += loss.item() * len(part) / len(x)
        except torch.OutOfMemoryError:
            smaller = max(1, min(chunk, cfg.batch_size) // 2)
            raise ClasslabError(f"out of {x.device.type} memory at --batch-size {cfg.batch_size}; try "
                                f"--batch-size {max(1, cfg.batch_size // 2)}, --micro-batch {smaller} (the same "
                                "steps in less memory) or a smaller --image-size") from None
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.schedule.step()
        return torch.cat(logits), total

    def _not_finite(self, value: float, epoch: int, step: int) -> str:
        last = self.run_dir / "last.pt"
        where = f"The last good checkpoint is {last}" if last.exists() else "No checkpoint yet: it failed in the first epoch"
        return (f"the loss became {value} in epoch {epoch + 1}, step {step + 1}: the learning rate ({self.cfg.lr}) is "
                f"the likely cause; try --lr {self.cfg.lr / 10:g}. {where}")

    def validate(self, row: dict) -> None:
        """Validation loss and accuracy into ``row`` (nothing without a validation split)."""
        val = self.val_split
        if not len(val.labels):
            return
        batch = inference_batch(self.pre, val.device, max(self.cfg.batch_size, 256))
        logits = predict_batches(self.model, val.eval_batches(batch), self.pre,
                                 tta=self.cfg.tta, bf16=self.bf16, channels_last=self.channels_last)
        row["val_loss"] = F.cross_entropy(logits, val.labels).item()
        row["val_acc"] = (logits.argmax(1) == val.labels).float().mean().item()

    def record(self, row: dict) -> None:
        """History, the best epoch so far, and early stopping."""
        state = self.state
        state.history.append(row)
        state.epoch = row["epoch"]
        score, loss = row.get("val_acc", -row["train_loss"]), row.get("val_loss", math.inf)
        self.improved = score > state.best_score or (score == state.best_score and loss < state.best_val_loss)
        if self.improved:
            state.best_score, state.best_epoch, state.best_val_loss = score, row["epoch"], loss
            state.best_val_acc = row.get("val_acc")
        state.epochs_without_improvement = 0 if self.improved else state.epochs_without_improvement + 1
        if self.cfg.early_stopping:
            state.stopped_early = state.epochs_without_improvement >= self.cfg.early_stopping \
                and row["epoch"] < self.cfg.epochs

    # -- the whole run ----------------------------------------------------------------------------

    def fit(self, resume: dict | None = None) -> FitState:
        flushing = denormals_flushed()
        try:
            self.setup(resume)
            for epoch in range(self.state.epoch, self.cfg.epochs):
                row = self.train_epoch(epoch)
                self.validate(row)
                self.record(row)
                for callback in self.callbacks:
                    callback.after_epoch(self, row)
                if self.state.stopped_early:
                    break
            for callback in self.callbacks:
                callback.after_fit(self)
        finally:
            torch.set_flush_denormal(flushing)
        return self.state


def denormals_flushed() -> bool:
    """Whether the CPU flushes subnormal floats to zero now (torch.set_flush_denormal has no getter)."""
    tiny = np.array([1e-40], dtype=np.float32)
    return bool((tiny * np.float32(1.0))[0] == 0)


def fit(model, train, val, cfg: TrainConfig, pre: Preprocessing, run_dir: Path, *, num_classes: int | None = None,
        extra_state: dict | None = None, resume: dict | None = None, progress: bool = True, ddp: Dist | None = None,
        param_groups: list[dict] | None = None, callbacks: list[Callback] | None = None) -> FitState:
    """Train with the standard callbacks: checkpoints (rank 0), the printed log (with ``progress``) and
    TensorBoard (``cfg.tensorboard``), then any ``callbacks`` given. See ``Trainer``."""
    ddp = ddp or Dist()
    standard: list[Callback] = [Checkpoints(), LiveProgress()] if ddp.main else [Checkpoints()]
    if progress and ddp.main:
        standard.append(PrintLog())
    if cfg.tensorboard and ddp.main:
        standard.append(TensorBoard(Path(run_dir) / "tensorboard"))
    trainer = Trainer(model, train, val, cfg, pre, run_dir, num_classes=num_classes, extra_state=extra_state,
                      progress=progress, ddp=ddp, param_groups=param_groups, callbacks=standard + list(callbacks or []))
    return trainer.fit(resume)


def predict_split(model, split: SplitTensors | StreamedSplit, pre: Preprocessing, tta: str = "none",
                  batch_size: int = 256) -> np.ndarray:
    """Class probabilities of a whole split, in fp32 whatever the training precision (so predict, export
    and re-evaluation agree with the scores a run reports)."""
    model.to(memory_format=torch.contiguous_format)
    batch_size = inference_batch(pre, split.device, batch_size)
    return predict_batches(model, split.eval_batches(batch_size), pre, tta=tta).softmax(1).cpu().numpy()


def split_outputs(model, split: SplitTensors | StreamedSplit, pre: Preprocessing, tta: str = "none",
                  batch_size: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
    """(class probabilities, penultimate embeddings) of a whole split in fp32: one pass without TTA, and a
    second, plain one for the embeddings when the probabilities average TTA views."""
    model.to(memory_format=torch.contiguous_format)
    batch_size = inference_batch(pre, split.device, batch_size)
    logits, embeddings = predict_with_embeddings(model, split.eval_batches(batch_size), pre)
    if tta != "none":
        logits = predict_batches(model, split.eval_batches(batch_size), pre, tta=tta)
    return logits.softmax(1).cpu().numpy(), None if embeddings is None else embeddings.numpy()
