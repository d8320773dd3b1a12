"""A cache of decoded image trees, so the second run on a 60,000-JPEG zip starts in a second.

The key covers everything the pixels depend on: the tree's path, every file's name and content (a
hash of a folder's files; a zip member's CRC-32 and size, read from the central directory), the decode
options and the cache format. Sizes and modification times are not trusted: a file rewritten with its
timestamp kept must not bring back stale pixels (the split manifest's hash check relies on them). Entries are .npz files read with allow_pickle=False, written atomically; a corrupt or
unreadable entry is ignored and rebuilt. ``CLASSLAB_CACHE=off`` disables it. The cache keeps itself under
$CLASSLAB_CACHE_MAX_SIZE (default 20G) by evicting the least recently used entries; ``classlab cache`` shows,
prunes and clears it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ClasslabError, warn
from ..fileio import atomic_write_bytes
from .dataset import ImageDataset

FORMAT = 4  # 2: content-based keys; 3: photos above the model size centre-cropped (dataset.crop); 4: its note reworded


def cache_dir() -> Path | None:
    setting = os.environ.get("CLASSLAB_CACHE", "")
    if setting.lower() in ("off", "0", "false", "no"):
        return None
    if setting:
        return Path(setting)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "classlab" / "decoded"


def tree_key(tree, rels: list[str], options: dict) -> str:
    """``tree`` is a trees.DirTree or ZipTree (``fingerprint(rel)``: what a file's content hashes to)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([FORMAT, os.path.realpath(tree.path), options]).encode())
    for rel in rels:
        h.update(f"{rel}\0{tree.fingerprint(rel)}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def load(key: str) -> ImageDataset | None:
    folder = cache_dir()
    if folder is None or not (folder / f"{key}.npz").is_file():
        return None
    touch(folder / f"{key}.npz")
    try:
        with np.load(folder / f"{key}.npz", allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            official = z["official_split"].astype(object) if meta["has_split"] else None
            return ImageDataset(images=z["images"], labels=z["labels"], class_names=meta["class_names"],
                                ids=z["ids"].tolist(), name=meta["name"], source=meta["source"],
                                official_split=official, skipped=[tuple(s) for s in meta["skipped"]],
                                notes=meta["notes"], modes=meta["modes"], original_sizes=meta["original_sizes"],
                                crop=meta.get("crop"))
    except Exception:  # a damaged entry is just a miss
        return None


def save(key: str, ds: ImageDataset) -> None:
    folder = cache_dir()
    if folder is None or ds.is_lazy:
        return
    meta = {"class_names": ds.class_names, "name": ds.name, "source": ds.source, "skipped": ds.skipped,
            "notes": ds.notes, "modes": ds.modes, "original_sizes": ds.original_sizes,
            "has_split": ds.official_split is not None, "crop": ds.crop}
    buf = io.BytesIO()
    split = ds.official_split.astype(str) if ds.official_split is not None else np.array([], dtype=str)
    np.savez(buf, images=ds.images, labels=ds.labels, ids=np.array(ds.ids, dtype=str), official_split=split,
             meta=np.array(json.dumps(meta)))
    store(folder / f"{key}.npz", buf.getvalue())


# -- size, last use and pruning ---------------------------------------------------------------------
# Entries are named by their key (32 hex digits); only such names, and the temporary files an interrupted
# atomic write leaves (".<name>.<random>.part"), are ever counted or removed, so pointing CLASSLAB_CACHE at a
# folder that holds anything else cannot cost a file of it.

MAX_SIZE_ENV = "CLASSLAB_CACHE_MAX_SIZE"
DEFAULT_MAX_SIZE = 20 * 2**30  # ccache-style cap: a new entry that takes the cache past it evicts the oldest
_WARNED: set[str] = set()
STALE_PART_SECONDS = 3600  # a .part file younger than this may be a write in progress in another process
_ENTRY = re.compile(r"[0-9a-f]{32}\.(npz|npy)")
_PART = re.compile(r"\.[0-9a-f]{32}\.(npz|npy)\..+\.part")
_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "m": 2**20, "mb": 2**20, "g": 2**30, "gb": 2**30,
          "t": 2**40, "tb": 2**40}


@dataclass(frozen=True)
class Entry:
    path: Path
    kind: str  # "decoded" (an image tree's pixels), "features" (a backbone's features) or "partial"
    size: int
    last_used: float  # seconds since the epoch: written, or last read (see touch)


def parse_size(text: str) -> int:
    """Bytes from '500M', '2G', '1.5GB', '0' (binary units)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise ClasslabError(f"cannot read the size '{text}'; write it like 500M, 2G or 1.5GB")
    return int(float(m.group(1)) * _UNITS[unit])


def max_size() -> int | None:
    """The cap from $CLASSLAB_CACHE_MAX_SIZE (default 20G; 'none' for no cap)."""
    setting = os.environ.get(MAX_SIZE_ENV, "").strip()
    if setting.lower() in ("none", "off", "unlimited"):
        return None
    if not setting:
        return DEFAULT_MAX_SIZE
    try:
        return parse_size(setting)
    except ClasslabError as e:
        raise ClasslabError(f"{MAX_SIZE_ENV}: {e}") from None


def entries(folder: Path | None = None) -> list[Entry]:
    """The cache's own files, oldest use first."""
    folder = folder or cache_dir()
    found = []
    for where, kind in ((folder, "decoded"), (folder / "features", "features")) if folder else ():
        try:
            names = os.listdir(where)
        except OSError:
            continue
        for name in names:
            own = "partial" if _PART.fullmatch(name) else kind if _ENTRY.fullmatch(name) else None
            try:
                st = os.lstat(where / name)
            except OSError:
                continue  # removed by another process meanwhile
            if own and stat.S_ISREG(st.st_mode):
                found.append(Entry(where / name, own, st.st_size, st.st_mtime))
    return sorted(found, key=lambda e: e.last_used)


def touch(path: Path) -> None:
    """Mark an entry as just used (its modification time: access times are often not kept)."""
    try:
        os.utime(path)
    except OSError:
        pass  # a read-only cache still serves reads


def prune(max_bytes: int | None = None, older_than: float | None = None, keep: Path | None = None,
          folder: Path | None = None) -> tuple[int, int]:
    """Remove interrupted writes, entries unused for ``older_than`` seconds, then the least recently used
    until the rest fit in ``max_bytes``. ``keep`` (the entry just written) stays. (files removed, bytes freed)."""
    now = time.time()
    listed = entries(folder)
    total = sum(e.size for e in listed)
    removed = freed = 0
    for e in listed:
        stale = e.kind == "partial" and now - e.last_used > STALE_PART_SECONDS
        old = e.kind != "partial" and older_than is not None and now - e.last_used > older_than
        over = e.kind != "partial" and max_bytes is not None and total - freed > max_bytes
        if e.path != keep and (stale or old or over):
            try:
                e.path.unlink()
            except OSError:
                continue
            removed, freed = removed + 1, freed + e.size
    return removed, freed


def store(path: Path, data: bytes) -> None:
    """Write an entry atomically, then keep the cache under its cap. A read-only or full cache disk must not
    fail the run, so a failed write is silent: the next run computes the entry again."""
    try:
        atomic_write_bytes(path, data)
    except ClasslabError:
        return
    try:
        cap = max_size()
    except ClasslabError as e:  # a bad setting must not fail the run that wrote the entry
        if str(e) not in _WARNED:  # once per setting, not once per entry
            _WARNED.add(str(e))
            warn(f"{e}; the cache keeps the default cap of {DEFAULT_MAX_SIZE >> 30}G")
        cap = DEFAULT_MAX_SIZE
    if cap is not None:
        prune(max_bytes=cap, keep=path)
