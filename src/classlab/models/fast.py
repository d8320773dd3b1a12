"""A network designed for speed to accuracy on CIFAR-sized images.

What the CIFAR-10 speed-run work (airbench, hlb-CIFAR10) found matters, re-derived here rather than
copied: few, wide stages (each conv -> max-pool -> BN -> GELU, then conv -> BN -> GELU) so that most
compute runs at low resolution; batch norm without learned scale; global max pooling; a bias-free
linear head whose logits are scaled down, which steadies early training at high learning rates.
Training-side tricks (label smoothing, flips, a short schedule) belong to the training engine.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ClasslabError
from .registry import register


class _Stage(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.MaxPool2d(2),
            nn.BatchNorm2d(cout, affine=False, momentum=0.4), nn.GELU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout, affine=False, momentum=0.4), nn.GELU())


class FastNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, widths=(64, 256, 256), logit_scale: float = 1 / 9):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 24, 2, padding=0, bias=True), nn.GELU())
        stages, cin = [], 24
        for w in widths:
            stages.append(_Stage(cin, w))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(cin, num_classes, bias=False)
        self.logit_scale = logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stages(self.stem(x))).flatten(1)
        return self.head(x) * self.logit_scale

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor, eps: float = 5e-4) -> None:
        """Patch whitening (the speed-run work's first layer): the stem's 2x2 filters become the
        eigenvectors of the training patches' covariance, scaled by 1/sqrt(eigenvalue), each with its
        negative, so the first layer decorrelates pixels from step one. Its weights then stay fixed.
        ``x``: a normalised sample of training images (N, C, H, W); the engine calls this before training."""
        conv = self.stem[0]
        dims = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        if conv.out_channels != 2 * dims or x.ndim != 4:
            return  # only for the stem shape it was designed for (3 channels: 12 directions, 24 filters)
        patches = torch.nn.functional.unfold(x.float(), conv.kernel_size).transpose(1, 2).reshape(-1, dims)
        eigval, eigvec = torch.linalg.eigh(torch.cov(patches.T.double()))
        filters = (eigvec.T / torch.sqrt(eigval.clamp_min(0) + eps)[:, None]).flip(0).float()  # largest first
        conv.weight.copy_(torch.cat([filters, -filters]).reshape(conv.weight.shape))
        conv.weight.requires_grad_(False)


@register("fastnet", "fast CIFAR-sized network (speed-run design: 3 wide stages, global max-pool)")
def fastnet(num_classes, in_channels, image_size, width: float = 1.0):
    if width <= 0:
        raise ClasslabError(f"width must be positive, got {width}")
    widths = tuple(max(8, int(round(w * width))) for w in (64, 256, 256))
    return FastNet(num_classes, in_channels, widths)
