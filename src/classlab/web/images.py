"""Images for the workbench: a run's dataset loaded once (the split the run recorded), any of its images by
id as a PNG (never by path), the test images of a confusion-matrix cell sorted by loss, and uploads
decoded with the loaders' safety rules."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ClasslabError
from .recent import Recent

MAX_UPLOAD_BYTES = 20 << 20
MAX_UPLOAD_PIXELS = 40_000_000
THUMB_SIDE = 96
THUMBS_KEPT = 4000  # PNGs of a few KB each


def png_bytes(image: np.ndarray, side: int = THUMB_SIDE) -> bytes:
    """uint8 (H, W, C) (or a volume: its middle slice) as a PNG, upscaled with nearest-neighbour to about
    ``side`` pixels (digits are 8x8: blurring them would hide what the model saw)."""
    a = np.asarray(image)
    if a.ndim == 4:
        a = a[a.shape[0] // 2]
    a = a[..., 0] if a.shape[-1] == 1 else a
    img = Image.fromarray(np.ascontiguousarray(a))
    scale = max(1, side // max(img.size))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=False)
    return out.getvalue()


class DatasetCache:
    """The datasets of the last few runs asked for, loaded with the run's saved options (its split manifest
    pinned), with an id -> row index. Loading is serialised: two pages of one run load it once."""

    def __init__(self, size: int = 3):
        self._datasets, self._thumbs = Recent(size), Recent(THUMBS_KEPT)

    def get(self, run_dir: Path):
        return self._datasets.get_or_make(str(run_dir), lambda: _load(run_dir), serialise=True)

    def thumbnail(self, run_dir: Path, item: str, side: int) -> bytes | None:
        """The PNG of one image of the run's data (kept: a page of thumbnails is asked for again and again),
        keyed on the run's manifest mtime so a rewritten run is never shown stale."""
        try:
            stamp = max((run_dir / n).stat().st_mtime_ns for n in ("config.json", "split.csv") if (run_dir / n).exists())
        except (OSError, ValueError):
            stamp = 0

        def make():
            found = self.image(run_dir, item)
            return None if found is None else png_bytes(found[0], side)
        return self._thumbs.get_or_make((str(run_dir), stamp, item, side), make)

    def image(self, run_dir: Path, item: str) -> tuple[np.ndarray, str] | None:
        """(pixels, class name) of the image with id ``item`` in the run's data, or None."""
        ds, _, index = self.get(run_dir)
        row = index.get(item)
        if row is None:
            return None
        return np.asarray(ds.images[row]), ds.class_names[ds.labels[row]]


def cell_members(run_dir: Path, true: int, pred: int, limit: int = 48) -> dict:
    """Test images of one confusion-matrix cell, worst (highest loss) first, from probabilities.npz."""
    from .gallery import test_outputs

    out = test_outputs(run_dir)
    ids, y, proba, names = out["ids"], out["y"], out["proba"], out["names"]
    k = len(names)
    if not (0 <= true < k and 0 <= pred < k):
        raise ClasslabError(f"no cell ({true}, {pred}) in a {k}-class confusion matrix")
    predicted = proba.argmax(1)
    members = np.flatnonzero((y == true) & (predicted == pred))
    loss = -np.log(np.clip(proba[members, true], 1e-12, 1))
    order = members[np.argsort(-loss, kind="stable")]
    items = [{"id": str(ids[i]), "loss": float(-np.log(max(proba[i, true], 1e-12))),
              "probability": float(proba[i, pred])} for i in order[:limit]]
    return {"true": str(names[true]), "predicted": str(names[pred]), "count": int(len(members)), "items": items}


def preview(data: bytes, side: int = 192) -> np.ndarray:
    """An upload as the user sees it (RGB, its own aspect ratio, at most ``side`` pixels), for the card."""
    from ..data.images import decode

    image = Image.fromarray(np.asarray(decode(data, 3, None)))
    image.thumbnail((side, side), Image.Resampling.BILINEAR)
    return np.asarray(image)


def decode_upload(data: bytes, name: str, channels: int, size: tuple[int, int], crop: float | None = None
                  ) -> np.ndarray:
    """An uploaded file as the run's input (uint8, size x channels), or a one-line ClasslabError: too big,
    too many pixels, not an image. Decoded by the loaders' own ``decode`` (EXIF rotation, alpha, 16-bit)."""
    from ..data.images import decode, probe

    if len(data) > MAX_UPLOAD_BYTES:
        raise ClasslabError(f"{name}: larger than the {MAX_UPLOAD_BYTES >> 20} MB upload limit")
    if not data:
        raise ClasslabError(f"{name}: the file is empty")
    info = probe(data)
    if info.error:
        raise ClasslabError(f"{name}: not a readable image ({info.error})")
    height, width = info.size
    if height * width > MAX_UPLOAD_PIXELS:
        raise ClasslabError(f"{name}: {width}x{height} pixels is over the {MAX_UPLOAD_PIXELS:,}-pixel limit")
    try:
        return np.array(decode(data, channels, size, crop))  # writable: torch refuses read-only arrays quietly
    except (ValueError, OSError) as e:
        raise ClasslabError(f"{name}: not a readable image ({e})") from None


def _load(run_dir: Path):
    """(dataset, split or None, id -> row) of a run's data, as the run read it."""
    from ..data.options import load_and_split, saved_options

    if (run_dir / "split.csv").is_file():
        ds, split = load_and_split(saved_options(run_dir))
    else:  # a check run: the data as the doctor read it, no split
        from ..data.registry import load_dataset
        from ..safe_files import read_json

        options = (read_json(run_dir / "config.json", 4 << 20) or {}).get("options") or {}
        if not isinstance(options.get("data"), str):
            raise ClasslabError(f"{run_dir.name} records no dataset to show images of")
        ds, split = load_dataset(options["data"], data_dir=options.get("data_dir")), None
    return ds, split, {item: i for i, item in enumerate(ds.ids)}

