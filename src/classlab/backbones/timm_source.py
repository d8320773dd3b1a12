"""timm backbones for transfer learning: ``--backbone timm:NAME`` with ``--weights`` a ``.safetensors`` or
``.pth`` file, or a local Hugging Face folder (``model.safetensors`` / ``pytorch_model.bin`` beside the
``config.json`` timm writes). Nothing is downloaded. The preprocessing contract (input size, mean, std) comes
from timm's ``resolve_data_config`` over the model's pretrained config (the folder's, when it has one).
timm is the optional extra ``classlab[timm]``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import ClasslabError
from ..models.timm_models import check_name, create, timm_module

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def weights_file(weights: str | None, backbone: str) -> tuple[Path, dict | None]:
    """(the weights file, the folder's pretrained config or None) for ``--weights``."""
    if weights is None:
        raise ClasslabError(f"--backbone {backbone} needs --weights: a .safetensors or .pth file, or a local "
                            "Hugging Face folder of the model (nothing is downloaded)")
    path = Path(weights).expanduser()
    config = None
    if path.is_dir() and (path / "snapshots").is_dir():  # a hub cache entry (models--timm--NAME): its newest snapshot
        snapshots = sorted((p for p in (path / "snapshots").iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        path = next((p for p in reversed(snapshots) if any((p / f).exists() for f in WEIGHT_FILES)), path)
    if path.is_dir():
        found = next((path / f for f in WEIGHT_FILES if (path / f).is_file()), None)
        if found is None:
            raise ClasslabError(f"{path} holds none of {', '.join(WEIGHT_FILES)}; give the weights file itself")
        if (path / "config.json").is_file():
            try:
                raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise ClasslabError(f"{path / 'config.json'} is not readable JSON ({e})") from None
            config = raw.get("pretrained_cfg") if isinstance(raw, dict) else None
        path = found
    if not path.is_file():
        raise ClasslabError(f"weights file {path} not found")
    return path, config if isinstance(config, dict) else None


def load_state(path: Path) -> dict:
    """The weights as a state dict: safetensors (no code), or a torch file loaded with weights_only."""
    from ..checkpoint import load_checkpoint
    from ..safe_files import UnreadableFile, check_path

    if path.suffix == ".safetensors":
        try:
            check_path(path)
            from safetensors.torch import load_file

            return load_file(str(path))
        except (UnreadableFile, OSError, ValueError, RuntimeError) as e:
            raise ClasslabError(f"cannot read the safetensors file {path} ({str(e).splitlines()[0][:200]})") from None
        except ImportError:
            raise ClasslabError("reading .safetensors needs the safetensors package (installed with timm)") from None
    state = load_checkpoint(path)
    for key in ("state_dict", "model", "model_state_dict"):  # training checkpoints wrap the weights
        if isinstance(state.get(key), dict):
            return state[key]
    return state


def plan(backbone: str, weights: str | None) -> dict:
    """BackbonePlan's fields: the weights' state, a description, a fingerprint, mean, std, input size."""
    check_name(backbone)
    path, config = weights_file(weights, backbone)
    model = create(backbone, config)
    data = timm_module().data.resolve_data_config({}, model=model)
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"name": backbone, "source": None, "state": load_state(path), "weights": f"{backbone} ({path.name})",
            "fingerprint": digest.hexdigest(), "mean": [float(v) for v in data["mean"]],
            "std": [float(v) for v in data["std"]], "default_size": [int(v) for v in data["input_size"][1:]],
            "min_size": 16, "channels": None}
