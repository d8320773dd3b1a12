"""Atomic file writes: a file is either the old one or the complete new one, never half written."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _complete_temporary(folder: Path, prefix: str, data: bytes) -> str:
    """A hidden temporary file in ``folder`` holding ``data`` on disk (fsynced), with the permissions an
    ordinary write would give (0666 less the umask, not mkstemp's 0600); removed again if writing fails."""
    fd, tmp = tempfile.mkstemp(prefix=f".{prefix}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temporary file beside ``path``, fsync, rename. A full disk or a read-only folder is a
    one-line ClasslabError that names the file, and leaves the old file (if any) as it was."""
    from .errors import ClasslabError

    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _complete_temporary(path.parent, path.name, data)
        os.replace(tmp, path)
    except OSError as e:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise ClasslabError(f"cannot write {path} ({e.strerror or e}); free some space or choose a writable "
                            "folder (--runs-dir, --output)") from None
    except BaseException:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    # surrogateescape: file names that are not valid UTF-8 are written back as the bytes they were
    return atomic_write_bytes(path, text.encode("utf-8", "surrogateescape"))


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default, allow_nan=True) + "\n")


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def numbered_paths(folder: str | os.PathLike, stem: str, suffix: str = "") -> Iterator[Path]:
    """``folder/stem+suffix``, then ``stem-2``, ``stem-3``, ...: the names a new file or folder tries in turn, so
    that it never replaces one already there (a run folder made in the same second, a second upload of
    ``photo.jpg``, two predictions CSVs in one second)."""
    folder = Path(folder)
    yield folder / f"{stem}{suffix}"
    n = 2
    while True:
        yield folder / f"{stem}-{n}{suffix}"
        n += 1


def free_path(folder: str | os.PathLike, stem: str, suffix: str = "") -> Path:
    """The first of ``numbered_paths`` that nothing (not even a dangling link) occupies now. For a folder
    that must be created atomically, try ``mkdir(exist_ok=False)`` over ``numbered_paths`` instead."""
    return next(p for p in numbered_paths(folder, stem, suffix) if not os.path.lexists(p))


def write_new_file(folder: str | os.PathLike, stem: str, suffix: str, data: bytes) -> Path:
    """Write ``data`` complete (temporary file, fsync) and give it the first free name of ``numbered_paths``
    by a hard link, which fails instead of replacing: another process writing the same name at the same
    moment gets the next number, and nothing is ever overwritten. A failure (a full disk) raises its OSError
    for the caller to word, and leaves nothing behind."""
    folder = Path(folder)
    tmp = _complete_temporary(folder, stem, data)
    try:
        for path in numbered_paths(folder, stem, suffix):
            try:
                os.link(tmp, path)
                return path
            except FileExistsError:
                continue
    finally:
        Path(tmp).unlink(missing_ok=True)
    raise AssertionError("numbered_paths never ends")


@contextmanager
def folder_lock(folder: str | os.PathLike):
    """Hold an exclusive lock on ``folder`` (flock on the folder itself: no lock file to leave behind) while
    names and duplicates are decided against what is in it; other processes (a second `classlab serve` on
    the same data folder) wait. Where flock is missing (Windows) only the caller's own lock applies."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
