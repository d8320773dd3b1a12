"""timm models as transfer backbones (structure only; weights are loaded by ``classlab.transfer``):
``timm:NAME`` names any model of ``timm.list_models()``. timm is the optional extra ``classlab[timm]``."""

from __future__ import annotations

import functools

from ..errors import ClasslabError

PREFIX = "timm:"


def is_timm(backbone) -> bool:
    return str(backbone).startswith(PREFIX)


def timm_module():
    try:
        import timm
    except ImportError:
        raise ClasslabError("timm backbones need timm: pip install 'classlab[timm]'") from None
    return timm


@functools.lru_cache(maxsize=1)
def _names() -> frozenset:
    return frozenset(timm_module().list_models())


def check_name(backbone: str) -> str:
    """The timm model name of ``timm:NAME``, or a one-line error naming similar ones."""
    timm_module()  # a missing timm is said first, even when the names were listed before
    name = backbone[len(PREFIX):]
    if name not in _names():
        close = sorted(n for n in _names() if name.split("_")[0] in n)[:5]
        raise ClasslabError(f"unknown timm model '{name}'" + (f"; similar: {', '.join(close)}" if close else ""))
    return name


def create(backbone: str, pretrained_cfg: dict | None = None):
    """The timm model (classifier included, so a checkpoint's keys load as they are), no weights."""
    name = check_name(backbone)
    kwargs = {"pretrained_cfg_overlay": pretrained_cfg} if pretrained_cfg else {}
    return timm_module().create_model(name, pretrained=False, **kwargs)


def strip(model) -> int:
    """The classifier removed (timm's own reset: the model then returns pooled features); their width."""
    model.reset_classifier(0)
    return int(model.num_features)
