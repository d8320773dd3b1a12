"""Where a backbone comes from, and the preprocessing contract it imposes on the data.

``plan_backbone`` resolves ``--backbone`` (a torchvision name, ``timm:NAME`` or an earlier classlab run:
torchvision_source.py, timm_source.py, run_source.py) and its weights before any data is loaded, because the
contract decides how data is loaded: a run trained on grayscale MNIST wants grayscale input, ImageNet weights
want RGB normalised with ImageNet's mean/std.
``BackbonePlan.contract`` then fits a dataset to it: the resize to the backbone's input size, and
grayscale either replicated to 3 channels or fed to a first convolution summed down to 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ClasslabError
from ..inference.preprocess import Preprocessing
from ..models.transfer import GRAY_MODES, build_backbone
from . import run_source, timm_source, torchvision_source

# Images at most this many pixels a side are "small" (CIFAR, MNIST): the default input size for them is
# SMALL_INPUT_SIZE rather than the weights' own (see BackbonePlan.default_input_size); --image-size overrides.
SMALL_INPUT = 64
SMALL_INPUT_SIZE = 160

@dataclass
class BackbonePlan:
    name: str  # torchvision name, or "run"
    source: dict | None  # an earlier run's model_info
    state: dict | None
    weights: str  # what the weights are, for reports
    fingerprint: str
    mean: list[float]
    std: list[float]
    default_size: list[int]
    min_size: int
    channels: int | None  # the channels the backbone was trained on, when data must be converted to them

    @property
    def spec(self) -> dict:
        """What identifies the backbone's features (the cache key's part)."""
        return {"backbone": self.name, "source": self.source, "weights": self.weights, "fingerprint": self.fingerprint}

    def contract(self, ds, image_size: int | None, gray: str = "replicate") -> tuple[Preprocessing, int]:
        """(preprocessing for ``ds``, the model's input channels)."""
        if ds.is_volume:
            raise ClasslabError("transfer learning takes 2D images; this dataset holds volumes (use cnn3d)")
        if gray not in GRAY_MODES:
            raise ClasslabError(f"--gray takes {' or '.join(GRAY_MODES)}, got '{gray}'")
        size = [image_size, image_size] if image_size else self.default_input_size(ds.item_shape[:-1])
        if min(size) < self.min_size:
            raise ClasslabError(f"--image-size {min(size)} is below {self.name}'s minimum of {self.min_size} px; "
                                f"use --image-size {self.min_size} or more ({self.default_size[0]} is the size "
                                "it was trained at)")
        stored = list(ds.item_shape[:-1])
        mean, std, in_channels, replicate = self.mean, self.std, len(self.mean), None
        if ds.channels == 1 and len(self.mean) == 3:
            if gray == "replicate":
                replicate = 3
            else:  # the first convolution's filters summed: one input channel with the average statistics
                mean, std, in_channels = [sum(self.mean) / 3], [sum(self.std) / 3], 1
        pre = Preprocessing(stored, ds.channels, list(mean), list(std), input_size=size if size != stored else None,
                            input_channels=replicate, source=self.weights, crop=ds.crop)
        return pre, in_channels

    def decode_side(self, image_size: int | None) -> int:
        """The side above which images are decoded at the model's input size instead of their own: the
        backbone's input (``--image-size``, else the weights' size). Fine-tuning's crop augmentation
        translates with reflect padding, so it needs no margin beyond that."""
        return image_size or max(self.default_size)

    def default_input_size(self, stored) -> list[int]:
        """The weights' size, except for small images (at most SMALL_INPUT px a side, CIFAR and MNIST sized):
        those go to SMALL_INPUT_SIZE, which on CIFAR-10 scored as well as 224 px at half the compute (frozen
        MobileNetV2 + head, 5,000 images: 69.6% at 96 px, 72.2% at 160, 71.8% at 224; benchmarks/README.md)."""
        if max(stored) <= SMALL_INPUT and SMALL_INPUT_SIZE < min(self.default_size):
            return [max(SMALL_INPUT_SIZE, self.min_size)] * 2
        return list(self.default_size)

    def build_options(self, dense, dropout, bn) -> dict:
        return {"backbone": self.name, "source": self.source, "dense": dense, "dropout": dropout, "bn": bn}

    def backbone_only(self, in_channels: int):
        """(backbone module, feature width), pretrained weights loaded: for k-NN on embeddings."""
        return build_backbone(self.name, self.source, in_channels, self.state, self.weights)


def plan_backbone(backbone: str, weights: str | None = None, progress: bool = True) -> BackbonePlan:
    """The plan for ``--backbone``: an earlier classlab run (a folder with best.pt), ``timm:NAME``, or a
    torchvision name; each source names, loads and describes itself in its own module."""
    path = Path(backbone).expanduser()
    if (path / "best.pt").is_file():
        return BackbonePlan(**run_source.plan(path, weights))
    if backbone.startswith("timm:"):
        return BackbonePlan(**timm_source.plan(backbone, weights))
    if path.is_dir() or "/" in backbone:
        raise ClasslabError(f"--backbone {backbone}: no classlab run there (a run directory holds best.pt)")
    return BackbonePlan(**torchvision_source.plan(backbone, weights, progress))
