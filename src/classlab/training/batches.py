"""Splits as batches on the device: the engine indexes every batch out of one uint8 tensor per split
(no per-sample Python, no DataLoader in the way), or streams splits too large for memory."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.dataset import ImageDataset


@dataclass
class SplitTensors:
    """A split held whole on the device: every batch is an index into one uint8 tensor."""

    images: torch.Tensor  # uint8 (N, [D,] H, W, C) on the device (or float feature rows)
    labels: torch.Tensor  # int64 (N,) on the device
    # (V, N, ...): precomputed augmented versions of every row, e.g. the cached features of mirror images,
    # which stand in for image augmentation where the model sees features: training draws one version of
    # each row per epoch, test-time augmentation averages over all of them
    views: torch.Tensor | None = None
    # the split's rows of ``images`` when that is the whole dataset's array, shared rather than copied (on the
    # CPU: a fine-tuning split of 2,275 photos at 224 px is 340 MB that a copy would hold twice)
    rows: torch.Tensor | None = None

    @property
    def device(self) -> torch.device:
        return self.images.device

    def take(self, idx: torch.Tensor) -> torch.Tensor:
        """The images of the split's rows ``idx``."""
        return self.images[idx if self.rows is None else self.rows[idx]]

    def draw_views(self, generator: torch.Generator) -> torch.Tensor | None:
        """One epoch's choice per row, uniform: 0 the images themselves, v the views[v - 1]."""
        if self.views is None:
            return None
        return torch.randint(len(self.views) + 1, (len(self.labels),), generator=generator).to(self.device)

    def batches(self, order: torch.Tensor, batch_size: int, drawn: torch.Tensor | None = None):
        """(indices, uint8 images) per batch of ``order``; ``drawn`` (from draw_views) picks each row's version."""
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x = self.take(idx)
            if drawn is not None:
                v = drawn[idx]
                alt = self.views[(v - 1).clamp_min(0), idx]
                x = torch.where((v > 0).view(-1, *[1] * (x.ndim - 1)), alt, x)
            yield idx, x

    def eval_batches(self, batch_size: int):
        """In order, for inference: (rows, their precomputed views) or rows alone."""
        for idx, x in self.batches(torch.arange(len(self.labels), device=self.device), batch_size):
            yield (x, self.views[:, idx]) if self.views is not None else x


class StreamedSplit:
    """A split too large for memory: images decoded by DataLoader workers, batch by batch, in the
    order the engine chose (so shuffling, sampling and resuming behave as in memory)."""

    views = None  # augmentation happens on the decoded images

    def __init__(self, images, labels: torch.Tensor, device: torch.device, workers: int | None = None):
        import os
        import sys

        self.images, self.labels, self._device = images, labels, device
        # Workers inherit the decoder by fork; where processes spawn, decode in the main process.
        self.workers = (min(4, os.cpu_count() or 1) if workers is None else workers) \
            if sys.platform.startswith("linux") else 0
        self.ndim = images.ndim

    @property
    def device(self) -> torch.device:
        return self._device

    def draw_views(self, generator: torch.Generator) -> None:
        return None

    def batches(self, order: torch.Tensor, batch_size: int, drawn: None = None):
        from torch.utils.data import DataLoader

        cpu_order = order.cpu()
        chunks = [cpu_order[i : i + batch_size].tolist() for i in range(0, len(cpu_order), batch_size)]
        # a single batch (the precision probe's) decodes here: starting workers would cost more than they save
        workers = self.workers if len(chunks) > 1 else 0
        loader = DataLoader(range(len(self.labels)), batch_sampler=chunks, num_workers=workers,
                            collate_fn=lambda rows: torch.from_numpy(self.images[np.array(rows)]),
                            pin_memory=self._device.type == "cuda")
        for chunk, images in zip(chunks, loader):
            yield torch.tensor(chunk, device=self._device), images.to(self._device, non_blocking=True)

    def eval_batches(self, batch_size: int):
        for _, x in self.batches(torch.arange(len(self.labels)), batch_size):
            yield x


def tensors_for(ds: ImageDataset, indices: np.ndarray, device) -> SplitTensors | StreamedSplit:
    labels = torch.from_numpy(ds.labels[indices]).to(device)
    if ds.is_lazy:  # too large for memory: decoded by DataLoader workers as batches are needed
        return StreamedSplit(ds.images.subset(indices), labels, device)
    images = ds.images
    if torch.device(device).type == "cpu" and isinstance(images, np.ndarray) and images.flags.writeable \
            and images.flags.c_contiguous:  # the dataset's own memory, each split a list of its rows
        return SplitTensors(torch.from_numpy(images), labels, rows=torch.from_numpy(np.asarray(indices, np.int64)))
    return SplitTensors(torch.from_numpy(np.ascontiguousarray(images[indices])).to(device), labels)
