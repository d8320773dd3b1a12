"""Checkpoints: written atomically, loaded with ``weights_only=True`` (never runs code from the file)."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from .errors import ClasslabError
from .fileio import atomic_write_bytes


def save_checkpoint(path: Path, state: dict) -> Path:
    buf = io.BytesIO()
    torch.save(state, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ClasslabError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which, do not show torch's internals
        raise ClasslabError(f"cannot load checkpoint {path} ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
