"""A network designed for speed to accuracy on CIFAR-sized images.

What the CIFAR-10 speed-run work (airbench, hlb-CIFAR10) found matters, re-derived here rather than
copied: few, wide stages (each conv -> max-pool -> BN -> GELU, then conv -> BN -> GELU) so that most
compute runs at low resolution; batch norm with a learned shift but no learned scale, the shifts
learning 64x faster under SGD; convolutions that start as identity maps (dirac) on their first input
channels, an implicit residual; global max pooling; a bias-free linear head whose logits are scaled
down, which steadies early training at high learning rates. Training-side tricks (label smoothing,
flips, test-time augmentation, a short schedule) belong to the training engine.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ClasslabError
from .registry import register


BIAS_LR_SCALE = 64.0  # measured by the speed-run work: 22 -> 17 epochs to 94% on CIFAR-10


def _conv(cin: int, cout: int) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(cin, cout)])  # the first filters pass their input channel through
    return conv


def _norm(channels: int, eps: float) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels, eps=eps, momentum=0.4)
    norm.weight.requires_grad_(False)  # stays 1: the following conv or head can scale
    return norm


class _Stage(nn.Sequential):
    def __init__(self, cin: int, cout: int, eps: float):
        super().__init__(_conv(cin, cout), nn.MaxPool2d(2), _norm(cout, eps), nn.GELU(),
                         _conv(cout, cout), _norm(cout, eps), nn.GELU())


class FastNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, widths=(64, 256, 256), logit_scale: float = 1 / 9,
                 whiten_bias_epochs: int | None = 3, bn_eps: float = 1e-5):
        super().__init__()
        self.whiten_bias_epochs = whiten_bias_epochs
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 24, 2, padding=0, bias=True), nn.GELU())
        stages, cin = [], 24
        for w in widths:
            stages.append(_Stage(cin, w, bn_eps))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(cin, num_classes, bias=False)
        self.logit_scale = logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stages(self.stem(x))).flatten(1)
        return self.head(x) * self.logit_scale

    def begin_epoch(self, epoch: int) -> None:
        """The engine calls this before each epoch: the whitening layer's bias trains for the first
        ``whiten_bias_epochs`` epochs, then stays (the speed runs' schedule; None: it always trains).
        A frozen parameter gets no gradient, and SGD leaves a parameter without one untouched."""
        if self.whiten_bias_epochs is not None:
            self.stem[0].bias.requires_grad_(epoch < self.whiten_bias_epochs)

    def param_groups(self, cfg) -> list[dict]:
        """Optimizer groups for the engine: under SGD the batch-norm shifts take a 64x learning rate with
        the same absolute weight decay as the rest (decay per step is lr x weight_decay)."""
        trainable = [(name, p) for name, p in self.named_parameters() if p.requires_grad]
        if cfg.optimizer not in ("sgd", "nesterov"):
            return [{"params": [p for _, p in trainable]}]
        shifts = {id(m.bias) for m in self.modules() if isinstance(m, nn.BatchNorm2d)}
        return [{"params": [p for _, p in trainable if id(p) not in shifts]},
                {"params": [p for _, p in trainable if id(p) in shifts], "lr": cfg.lr * BIAS_LR_SCALE,
                 "weight_decay": cfg.weight_decay / BIAS_LR_SCALE}]

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


@register("fastnet", "fast CIFAR-sized network (speed-run design: 3 wide stages, global max-pool)", photo_size=32)
def fastnet(num_classes, in_channels, image_size, width: float = 1.0, whiten_bias_epochs: int | None = 3,
            bn_eps: float = 1e-5):
    """``whiten_bias_epochs``: epochs the whitening layer's bias trains before it is frozen (None: always);
    ``bn_eps``: the batch norms' epsilon (PyTorch's 1e-5; the speed runs use 1e-12)."""
    if width <= 0:
        raise ClasslabError(f"width must be positive, got {width}")
    if isinstance(bn_eps, bool) or not isinstance(bn_eps, (int, float)) or not 0 < bn_eps < 1:
        raise ClasslabError(f"bn_eps must be a number between 0 and 1 (e.g. 1e-12), got {bn_eps!r}")
    if whiten_bias_epochs is not None and (isinstance(whiten_bias_epochs, bool) or not isinstance(whiten_bias_epochs, int)
                                           or whiten_bias_epochs < 0):
        raise ClasslabError(f"whiten_bias_epochs must be a whole number of epochs (or None), got {whiten_bias_epochs!r}")
    widths = tuple(max(8, int(round(w * width))) for w in (64, 256, 256))
    return FastNet(num_classes, in_channels, widths, whiten_bias_epochs=whiten_bias_epochs, bn_eps=float(bn_eps))
