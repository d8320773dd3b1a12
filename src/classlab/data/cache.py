"""A cache of decoded image trees, so the second run on a 60,000-JPEG zip starts in a second.

The key covers everything the pixels depend on: the tree's path, every file's name and content (a
hash of a folder's files; a zip member's CRC-32 and size, read from the central directory), the decode
options and the cache format. Sizes and modification times are not trusted: a file rewritten with its
timestamp kept must not bring back stale pixels (the split manifest's hash check relies on them). Entries are .npz files read with allow_pickle=False, written atomically; a corrupt or
unreadable entry is ignored and rebuilt. ``CLASSLAB_CACHE=off`` disables it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from ..errors import ClasslabError
from ..fileio import atomic_write_bytes
from .dataset import ImageDataset

FORMAT = 2  # 2: content-based keys


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
    try:
        with np.load(folder / f"{key}.npz", allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            official = z["official_split"].astype(object) if meta["has_split"] else None
            return ImageDataset(images=z["images"], labels=z["labels"], class_names=meta["class_names"],
                                ids=z["ids"].tolist(), name=meta["name"], source=meta["source"],
                                official_split=official, skipped=[tuple(s) for s in meta["skipped"]],
                                notes=meta["notes"], modes=meta["modes"], original_sizes=meta["original_sizes"])
    except Exception:  # a damaged entry is just a miss
        return None


def save(key: str, ds: ImageDataset) -> None:
    folder = cache_dir()
    if folder is None or ds.is_lazy:
        return
    meta = {"class_names": ds.class_names, "name": ds.name, "source": ds.source, "skipped": ds.skipped,
            "notes": ds.notes, "modes": ds.modes, "original_sizes": ds.original_sizes,
            "has_split": ds.official_split is not None}
    buf = io.BytesIO()
    split = ds.official_split.astype(str) if ds.official_split is not None else np.array([], dtype=str)
    np.savez(buf, images=ds.images, labels=ds.labels, ids=np.array(ds.ids, dtype=str), official_split=split,
             meta=np.array(json.dumps(meta)))
    try:
        atomic_write_bytes(folder / f"{key}.npz", buf.getvalue())
    except ClasslabError:
        pass  # a read-only or full cache disk must not fail the run
