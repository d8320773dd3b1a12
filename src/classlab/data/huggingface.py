"""Hugging Face datasets, read offline from the files the hub and the ``datasets`` library write:

- an ``imagefolder`` tree with ``metadata.csv`` or ``metadata.jsonl`` (a ``file_name`` column and a label
  column: ``label``, or the one other column), at the root or in each split folder;
- Parquet files in the hub's image layout (``image: {bytes, path}``, ``label``), split by file name
  (``train-00000-of-00002.parquet``, ``test-*.parquet``, ``validation-*``), anywhere under a folder;
- a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (Arrow stream files, with
  ``dataset_info.json`` naming the ClassLabel's classes).

ClassLabel names are kept (from ``dataset_info.json`` or the Parquet schema's ``huggingface`` metadata).
Parquet and Arrow need ``pyarrow`` (``pip install 'classlab[hf]'``); nothing is ever fetched from the hub.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import ClasslabError
from ..safe_files import MAX_FILE_BYTES, read_file, read_json
from .dataset import ImageDataset
from .images import decode, probe

SPLITS = {"train": "train", "training": "train", "validation": "val", "valid": "val", "val": "val", "dev": "val",
          "test": "test", "testing": "test"}
METADATA = ("metadata.csv", "metadata.jsonl")
SPLIT_FILE = re.compile(r"^(?P<split>[A-Za-z]+)[-_.]")


def detect(path: Path) -> str | None:
    """'save_to_disk', 'parquet', 'imagefolder' or None for what ``path`` holds."""
    if path.is_file():
        return "parquet" if path.suffix.lower() == ".parquet" else None
    if not path.is_dir():
        return None
    if (path / "dataset_dict.json").is_file() or ((path / "dataset_info.json").is_file() and any(path.glob("*.arrow"))):
        return "save_to_disk"
    if any(path.glob("*.parquet")) or any(path.glob("*/*.parquet")):
        return "parquet"
    if any((path / m).is_file() for m in METADATA) or any((d / m).is_file() for d in path.iterdir() if d.is_dir()
                                                           for m in METADATA):
        return "imagefolder"
    return None


def load(path: Path, kind: str, image_size=None, channels=None, max_memory: int = 4 << 30) -> ImageDataset:
    rows, names = {"save_to_disk": _save_to_disk_rows, "parquet": _parquet_rows,
                   "imagefolder": _imagefolder_rows}[kind](path)
    if not rows:
        raise ClasslabError(f"{path} holds no labelled images ({kind} layout)")
    return _decode(rows, names, path, kind, image_size, channels, max_memory)


def _pyarrow():
    try:
        import pyarrow  # noqa: F401
        import pyarrow.ipc  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ClasslabError("reading Parquet or save_to_disk datasets needs pyarrow: pip install 'classlab[hf]'") from None
    return pyarrow


def _split_of(name: str) -> str | None:
    match = SPLIT_FILE.match(name)
    return SPLITS.get(match.group("split").lower()) if match else SPLITS.get(name.lower())


def _class_names(features: dict | None, column: str) -> list[str] | None:
    feature = (features or {}).get(column)
    if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" and isinstance(feature.get("names"), list):
        return [str(n) for n in feature["names"]]
    return None


def _table_rows(table, features: dict | None, split: str | None, where: str, names: list[str] | None, prefix: str):
    """(id, image bytes, label, split) of an Arrow table in the hub's image layout; ids are ``prefix/row``."""
    columns = table.column_names
    image_col = next((c for c in columns if (features or {}).get(c, {}).get("_type") == "Image"), None) or \
        next((c for c in ("image", "img", "pixel_values") if c in columns), None)
    label_col = next((c for c in columns if _class_names(features, c)), None) or \
        next((c for c in ("label", "labels", "fine_label", "class") if c in columns), None)
    if image_col is None or label_col is None:
        raise ClasslabError(f"{where}: expected an image column and a label column, found {', '.join(columns)}")
    out = []
    for i, (image, label) in enumerate(zip(table.column(image_col).to_pylist(), table.column(label_col).to_pylist())):
        data = image.get("bytes") if isinstance(image, dict) else image if isinstance(image, bytes) else None
        out.append((f"{prefix}/{i:06d}", data, label, split))
    return out, names or _class_names(features, label_col)


def _parquet_rows(path: Path):
    pa = _pyarrow()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*.parquet") if not p.name.startswith("."))
    rows, names = [], None
    for f in files:
        try:
            parquet = pa.parquet.ParquetFile(f)
            meta = parquet.schema_arrow.metadata or {}
            features = (json.loads(meta.get(b"huggingface", b"{}")).get("info") or {}).get("features")
            table = parquet.read()
        except (OSError, ValueError, pa.ArrowException) as e:
            raise ClasslabError(f"{f} is not a readable Parquet file ({str(e).splitlines()[0][:200]})") from None
        found, file_names = _table_rows(table, features, _split_of(f.name), str(f), names, f.stem)
        rows += found
        names = names or file_names
    return rows, names


def _save_to_disk_rows(path: Path):
    pa = _pyarrow()
    splits = [path]
    if (path / "dataset_dict.json").is_file():
        info = read_json(path / "dataset_dict.json", 16 << 20)
        splits = [path / s for s in info.get("splits", [])] if isinstance(info, dict) else []
    rows, names = [], None
    for folder in splits:
        features = (read_json(folder / "dataset_info.json", 16 << 20) or {}).get("features")
        state = read_json(folder / "state.json", 16 << 20) or {}
        files = [folder / d["filename"] for d in state.get("_data_files", []) if isinstance(d, dict) and "/" not in
                 str(d.get("filename", "/"))] or sorted(folder.glob("*.arrow"))
        split = SPLITS.get(folder.name.lower()) if folder != path else None
        for f in files:
            try:
                with pa.memory_map(str(f)) as source:
                    table = pa.ipc.open_stream(source).read_all()
            except (OSError, ValueError, pa.ArrowException) as e:
                raise ClasslabError(f"{f} is not a readable Arrow file ({str(e).splitlines()[0][:200]})") from None
            found, file_names = _table_rows(table, features, split, str(f), names, f"{folder.name}/{f.stem}")
            rows += found
            names = names or file_names
    return rows, names


def _imagefolder_rows(path: Path):
    """imagefolder: metadata files at the root and in each split folder; file names relative to them."""
    rows = []
    metadata = [m for m in (path / name for name in METADATA) if m.is_file()]
    metadata += [d / name for d in sorted(path.iterdir()) if d.is_dir() for name in METADATA if (d / name).is_file()]
    for meta in metadata:
        records = _records(meta)
        label_col = "label" if records and "label" in records[0] else \
            next((k for k in (records[0] if records else {}) if k != "file_name"), None)
        if label_col is None:
            raise ClasslabError(f"{meta} has no label column (expected file_name and label)")
        split = SPLITS.get(meta.parent.name.lower()) if meta.parent != path else None
        for r in records:
            rel = str(r.get("file_name") or "")
            target = (meta.parent / rel).resolve()
            if not rel or not target.is_relative_to(path.resolve()):
                raise ClasslabError(f"{meta}: file_name '{rel[:80]}' is not a file inside {path}")
            item = target.relative_to(path.resolve()).as_posix()
            rows.append((item, target, r.get(label_col), split or _split_of(item.split("/")[0])))
    return rows, None


def _records(meta: Path) -> list[dict]:
    text = read_file(meta, 256 << 20).decode("utf-8-sig")
    if meta.suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames or "file_name" not in reader.fieldnames:
            raise ClasslabError(f"{meta} needs a file_name column (Hugging Face imagefolder metadata)")
        return list(reader)
    records = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                raise ClasslabError(f"{meta}, line {n}: not a JSON object") from None
    if records and not all(isinstance(r, dict) and "file_name" in r for r in records):
        raise ClasslabError(f"{meta}: every line needs a file_name (Hugging Face imagefolder metadata)")
    return records


def _decode(rows, names, path: Path, kind: str, image_size, channels, max_memory) -> ImageDataset:
    """Decode every image at one size and colour mode (the most common, unless given), label by ClassLabel
    names (or the sorted distinct labels), keep the splits the files named."""
    blobs, skipped = [], []
    for item, data, label, split in rows:
        try:
            blob = read_file(data, MAX_FILE_BYTES) if isinstance(data, Path) else data
            if not isinstance(blob, bytes) or not blob:
                raise ValueError("no image bytes")
            blobs.append((item, blob, label, split))
        except (OSError, ValueError) as e:
            skipped.append((item, str(e)))
    infos = [probe(b) for _, b, _, _ in blobs]
    good = [(row, info) for row, info in zip(blobs, infos) if not info.error]
    skipped += [(row[0], info.error) for row, info in zip(blobs, infos) if info.error]
    if not good:
        raise ClasslabError(f"none of the images in {path} could be read ({skipped[0][1] if skipped else 'empty'})")
    size = tuple(image_size) if image_size else Counter(info.size for _, info in good).most_common(1)[0][0]
    chans = channels or Counter(info.channels for _, info in good).most_common(1)[0][0]
    if len(good) * size[0] * size[1] * chans > max_memory:
        raise ClasslabError(f"{len(good):,} images of {size[0]}x{size[1]} need more than the memory budget; "
                            "choose a smaller --image-size or raise --max-memory")
    images = np.stack([decode(blob, chans, size) for (_, blob, _, _), _ in good])
    labels = [label for (_, _, label, _), _ in good]
    if names is None:
        distinct = sorted({str(v) for v in labels}, key=lambda v: (not v.lstrip("-").isdigit(), int(v) if v.lstrip("-").isdigit() else 0, v))
        names, index = distinct, {v: i for i, v in enumerate(distinct)}
        y = np.array([index[str(v)] for v in labels])
    else:
        bad = [v for v in labels if not (isinstance(v, int) and 0 <= v < len(names))]
        if bad:
            raise ClasslabError(f"{path}: label {bad[0]!r} is not a class index of {len(names)} ClassLabel names")
        y = np.array(labels)
    splits = [split for (_, _, _, split), _ in good]
    official = np.array([s or "train" for s in splits], dtype=object) if any(splits) else None
    ds = ImageDataset(images, y, names, [item for (item, _, _, _), _ in good], path.name, f"{path} ({kind})",
                      official_split=official, skipped=skipped)
    if skipped:
        ds.notes.append(f"{len(skipped)} unreadable images skipped")
    return ds
