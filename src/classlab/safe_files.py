"""The one place that opens a user's files: regular files only, within a byte budget.

Every file classlab reads on a user's behalf is hostile until shown otherwise: a ``.png`` that is a FIFO
(reading blocks forever) or a symlink to a device (reading never ends), a symlink loop, a zip member
that inflates to gigabytes, an encrypted or CRC-corrupt member. ``read_file`` and ``read_member`` turn
each of these into an ``UnreadableFile`` (a ValueError with a one-line reason) before any byte beyond
the budget is read; callers skip the file with a warning, or refuse in one line.
"""

from __future__ import annotations

import errno
import os
import stat
import zipfile
import zlib
from pathlib import Path

MAX_FILE_BYTES = int(os.environ.get("CLASSLAB_MAX_FILE_MB", "256")) << 20  # one image, one array file
MAX_ARCHIVE_BYTES = int(os.environ.get("CLASSLAB_MAX_ARCHIVE_MB", "16384")) << 20  # a data file, a whole dataset
# Images hardly compress (JPEG, PNG already are): a member inflating more than this is a zip bomb.
MAX_COMPRESSION_RATIO = 200
_SMALL = 1 << 20  # below this a high ratio is harmless (a blank image compresses well)


class UnreadableFile(ValueError):
    """A file that will not be read, and why (one line)."""


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_path(path: str | os.PathLike, allow_dir: bool = False) -> os.stat_result:
    """stat of a regular file (or folder, with ``allow_dir``), symlinks followed to one; anything else refused."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise UnreadableFile(f"{path} is a symlink to {os.readlink(path)}, which does not exist") from None
        raise UnreadableFile(f"{path} does not exist") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnreadableFile(f"{path} is a symlink loop") from None
        raise UnreadableFile(f"cannot read {path} ({e.strerror or e})") from None
    if stat.S_ISREG(st.st_mode) or (allow_dir and stat.S_ISDIR(st.st_mode)):
        return st
    if stat.S_ISDIR(st.st_mode):
        raise UnreadableFile(f"{path} is a folder, not a file")
    raise UnreadableFile(f"{path} is {_kind(st.st_mode)}, not a regular file")


def read_file(path: str | os.PathLike, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes."""
    path = Path(path)
    st = check_path(path)
    if st.st_size > limit:
        raise UnreadableFile(f"{path} is {st.st_size / 2**20:.0f} MiB, over the {limit >> 20} MiB limit for one file "
                             "(CLASSLAB_MAX_FILE_MB raises it)")
    try:  # O_NONBLOCK: if the file was swapped for a FIFO since the stat, opening does not hang
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise UnreadableFile(f"cannot open {path} ({e.strerror or e})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise UnreadableFile(f"{path} changed into {_kind(os.fstat(f.fileno()).st_mode)} while being read")
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise UnreadableFile(f"cannot read {path} ({e.strerror or e})") from None
    if len(data) > limit:
        raise UnreadableFile(f"{path} grew past the {limit >> 20} MiB limit while being read")
    return data


def read_json(path: str | os.PathLike, limit: int = 64 << 20):
    """A JSON file's value, or None when it is missing, not a regular file, over ``limit`` or malformed (the
    run directories' files: a damaged one is skipped by whoever lists them, never a traceback)."""
    import json

    try:
        return json.loads(read_file(path, limit).decode("utf-8"))
    except (OSError, ValueError):  # UnreadableFile and UnicodeDecodeError are ValueErrors
        return None


def read_csv(path: str | os.PathLike, limit: int = 1 << 30, errors: str = "surrogateescape") -> list[dict]:
    """A CSV file with a header as rows of strings: file names that are not UTF-8 kept as surrogates (to find
    the files again), or with ``errors="replace"`` made printable (for a page); UnreadableFile as read_file
    raises it."""
    import csv
    import io

    text = read_file(path, limit).decode("utf-8", errors)
    return list(csv.DictReader(io.StringIO(text, newline="")))


def check_member(info: zipfile.ZipInfo, limit: int = MAX_FILE_BYTES) -> None:
    """Refuse a zip member before inflating it: encrypted, too large, or compressed like a bomb."""
    if info.flag_bits & 0x1:
        raise UnreadableFile("encrypted zip member (classlab reads unencrypted archives)")
    if info.file_size > limit:
        raise UnreadableFile(f"zip member of {info.file_size / 2**20:.0f} MiB, over the {limit >> 20} MiB limit")
    if info.file_size > _SMALL and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
        raise UnreadableFile(f"zip member would inflate {info.file_size // max(info.compress_size, 1)}x "
                             f"({info.compress_size} -> {info.file_size} bytes): refused as a zip bomb")


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int = MAX_FILE_BYTES) -> bytes:
    """A zip member's bytes, never more than its declared size (a lying header is caught while inflating)."""
    check_member(info, limit)
    try:
        with archive.open(info) as f:
            data = f.read(info.file_size + 1)
    except NotImplementedError as e:
        raise UnreadableFile(f"zip member uses an unsupported compression method ({e})") from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:  # CRC mismatch, corrupt deflate stream
        raise UnreadableFile(f"corrupt zip member ({e})") from None
    except RuntimeError as e:  # "File ... is encrypted, password required"
        raise UnreadableFile(f"unreadable zip member ({e})") from None
    if len(data) > info.file_size:
        raise UnreadableFile("zip member inflates past its declared size: refused as a zip bomb")
    return data


def display(name: str) -> str:
    """A file or folder name as text that prints anywhere: bytes that are not UTF-8 (kept by Python as
    surrogates) become U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
