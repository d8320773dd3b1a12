"""Batch augmentation on the device, on [0, 1] float images: crops, flips, rotation and jitter,
RandAugment, and mixup / cutmix. One generator drives every random choice, so a resumed run draws
the same augmentations as an uninterrupted one."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _crop(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels with reflect padding, one offset per image."""
    b, c, h, w = x.shape
    if min(h, w) <= 2 * pad:
        return x
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    return padded[torch.arange(b, device=x.device)[:, None, None, None],
                  torch.arange(c, device=x.device)[None, :, None, None], rows, cols]


def _flip(x: torch.Tensor, generator: torch.Generator, flips: torch.Tensor | None = None) -> torch.Tensor:
    """Mirror a random half, or the images ``flips`` (bool per image) says."""
    if flips is None:
        flips = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(flips.to(x.device).view(-1, *([1] * (x.ndim - 1))), x.flip(-1), x)


class AlternatingFlip:
    """Which images to mirror under alternating flip: a fixed random half of the training set in even
    epochs, the other half in odd ones. Drawn from the seed alone, so a resumed run agrees."""

    def __init__(self, n: int, seed: int, device: torch.device | str = "cpu"):
        self.even = (torch.rand(n, generator=torch.Generator().manual_seed(seed + 7919)) < 0.5).to(device)

    def __call__(self, indices: torch.Tensor, epoch: int) -> torch.Tensor:
        return self.even[indices] ^ bool(epoch % 2)  # on the batch's device: no copy per step


def _rotate_jitter(x: torch.Tensor, generator: torch.Generator, degrees: float = 15.0,
                   strength: float = 0.3) -> torch.Tensor:
    """Per-image rotation (one batched grid_sample) and brightness / contrast jitter, on [0, 1] pixels."""
    b = x.shape[0]
    angle = (torch.rand(b, generator=generator) * 2 - 1) * degrees * torch.pi / 180
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros(b)], 1), torch.stack([sin, cos, torch.zeros(b)], 1)], 1)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    brightness = (1 + (torch.rand(b, generator=generator) * 2 - 1) * strength).to(x.device).view(-1, 1, 1, 1)
    contrast = (1 + (torch.rand(b, generator=generator) * 2 - 1) * strength).to(x.device).view(-1, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x * brightness - mean) * contrast + mean).clamp_(0, 1)


def _randaugment(x: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """torchvision's RandAugment draws one operation per call, so it runs per chunk of images for
    variety within a batch (uses torch's global RNG, which checkpoints save)."""
    from torchvision.transforms import v2

    ops = v2.RandAugment()
    as_uint8 = (x * 255).round_().to(torch.uint8)
    return torch.cat([ops(part) for part in as_uint8.split(chunk)]).float().div_(255)


def augment(x: torch.Tensor, kind: str, generator: torch.Generator, pad: int = 4,
            flips: torch.Tensor | None = None) -> torch.Tensor:
    """Per-batch augmentation of [0, 1] images on their device; crops translate by up to ``pad`` pixels;
    ``flips`` (bool per image, e.g. from AlternatingFlip) replaces the random mirroring.
    Volumes get flips only; mixup and cutmix (which also change the labels) run after this, in ``mix``."""
    if kind == "none":
        return x
    if x.ndim != 4:
        return _flip(x, generator, flips) if kind != "crop" else x
    if kind == "randaugment":
        x = _randaugment(x)
    if pad:
        x = _crop(x, generator, pad)
    if kind != "crop":
        x = _flip(x, generator, flips)
    if kind == "flip-crop-jitter":
        x = _rotate_jitter(x, generator)
    return x


def mix(x: torch.Tensor, y: torch.Tensor, kind: str, num_classes: int):
    """mixup / cutmix (torchvision.transforms.v2): returns images and soft (B, K) targets."""
    from torchvision.transforms import v2

    op = v2.MixUp(num_classes=num_classes) if kind == "mixup" else v2.CutMix(num_classes=num_classes)
    return op(x, y)
