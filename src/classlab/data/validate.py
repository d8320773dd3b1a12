"""One validation step for every array source (.npz, CSV, IDX, CIFAR): images and labels either convert
correctly, with a note that says what was done, or are refused in one line. Never a silent cast.

Images become uint8 (N, H, W, C) or (N, D, H, W, C): float pixels in [0, 1] are scaled to 0..255, float
pixels in [0, 255] rounded, 16-bit ones scaled, booleans made black/white; NaN, infinity, negative values
or values past the dtype's range are refused. A last axis of 4 or 2 is RGBA or gray+alpha (composited over
black, as image files are), not a volume. Labels become class indices 0..K-1: integer-valued floats are
accepted with a note, fractional or NaN ones refused; integers that skip values (or strings) are mapped to
0..K-1 with their values as class names; at most MAX_CLASSES classes.
"""

from __future__ import annotations

import numpy as np

from ..errors import ClasslabError

MAX_CLASSES = 10_000


def _range(a: np.ndarray) -> str:
    return f"{a.min()}..{a.max()}" if a.size else "empty"


def pixels(images: np.ndarray, where: str, notes: list[str]) -> np.ndarray:
    """uint8 pixels of any numeric array (see the module docstring), appending what was done to ``notes``."""
    a = np.asarray(images)
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        notes.append(f"{where}: boolean pixels made 0 and 255")
        return a.astype(np.uint8) * 255
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ClasslabError(f"{where} holds {a.dtype} values; images must be numbers (uint8 0..255, or floats "
                            "in [0, 1] or [0, 255])")
    if a.size == 0:
        return a.astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        finite = np.isfinite(a)
        if not finite.all():
            raise ClasslabError(f"{where} holds {int((~finite).sum())} NaN or infinite pixel values; clean or "
                                "drop those images first")
        low, high = float(a.min()), float(a.max())
        if low < 0:
            raise ClasslabError(f"{where} holds negative pixel values ({low:g}..{high:g}): already normalised? "
                                "give raw pixels, floats in [0, 1] or [0, 255]")
        if high <= 1.0:
            notes.append(f"{where}: float pixels in [0, 1] scaled to 0..255")
            # in float64: float32 arithmetic rounds 0.9f * 255 (229.49999...) up to 229.5, then to 230
            return np.rint(a.astype(np.float64) * 255).astype(np.uint8)
        if high <= 255.0:
            notes.append(f"{where}: float pixels in [0, 255] rounded to uint8")
            return np.rint(a).astype(np.uint8)
        raise ClasslabError(f"{where} holds float pixels up to {high:g}; expected [0, 1] or [0, 255]")
    low, high = int(a.min()), int(a.max())
    if a.dtype == np.uint16 and high > 255:  # 16-bit images: the full range, as for 16-bit files
        notes.append(f"{where}: 16-bit pixels scaled to 0..255")
        return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if low < 0 or high > 255:
        raise ClasslabError(f"{where} holds pixel values {low}..{high}; expected 0..255")
    return a.astype(np.uint8)


def image_shape(images: np.ndarray, where: str, notes: list[str]) -> np.ndarray:
    """(N,H,W) -> (N,H,W,1); (N,H,W,4|2) RGBA / gray+alpha composited over black; (N,D,H,W) volumes
    get their channel axis; (N,H,W,1|3) and (N,D,H,W,1|3) pass. Anything else is refused."""
    if images.ndim == 3:
        return images[..., None]
    if images.ndim == 4 and images.shape[-1] in (2, 4):
        notes.append(f"{where}: {images.shape[-1]}-channel pixels read as "
                     f"{'RGBA' if images.shape[-1] == 4 else 'gray + alpha'}, composited over black")
        alpha = images[..., -1:].astype(np.uint16)
        return ((images[..., :-1].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)
    if images.ndim == 4 and images.shape[-1] not in (1, 3):
        return images[..., None]  # (N, D, H, W): a volume
    if images.ndim in (4, 5) and images.shape[-1] in (1, 3) and min(images.shape[1:]) >= 1:
        return images
    raise ClasslabError(f"{where} has shape {images.shape}; expected (N, H, W), (N, H, W, C) with C in 1, 3, 4, "
                        "or volumes (N, D, H, W[, C])")


def labels(values: np.ndarray, where: str, notes: list[str]) -> np.ndarray:
    """One label per image as given (ints, integer-valued floats, bools or strings), checked; see module."""
    y = np.asarray(values)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ClasslabError(f"{where} has shape {y.shape}; classlab needs one label per image "
                            + ("(multi-label data is not supported)" if y.ndim == 2 else ""))
    if y.dtype == bool:
        return y.astype(np.int64)
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all():
            raise ClasslabError(f"{where} holds NaN or infinite labels")
        if not np.array_equal(y, np.round(y)):
            bad = y[y != np.round(y)][0]
            raise ClasslabError(f"{where} holds fractional labels (e.g. {bad:g}); labels must be whole class numbers")
        if len(y) and np.abs(y).max() >= 2**53:  # beyond this a float is no exact whole number (nor an int64)
            raise ClasslabError(f"{where} holds a label of {np.abs(y).max():g}; labels must be class numbers")
        notes.append(f"{where}: float labels read as whole class numbers")
        return y.astype(np.int64)
    if np.issubdtype(y.dtype, np.integer) or y.dtype.kind in "US":
        return y
    raise ClasslabError(f"{where} holds {y.dtype} labels; give integers or strings")


def class_indices(parts_labels: list[np.ndarray], where: str, notes: list[str],
                  class_names: list[str] | None = None) -> tuple[list[np.ndarray], list[str]]:
    """Labels of all splits as indices 0..K-1 and the K class names. With ``class_names`` (a format that
    names its classes), labels must already be indices into them."""
    every = np.concatenate(parts_labels) if parts_labels else np.array([], dtype=np.int64)
    values = np.unique(every)
    if len(values) > MAX_CLASSES:
        raise ClasslabError(f"{where} has {len(values):,} distinct labels, more than {MAX_CLASSES:,} classes: "
                            "is a column of ids or values being read as labels?")
    if class_names is not None:
        if every.size and (every.min() < 0 or every.max() >= len(class_names)):
            raise ClasslabError(f"{where}: labels must lie in 0..{len(class_names) - 1}, found {_range(every)}")
        return [np.asarray(p, dtype=np.int64) for p in parts_labels], list(class_names)
    contiguous = values.dtype.kind in "iu" and (not len(values) or (values[0] == 0 and values[-1] == len(values) - 1))
    if not contiguous:
        shown = ", ".join(map(str, values[:5])) + (", ..." if len(values) > 5 else "")
        notes.append(f"{where}: {len(values)} label values ({shown}) mapped to class indices 0..{len(values) - 1}, "
                     "named by their values")
    return [np.searchsorted(values, p).astype(np.int64) for p in parts_labels], [str(v) for v in values]


def check_counts(images: np.ndarray, y: np.ndarray, where: str) -> None:
    if len(images) != len(y):
        raise ClasslabError(f"{where}: {len(images)} images but {len(y)} labels; they must pair up one to one")
