"""Batches as tensors on the device: uint8 images -> normalised float, and batch augmentation.

Whole splits live on the device as one uint8 tensor; every step indexes a batch out of it, converts
and augments it there, with no per-sample Python and no DataLoader in the way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass
class Preprocessing:
    """What an image must go through before the model sees it; saved with every checkpoint."""

    image_size: list[int]
    channels: int
    mean: list[float]
    std: list[float]

    def to_dict(self) -> dict:
        return asdict(self)


def to_input(images: torch.Tensor, pre: Preprocessing, channels_last: bool = False) -> torch.Tensor:
    """(B, [D,] H, W, C) uint8 -> (B, C, [D,] H, W) float, normalised with the training split's mean/std."""
    x = images.movedim(-1, 1).float().div_(255)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = torch.tensor(pre.mean, device=x.device).view(shape)
    std = torch.tensor(pre.std, device=x.device).view(shape)
    x = (x - mean) / std
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def augment(x: torch.Tensor, kind: str, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """'crop': random translation by up to ``pad`` pixels (reflect padding); 'flip-crop' adds
    horizontal flips. Volumes get flips only. Random numbers come from ``generator`` (resumable)."""
    if kind == "none":
        return x
    b = x.shape[0]
    if x.ndim == 4 and kind in ("crop", "flip-crop") and min(x.shape[-2:]) > 2 * pad:
        h, w = x.shape[-2:]
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, chans, rows, cols]
    if kind == "flip-crop":
        flip = (torch.rand(b, generator=generator) < 0.5).to(x.device).view(-1, *([1] * (x.ndim - 1)))
        x = torch.where(flip, x.flip(-1), x)
    return x
