"""The two kinds of image-folder tree classlab reads in place: a folder on disk (``DirTree``) and a
.zip (``ZipTree``). Both list their files with sizes and folders, read a file's bytes safely
(``safe_files``: no FIFOs, devices or oversized files) and fingerprint a file's content for the decode cache.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from ..errors import ClasslabError
from ..safe_files import MAX_FILE_BYTES, UnreadableFile, check_path, read_file, read_member

# The hidden file that marks a dataset made in the workbench (web/collect.py): classlab's own, so the doctor
# does not list it among the stray hidden files.
DATASET_MARKER = ".classlab-dataset.json"
# ...and the hidden folder where images removed in the workbench are kept (DATASET/.classlab-removed/CLASS/FILE)
REMOVED_FOLDER = ".classlab-removed"


def is_hidden(rel: str) -> bool:
    # Plain string work: these run once per file, and pathlib costs ~10 us a call on 60,000 files.
    return any(p.startswith(".") or p in ("__MACOSX", "__pycache__") for p in rel.split("/"))


def extension(rel: str) -> str:
    return os.path.splitext(rel)[1].lower()


class DirTree:
    """A folder on disk. Symlinked folders are followed (a loop is cut where it closes); folders that
    cannot be read are reported in ``unreadable``; files are read by ``safe_files.read_file``."""

    def __init__(self, root: Path):
        self.root, self.display, self.path = root, str(root), root
        self.unreadable: list[tuple[str, str]] = []

    def listing(self) -> tuple[list[tuple[str, int]], set[str]]:
        files, dirs, seen = [], set(), set()

        def failed(error: OSError):
            rel = Path(error.filename).relative_to(self.root).as_posix() if error.filename else "?"
            self.unreadable.append((rel, f"cannot read folder ({error.strerror or error})"))
        for dirpath, dirnames, filenames in os.walk(self.root, onerror=failed, followlinks=True):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            real = os.path.realpath(dirpath)
            if real in seen:  # a symlink back into the tree: walked already
                self.unreadable.append((rel_dir, "symlink loop (this folder is already part of the tree)"))
                dirnames[:] = []
                continue
            seen.add(real)
            dirnames.sort()
            for d in dirnames:
                dirs.add(d if rel_dir == "." else f"{rel_dir}/{d}")
            for name in sorted(filenames):
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                try:
                    files.append((rel, check_path(Path(dirpath) / name).st_size))
                except UnreadableFile:  # dangling symlink, FIFO, device: probing says why, and skips it
                    files.append((rel, -1))
        return files, dirs

    def read(self, rel: str) -> bytes:
        return read_file(self.root / rel, MAX_FILE_BYTES)

    def fingerprint(self, rel: str) -> str:
        """What the file's pixels depend on: its content (a rewrite that keeps size and time changes it)."""
        import hashlib

        try:
            return hashlib.blake2b(self.read(rel), digest_size=16).hexdigest()
        except UnreadableFile as e:
            return f"unreadable: {e}"


class ZipTree:
    """A zip read in place. A single wrapping folder (``cifar10/train/...``) is looked through."""

    def __init__(self, path: Path):
        self.display, self.path, self._pid = str(path), path, os.getpid()
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            raise ClasslabError(f"cannot open {path} as a zip ({e})") from None
        self._infos = {i.filename: i for i in self._zip.infolist()}
        names = list(self._infos)
        tops = {n.split("/", 1)[0] for n in names if not is_hidden(n)}
        nested = len(tops) == 1 and any(n.rstrip("/").count("/") >= 2 for n in names)
        self._prefix = (tops.pop() + "/") if nested else ""
        self.unreadable: list[tuple[str, str]] = []

    def listing(self) -> tuple[list[tuple[str, int]], set[str]]:
        files, dirs = [], set()
        for info in self._zip.infolist():
            if not info.filename.startswith(self._prefix):
                continue
            rel = info.filename[len(self._prefix):].rstrip("/")
            if not rel:
                continue
            parts = rel.split("/")
            dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
            if info.is_dir():
                dirs.add(rel)
            else:
                files.append((rel, info.file_size))
        return sorted(files), dirs

    def read(self, rel: str) -> bytes:
        if self._pid != os.getpid():  # a forked worker: a shared file offset would interleave reads
            self._zip, self._pid = zipfile.ZipFile(self.path), os.getpid()
        return read_member(self._zip, self._infos[self._prefix + rel], MAX_FILE_BYTES)

    def close(self) -> None:
        self._zip.close()

    def fingerprint(self, rel: str) -> str:
        """The member's CRC-32 and size from the central directory: content-based, and free to read."""
        info = self._infos[self._prefix + rel]
        return f"{info.CRC:08x}:{info.file_size}"


def open_tree(path: Path):
    return ZipTree(path) if path.suffix.lower() == ".zip" else DirTree(path)
