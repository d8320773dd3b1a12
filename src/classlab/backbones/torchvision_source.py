"""torchvision backbones and their pretrained weights, offline-safe: ``--weights FILE``, then the torch hub
cache, then a download.

torchvision's weights enums name each file (``mobilenet_v2-b0353104.pth``, a sha256 prefix in the
name) and carry the preprocessing the weights were trained with. A file already in
``$TORCH_HOME/hub/checkpoints`` is used as it is, whichever of the enum's versions it is; otherwise
the default version is downloaded (checksummed, atomic; ``CLASSLAB_WEIGHTS_MIRROR`` replaces
download.pytorch.org/models with a mirror). With no network the message names the
file and the folder to put it in, after one short attempt.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import load_checkpoint
from ..errors import ClasslabError

FROM_SCRATCH = "or train a network from scratch, which needs no weights: classlab train DATA --model cnn"
MIN_PRETRAINED_SIZE = 32  # ImageNet backbones downsample 32x: below this the last stage sees under a pixel


@dataclass
class ResolvedWeights:
    state: dict | None  # the full model's state dict (ImageNet classifier included); None = random init
    name: str  # e.g. "MobileNet_V2_Weights.IMAGENET1K_V1", "random", or "file:<name>"
    file: Path | None
    fingerprint: str  # identifies the exact weights, for the feature cache
    mean: list[float]
    std: list[float]
    crop_size: int  # the size the weights were trained at (torchvision's default input size)
    min_size: int


def hub_checkpoints() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def weight_versions(backbone: str) -> list:
    """The backbone's published weights, the default version first (empty when torchvision has none)."""
    enum = _enum(backbone)
    return [] if enum is None else [enum.DEFAULT] + [m for m in enum if m is not enum.DEFAULT]


def cached_file(members) -> tuple | None:
    """(version, path) of the first of ``members`` whose file is in the torch hub cache, or None."""
    for member in members:
        path = hub_checkpoints() / member.url.rsplit("/", 1)[-1]
        if path.is_file():
            return member, path
    return None


def offline_status(backbone: str) -> tuple[bool, str]:
    """(can transfer start without a download, what to say): whether ``backbone``'s published weights are
    in the torch hub cache, and if not, the file to put where. Reads no weights and fetches nothing."""
    members = weight_versions(backbone)
    if not members:
        return False, f"torchvision publishes no pretrained weights for '{backbone}'"
    found = cached_file(members)
    if found is not None:
        return True, f"{found[0]} ({found[1].name}, in {found[1].parent})"
    name = members[0].url.rsplit("/", 1)[-1]
    return False, f"{name} is not in {hub_checkpoints()}"


def _enum(backbone: str):
    from torchvision import models

    try:
        return models.get_model_weights(backbone)
    except (ValueError, KeyError):
        return None


def _transforms(member) -> tuple[list[float], list[float], int, int]:
    t = member.transforms()
    min_size = max(member.meta.get("min_size", (1, 1)))
    return list(t.mean), list(t.std), int(t.crop_size[0]), max(MIN_PRETRAINED_SIZE, min_size)


def _read(path: Path) -> dict:
    try:
        state = load_checkpoint(path)
    except ClasslabError as e:
        raise ClasslabError(f"the weights file {path} is damaged or truncated ({str(e).split('(', 1)[-1].rstrip(')')}); "
                            "delete it and download it again") from None
    if isinstance(state, dict) and "model_info" in state:
        raise ClasslabError(f"{path} is a classlab checkpoint; pass its run directory as --backbone instead")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise ClasslabError(f"{path} holds no state dict of weights")
    return state


def _fingerprint(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve(backbone: str, weights: str | None = None, progress: bool = True) -> ResolvedWeights:
    """``weights``: None (the default version: hub cache, then download), a version name such as
    "IMAGENET1K_V1", a file path, or "random" (architecture only)."""
    members = weight_versions(backbone)
    imagenet = members[0] if members else None
    mean, std, crop, min_size = _transforms(imagenet) if imagenet else ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225],
                                                                         224, MIN_PRETRAINED_SIZE)
    if weights == "random":
        return ResolvedWeights(None, "random", None, "random", mean, std, crop, min_size)
    names = {m.name: m for m in members}
    if weights in names or weights == "DEFAULT":  # a version by name, e.g. IMAGENET1K_V1, as torchvision takes it
        members = [names.get(weights, imagenet)]
        imagenet, weights = members[0], None
    elif weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            versions = ", ".join(names) or "none published"
            raise ClasslabError(f"--weights {weights}: no such file; it takes a weights file, 'random', or one of "
                                f"{backbone}'s versions ({versions})")
        match = next((m for m in members if m.url.rsplit("/", 1)[-1] == path.name), None)
        if match is not None:
            mean, std, crop, min_size = _transforms(match)
        name = str(match) if match is not None else f"file:{path.name}"
        return ResolvedWeights(_read(path), name, path, _fingerprint(path), mean, std, crop, min_size)
    if not members:
        raise ClasslabError(f"torchvision publishes no pretrained weights for '{backbone}'; pass --weights FILE "
                            "or --weights random")
    found = cached_file(members)
    if found is not None:
        member, path = found
        mean, std, crop, min_size = _transforms(member)
        return ResolvedWeights(_read(path), str(member), path, _fingerprint(path), mean, std, crop, min_size)
    path = _download(imagenet, hub_checkpoints(), progress)
    return ResolvedWeights(_read(path), str(imagenet), path, _fingerprint(path), mean, std, crop, min_size)


def _download(member, folder: Path, progress: bool) -> Path:
    from ..data.download import download_file

    name = member.url.rsplit("/", 1)[-1]
    mirror = os.environ.get("CLASSLAB_WEIGHTS_MIRROR")  # e.g. an internal copy of download.pytorch.org/models
    url = f"{mirror.rstrip('/')}/{name}" if mirror else member.url
    where = (f"put {name} (from {url}) into {folder}, or pass --weights FILE (or set TORCH_HOME to a folder "
             f"whose hub/checkpoints holds it); {FROM_SCRATCH}")
    if os.environ.get("CLASSLAB_OFFLINE"):
        raise ClasslabError(f"pretrained weights {member} are not on this machine and CLASSLAB_OFFLINE is set: {where}")
    digest = name.rsplit("-", 1)[-1].split(".")[0]
    try:
        return download_file(url, folder / name, f"sha256-prefix:{digest}", timeout=10, progress=progress)
    except ClasslabError as e:
        raise ClasslabError(f"pretrained weights {member} are not on this machine: {e}; or pass --weights FILE; "
                            f"{FROM_SCRATCH}") from None


def plan(backbone: str, weights: str | None, progress: bool = True) -> dict:
    """BackbonePlan's fields for a torchvision model and its weights (``resolve``)."""
    from ..models.transfer import check_backbone_name

    check_backbone_name(backbone)
    w = resolve(backbone, weights, progress)
    return {"name": backbone, "source": None, "state": w.state, "weights": w.name, "fingerprint": w.fingerprint,
            "mean": w.mean, "std": w.std, "default_size": [w.crop_size] * 2,
            "min_size": w.min_size if w.state is not None else 1, "channels": None}
