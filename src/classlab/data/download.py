"""Fetching official archives: URL + checksum, a progress bar, atomic writes, a clear offline error."""

from __future__ import annotations

import hashlib
import http.client
import os
import time
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


def download_file(url: str, dest: Path, checksum: str, timeout: float = 30.0, progress: bool = True,
                  deadline: float | None = None) -> Path:
    """Download url to dest unless a verified copy is there. Written to a temporary file in the same
    folder, checked, then renamed: an interrupted, stalled or corrupt download never leaves a file at dest,
    nor its .part. ``timeout`` bounds each wait for data; ``deadline`` (seconds, default
    $CLASSLAB_DOWNLOAD_DEADLINE or one hour) bounds the whole download, so a server that trickles a byte
    at a time cannot hold it forever."""
    dest = Path(dest)
    if dest.is_file() and verify(dest, checksum):
        return dest
    if deadline is None:
        deadline = float(os.environ.get("CLASSLAB_DOWNLOAD_DEADLINE", "3600"))
    give_up = time.monotonic() + deadline
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)
            except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
                reason = getattr(e, "reason", None) or e or type(e).__name__
                raise ClasslabError(f"cannot download {url} ({reason}); without network access, place the file at {dest} by hand") from None
            with response:
                _copy(response, out, url, dest, give_up, deadline, progress)
            out.flush()
            os.fsync(out.fileno())
        if not verify(Path(tmp), checksum):
            raise ClasslabError(f"{url} arrived corrupt (expected {checksum}); nothing was saved, try again")
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def _copy(response, out, url: str, dest: Path, give_up: float, deadline: float, progress: bool) -> None:
    """The body into ``out``, a block as it arrives (read1: a slow server cannot make one read wait for a
    whole block), within the deadline."""
    length = response.headers.get("Content-Length")
    total = int(length) if length and length.strip().isdigit() else None  # a non-numeric length: unknown
    received = 0
    with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress, leave=False) as bar:
        while True:
            if time.monotonic() > give_up:
                raise ClasslabError(f"downloading {url} took longer than {deadline:.0f} s ({received:,} bytes "
                                    "arrived); nothing was saved: try again later, or a mirror (--mirror)")
            try:
                block = response.read1(CHUNK)
            except (OSError, http.client.HTTPException) as e:  # a stall past the timeout, a dropped connection
                raise ClasslabError(f"downloading {url} failed after {received:,} bytes "
                                    f"({e or type(e).__name__}); nothing was saved, try again") from None
            if not block:
                break
            received += len(block)
            if total is not None and received > total:
                raise ClasslabError(f"{url} sent more than the {total:,} bytes it announced; nothing was saved")
            out.write(block)
            bar.update(len(block))
    if total is not None and received < total:
        raise ClasslabError(f"{url} ended after {received:,} of {total:,} bytes; nothing was saved, try again")
