"""The torch hub cache, read without importing torch: is a backbone's pretrained weights file there, and
installing one that a person hands over (the workbench's Train page), checked by the SHA-256 prefix that
torchvision writes into every file name (``mobilenet_v2-b0353104.pth``)."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path

from ..errors import ClasslabError

# torchvision's published file names for the backbones the workbench offers (default version first); the
# resolver (weights.py) accepts any version it finds, and so does this check
KNOWN_FILES = {
    "mobilenet_v2": ("mobilenet_v2-7ebf99e0.pth", "mobilenet_v2-b0353104.pth"),
    "resnet18": ("resnet18-f37072fd.pth",),
    "resnet50": ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth"),
    "vgg16": ("vgg16-397923af.pth",),
}
MAX_WEIGHTS_BYTES = 1 << 30


def hub_checkpoints() -> Path:
    """$TORCH_HOME/hub/checkpoints, else $XDG_CACHE_HOME/torch/..., else ~/.cache/torch/... (torch.hub's rule)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(home)) / "hub" / "checkpoints"


def cached_weights(backbone: str) -> Path | None:
    """The backbone's weights file in the hub cache (a regular file under a published name), or None."""
    for name in KNOWN_FILES.get(backbone, ()):
        path = hub_checkpoints() / name
        try:
            if stat.S_ISREG(path.stat().st_mode):
                return path
        except OSError:
            continue
    return None


def weights_status(backbones) -> list[dict]:
    """Per backbone: whether transfer learning can start without a download, and the file it needs."""
    folder = hub_checkpoints()
    out = []
    for name in backbones:
        found = cached_weights(name)
        out.append({"backbone": name, "ready": found is not None, "file": found.name if found else
                    KNOWN_FILES.get(name, ("?",))[0], "folder": str(folder)})
    return out


def install_weights(backbone: str, filename: str, stream) -> Path:
    """Copy an uploaded weights file into the hub cache under its published name, after checking that its
    SHA-256 starts with the digits in that name; a refused upload leaves nothing behind."""
    filename = os.path.basename(str(filename or ""))
    if filename not in KNOWN_FILES.get(backbone, ()):
        names = " or ".join(KNOWN_FILES.get(backbone, ())) or "none"
        raise ClasslabError(f"the weights file for {backbone} is named {names} (torchvision's name, whose digits "
                            f"check its contents); got '{filename[:80]}'")
    prefix = re.search(r"-([0-9a-f]{8})\.pth$", filename).group(1)
    folder = hub_checkpoints()
    part = folder / f".{filename}.part"
    digest, size = hashlib.sha256(), 0
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(part, "wb") as out:
            for block in iter(lambda: stream.read(1 << 20), b""):
                size += len(block)
                if size > MAX_WEIGHTS_BYTES:
                    raise ClasslabError(f"{filename} is larger than {MAX_WEIGHTS_BYTES >> 20} MB; not a weights file")
                digest.update(block)
                out.write(block)
        if not digest.hexdigest().startswith(prefix):
            raise ClasslabError(f"{filename} does not match its name (SHA-256 {digest.hexdigest()[:8]}..., expected "
                                f"{prefix}...): a damaged or different file; download it again")
        part.replace(folder / filename)
    except OSError as e:
        raise ClasslabError(f"cannot write {filename} into {folder} ({e.strerror or e}); nothing was installed") from None
    finally:
        part.unlink(missing_ok=True)
    return folder / filename


def checked_weights_path(text: str) -> str:
    """A weights file named by path on this machine: a regular .pth / .pt file (not a FIFO or a folder)."""
    path = Path(os.path.expanduser(text.strip()))
    try:
        regular = stat.S_ISREG(path.stat().st_mode)
    except OSError:
        regular = False
    if not regular or path.suffix.lower() not in (".pth", ".pt"):
        raise ClasslabError(f"'{text.strip()[:200]}' is not a .pth or .pt weights file on this machine")
    return str(path.resolve())
