"""Which precision a training run uses: bf16 autocast or plain fp32.

``--precision auto`` takes bf16 where the hardware has it, except where it is known to be wrong (3D
convolutions on the CPU). On the CPU bf16 is not always faster: fine-tuning MobileNetV2 at 96 px, a
training step of 32 images takes 0.165 s in fp32 and 0.187 s in bf16 on an AVX-512-bf16 EPYC (its depthwise
convolutions have no fast bf16 path there), while at 224 px bf16 wins by a third. So on the CPU ``auto``
times a few training steps of a copy of the model both ways before the run and keeps the faster one (fp32
at a tie: it is the more exact), as cuDNN's benchmark mode does for convolution algorithms. Models whose step takes only
milliseconds skip the measurement: the choice cannot matter there, and the static rule keeps such runs
bit-for-bit repeatable."""

from __future__ import annotations

import copy
import time

import torch

from ..errors import warn
from .config import TrainConfig

MEASURE_FROM_S = 0.05  # an fp32 step at least this long is worth timing both ways
TIMED_STEPS = 2  # per precision, after one untimed step (oneDNN creates its kernels on the first)
MEASURE_BATCH = 256  # images a timed step takes at most: at fastnet's batch 1024 six steps cost 23 s


def use_bf16(cfg: TrainConfig, device: torch.device, volumes: bool = False) -> bool:
    """bf16 autocast where it is fast and safe. Not for volumes on the CPU: PyTorch's CPU bf16 Conv3d
    backward (oneDNN) returns a weight gradient that differs from run to run and is sometimes NaN or inf,
    even on one thread (measured with torch 2.14: 3-17 of 200 identical backward passes; fp32 and bf16
    Conv2d: none), which ended fixed-seed cnn3d runs in "loss became nan"."""
    if cfg.precision != "auto":
        if cfg.precision == "bf16" and volumes and device.type == "cpu":
            warn("--precision bf16 with volumes on the CPU: PyTorch's bf16 3D convolution backward is unreliable "
                 "there (NaN gradients now and then); --precision auto uses fp32")
        return cfg.precision == "bf16"
    return not (volumes and device.type == "cpu") and bf16_supported(device)


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (a GPU that has it; a CPU with AVX-512 bf16 or AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def step_seconds(model, x: torch.Tensor, target: torch.Tensor, criterion, bf16: bool) -> float:
    """Fastest of ``TIMED_STEPS`` forward + backward passes of ``model`` (changed: use a copy) on one batch
    of images, channels_last as the engine trains on the CPU, with or without bf16 autocast."""
    if x.ndim == 4:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    best = float("inf")
    for attempt in range(TIMED_STEPS + 1):
        start = time.perf_counter()
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        criterion(logits, target).backward()
        model.zero_grad(set_to_none=True)
        if attempt:
            best = min(best, time.perf_counter() - start)
    return best


def measured_bf16(model, x: torch.Tensor, target: torch.Tensor, criterion) -> tuple[bool, str]:
    """(bf16 faster?, a one-line account) from timing training steps of a copy of ``model`` on the CPU.
    Only the copy trains: the run's model, its BatchNorm statistics and memory format stay as they were."""
    probe = copy.deepcopy(model).train()
    fp32 = step_seconds(probe, x, target, criterion, bf16=False)
    if fp32 < MEASURE_FROM_S:
        return True, f"bf16 (an fp32 step takes {fp32 * 1e3:.0f} ms: not worth measuring)"
    bf16 = step_seconds(probe, x, target, criterion, bf16=True)
    choice = bf16 < fp32
    return choice, (f"{'bf16' if choice else 'fp32'} (measured a training step of batch {len(x)}: fp32 "
                    f"{fp32:.3f} s, bf16 {bf16:.3f} s)")
