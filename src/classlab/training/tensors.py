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
    """What an image must go through before the model sees it; saved with every checkpoint.

    Images are stored (and decoded) at ``image_size`` with ``channels``. A pretrained backbone may want
    another input: ``input_size`` resizes on the device (bilinear, antialiased, as torchvision's weights
    transforms do) and ``input_channels`` = 3 replicates grayscale. ``source`` says where mean/std came
    from: the training split ("data") or the pretrained weights (e.g. "MobileNet_V2_Weights.IMAGENET1K_V1").
    """

    image_size: list[int]
    channels: int
    mean: list[float]
    std: list[float]
    input_size: list[int] | None = None
    input_channels: int | None = None
    source: str = "data"

    @property
    def model_size(self) -> list[int]:
        return list(self.input_size or self.image_size)

    @property
    def model_channels(self) -> int:
        return self.input_channels or self.channels

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def for_features(cls, width: int) -> "Preprocessing":
        """The contract of rows that need none: float feature vectors (a frozen backbone's, cached) that a head
        trains on through the engine; they pass to_float and normalize unchanged."""
        return cls([width], 1, [0.0], [1.0], source="backbone features")

    @classmethod
    def from_images(cls, images) -> "Preprocessing":
        """The contract for uint8 (N, [D,] H, W, C) training images: their size, channels, mean and std."""
        from ..data.dataset import channel_stats

        mean, std = channel_stats(images)
        return cls(list(images.shape[1:-1]), int(images.shape[-1]), mean, [max(s, 1e-6) for s in std])


def to_float(images: torch.Tensor, pre: Preprocessing | None = None) -> torch.Tensor:
    """(B, [D,] H, W, C) uint8 -> (B, C, [D,] H, W) float in [0, 1], resized and channel-replicated to
    the model's input when the contract says so. Float rows (cached features) pass through."""
    if images.is_floating_point():
        return images.float()
    x = images.movedim(-1, 1).float().div_(255)
    if pre is not None and pre.input_size and list(x.shape[2:]) != list(pre.input_size):
        from torchvision.transforms.v2 import functional as TF

        x = TF.resize(x, list(pre.input_size), antialias=True).clamp_(0, 1)
    if pre is not None and pre.input_channels and x.shape[1] != pre.input_channels:
        x = x.expand(-1, pre.input_channels, *x.shape[2:])
    return x


def to_input(images: torch.Tensor, pre: Preprocessing, channels_last: bool = False) -> torch.Tensor:
    """(B, [D,] H, W, C) uint8 -> (B, C, [D,] H, W) float, as the contract says: resized, replicated, normalised."""
    return normalize(to_float(images, pre), pre, channels_last)


def normalize(x: torch.Tensor, pre: Preprocessing, channels_last: bool = False) -> torch.Tensor:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = torch.tensor(pre.mean, device=x.device).view(shape)
    std = torch.tensor(pre.std, device=x.device).view(shape)
    x = (x - mean) / std
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def contract_mismatch(x: torch.Tensor) -> str | None:
    """Why a batch that should be normalised (about mean 0, std 1) clearly is not, or None.

    The classic transfer-learning mistake is feeding [0, 1] pixels (std about 0.25) or 0-255 pixels
    where ImageNet normalisation is expected; both stand out in one batch's statistics."""
    if x.numel() < 64 or not x.is_floating_point():
        return None
    mean, std = float(x.float().mean()), float(x.float().std())
    if 0 <= x.min() and x.max() <= 1 and std < 0.4:
        return f"inputs lie in [0, 1] (mean {mean:.2f}, std {std:.2f}): pixels scaled by 1/255 but not normalised"
    if x.max() > 20:
        return f"inputs reach {float(x.max()):.0f} (mean {mean:.1f}): raw 0-255 pixels, not normalised"
    if std < 0.1 or std > 10 or abs(mean) > 3:
        return f"inputs have mean {mean:.2f} and std {std:.2f}, far from normalised data (about 0 and 1)"
    return None


AUGMENTS = ("none", "crop", "flip-crop", "flip-crop-jitter", "randaugment", "mixup", "cutmix")


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


def _flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device).view(-1, *([1] * (x.ndim - 1)))
    return torch.where(flip, x.flip(-1), x)


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


def augment(x: torch.Tensor, kind: str, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Per-batch augmentation of [0, 1] images on their device; crops translate by up to ``pad`` pixels.
    Volumes get flips only; mixup and cutmix (which also change the labels) run after this, in ``mix``."""
    if kind == "none":
        return x
    if x.ndim != 4:
        return _flip(x, generator) if kind != "crop" else x
    if kind == "randaugment":
        x = _randaugment(x)
    if pad:
        x = _crop(x, generator, pad)
    if kind != "crop":
        x = _flip(x, generator)
    if kind == "flip-crop-jitter":
        x = _rotate_jitter(x, generator)
    return x


def mix(x: torch.Tensor, y: torch.Tensor, kind: str, num_classes: int):
    """mixup / cutmix (torchvision.transforms.v2): returns images and soft (B, K) targets."""
    from torchvision.transforms import v2

    op = v2.MixUp(num_classes=num_classes) if kind == "mixup" else v2.CutMix(num_classes=num_classes)
    return op(x, y)
