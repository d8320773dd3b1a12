"""The in-memory (or lazily decoded) dataset that every loader returns."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

SPLIT_NAMES = ("train", "val", "test")


class LazyImages:
    """A read-only (N, H, W, C) uint8 array whose rows are decoded on access.

    Used for image folders too large for memory. ``decode_one(i)`` returns row ``i``; a file that
    fails to decode at access time comes back as zeros after a warning (the dataset doctor, run
    up front, lists such files).
    """

    def __init__(self, decode_one: Callable[[int], np.ndarray], rows: Sequence[int], shape: tuple[int, ...]):
        self._decode_one = decode_one
        self._rows = np.asarray(rows, dtype=np.int64)
        self.shape = (len(self._rows), *shape)
        self.dtype = np.dtype(np.uint8)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def subset(self, indices) -> "LazyImages":
        return LazyImages(self._decode_one, self._rows[np.asarray(indices)], self.shape[1:])

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self._decode_one(int(self._rows[index]))
        rows = self._rows[index]
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        for j, r in enumerate(rows):
            out[j] = self._decode_one(int(r))
        return out

    def __array__(self, dtype=None, copy=None):
        a = self[np.arange(len(self))]
        return a if dtype is None else a.astype(dtype)


def iter_blocks(images, block: int = 4096):
    """Yield (start, uint8 block) over an array or LazyImages, so nothing needs it all at once."""
    for start in range(0, len(images), block):
        yield start, np.asarray(images[start : start + block])


def channel_stats(images) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of pixel values scaled to [0, 1], in float64, block by block."""
    c = images.shape[-1]
    total, sq, n = np.zeros(c), np.zeros(c), 0
    for _, block in iter_blocks(images):
        flat = block.reshape(-1, c).astype(np.float64) / 255.0
        total += flat.sum(0)
        sq += (flat * flat).sum(0)
        n += len(flat)
    mean = total / n
    return mean.tolist(), np.sqrt(np.maximum(sq / n - mean**2, 0)).tolist()


@dataclass
class ImageDataset:
    """Images (uint8, N x H x W x C, or N x D x H x W x C for volumes), labels and class names.

    ``official_split`` holds 'train' / 'val' / 'test' per item where the source defines one.
    ``ids`` name each item stably (a relative path, or ``train/00042``) for split manifests.
    """

    images: np.ndarray | LazyImages
    labels: np.ndarray
    class_names: list[str]
    ids: list[str]
    name: str
    source: str = ""
    official_split: np.ndarray | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (item, reason)
    notes: list[str] = field(default_factory=list)
    modes: dict[str, int] = field(default_factory=dict)  # original colour modes seen, for explore/check
    original_sizes: dict[str, int] = field(default_factory=dict)  # "HxW" -> count, before resizing
    # How images were fit to their stored size: None resized whole; a fraction (images.CENTRE_CROP) resized
    # the shorter side to size / crop and kept the centre. The preprocessing contract carries it to predict.
    crop: float | None = None
    _hashes: list[str] | None = field(default=None, repr=False)

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.labels) != len(self.images) or len(self.ids) != len(self.images):
            raise ValueError("images, labels and ids must have the same length")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_volume(self) -> bool:
        return len(self.images.shape) == 5

    @property
    def item_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    @property
    def channels(self) -> int:
        return int(self.images.shape[-1])

    @property
    def is_lazy(self) -> bool:
        return isinstance(self.images, LazyImages)

    def class_counts(self, indices=None) -> np.ndarray:
        labels = self.labels if indices is None else self.labels[indices]
        return np.bincount(labels, minlength=self.num_classes)

    def content_hashes(self) -> list[str]:
        """BLAKE2b of each image's pixels (as the model sees them), for leakage and manifests."""
        if self._hashes is None:
            hashes = []
            for _, block in iter_blocks(self.images):
                hashes.extend(hashlib.blake2b(row.tobytes(), digest_size=12).hexdigest() for row in block)
            self._hashes = hashes
        return self._hashes

    def rows(self, indices):
        """The images at ``indices`` without copying them: rows read as they are used (a frozen-feature pass
        over 2,047 photos at 224 px would otherwise hold a 310 MB copy beside the dataset)."""
        if self.is_lazy:
            return self.images.subset(indices)
        return LazyImages(self.images.__getitem__, indices, self.images.shape[1:])

    def subset(self, indices) -> "ImageDataset":
        indices = np.asarray(indices, dtype=np.int64)
        images = self.images.subset(indices) if self.is_lazy else self.images[indices]
        return replace(
            self,
            images=images,
            labels=self.labels[indices],
            ids=[self.ids[i] for i in indices],
            official_split=None if self.official_split is None else self.official_split[indices],
            _hashes=None if self._hashes is None else [self._hashes[i] for i in indices],
        )

    def pixels(self, indices=None) -> np.ndarray:
        """The images (all, or those at ``indices``) as one uint8 array, decoded if they are lazy."""
        images = self.images if indices is None else (
            self.images.subset(indices) if self.is_lazy else self.images[np.asarray(indices)])
        return np.asarray(images)

    def flat(self, indices=None) -> np.ndarray:
        """(N, D) uint8 rows of raw pixels: the decks' (32, 32, 3) -> 3072 for k-NN."""
        images = self.pixels(indices)
        return images.reshape(len(images), -1)

    def describe(self) -> str:
        shape = "x".join(str(s) for s in self.item_shape)
        return f"{self.name}: {len(self)} images of {shape}, {self.num_classes} classes"
