"""The preprocessing contract: what an image goes through before the model sees it.

It is saved in every checkpoint, so predict, evaluate, export and the workbench apply exactly what
training applied. ``describe()`` is the one written description of it (export's steps, reports).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ..errors import ClasslabError


@dataclass
class Preprocessing:
    """Images are stored (and decoded) at ``image_size`` with ``channels``. A pretrained backbone may want
    another input: ``input_size`` resizes on the device (bilinear, antialiased, as torchvision's weights
    transforms do) and ``input_channels`` = 3 replicates grayscale. ``source`` says where mean/std came
    from: the training split ("data") or the pretrained weights (e.g. "MobileNet_V2_Weights.IMAGENET1K_V1").
    ``crop``: how a file is fit to ``image_size`` at decode: None resizes the whole image; a fraction (0.875)
    resizes its shorter side to image_size / crop and keeps the centre (data.images.decode).
    """

    image_size: list[int]
    channels: int
    mean: list[float]
    std: list[float]
    input_size: list[int] | None = None
    input_channels: int | None = None
    source: str = "data"
    crop: float | None = None

    @property
    def model_size(self) -> list[int]:
        return list(self.input_size or self.image_size)

    @property
    def model_channels(self) -> int:
        return self.input_channels or self.channels

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "the checkpoint") -> "Preprocessing":
        """A saved contract, checked: a zero or non-finite std would turn every prediction into NaN."""
        try:
            pre = cls(**data)
        except TypeError as e:
            raise ClasslabError(f"{where} holds a malformed preprocessing contract ({e})") from None
        values = [*pre.mean, *pre.std]
        if len(pre.mean) != len(pre.std) or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values) \
                or min(pre.std) <= 0 or not (pre.crop is None or (isinstance(pre.crop, float) and 0 < pre.crop <= 1)):
            raise ClasslabError(f"{where} holds an unusable preprocessing contract (mean {pre.mean}, std {pre.std}, "
                                f"crop {pre.crop}): std must be positive, every value finite and a crop in (0, 1]; "
                                "retrain or re-export the run")
        return pre

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

    def _fit_step(self, size: str) -> str:
        if self.crop is None:
            return f"resize to {size} (bilinear, antialiased)"
        outer = [round(v / self.crop) for v in self.image_size]
        return (f"resize so that the image covers {'x'.join(map(str, outer))} keeping its aspect ratio (the shorter "
                f"side to {min(outer)}), then keep the centre {size} (bilinear, antialiased)")

    def describe(self) -> list[str]:
        """The contract as steps a person (or another runtime) can follow, in order."""
        size = "x".join(map(str, self.image_size))
        steps = ["decode the image; apply EXIF orientation",
                 f"convert to {'grayscale (L)' if self.channels == 1 else 'RGB'}",
                 self._fit_step(size), "scale pixels to [0, 1] (divide by 255)"]
        if self.input_size:
            steps.append(f"resize to {'x'.join(map(str, self.input_size))} (bilinear, antialiased, on [0, 1] floats)")
        if self.input_channels:
            steps.append(f"repeat the grayscale channel {self.input_channels} times")
        steps.append(f"subtract mean {[round(v, 4) for v in self.mean]}, divide by std "
                     f"{[round(v, 4) for v in self.std]}, per channel (from {self.source})")
        return steps


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


def normalize(x: torch.Tensor, pre: Preprocessing, channels_last: bool = False) -> torch.Tensor:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = torch.tensor(pre.mean, device=x.device).view(shape)
    std = torch.tensor(pre.std, device=x.device).view(shape)
    x = (x - mean) / std
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def to_input(images: torch.Tensor, pre: Preprocessing, channels_last: bool = False) -> torch.Tensor:
    """(B, [D,] H, W, C) uint8 -> (B, C, [D,] H, W) float, as the contract says: resized, replicated, normalised."""
    return normalize(to_float(images, pre), pre, channels_last)
