"""Make a dataset in the browser, as Teachable Machine does: name it, then add images class by class (files,
a folder's files, webcam snapshots). It becomes an ordinary image folder, DATA/NAME/CLASS/FILE, that every
command and form reads. Only folders made here (marked by a hidden ``.classlab-dataset.json``) are ever
written to: the user's own folders are never touched. Each upload is decoded in full with the loaders' rules
before its original bytes are kept, written atomically; a file identical to one already in the class is
skipped."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..data.trees import DATASET_MARKER, REMOVED_FOLDER
from ..errors import ClasslabError
from ..fileio import folder_lock, free_path, write_json, write_new_file
from ..safe_files import UnreadableFile, read_file
from .forms import check_dataset_name, check_names
from .images import decode_upload

MARKER = DATASET_MARKER
SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "MPO": ".jpg", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif",
            "WEBP": ".webp"}
MAX_SAMPLE_BYTES = 20 << 20  # as an upload
# one writer at a time, in this server (the lock) and across servers on one data folder (folder_lock): names
# and duplicates are decided against what is on disk
_LOCK = threading.Lock()


@dataclass
class Added:
    """What one upload to a class did."""
    dataset: str
    class_name: str
    kept: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def made_here(data_dir: Path | None) -> list[dict]:
    """The datasets made in the workbench, with their classes and image counts."""
    if data_dir is None or not data_dir.is_dir():
        return []
    out = []
    for folder in sorted(data_dir.iterdir()):
        if folder.is_dir() and not folder.is_symlink() and (folder / MARKER).is_file():
            classes = {c.name: sum(1 for f in c.iterdir() if f.is_file() and not f.name.startswith("."))
                       for c in sorted(folder.iterdir()) if c.is_dir() and not c.name.startswith(".")}
            out.append({"id": folder.name, "classes": classes, "images": sum(classes.values()),
                        "trainable": sum(1 for n in classes.values() if n) >= 2})
    return out


def class_files(data_dir: Path | None, dataset: str, class_name: str, removed: bool = False) -> list[str]:
    """The image files of a class of a dataset made here (``removed``: those moved aside), newest first; a
    one-line ClasslabError for any other dataset or class (names are matched against listings, never joined
    into a path unchecked)."""
    folder = _class_folder(data_dir, dataset, class_name, removed)
    files = [f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")] if folder.is_dir() else []
    return [f.name for f in sorted(files, key=lambda f: f.stat().st_mtime_ns, reverse=True)]


def _class_folder(data_dir: Path | None, dataset: str, class_name: str, removed: bool) -> Path:
    made = {d["id"]: d["classes"] for d in made_here(data_dir)}
    if class_name not in made.get(dataset, {}):
        raise ClasslabError(f"no class '{class_name[:80]}' in a dataset made here")
    return data_dir / dataset / REMOVED_FOLDER / class_name if removed else data_dir / dataset / class_name


def thumbnail(data_dir: Path | None, dataset: str, class_name: str, file: str, removed: bool = False,
              side: int = 96) -> bytes:
    """One image of a class (or one moved aside) as a small PNG, decoded by the loaders' rules."""
    import io

    from PIL import Image

    from ..data.images import decode

    if file not in class_files(data_dir, dataset, class_name, removed):
        raise ClasslabError(f"no image '{file[:80]}' in {dataset}/{class_name}")
    try:
        image = decode(read_file(_class_folder(data_dir, dataset, class_name, removed) / file, MAX_SAMPLE_BYTES),
                       3, None)
    except (UnreadableFile, ValueError, OSError) as e:
        raise ClasslabError(f"{file} cannot be shown ({e})") from None
    picture = Image.fromarray(image)
    picture.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


def remove_image(data_dir: Path | None, dataset: str, class_name: str, file: str) -> str:
    """Take an image out of a class by moving it to DATASET/.classlab-removed/CLASS/ (which every loader
    skips): nothing is deleted, and ``restore_image`` puts it back. Returns where it went, relative to the
    dataset."""
    return _move(data_dir, dataset, class_name, file, removed=False)


def restore_image(data_dir: Path | None, dataset: str, class_name: str, file: str) -> str:
    """Put an image moved aside back into its class (under a free name)."""
    return _move(data_dir, dataset, class_name, file, removed=True)


def _move(data_dir: Path | None, dataset: str, class_name: str, file: str, removed: bool) -> str:
    if file not in class_files(data_dir, dataset, class_name, removed):  # no data folder, no such image: refused
        raise ClasslabError(f"no image '{file[:80]}' in {dataset}/{class_name}")
    with _LOCK, folder_lock(data_dir):
        if file not in class_files(data_dir, dataset, class_name, removed):  # again: another writer may have moved it
            raise ClasslabError(f"no image '{file[:80]}' in {dataset}/{class_name}")
        source = _class_folder(data_dir, dataset, class_name, removed)
        target_folder = _class_folder(data_dir, dataset, class_name, not removed)
        try:
            target_folder.mkdir(parents=True, exist_ok=True)
            target = free_path(target_folder, _safe_stem(file), Path(file).suffix)
            (source / file).replace(target)  # under the folder lock: no other writer takes the name meanwhile
        except OSError as e:
            raise ClasslabError(f"cannot move {file} ({e.strerror or e}); it is where it was") from None
    return target.relative_to(data_dir / dataset).as_posix()


def sample_strip(data_dir: Path | None, dataset: str, class_name: str, count: int = 8, side: int = 48) -> bytes:
    """A PNG strip of the class's latest images (Teachable Machine shows each class's samples). Only a class of
    a dataset made here is read, its files through the loaders' checks; one that cannot be read is left out."""
    import io

    import numpy as np
    from PIL import Image

    from ..data.images import decode
    folder = _class_folder(data_dir, dataset, class_name, False)  # a class of a dataset made here, or refused
    tiles = []
    for path in [folder / name for name in class_files(data_dir, dataset, class_name)[: count * 2]]:
        try:
            tiles.append(decode(read_file(path, MAX_SAMPLE_BYTES), 3, (side, side)))
        except (UnreadableFile, ValueError, OSError):
            continue
        if len(tiles) == count:
            break
    strip = np.full((side, max(1, len(tiles)) * (side + 2), 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        strip[:, i * (side + 2): i * (side + 2) + side] = tile
    out = io.BytesIO()
    Image.fromarray(strip).save(out, format="PNG")
    return out.getvalue()


def add_images(data_dir: Path | None, dataset: str, class_name: str, uploads: list[tuple[str, bytes]]) -> Added:
    """Keep each readable upload in DATA/DATASET/CLASS; report the rest by name. Nothing is written when no
    upload is readable."""
    dataset, class_name = dataset.strip(), class_name.strip()
    target = check_names(data_dir, dataset, class_name)
    added = Added(dataset, class_name)
    readable = []
    for name, data in uploads:
        try:
            suffix = _suffix(name, data)
        except ClasslabError as e:
            added.errors.append(str(e))
            continue
        readable.append((name, data, suffix))
    if not readable:
        return added
    with _LOCK, _writing(data_dir):
        check_names(data_dir, dataset, class_name)  # again, now that no other upload can be writing
        new_class = not target.exists()
        try:
            if not target.parent.exists():
                _make_dataset_folder(target.parent)
            target.mkdir(exist_ok=True)
        except (OSError, ClasslabError) as e:  # (write_json words its own OSError: a full disk, a read-only folder)
            reason = e.strerror if isinstance(e, OSError) else "its files cannot be written"
            raise ClasslabError(f"cannot write to the data folder ({reason}); nothing was added") from None
        _write(target, readable, added)
        if new_class and not added.kept:  # an empty class folder would read as a class with no images
            shutil.rmtree(target, ignore_errors=True)
    return added


@contextmanager
def _writing(data_dir: Path):
    """The data folder, made if missing, locked against other servers' writers while the caller writes."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ClasslabError(f"cannot write to the data folder ({e.strerror or e}); nothing was added") from None
    with folder_lock(data_dir):
        yield


def _make_dataset_folder(folder: Path) -> None:
    """The dataset's folder with its marker inside, made whole under a hidden name and renamed into place: a
    reader (another server's first name check) sees no folder or a marked one, never an unmarked one that
    would read as the user's own."""
    part = folder.parent / f".{folder.name}.part"
    shutil.rmtree(part, ignore_errors=True)  # left by a server killed while making it
    try:
        part.mkdir()
        write_json(part / MARKER, {"made_by": "classlab workbench", "created": time.time()})
        os.rename(part, folder)
    finally:
        shutil.rmtree(part, ignore_errors=True)


def _write(target: Path, readable: list[tuple[str, bytes, str]], added: Added) -> None:
    """Each upload written atomically under a free name, unless the class holds the same bytes already. A
    failed write (a full disk) stops there: what was written stays, the rest is named as not added."""
    present = set()
    for f in target.iterdir():
        try:
            present.add(hashlib.sha256(read_file(f, MAX_SAMPLE_BYTES)).hexdigest())
        except UnreadableFile:  # not a regular file, or one too big to be an upload: not a duplicate of one
            continue
    for i, (name, data, suffix) in enumerate(readable):
        digest = hashlib.sha256(data).hexdigest()
        if digest in present:
            added.duplicates.append(name)
            continue
        try:
            path = write_new_file(target, _safe_stem(name), suffix, data)
        except OSError as e:  # a full disk: what was written stays, the rest is named
            added.errors += [f"{n}: not written ({e.strerror or e})" for n, _, _ in readable[i:]]
            return
        present.add(digest)
        added.kept.append(path.name)


def _suffix(name: str, data: bytes) -> str:
    """The file suffix the upload is kept under, after decoding it in full (the loaders' limits and rules)."""
    from ..data.images import probe

    decode_upload(data, name, 3, (8, 8))
    kind = probe(data).format
    if kind not in SUFFIXES:
        raise ClasslabError(f"{name}: {kind} images are not kept in datasets (PNG, JPEG, GIF, BMP, TIFF, WebP)")
    return SUFFIXES[kind]


def _safe_stem(name: str) -> str:
    """The upload's own name made safe (letters, digits, '-', '_'); write_new_file numbers it where it is taken."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", Path(name.replace("\\", "/")).stem).strip("_")[:80] or "image"


def add_zip(data_dir: Path | None, dataset: str, stream) -> dict:
    """Keep an uploaded .zip of class folders (CLASS/IMAGE, or train/ and test/ of them) as DATA/DATASET.zip,
    which every command reads in place. It is checked first (a zip, at least two classes with images) and never
    replaces anything; a refused or failed upload leaves nothing behind."""
    from collections import Counter

    from ..data.folders import scan_tree
    from ..data.trees import ZipTree

    dataset = dataset.strip()  # as add_images: a stray space typed around the name is not part of it
    check_dataset_name(data_dir, dataset)
    target = data_dir / f"{dataset}.zip"
    with _LOCK, _writing(data_dir):
        if any(p.exists() or p.is_symlink() for p in (target, data_dir / dataset)):
            raise ClasslabError(f"{dataset} already exists in the data folder; an upload never replaces a dataset: "
                                "choose another name")
        part = data_dir / f".{dataset}.zip.part"  # hidden: no form lists it while it is written
        try:
            with open(part, "wb") as out:
                shutil.copyfileobj(stream, out, 1 << 20)
            tree = ZipTree(part)
            try:
                scan = scan_tree(tree)
            finally:
                tree.close()
            counts = Counter(e.class_name for e in scan.entries)
            if len(counts) < 2:
                raise ClasslabError(f"the .zip holds images of {len(counts)} class folder(s); a dataset needs two or "
                                    "more: CLASS/IMAGE, or train/CLASS/IMAGE and test/CLASS/IMAGE")
            part.replace(target)
        except OSError as e:
            raise ClasslabError(f"cannot write to the data folder ({e.strerror or e}); nothing was added") from None
        except ClasslabError as e:
            raise ClasslabError(str(e).replace(str(part), "the upload")) from None
        finally:
            part.unlink(missing_ok=True)
    return {"dataset": target.name, "classes": dict(sorted(counts.items())), "images": sum(counts.values()),
            "layout": scan.layout}
