"""Image-folder trees (``trees.py``: on disk, or a .zip read in place): scanning, probing and decoding.

Layouts: ``ROOT/<class>/<image>`` or pre-split ``ROOT/{train,val,test}/<class>/<image>``. The scan
(``scan_tree`` + ``probe_entries``) is shared with the dataset doctor, so ``classlab check`` and every
other command judge a file the same way; nothing here ever modifies or deletes a file.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ClasslabError, warn
from ..progress import bar as progress_bar
from ..safe_files import UnreadableFile, display
from . import cache
from .dataset import ImageDataset, LazyImages
from .images import CENTRE_CROP, IMAGE_EXTENSIONS, ImageInfo, decode, probe
from .trees import DATASET_MARKER, REMOVED_FOLDER, extension, is_hidden, open_tree

SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "test": "test", "testing": "test"}
DEFAULT_MAX_MEMORY = 4 << 30  # decode eagerly below this many bytes of pixels, lazily above
_WORKERS = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
_PARALLEL_FROM = 4000  # below this many files, starting worker processes costs more than it saves
_CHUNK = 1000


@dataclass
class Entry:
    rel: str
    size: int
    class_name: str
    split: str | None


@dataclass
class TreeScan:
    tree: object
    layout: str  # "classes" or "presplit"
    entries: list[Entry]
    class_names: list[str]
    hidden: list[str] = field(default_factory=list)
    non_images: list[str] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)  # files outside any class folder
    empty_classes: list[str] = field(default_factory=list)  # "split/class" or "class"
    infos: list[ImageInfo] = field(default_factory=list)


def _workbench_own(rel: str) -> bool:
    """A hidden entry the workbench keeps in a dataset it made (not one of the user's stray hidden files)."""
    return rel == DATASET_MARKER or rel.split("/")[0] == REMOVED_FOLDER


def scan_tree(tree) -> TreeScan:
    files, dirs = tree.listing()
    top_dirs = {d for d in dirs if "/" not in d and not is_hidden(d)}
    splits = {d: SPLIT_ALIASES[d.lower()] for d in top_dirs if d.lower() in SPLIT_ALIASES}
    presplit = any(v == "train" for v in splits.values()) and any(
        r.count("/") >= 2 and r.split("/")[0] in splits for r, _ in files)
    if presplit:
        _refuse_mixed_layout(tree, splits, files)
    hidden = sorted({r for r, _ in files if is_hidden(r) and not _workbench_own(r)}
                    | {d for d in dirs if is_hidden(d) and not _workbench_own(d)})
    entries, non_images, stray = [], [], []
    for rel, size in files:
        if is_hidden(rel):
            continue
        parts = rel.split("/")
        if presplit:
            if parts[0] not in splits or len(parts) < 3:
                stray.append(rel)
                continue
            split, cls = splits[parts[0]], parts[1]
        else:
            if len(parts) < 2:
                stray.append(rel)
                continue
            split, cls = None, parts[0]
        if extension(rel) not in IMAGE_EXTENSIONS:
            non_images.append(rel)
            continue
        entries.append(Entry(rel, size, cls, split))
    if presplit:
        class_dirs = {(splits[d.split("/")[0]], d.split("/")[1]) for d in dirs
                      if d.count("/") == 1 and d.split("/")[0] in splits and not is_hidden(d)}
        with_images = {(e.split, e.class_name) for e in entries}
        empty = sorted(f"{s}/{c}" for s, c in class_dirs - with_images)
        class_names = sorted({c for _, c in class_dirs})
    else:
        class_dirs = top_dirs
        empty = sorted(class_dirs - {e.class_name for e in entries})
        class_names = sorted(class_dirs)
    return TreeScan(tree, "presplit" if presplit else "classes", entries, class_names,
                    hidden, non_images, stray, empty)


def _refuse_mixed_layout(tree, splits: dict, files) -> None:
    """Split folders (train/, val/, test/) beside folders of images: either a class is named like a split,
    or class folders sit outside the splits. Guessing would silently drop classes, so say how to settle it."""
    classes = sorted({r.split("/")[0] for r, _ in files if r.count("/") == 1 and not is_hidden(r)
                      and r.split("/")[0] not in splits and extension(r) in IMAGE_EXTENSIONS})
    if classes:
        named = ", ".join(f"{s}/" for s in sorted(splits))
        raise ClasslabError(
            f"{tree.display} mixes split folders ({named}) with class folders of images ({', '.join(classes[:4])}"
            f"{', ...' if len(classes) > 4 else ''}): for a pre-split dataset move every class folder into "
            f"{named.split(', ')[0]}; if {named.split(', ')[0]} is a class, rename it (e.g. train_class/)")


# --- Work over many files, in worker processes when there are enough of them ---------------------
# Decoding small images is Python-bound (about 100 us each for a 32x32 JPEG), so threads do not
# help; processes do. Each worker opens the tree itself: a zip's file handle must not be shared.

_TREE = None


def _init_worker(path: str) -> None:
    global _TREE
    _TREE = open_tree(Path(path))


def map_files(tree, worker, items: list, desc: str, while_waiting=None) -> list:
    """[worker(chunk) for chunk of items], concatenated; with a progress bar and an ETA. ``while_waiting`` is
    called once every worker process has been started (forked) and the parent only waits for results: the
    moment to do other work in a thread without a fork meeting it halfway."""
    global _TREE
    chunks = [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]
    bar = progress_bar(total=len(items), desc=desc, unit="image", enabled=len(items) > 2000)
    out = []
    with bar:
        if len(items) < _PARALLEL_FROM or _WORKERS < 2:
            _TREE = tree
            for c in chunks:
                out.extend(worker(c))
                bar.update(len(c))
        else:
            ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            with ProcessPoolExecutor(_WORKERS, mp_context=ctx, initializer=_init_worker,
                                     initargs=(str(tree.path),)) as pool:
                results = pool.map(worker, chunks)  # submits every chunk: with fork, all workers start now
                if while_waiting is not None:
                    while_waiting()
                for c, result in zip(chunks, results):
                    out.extend(result)
                    bar.update(len(c))
    return out


def _read_entry(rel: str) -> bytes | ImageInfo:
    """A worker's read of one file: its bytes, or an ImageInfo saying why it cannot be read."""
    try:
        return _TREE.read(rel)
    except UnreadableFile as e:
        return ImageInfo(error=str(e).replace(str(_TREE.path) + "/", ""))
    except OSError as e:
        return ImageInfo(error=f"cannot read file ({e})")


def _probe_chunk(rels: list[str]) -> list[ImageInfo]:
    return [data if isinstance(data, ImageInfo) else probe(data) for data in map(_read_entry, rels)]


def inspect_chunk(rels: list[str]) -> list[tuple]:
    """The doctor's one pass over the files: each read once -> (ImageInfo, decode error or None, BLAKE2b digest
    of the pixels or None, 32x32 grayscale thumbnail or None). Digests and thumbnails are made here, in the
    worker processes, so the decoded pixels never travel back to the parent."""
    import hashlib

    from .near_duplicates import grayscale_32

    out = []
    for rel in rels:
        data = _read_entry(rel)
        info = data if isinstance(data, ImageInfo) else probe(data)
        if info.error:
            out.append((info, None, None, None))
            continue
        try:
            pixels = decode(data, info.channels, None)
        except (ValueError, OSError) as e:  # truncation only shows when the pixels are read
            out.append((info, str(e), None, None))
            continue
        digest = hashlib.blake2b(pixels.tobytes() + str(pixels.shape).encode(), digest_size=12).hexdigest()
        out.append((info, None, digest, grayscale_32(pixels[None])[0]))
    return out


def probe_entries(scan: TreeScan) -> list[ImageInfo]:
    """Header of every entry: format, mode, size, or why it cannot be read."""
    scan.infos = map_files(scan.tree, _probe_chunk, [e.rel for e in scan.entries], "Reading headers")
    return scan.infos


def decode_chunk(jobs: list[tuple[str, int, tuple[int, int] | None, float | None]]) -> list:
    """Each job (rel, channels, size, crop) -> uint8 array, or the error message as a string."""
    out = []
    for rel, channels, size, crop in jobs:
        try:
            out.append(decode(_TREE.read(rel), channels, size, crop))
        except (ValueError, OSError) as e:
            out.append(str(e))
    return out


def _sizes_text(sizes: Counter) -> str:
    """'512x384 (2,400), 384x512 (127)': the commonest (height x width) sizes with their counts."""
    shown = ", ".join(f"{h}x{w} ({n:,})" for (h, w), n in sizes.most_common(5))
    return shown + (f" and {len(sizes) - 5} more sizes" if len(sizes) > 5 else "")


def _most_common(counter: Counter, prefer):
    return max(counter.items(), key=lambda kv: (kv[1], prefer(kv[0])))[0]


def _warn_skipped(skipped: list[tuple[str, str]], where: str) -> None:
    for rel, reason in skipped[:20]:
        warn(f"skipped {where}/{rel}: {reason}")
    if len(skipped) > 20:
        warn(f"... and {len(skipped) - 20} more skipped files; 'classlab check {where}' lists them all")


def load_folder(path: Path, image_size=None, channels=None, max_memory=DEFAULT_MAX_MEMORY,
                max_size: int | None = None, crop: float | None = None) -> ImageDataset:
    """``max_size``: when ``image_size`` is not given, the side beyond which images are decoded at
    ``max_size`` x ``max_size`` instead of the folder's most common size (the model's input: decoding a
    512 x 384 photo for a 224 px backbone would hold 4 x the pixels it ever uses), keeping the centre crop
    pretrained weights are scored with. ``crop``: with ``image_size``, how files are fit to it (images.decode)."""
    tree = open_tree(path)
    scan = scan_tree(tree)
    if not scan.entries:
        raise ClasslabError(f"{path} holds no images in class folders; expected {path}/<class>/<image>.jpg "
                            f"or {path}/train/<class>/<image>.jpg (see 'classlab check {path}')")
    for rel, reason in tree.unreadable:
        warn(f"{path}/{rel}: {reason}; its images are left out")
    key = cache.tree_key(tree, [e.rel for e in scan.entries], {"image_size": image_size, "channels": channels,
                                                                "max_size": max_size, "crop": crop}) \
        if cache.cache_dir() is not None else None
    ds = cache.load(key) if key else None
    if ds is not None and ds.images.nbytes <= max_memory:  # a smaller budget asks for lazy decoding
        for note in ds.notes:
            warn(note)
        _warn_skipped(ds.skipped, str(path))
        return ds
    ds = _decode_tree(path, scan, image_size, channels, max_memory, max_size, crop)
    if key:
        cache.save(key, ds)
    return ds


def _decode_tree(path: Path, scan: TreeScan, image_size, channels, max_memory, max_size=None, crop=None
                 ) -> ImageDataset:
    tree = scan.tree
    infos = probe_entries(scan)
    skipped = [(e.rel, i.error) for e, i in zip(scan.entries, infos) if i.error]
    good = [(e, i) for e, i in zip(scan.entries, infos) if not i.error]
    notes = []
    crop = crop if image_size is not None else None
    if scan.non_images:
        notes.append(f"ignored {len(scan.non_images)} non-image files in {path} (e.g. {scan.non_images[0]})")
    sizes = Counter(i.size for _, i in good)
    modes = Counter(i.mode for _, i in good)
    if image_size is None and good:
        image_size = _most_common(sizes, prefer=lambda s: s[0] * s[1])
        if max_size is not None and max(image_size) > max_size:
            outer = round(max_size / CENTRE_CROP)
            notes.append(f"images are {_sizes_text(sizes)}: decoded once at {max_size}x{max_size}, the model's input "
                         f"size (shorter side resized to {outer}, the centre kept: the standard evaluation crop), "
                         "instead of the most common size (set --image-size to choose)")
            image_size, crop = (max_size, max_size), CENTRE_CROP
        elif len(sizes) > 1:
            notes.append(f"images have {len(sizes)} sizes ({_sizes_text(sizes)}); all resized to the most common, "
                         f"{image_size[0]}x{image_size[1]} (set --image-size to choose)")
    if channels is None and good:
        channels = _most_common(Counter(i.channels for _, i in good), prefer=lambda c: c)
        if len({i.channels for _, i in good}) > 1:
            notes.append(f"colour modes are mixed ({dict(modes)}); all converted to "
                         f"{'RGB' if channels == 3 else 'grayscale'}, the majority (set --channels to choose)")
    for note in notes:
        warn(note)
    h, w = image_size if good else (0, 0)
    nbytes = len(good) * h * w * (channels or 3)
    if nbytes > max_memory:
        images = _lazy(tree, good, (h, w), channels, path, crop)
        notes.append(f"{nbytes / 2**30:.1f} GiB of pixels exceeds the memory budget; images are decoded lazily")
    else:
        images, good, failed = _eager(tree, good, (h, w), channels, crop)
        skipped += failed
    _warn_skipped(skipped, str(path))
    used = Counter(e.class_name for e, _ in good)
    dropped = [c for c in scan.class_names if used[c] == 0]
    for c in dropped:
        notes.append(f"class folder '{c}' in {path} has no readable images; it is left out")
        warn(notes[-1])
    class_names = [c for c in scan.class_names if used[c] > 0]
    if len(class_names) < 2:
        raise ClasslabError(f"{path} has {len(class_names)} class with images ({', '.join(class_names) or 'none'}); "
                            f"classification needs at least two class folders, each with images")
    index = {c: k for k, c in enumerate(class_names)}
    official = np.array([e.split for e, _ in good], dtype=object) if scan.layout == "presplit" else None
    return ImageDataset(
        images=images, labels=np.array([index[e.class_name] for e, _ in good], dtype=np.int64),
        class_names=[display(c) for c in class_names], ids=[e.rel for e, _ in good], name=display(path.stem),
        source=display(str(path)),
        official_split=official, skipped=skipped, notes=notes, modes=dict(Counter(i.mode for _, i in good)),
        original_sizes={f"{s[0]}x{s[1]}": n for s, n in Counter(i.size for _, i in good).most_common()}, crop=crop)


def _eager(tree, good, size, channels, crop=None):
    results = map_files(tree, decode_chunk, [(e.rel, channels, size, crop) for e, _ in good], "Decoding images")
    failures = [(e.rel, r) for (e, _), r in zip(good, results) if isinstance(r, str)]
    keep = [k for k, r in enumerate(results) if not isinstance(r, str)]
    out = np.empty((len(keep), *size, channels), dtype=np.uint8)
    for j, k in enumerate(keep):
        out[j] = results[k]
    return out, [good[k] for k in keep], failures


def _lazy(tree, good, size, channels, path, crop=None):
    rels = [e.rel for e, _ in good]

    def decode_one(k):
        try:
            return decode(tree.read(rels[k]), channels, size, crop)
        except (ValueError, OSError) as e:
            warn(f"{path}/{rels[k]}: {e}; using a blank image (run 'classlab check {path}')")
            return np.zeros((*size, channels), dtype=np.uint8)
    return LazyImages(decode_one, range(len(good)), (*size, channels))
