"""Picking the compute device: CUDA, then MPS, then CPU, unless the user says otherwise."""

from __future__ import annotations

import torch

from .errors import ClasslabError


def pick_device(requested: str | None = None) -> torch.device:
    if requested in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ClasslabError(f"unknown device '{requested}'; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ClasslabError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ClasslabError("--device mps was asked for but MPS is not available; use --device cpu")
    return device
