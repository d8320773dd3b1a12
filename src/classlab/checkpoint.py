"""Checkpoints: written atomically, loaded with ``weights_only=True`` (never runs code from the file)."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from .errors import ClasslabError
from .fileio import atomic_write_bytes
from .safe_files import UnreadableFile, check_path


def save_checkpoint(path: Path, state: dict) -> Path:
    buf = io.BytesIO()
    torch.save(state, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """A checkpoint's dict. Only a regular file is opened (not a FIFO, a device, a dangling link), with
    ``weights_only=True``; an empty, truncated or foreign file is a one-line ClasslabError."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise ClasslabError(f"checkpoint {path} not found")
    try:
        size = check_path(path).st_size
    except UnreadableFile as e:
        raise ClasslabError(f"cannot load checkpoint: {e}") from None
    if size == 0:
        raise ClasslabError(f"checkpoint {path} is empty (0 bytes): the run that wrote it was cut off")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which, do not show torch's internals
        raise ClasslabError(f"cannot load checkpoint {path} ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if not isinstance(state, dict):
        raise ClasslabError(f"{path} holds a {type(state).__name__}, not a checkpoint (a dict of weights and state)")
    return state
