"""The training loop: plain PyTorch, one screen for the hot loop, resumable at every epoch."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import ClasslabError
from .checkpoint import save_checkpoint
from .config import TrainConfig, tta_mode
from .distributed import Dist
from .tensors import Preprocessing, augment, mix, normalize, to_float, to_input


@dataclass
class SplitTensors:
    """A split held whole on the device: every batch is an index into one uint8 tensor."""

    images: torch.Tensor  # uint8 (N, [D,] H, W, C) on the device
    labels: torch.Tensor  # int64 (N,) on the device
    # (V, N, ...): precomputed augmented versions of every row, e.g. the cached features of mirror images,
    # which stand in for image augmentation where the model sees features: training draws one version of
    # each row per epoch, test-time augmentation averages over all of them
    views: torch.Tensor | None = None

    @property
    def device(self) -> torch.device:
        return self.images.device

    def draw_views(self, generator: torch.Generator) -> torch.Tensor | None:
        """One epoch's choice per row, uniform: 0 the images themselves, v the views[v - 1]."""
        if self.views is None:
            return None
        return torch.randint(len(self.views) + 1, (len(self.labels),), generator=generator).to(self.device)

    def batches(self, order: torch.Tensor, batch_size: int, drawn: torch.Tensor | None = None):
        """(indices, uint8 images) per batch of ``order``; ``drawn`` (from draw_views) picks each row's version."""
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x = self.images[idx]
            if drawn is not None:
                v = drawn[idx]
                alt = self.views[(v - 1).clamp_min(0), idx]
                x = torch.where((v > 0).view(-1, *[1] * (x.ndim - 1)), alt, x)
            yield idx, x


class StreamedSplit:
    """A split too large for memory: images decoded by DataLoader workers, batch by batch, in the
    order the engine chose (so shuffling, sampling and resuming behave as in memory)."""

    views = None  # augmentation happens on the decoded images

    def __init__(self, images, labels: torch.Tensor, device: torch.device, workers: int | None = None):
        import os
        import sys

        self.images, self.labels, self._device = images, labels, device
        # Workers inherit the decoder by fork; where processes spawn, decode in the main process.
        self.workers = (min(4, os.cpu_count() or 1) if workers is None else workers) \
            if sys.platform.startswith("linux") else 0
        self.ndim = images.ndim

    @property
    def device(self) -> torch.device:
        return self._device

    def draw_views(self, generator: torch.Generator) -> None:
        return None

    def batches(self, order: torch.Tensor, batch_size: int, drawn: None = None):
        from torch.utils.data import DataLoader

        cpu_order = order.cpu()
        chunks = [cpu_order[i : i + batch_size].tolist() for i in range(0, len(cpu_order), batch_size)]
        loader = DataLoader(range(len(self.labels)), batch_sampler=chunks, num_workers=self.workers,
                            collate_fn=lambda rows: torch.from_numpy(self.images[np.array(rows)]),
                            pin_memory=self._device.type == "cuda")
        for chunk, images in zip(chunks, loader):
            yield torch.tensor(chunk, device=self._device), images.to(self._device, non_blocking=True)


@dataclass
class FitState:
    epoch: int = 0  # epochs completed
    history: list[dict] = field(default_factory=list)
    best_val_acc: float = -1.0
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    stopped_early: bool = False


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer in ("sgd", "nesterov"):
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.optimizer == "nesterov",
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_schedule(cfg: TrainConfig, optimizer, steps_per_epoch: int):
    """Per-step learning-rate multiplier: linear warm-up, then constant, step (x0.1), cosine or one-cycle."""
    total, warm = cfg.epochs * steps_per_epoch, int(cfg.warmup_epochs * steps_per_epoch)
    if cfg.schedule == "onecycle" and not warm:
        warm = int(0.3 * total)  # one-cycle's customary rise over the first 30%

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total - warm)
        if cfg.schedule == "step":
            return 0.1 ** (step // (cfg.step_size * steps_per_epoch))
        if cfg.schedule in ("cosine", "onecycle"):
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return 1.0
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Lookahead:
    """Weight averaging that feeds back into training: every ``every`` steps the running average moves
    towards the current weights and the weights are set to it. The average's decay grows as (progress)^3,
    so it follows the weights early and averages strongly late. At every epoch's end the weights equal
    the average, so a checkpoint needs no extra state and a resumed run continues exactly."""

    def __init__(self, model, total_steps: int, every: int = 5, decay: float = 0.95, start: float = 0.25):
        self.model, self.total, self.every, self.base, self.start = model, total_steps, every, decay ** every, start
        self.average, self.live = None, []

    def begin_epoch(self, step: int) -> None:
        # the model's float tensors (weights and BatchNorm statistics), which loading a checkpoint fills in place
        self.live = [t for t in self.model.state_dict().values() if t.is_floating_point()]
        self.average = [t.detach().clone() for t in self.live] if step >= self.start * self.total else None

    @torch.no_grad()
    def end_epoch(self) -> None:
        """The weights become the average, which is what is evaluated and checkpointed."""
        for avg, t in zip(self.average or [], self.live):
            t.copy_(avg)

    @torch.no_grad()
    def step(self, step: int) -> None:
        if self.average is None or step % self.every:
            return
        rho = self.base * (step / self.total) ** 3
        for avg, t in zip(self.average, self.live):
            avg.lerp_(t, 1 - rho)
            t.copy_(avg)


def use_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    if cfg.precision != "auto":
        return cfg.precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def loss_fn(cfg: TrainConfig, num_classes: int, class_weights: torch.Tensor | None):
    if cfg.loss == "mse":  # the decks also train on one-hot targets with mean squared error
        def mse(logits, y):
            target = y.float() if y.ndim == 2 else F.one_hot(y, num_classes).float()  # soft after mixup
            if cfg.label_smoothing:
                target = target * (1 - cfg.label_smoothing) + cfg.label_smoothing / num_classes
            return F.mse_loss(logits.float().softmax(1), target)
        return mse
    return lambda logits, y: F.cross_entropy(logits.float(), y, weight=class_weights, label_smoothing=cfg.label_smoothing)


def forward_tta(model, x: torch.Tensor, tta: str | bool) -> torch.Tensor:
    """Logits; with test-time augmentation, the log of the class probabilities averaged over views:
    "flip" (or True): the image and its mirror image; "flip-translate": half the weight on that pair,
    a quarter each on the pair shifted by one pixel up-left and down-right (reflect padding)."""
    tta = tta_mode(tta)
    if tta == "none" or x.ndim != 4:
        return model(x).float()
    def pair(v):
        return [model(v), model(v.flip(-1))]
    views, weights = pair(x), [0.5, 0.5]
    if tta == "flip-translate":
        h, w = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        views += pair(padded[..., :h, :w]) + pair(padded[..., 2:, 2:])
        weights = [0.25, 0.25] + [0.125] * 4
    return averaged_log_probs(views, weights)


def averaged_log_probs(logits: list[torch.Tensor], weights: list[float] | None = None) -> torch.Tensor:
    """log of the views' class probabilities averaged (equal weights unless given): TTA's output."""
    log_p = torch.stack([z.float().log_softmax(1) for z in logits])
    weights = weights or [1 / len(logits)] * len(logits)
    return torch.logsumexp(log_p + torch.tensor(weights, device=log_p.device).log().view(-1, 1, 1), 0)


@torch.no_grad()
def predict_logits(model, data: SplitTensors, pre: Preprocessing, batch_size: int, bf16: bool,
                   channels_last: bool, tta: str | bool = "none") -> torch.Tensor:
    model.eval()
    out = []
    averaged_views = data.views is not None and tta_mode(tta) != "none"
    for idx, images in data.batches(torch.arange(len(data.labels), device=data.device), batch_size):
        x = to_input(images, pre, channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            if averaged_views:  # precomputed views replace the image transforms: the same average of probabilities
                alts = (to_input(alt, pre, channels_last) for alt in data.views[:, idx])
                out.append(averaged_log_probs([model(v) for v in [x, *alts]]))
            else:
                out.append(forward_tta(model, x, tta))
    return torch.cat(out) if out else torch.empty(0)


def fit(model, train: SplitTensors, val: SplitTensors, cfg: TrainConfig, pre: Preprocessing, run_dir: Path,
        extra_state: dict, resume: dict | None = None, progress: bool = True, ddp: Dist | None = None,
        param_groups: list[dict] | None = None) -> FitState:
    """Train ``model`` in place. Writes last.pt every epoch and best.pt on a new best validation accuracy.
    Under DDP every process takes its own slice of each epoch's shuffled order; only rank 0 writes.
    ``param_groups`` (optimizer groups, e.g. a lower rate for a pretrained backbone) default to every
    trainable parameter at ``cfg.lr``; frozen parameters are never handed to the optimizer."""
    ddp = ddp or Dist()
    progress = progress and ddp.main
    device = train.device
    n, num_classes = len(train.labels), extra_state["model_info"]["num_classes"]
    if cfg.batch_size > n:
        raise ClasslabError(f"--batch-size {cfg.batch_size} is larger than the training split ({n} images); "
                            f"use --batch-size {min(n, 64)} or less")
    per_rank = n // ddp.world  # equal shares: every rank must take the same number of steps
    steps = per_rank // cfg.batch_size if per_rank % cfg.batch_size == 1 else math.ceil(per_rank / cfg.batch_size)
    bf16 = use_bf16(cfg, device)
    if device.type == "cpu":
        # Subnormal floats (weights, Adam moments and gradients drift there) are slow on x86 CPUs: flushing
        # them to zero measured 5x more fp32 training images/s for workshop-cnn on CIFAR-10. Process-wide.
        torch.set_flush_denormal(True)
    channels_last = bf16 and train.images.ndim == 4
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if hasattr(model, "init_from_data"):  # data-dependent init (fastnet's whitening); on resume it also freezes
        # what the first run froze, so the optimizer's parameter list matches its saved state
        pick = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed))[:5000].sort().values
        sample = train.images[pick.to(train.images.device)] if torch.is_tensor(train.images) else \
            torch.from_numpy(np.asarray(train.images[pick.numpy()]))
        model.init_from_data(normalize(to_float(sample.to(device), pre), pre))
    if param_groups is None and hasattr(model, "param_groups"):  # the model's own groups (fastnet's BN shifts)
        param_groups = model.param_groups(cfg)
    optimizer = make_optimizer(cfg, param_groups or [p for p in model.parameters() if p.requires_grad])
    forward = model
    if ddp.active:
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        forward = torch.compile(forward)  # shares parameters with `model`, which checkpoints use
    schedule = make_schedule(cfg, optimizer, steps)
    counts = torch.bincount(train.labels, minlength=num_classes).float()
    balanced = (counts.sum() / (num_classes * counts.clamp_min(1))).to(device)
    criterion = loss_fn(cfg, num_classes, balanced if cfg.class_weight == "balanced" else None)
    generator = torch.Generator().manual_seed(cfg.seed)
    state = FitState()
    if resume:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        schedule.load_state_dict(resume["scheduler"])
        generator.set_state(resume["rng"]["generator"])
        torch.set_rng_state(resume["rng"]["torch"])
        state = FitState(**resume["fit_state"])

    def checkpoint(name: str):
        if not ddp.main:
            return
        save_checkpoint(run_dir / name, {
            **extra_state, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": schedule.state_dict(), "config": cfg.to_dict(), "preprocessing": pre.to_dict(),
            "rng": {"generator": generator.get_state(), "torch": torch.get_rng_state()},
            "fit_state": vars(state).copy()})

    writer = _tensorboard(run_dir) if cfg.tensorboard and ddp.main else None
    lookahead = Lookahead(model, cfg.epochs * steps) if cfg.lookahead else None
    for epoch in range(state.epoch, cfg.epochs):
        model.train()
        if lookahead:
            lookahead.begin_epoch(epoch * steps)
        if cfg.sampler == "balanced":  # each image drawn with probability inverse to its class size
            weights = (1.0 / counts.clamp_min(1))[train.labels.cpu()]
            order = torch.multinomial(weights, n, replacement=True, generator=generator)
        else:
            order = torch.randperm(n, generator=generator)
        order = order[ddp.rank : per_rank * ddp.world : ddp.world].to(device)  # same order on every rank: a slice
        drawn = train.draw_views(generator)
        t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False,
                   disable=None if progress else True)
        for step, (idx, images) in zip(bar, train.batches(order[: steps * cfg.batch_size], cfg.batch_size, drawn)):
            x = augment(to_float(images, pre), cfg.augment, generator, cfg.crop_padding)
            y = target = train.labels[idx]
            if cfg.augment in ("mixup", "cutmix") and x.ndim == 4:
                x, target = mix(x, y, cfg.augment, num_classes)  # soft targets; accuracy still counts y
            x = normalize(x, pre, channels_last)
            try:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    logits = forward(x)
                loss = criterion(logits, target)
                if not torch.isfinite(loss):
                    raise ClasslabError(
                        f"the loss became {loss.item()} in epoch {epoch + 1}, step {step + 1}: the learning rate "
                        f"({cfg.lr}) is the likely cause; try --lr {cfg.lr / 10:g}. The last good checkpoint is "
                        f"{run_dir / 'last.pt'}" + ("" if (run_dir / "last.pt").exists()
                                                    else " (none yet: it failed in the first epoch)"))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            except torch.OutOfMemoryError:
                raise ClasslabError(f"out of {device.type} memory at --batch-size {cfg.batch_size}; try "
                                    f"--batch-size {max(1, cfg.batch_size // 2)} (or a smaller --image-size)") from None
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            schedule.step()
            if lookahead:
                lookahead.step(epoch * steps + step + 1)
            seen += len(y)
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}",
                            img_s=f"{seen / (time.perf_counter() - t0):.0f}")
        if lookahead:
            lookahead.end_epoch()
        train_seconds = time.perf_counter() - t0
        row = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen,
               "lr": optimizer.param_groups[0]["lr"], "seconds": train_seconds, "images_per_s": seen / train_seconds}
        if len(val.labels):
            logits = predict_logits(model, val, pre, max(cfg.batch_size, 256), bf16, channels_last, cfg.tta)
            row["val_loss"] = F.cross_entropy(logits, val.labels).item()
            row["val_acc"] = (logits.argmax(1) == val.labels).float().mean().item()
        state.history.append(row)
        state.epoch = epoch + 1
        score = row.get("val_acc", -row["train_loss"])
        improved = score > state.best_val_acc
        if improved:
            state.best_val_acc, state.best_epoch = score, epoch + 1
            checkpoint("best.pt")
        state.epochs_without_improvement = 0 if improved else state.epochs_without_improvement + 1
        if cfg.early_stopping:
            state.stopped_early = state.epochs_without_improvement >= cfg.early_stopping and epoch + 1 < cfg.epochs
        checkpoint("last.pt")  # after best.pt: a kill between the two loses nothing
        _log(row, progress)
        if writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    writer.add_scalar(key.replace("_", "/", 1) if key.startswith(("train_", "val_")) else key,
                                      value, row["epoch"])
            writer.flush()
        if state.stopped_early:
            break
    if writer is not None:
        writer.close()
    return state


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ClasslabError("--tensorboard needs the tensorboard package: pip install 'classlab[tensorboard]'") from None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _log(row: dict, progress: bool) -> None:
    if not progress:
        return
    val = f"  val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:.4f}" if "val_acc" in row else ""
    print(f"epoch {row['epoch']:3d}  loss {row['train_loss']:.4f}  acc {row['train_acc']:.4f}{val}  "
          f"{row['images_per_s']:.0f} img/s", flush=True)


def set_determinism(cfg: TrainConfig) -> None:
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    if cfg.deterministic:
        import os

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
