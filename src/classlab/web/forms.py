"""What the workbench accepts from a browser, checked in one place (beside guard.py, which checks who asks and
which run or run file a path names): a dataset id (resolved inside the served data folder), a form's fields
(whole numbers in a range, one of a few choices), uploads (their names, their count and size), and the
command line a Train-page form becomes. Every refusal is a ClasslabError or an HTTPException in words,
which the app shows as a 400 page; nothing here trusts a field it has not checked."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.exceptions import HTTPException

from ..backbones.hub_cache import cached_weights, checked_weights_path, install_weights, weights_status
from ..data.trees import DATASET_MARKER
from ..errors import ClasslabError
from .guard import RUN_FILE
from .images import MAX_UPLOAD_BYTES

MAX_FILES = 200  # files in one upload form
TRANSFER_BACKBONES = ("mobilenet_v2", "resnet18", "resnet50", "vgg16")
NAMED_FILES = ("mnist", "fashion-mnist")  # named datasets a data folder may hold as IDX files
COMMANDS = ("train", "transfer", "workshop", "check")
TRANSFER_MODES = ("features", "finetune", "both")

__all__ = ["MAX_FILES", "MAX_UPLOAD_BYTES", "available_datasets", "check_classes", "choice", "dataset_args", "job_args",
           "own_dataset_first", "query_whole",
           "read_upload_form", "read_uploads", "upload_name", "whole_number"]


# -- datasets ---------------------------------------------------------------------------------------------

def available_datasets(data_dir: Path | None) -> list[dict]:
    """The datasets the forms offer: the embedded digits, the named datasets found in the data folder, and
    the image folders and .zip files inside it (one level of nesting)."""
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


def own_dataset_first(datasets: list[dict], data_dir: Path | None, config: dict) -> list[dict]:
    """``datasets`` with the one a run trained on first (the default of its 'Evaluate on'), marked: a photo
    model offered digits first failed 15 s later on a class mismatch."""
    options = config.get("options") or {}
    data = options["data"] if isinstance(options.get("data"), dict) else options
    spec = data.get("data") if isinstance(data, dict) else None
    if not isinstance(spec, str):
        return datasets
    own = None
    if spec in ("digits", *NAMED_FILES):
        own = spec
    elif data_dir is not None:
        try:
            real = Path(spec).resolve()
            own = next((d["id"] for d in datasets if d["id"] not in ("digits", *NAMED_FILES)
                        and (data_dir / d["id"]).resolve() == real), None)
        except (OSError, RuntimeError):
            own = None
    first = [dict(d, label=d["label"] + " · the data it trained on") for d in datasets if d["id"] == own]
    return first + [d for d in datasets if d["id"] != own]


def check_classes(data_dir: Path | None, dataset_id: str, model_classes: list[str]) -> None:
    """Refuse, before a job starts, data whose class folders the model does not know (evaluate would stop on
    it after loading); data whose classes cannot be read without loading passes to the job."""
    from ..data.registry import class_names_of

    args = dataset_args(data_dir, dataset_id)
    names = class_names_of(args[0], args[2] if len(args) == 3 else None)
    unknown = [n for n in names or [] if n not in set(model_classes)]
    if unknown and model_classes:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        known = ", ".join(model_classes[:10]) + (" ..." if len(model_classes) > 10 else "")
        raise ClasslabError(f"{dataset_id} has classes this model does not know ({shown}); its classes are {known}. "
                            "Choose data with the same class folders (the data it trained on is listed first)")


def dataset_args(data_dir: Path | None, dataset_id: str) -> list[str]:
    """The command-line words that name a dataset id from a form: ``[spec]`` or ``[spec, --data-dir, DIR]``.
    An id is a name or a path relative to the data folder, resolved inside it; anything else is refused."""
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
    if not real.is_relative_to(root) or dataset_id not in {d["id"] for d in available_datasets(data_dir)}:
        raise HTTPException(400, "unknown dataset")
    return [str(real)]


DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# any letters (a class is named by its folder), but nothing a file system or a path would read specially
CLASS_NAME = re.compile(r"[^\x00-\x1f\x7f/\\:*?\"<>|.][^\x00-\x1f\x7f/\\:*?\"<>|]{0,63}")


def check_dataset_name(data_dir: Path | None, dataset: str) -> Path:
    """The data folder, once the dataset's name is one it may hold; else a one-line ClasslabError."""
    if data_dir is None:
        raise ClasslabError("no data folder is served, so there is nowhere to keep a dataset: start the workbench "
                            "with 'classlab serve --data-dir FOLDER'")
    if not DATASET_NAME.fullmatch(dataset) or dataset.lower() in (*NAMED_FILES, "digits"):
        raise ClasslabError(f"'{dataset[:80]}' cannot name a dataset: use 1-64 letters, digits, '-' or '_' "
                            "(starting with a letter or digit), and not a built-in dataset's name")
    return data_dir


def check_names(data_dir: Path | None, dataset: str, class_name: str) -> Path:
    """The class folder to write to, or a one-line ClasslabError that says what to change."""
    check_dataset_name(data_dir, dataset)
    if not CLASS_NAME.fullmatch(class_name) or class_name != class_name.strip():
        raise ClasslabError(f"'{class_name[:80]}' cannot name a class: use 1-64 characters without / \\ : * ? \" < "
                            "> |, not starting with '.' or a space")
    folder = data_dir / dataset
    if folder.is_symlink() or (folder.exists() and not (folder / DATASET_MARKER).is_file()):
        raise ClasslabError(f"{dataset} already exists in the data folder and was not made here; the workbench "
                            "adds images only to datasets it made: choose another name")
    target = folder / class_name
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ClasslabError(f"{dataset}/{class_name} is not a class folder made here; choose another class name")
    return target


# -- fields -----------------------------------------------------------------------------------------------

def whole_number(form, key: str, low: int, high: int, default: int | None) -> int | None:
    """A whole-number field in [low, high]; empty: ``default``."""
    text = str(form.get(key) or "").strip()
    if not text:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise ClasslabError(f"{key.replace('_', ' ')} must be a whole number from {low} to {high}, got "
                            f"'{text[:20]}'")
    return int(text)


def query_whole(text) -> int:
    """A whole number from a query string (a confusion cell's row and column)."""
    try:
        return int(text)
    except (TypeError, ValueError):
        raise HTTPException(400, "expected whole numbers") from None


def choice(form, key: str, allowed, default: str, what: str) -> str:
    """A field that must be one of ``allowed``."""
    value = str(form.get(key) or default)
    if value not in allowed:
        raise ClasslabError(f"unknown {what} '{value[:40]}'; choose {', '.join(map(str, allowed))}")
    return value


# -- uploads ----------------------------------------------------------------------------------------------

def upload_name(filename: str | None) -> str:
    """An upload's base name as the browser sent it (a folder's files carry their path), for messages."""
    return (filename or "image").replace("\\", "/").rsplit("/", 1)[-1][:200]


async def read_upload_form(request, files: int = MAX_FILES):
    """The request's multipart form, at most ``files`` files of at most MAX_UPLOAD_BYTES each (one byte more
    is read, so a file over the limit is told apart from one at it)."""
    return await request.form(max_files=files, max_part_size=MAX_UPLOAD_BYTES + 1)


async def read_uploads(form, field: str) -> list[tuple[str, bytes]]:
    """(name, bytes) of the form's files under ``field`` (a field sent without a file is skipped)."""
    uploads = [f for f in form.getlist(field) if hasattr(f, "read") and f.filename]
    return [(upload_name(f.filename), await f.read(MAX_UPLOAD_BYTES + 1)) for f in uploads]


# -- the Train page's form -> a command line --------------------------------------------------------------

def weights_args(backbone: str, form) -> list[str]:
    """Transfer's pretrained weights, settled before the job starts (a job would fail seconds in without
    them): an uploaded file (installed in the torch hub cache, checked against its name), a file on this
    machine (--weights PATH), the file already in the cache, or a download only when asked for."""
    upload = form.get("weights_file")
    if hasattr(upload, "read") and upload.filename:
        install_weights(backbone, upload.filename, upload.file)
        return []
    path = str(form.get("weights_path", "")).strip()
    if path:
        return ["--weights", checked_weights_path(path)]
    if cached_weights(backbone) is None and not form.get("download"):
        status = weights_status([backbone])[0]
        raise ClasslabError(f"{backbone}'s pretrained weights are not on this machine: put {status['file']} into "
                            f"{status['folder']}, or give the file on the Train page (upload or path), or tick "
                            "'download them' where this machine has internet; or choose 'train a model' (a CNN "
                            "from scratch, at a size chosen for your images), which needs no weights")
    return []


def job_args(data_dir: Path | None, form) -> tuple[list[str], str]:
    """The command line of a job from the Train page's form (and its title), every field checked."""
    command = choice(form, "command", COMMANDS, "", "command")
    dataset = str(form.get("dataset", "digits"))
    args = [command, *dataset_args(data_dir, dataset)]
    if command == "check":  # the doctor takes only the dataset
        return args, f"check {dataset}"
    max_train = whole_number(form, "max_train", 10, 10_000_000, None)
    title = f"{command} {dataset}"
    if command == "train":
        from ..models import list_models

        model = choice(form, "model", list_models(), "mlp", "model")
        args += ["--model", model, "--epochs", str(whole_number(form, "epochs", 1, 1000, 10))]
        title += f" {model}"
    elif command == "transfer":
        backbone = choice(form, "backbone", TRANSFER_BACKBONES, "mobilenet_v2", "backbone")
        mode = choice(form, "mode", TRANSFER_MODES, "features", "mode")
        args += ["--backbone", backbone, "--mode", mode, *weights_args(backbone, form)]
        epochs = whole_number(form, "epochs", 1, 1000, None)  # left empty: the head's default (more steps on small data)
        args += ["--head-epochs", str(epochs)] if epochs else []
        size = whole_number(form, "image_size", 16, 512, None)
        if size:
            args += ["--image-size", str(size)]
    if max_train:
        args += ["--max-train", str(max_train)]
    if command in ("train", "transfer") and form.get("balance"):  # imbalanced classes: inverse-frequency loss
        args += ["--class-weight", "balanced"]
    return args, title
