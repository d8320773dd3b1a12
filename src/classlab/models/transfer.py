"""Transfer learning's network: a pretrained backbone without its classifier, and a new head.

A backbone is any torchvision classification model (by name) or the network of an earlier classlab
run. Either way its last linear layer is replaced by an identity, so the backbone maps an image to
a feature vector; the head maps that to the new classes. ``blocks()`` lists the backbone's
parameter-bearing units in forward order, which is what ``--unfreeze last:N`` counts.

Weights are not loaded here: ``create_model("transfer", ...)`` builds the structure (so a saved run
can be rebuilt from its checkpoint), and ``classlab.transfer`` loads the pretrained weights.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from ..errors import ClasslabError, warn
from . import timm_models
from .registry import register
from .timm_models import is_timm

SUGGESTED = ("mobilenet_v2", "resnet18", "resnet50", "vgg16", "efficientnet_b0")
GRAY_MODES = ("replicate", "sum")
BN_MODES = ("frozen", "train")


@functools.lru_cache(maxsize=1)
def torchvision_names() -> list[str]:
    from torchvision import models

    return models.list_models(module=models)


def check_backbone_name(name: str) -> None:
    if is_timm(name):
        timm_models.check_name(name)  # the one-line reason for an unknown name or a missing timm
        return
    if name not in torchvision_names():
        raise ClasslabError(f"unknown backbone '{name}'; try {', '.join(SUGGESTED)}, any of torchvision's "
                            f"{len(torchvision_names())} classification models (e.g. convnext_tiny, regnet_y_400mf), "
                            "or a classlab run directory")


def build_torchvision(name: str) -> nn.Module:
    """The full torchvision model, ImageNet classifier included, so ImageNet weights load as they are."""
    from torchvision import models

    check_backbone_name(name)
    kwargs = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    return models.get_model(name, weights=None, **kwargs)


def strip_classifier(model: nn.Module) -> int:
    """Replace the last nn.Linear by an identity, in place; returns the feature width it took in."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise ClasslabError(f"{type(model).__name__} has no final linear layer to replace; choose another backbone")
    parent_name, _, attr = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    width = getattr(parent, attr).in_features
    setattr(parent, attr, nn.Identity())
    return width


def adapt_first_conv(model: nn.Module, in_channels: int) -> None:
    """Make the first convolution take ``in_channels`` by summing (1 channel) its pretrained filters,
    as timm's ``adapt_input_conv`` does: a grayscale image then gives what its RGB copy would."""
    for parent in model.modules():
        for attr, conv in parent.named_children():
            if isinstance(conv, nn.Conv2d):
                if conv.in_channels == in_channels:
                    return
                if in_channels != 1:
                    raise ClasslabError(f"cannot adapt a {conv.in_channels}-channel backbone to {in_channels} channels")
                new = nn.Conv2d(1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                                conv.groups, conv.bias is not None, device=conv.weight.device)
                with torch.no_grad():
                    if not conv.weight.is_meta:
                        new.weight.copy_(conv.weight.sum(1, keepdim=True))
                        if conv.bias is not None:
                            new.bias.copy_(conv.bias)
                setattr(parent, attr, new)
                return


def make_head(features: int, num_classes: int, dense: int | None, dropout: float) -> nn.Module:
    """The decks' head: [Dense(dense, relu) ->] Dropout -> Dense(classes); the softmax is in the loss."""
    if dense is not None and dense < 1:
        raise ClasslabError(f"--dense must be a positive number of units, got {dense}")
    if not 0 <= dropout < 1:
        raise ClasslabError(f"--dropout must be in [0, 1), got {dropout}")
    if dense:
        return nn.Sequential(nn.Linear(features, dense), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dense, num_classes))
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(features, num_classes))


class TransferNet(nn.Module):
    def __init__(self, backbone: nn.Module, width: int, head: nn.Module, bn: str = "frozen"):
        super().__init__()
        self.backbone, self.head, self.width, self.bn = backbone, head, width, bn
        self._checked = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._checked and not x.is_meta and not _tracing():
            self._checked = True  # one look at the first batch: the contract's classic mistake is loud
            problem = contract_mismatch(x)
            if problem:
                warn(f"{problem}; this model expects normalised inputs. Use the run's preprocessing "
                     "(classlab.TrainedNetwork.predict does it) instead of feeding tensors by hand")
        return self.head(self.backbone(x))

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.bn == "frozen":  # keep the pretrained running statistics while fine-tuning
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def blocks(self) -> list[nn.Module]:
        """The backbone's parameter-bearing units in forward order (Sequentials opened one level deep
        at a time, so MobileNetV2 gives its 19 feature blocks and ResNet its stem layers and residual blocks)."""
        out = []

        def walk(module: nn.Module):
            for child in module.children():
                if not any(True for _ in child.parameters()):
                    continue
                if type(child) is nn.Sequential and len(child) > 1:  # not Conv2dNormActivation &c.
                    walk(child)
                else:
                    out.append(child)
        walk(self.backbone)
        return out

    def freeze(self, unfreeze: str | None) -> int:
        """Freeze the backbone, then unfreeze ``"all"``, ``"half"`` (the later half of the blocks, rounded up)
        or ``"last:N"`` blocks; returns the count unfrozen."""
        self.backbone.requires_grad_(False)
        if unfreeze is None:
            return 0
        blocks = self.blocks()
        if unfreeze == "all":
            self.backbone.requires_grad_(True)
            return len(blocks)
        count = (len(blocks) + 1) // 2 if unfreeze == "half" else parse_unfreeze(unfreeze)
        if count > len(blocks):
            raise ClasslabError(f"--unfreeze last:{count} asks for more blocks than the backbone has ({len(blocks)}); "
                                f"use last:1 to last:{len(blocks)}, half or all")
        for block in blocks[len(blocks) - count:]:
            block.requires_grad_(True)
        return count


def contract_mismatch(x: torch.Tensor) -> str | None:
    """Why a batch that should be normalised (about mean 0, std 1) clearly is not, or None.

    The classic transfer-learning mistake is feeding [0, 1] pixels (std about 0.25) or 0-255 pixels
    where ImageNet normalisation is expected; both stand out in one batch's statistics."""
    if x.numel() < 64 or not x.is_floating_point():
        return None
    x = x.detach()  # Grad-CAM feeds inputs that require gradients
    mean, std = float(x.float().mean()), float(x.float().std())
    if 0 <= x.min() and x.max() <= 1 and std < 0.4:
        return f"inputs lie in [0, 1] (mean {mean:.2f}, std {std:.2f}): pixels scaled by 1/255 but not normalised"
    if x.max() > 20:
        return f"inputs reach {float(x.max()):.0f} (mean {mean:.1f}): raw 0-255 pixels, not normalised"
    if std < 0.1 or std > 10 or abs(mean) > 3:
        return f"inputs have mean {mean:.2f} and std {std:.2f}, far from normalised data (about 0 and 1)"
    return None


def parse_unfreeze(text: str) -> int | None:
    """'all' -> None (everything), 'half' -> 0 (counted on the backbone's blocks), 'last:N' -> N."""
    if text == "all":
        return None
    if text == "half":
        return 0
    kind, _, n = text.partition(":")
    if kind != "last" or not n.isdigit() or int(n) < 1:
        raise ClasslabError(f"--unfreeze takes 'all', 'half' or 'last:N' with N >= 1, got '{text}'")
    return int(n)


def _tracing() -> bool:
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()


def load_matching(model: nn.Module, state: dict, what: str) -> None:
    """load_state_dict, with a message naming the keys that do not fit instead of torch's wall of text."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})" for k in own
              if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = [f"{label} ({len(keys)}): {', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''}"
                 for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                     ("shape mismatches", shapes)) if keys]
        raise ClasslabError(f"{what} does not fit this architecture: {'; '.join(parts)}. "
                            "Is it the checkpoint of another model?")
    model.load_state_dict(state)


def build_backbone(backbone: str, source: dict | None, in_channels: int, state: dict | None = None,
                   state_name: str = "the weights file") -> tuple[nn.Module, int]:
    """(backbone without classifier, feature width). ``source`` is an earlier run's model_info;
    ``state`` (pretrained weights of the full model, classifier included) is loaded before the
    classifier is removed and the first convolution adapted."""
    if source is not None:
        from .registry import create_model

        net = create_model(source["name"], source["num_classes"], source["in_channels"], tuple(source["image_size"]),
                           **source.get("options", {}))
    elif is_timm(backbone):
        net = timm_models.create(backbone)
    else:
        net = build_torchvision(backbone)
    if state is not None:
        load_matching(net, state, state_name)
    if isinstance(net, TransferNet):  # a transferred run transfers again: its backbone and head body
        net = nn.Sequential(net.backbone, net.head)
    width = timm_models.strip(net) if is_timm(backbone) and source is None else strip_classifier(net)
    adapt_first_conv(net, in_channels)
    return net, width


@register("transfer", "a pretrained backbone with a new head (built by `classlab transfer`)", hidden=True)
def transfer(num_classes, in_channels, image_size, backbone: str = "mobilenet_v2", source: dict | None = None,
             dense: int | None = None, dropout: float = 0.2, bn: str = "frozen"):
    """The structure only; ``classlab.transfer`` copies the pretrained backbone in (runs keep it in best.pt)."""
    if bn not in BN_MODES:
        raise ClasslabError(f"--bn takes {' or '.join(BN_MODES)}, got '{bn}'")
    net, width = build_backbone(backbone, source, in_channels)
    return TransferNet(net, width, make_head(width, num_classes, dense, dropout), bn)
