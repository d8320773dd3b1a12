"""Fetching official archives: URL + checksum, a progress bar, atomic writes, a clear offline error."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import ClasslabError

CHUNK = 1 << 20


def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, checksum: str) -> bool:
    """checksum is 'md5:<hex>' or 'sha256:<hex>' (the official sources publish MD5)."""
    algorithm, _, expected = checksum.partition(":")
    if algorithm.endswith("-prefix"):  # torchvision names weights files by a sha256 prefix
        return file_digest(path, algorithm[: -len("-prefix")]).startswith(expected.lower())
    return file_digest(path, algorithm) == expected.lower()


def download_file(url: str, dest: Path, checksum: str, timeout: float = 30.0, progress: bool = True) -> Path:
    """Download url to dest unless a verified copy is there. Written to a temporary file in the same
    folder, checked, then renamed: an interrupted or corrupt download never leaves a file at dest."""
    dest = Path(dest)
    if dest.is_file() and verify(dest, checksum):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                raise ClasslabError(f"cannot download {url} ({reason}); without network access, place the file at {dest} by hand") from None
            with response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress, leave=False) as bar:
                    for block in iter(lambda: response.read(CHUNK), b""):
                        out.write(block)
                        bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        if not verify(Path(tmp), checksum):
            raise ClasslabError(f"{url} arrived corrupt (expected {checksum}); nothing was saved, try again")
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest
