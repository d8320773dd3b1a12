"""The pieces a training run is made of: optimizer, learning-rate schedule, loss, Lookahead
weight averaging and seeding. The engine (engine.py) puts them together."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .config import TrainConfig


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer in ("sgd", "nesterov"):
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.optimizer == "nesterov",
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


# the default rise of the schedules that have one, as a fraction of all steps: one-cycle's customary 30%;
# the CIFAR-10 speed runs' triangle (airbench) rises over 23%
RISE = {"onecycle": 0.3, "triangular": 0.23}
TRIANGLE = (0.2, 0.07)  # the triangle's start and end, as fractions of the peak (airbench)


def triangular(step: int, warm: int, total: int) -> float:
    """Linear from 0.2 of the peak to the peak over ``warm`` steps, then linear down to 0.07 at the end."""
    start, end = TRIANGLE
    if step < warm:
        return start + (1 - start) * step / warm
    return 1 + (end - 1) * min(1.0, (step - warm) / max(1, total - warm))


def make_schedule(cfg: TrainConfig, optimizer, steps_per_epoch: int):
    """Per-step learning-rate multiplier: linear warm-up, then constant, step (x0.1), cosine, one-cycle
    or triangular."""
    total, warm = cfg.epochs * steps_per_epoch, int(cfg.warmup_epochs * steps_per_epoch)
    if cfg.schedule in RISE and not warm:
        warm = int(RISE[cfg.schedule] * total)

    def factor(step: int) -> float:
        if cfg.schedule == "triangular":
            return triangular(step, warm, total)
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
    so it follows the weights early and averages strongly late. Every epoch ends with one more update (the
    steps since the last one go into the average rather than being dropped: up to 4 of fastnet's 49 a
    CIFAR-10 epoch at batch 1024), so at an epoch's end the weights equal the average: a checkpoint needs
    no extra state and a resumed run continues exactly."""

    def __init__(self, model, total_steps: int, every: int = 5, decay: float = 0.95, start: float = 0.25):
        self.model, self.total, self.every, self.base, self.start = model, total_steps, every, decay ** every, start
        self.average, self.live = None, []

    def begin_epoch(self, step: int) -> None:
        # the model's float tensors (weights and BatchNorm statistics), which loading a checkpoint fills in place
        self.live = [t for t in self.model.state_dict().values() if t.is_floating_point()]
        self.average = [t.detach().clone() for t in self.live] if step >= self.start * self.total else None

    @torch.no_grad()
    def end_epoch(self, step: int) -> None:
        """An update after the epoch's last step (``step``, counted from the start of training) unless that
        step made one: the weights become the average, which is what is evaluated and checkpointed."""
        if step % self.every:
            self.update(step)

    @torch.no_grad()
    def step(self, step: int) -> None:
        if not step % self.every:
            self.update(step)

    @torch.no_grad()
    def update(self, step: int) -> None:
        if self.average is None:
            return
        rho = self.base * (step / self.total) ** 3
        for avg, t in zip(self.average, self.live):
            avg.lerp_(t, 1 - rho)
            t.copy_(avg)


def loss_fn(cfg: TrainConfig, num_classes: int, class_weights: torch.Tensor | None):
    if cfg.loss == "mse":  # the decks also train on one-hot targets with mean squared error
        def mse(logits, y):
            target = y.float() if y.ndim == 2 else F.one_hot(y, num_classes).float()  # soft after mixup
            if cfg.label_smoothing:
                target = target * (1 - cfg.label_smoothing) + cfg.label_smoothing / num_classes
            return F.mse_loss(logits.float().softmax(1), target)
        return mse
    return lambda logits, y: F.cross_entropy(logits.float(), y, weight=class_weights, label_smoothing=cfg.label_smoothing)


def set_determinism(cfg: TrainConfig) -> None:
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    if cfg.deterministic:
        import os

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
