"""The datasets the workbench offers in its forms: the embedded digits, the named datasets found in the data
folder, and the image folders and .zip files inside it (one level of nesting). A dataset id is a name or a
path relative to the data folder, resolved inside it; anything else is refused."""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException

from .guard import RUN_FILE

NAMED_FILES = ("mnist", "fashion-mnist")


def available(data_dir: Path | None) -> list[dict]:
    out = [{"id": "digits", "label": "digits (scikit-learn's 8x8 digits, embedded)"}]
    if data_dir is None or not data_dir.is_dir():
        return out
    for name in NAMED_FILES:
        if (data_dir / name).is_dir():
            out.append({"id": name, "label": f"{name} (IDX files in {data_dir / name})"})
    for child in sorted(data_dir.iterdir()):
        if child.name.startswith(".") or child.name in NAMED_FILES:
            continue
        candidates = [child] + (sorted(child.iterdir()) if child.is_dir() else [])
        for path in candidates:
            if path.suffix.lower() == ".zip" and path.is_file():
                out.append({"id": path.relative_to(data_dir).as_posix(), "label": f"{path.relative_to(data_dir)} (zip)"})
            elif path == child and path.is_dir() and any(p.is_dir() and not p.name.startswith(".")
                                                         for p in path.iterdir()):
                out.append({"id": path.relative_to(data_dir).as_posix(), "label": f"{path.name}/ (image folder)"})
    return out


def resolve(data_dir: Path | None, dataset_id: str) -> list[str]:
    """The command-line words that name the dataset: ``[spec]`` or ``[spec, --data-dir, DIR]``."""
    if dataset_id == "digits":
        return ["digits"]
    if data_dir is None:
        raise HTTPException(400, "no data folder is served (start classlab serve with --data-dir)")
    if dataset_id in NAMED_FILES:
        return [dataset_id, "--data-dir", str(data_dir)]
    if not RUN_FILE.fullmatch(dataset_id or "") or ".." in dataset_id:
        raise HTTPException(400, "unknown dataset")
    root = data_dir.resolve()
    try:
        real = (data_dir / dataset_id).resolve(strict=True)
    except (OSError, RuntimeError):
        raise HTTPException(400, "unknown dataset") from None
    if not real.is_relative_to(root) or dataset_id not in {d["id"] for d in available(data_dir)}:
        raise HTTPException(400, "unknown dataset")
    return [str(real)]
