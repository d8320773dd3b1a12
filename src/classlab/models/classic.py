"""The classic architectures, from torchvision, with the stem adapted for small images.

torchvision's implementations are used as they are; only what 32 px inputs need is changed:
ResNet's 7x7/2 stem and max-pool become one 3x3/1 conv, VGG loses its 7x7 adaptive pool and
4096-wide classifier (the usual CIFAR VGG), MobileNetV2's first conv gets stride 1, and AlexNet
gets the customary small-input variant. ``stem='imagenet'`` keeps the original everywhere.
"""

from __future__ import annotations

import torchvision.models as tvm
from torch import nn

from ..errors import ClasslabError
from .blocks import check_dropout
from .registry import register

SMALL_BELOW = 64  # inputs with a side under this many pixels get the small-image stem by default


def _small(stem: str, image_size) -> bool:
    if stem not in ("auto", "small", "imagenet"):
        raise ClasslabError(f"stem must be auto, small or imagenet, got {stem!r}")
    return stem == "small" or (stem == "auto" and min(image_size) < SMALL_BELOW)


def _conv_like(conv: nn.Conv2d, in_channels: int, **changes) -> nn.Conv2d:
    kw = dict(kernel_size=conv.kernel_size, stride=conv.stride, padding=conv.padding, bias=conv.bias is not None)
    kw.update(changes)
    return nn.Conv2d(in_channels, conv.out_channels, **kw)


def _resnet(builder, num_classes, in_channels, image_size, stem):
    model = builder(num_classes=num_classes)
    if _small(stem, image_size):
        model.conv1 = _conv_like(model.conv1, in_channels, kernel_size=3, stride=1, padding=1)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = _conv_like(model.conv1, in_channels)
    return model


@register("resnet18", "ResNet-18 (torchvision); 3x3 stem without max-pool for small images", photo_size=128)
def resnet18(num_classes, in_channels, image_size, stem: str = "auto"):
    return _resnet(tvm.resnet18, num_classes, in_channels, image_size, stem)


@register("resnet34", "ResNet-34 (torchvision); 3x3 stem without max-pool for small images", photo_size=128)
def resnet34(num_classes, in_channels, image_size, stem: str = "auto"):
    return _resnet(tvm.resnet34, num_classes, in_channels, image_size, stem)


@register("resnet50", "ResNet-50 (torchvision); 3x3 stem without max-pool for small images", photo_size=128)
def resnet50(num_classes, in_channels, image_size, stem: str = "auto"):
    return _resnet(tvm.resnet50, num_classes, in_channels, image_size, stem)


def _vgg(builder, num_classes, in_channels, image_size, stem, dropout):
    model = builder(num_classes=num_classes, dropout=check_dropout(dropout))
    if in_channels != 3:
        model.features[0] = _conv_like(model.features[0], in_channels)
    if _small(stem, image_size):
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        model.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(512, num_classes))
    return model


@register("vgg11", "VGG-11 (torchvision); global pool + one linear layer for small images", photo_size=128)
def vgg11(num_classes, in_channels, image_size, stem: str = "auto", batch_norm: bool = True, dropout: float = 0.5):
    return _vgg(tvm.vgg11_bn if batch_norm else tvm.vgg11, num_classes, in_channels, image_size, stem, dropout)


@register("vgg16", "VGG-16 (torchvision); global pool + one linear layer for small images", photo_size=128)
def vgg16(num_classes, in_channels, image_size, stem: str = "auto", batch_norm: bool = True, dropout: float = 0.5):
    return _vgg(tvm.vgg16_bn if batch_norm else tvm.vgg16, num_classes, in_channels, image_size, stem, dropout)


@register("mobilenet_v2", "MobileNetV2 (torchvision); first conv at stride 1 for small images", photo_size=128)
def mobilenet_v2(num_classes, in_channels, image_size, stem: str = "auto", dropout: float = 0.2):
    model = tvm.mobilenet_v2(num_classes=num_classes, dropout=check_dropout(dropout))
    first = model.features[0][0]
    if _small(stem, image_size):
        model.features[0][0] = _conv_like(first, in_channels, stride=1)
    elif in_channels != 3:
        model.features[0][0] = _conv_like(first, in_channels)
    return model


@register("alexnet", "AlexNet (torchvision) for >= 64 px; the usual 5-conv small-input variant below", photo_size=128)
def alexnet(num_classes, in_channels, image_size, stem: str = "auto", dropout: float = 0.5):
    dropout = check_dropout(dropout)
    if not _small(stem, image_size):
        model = tvm.alexnet(num_classes=num_classes, dropout=dropout)
        if in_channels != 3:
            model.features[0] = _conv_like(model.features[0], in_channels)
        return model
    # Same shape as AlexNet (5 convs, 3 max-pools, ReLU, dropout before wide dense layers), scaled to 32 px.
    features = nn.Sequential(
        nn.Conv2d(in_channels, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(64, 192, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(2))
    classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(256 * 4, 1024), nn.ReLU(inplace=True),
                               nn.Dropout(dropout), nn.Linear(1024, 1024), nn.ReLU(inplace=True),
                               nn.Linear(1024, num_classes))
    return nn.Sequential(features, classifier)
