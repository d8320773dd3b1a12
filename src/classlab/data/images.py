"""Decoding one image file into a uint8 array, the same way everywhere.

Every loader and the dataset doctor go through ``probe`` (header only, cheap) and ``decode``
(full decode, EXIF orientation, colour conversion, resize), so a file is judged identically by
``classlab check`` and by the commands that skip it.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".png": "PNG", ".bmp": "BMP", ".gif": "GIF",
    ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP", ".ppm": "PPM", ".pgm": "PPM", ".pbm": "PPM",
}
GRAY_MODES = {"1", "L", "LA", "La", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"}
# Pillow refuses anything over twice this many pixels as a decompression bomb; we keep that guard
# and turn the refusal into a warned skip. Between 1x and 2x Pillow only warns: we decode it.
LARGE_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS


@dataclass
class ImageInfo:
    """What the header says, or why the file cannot be read."""

    format: str | None = None
    mode: str | None = None
    size: tuple[int, int] | None = None  # (height, width) after EXIF orientation
    error: str | None = None

    @property
    def channels(self) -> int | None:
        if self.mode is None:
            return None
        return 1 if self.mode in GRAY_MODES else 3


def _exif_rotated(img: Image.Image) -> bool:
    try:
        return img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    except Exception:  # a broken EXIF block must not make the image unreadable
        return False


def probe(data: bytes) -> ImageInfo:
    """Read only the header: format, mode and size, or an error string."""
    if len(data) == 0:
        return ImageInfo(error="empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        w, h = img.size
        if _exif_rotated(img):
            w, h = h, w
        return ImageInfo(format=img.format, mode=img.mode, size=(h, w))
    except UnidentifiedImageError:
        return ImageInfo(error="not an image (Pillow cannot identify the format)")
    except Image.DecompressionBombError as e:
        return ImageInfo(error=f"too large to decode safely ({e})")
    except Exception as e:  # corrupt headers raise many different exceptions inside Pillow
        kind = "truncated image" if "truncat" in str(e).lower() else "corrupt image header"
        return ImageInfo(error=f"{kind} ({type(e).__name__}: {e})")


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit grayscale to 8-bit 'L' by scaling the full range, not by clipping."""
    a = np.asarray(img)
    if img.mode.startswith("I;16") or (img.mode == "I" and a.size and a.max() > 255):
        a = (a.astype(np.uint32) * 255 + 32767) // 65535
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), mode="L")


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite transparent images over black, so hidden colour under alpha=0 never leaks in."""
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB" if img.mode != "LA" else "L")
    return img


def convert(img: Image.Image, channels: int) -> Image.Image:
    """Any Pillow mode to 'L' (channels=1) or 'RGB' (channels=3)."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _to_8bit(img)
    elif img.mode == "1":
        img = img.convert("L")
    img = _flatten_alpha(img)
    return img.convert("L" if channels == 1 else "RGB")


# The centre crop of torchvision's and timm's ImageNet evaluation transforms (Resize(256), CenterCrop(224)):
# what pretrained weights were scored with, and what photos decoded at a model's input size get (decode's crop).
CENTRE_CROP = 0.875


def crop_box(height: int, width: int, size: tuple[int, int], crop: float) -> tuple[float, float, float, float]:
    """The centred (left, top, right, bottom) region of a height x width image that a resize of its shorter
    side to ``size / crop`` followed by a centre crop of ``size`` keeps (torchvision's Resize + CenterCrop)."""
    scale = max(size[0] / crop / height, size[1] / crop / width)  # covers the crop's enlarged box
    keep_h, keep_w = min(height, size[0] / scale), min(width, size[1] / scale)
    top, left = (height - keep_h) / 2, (width - keep_w) / 2
    return left, top, left + keep_w, top + keep_h


def decode(data: bytes, channels: int, size: tuple[int, int] | None, crop: float | None = None) -> np.ndarray:
    """Full decode to a uint8 (H, W, C) array. Raises ValueError with a readable reason.

    ``size`` resizes the whole image to it (aspect ratio not kept); with ``crop`` (a fraction such as
    CENTRE_CROP) the shorter side is resized to ``size / crop`` and the centre ``size`` kept instead, in one
    resampling, as the ImageNet weights' own evaluation transforms do."""
    if len(data) == 0:
        raise ValueError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if size is not None and img.format == "JPEG":
                # Decode big JPEGs at a reduced DCT scale: a 10000 px photo costs what a 1250 px one does.
                side = int(np.ceil(max(size) / (crop or 1)))
                img.draft(img.mode, (side, side))
            img.load()
            img = ImageOps.exif_transpose(img)
            img = convert(img, channels)
            if size is not None and crop is not None:
                box = crop_box(img.height, img.width, size, crop)
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR, box=box)
            elif size is not None and (img.height, img.width) != tuple(size):
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    except UnidentifiedImageError:
        raise ValueError("not an image (Pillow cannot identify the format)") from None
    except Image.DecompressionBombError as e:
        raise ValueError(f"too large to decode safely ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        msg = str(e)
        if "truncated" in msg:
            msg = f"truncated image ({msg})"
        else:
            msg = f"corrupt image ({type(e).__name__}: {msg})"
        raise ValueError(msg) from None
    a = np.asarray(img, dtype=np.uint8)
    return a[:, :, None] if a.ndim == 2 else a
