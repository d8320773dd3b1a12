"""Named datasets and ``load_dataset(spec)``: one entry point for every source format."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ClasslabError, warn
from ..safe_files import display
from . import arrays
from .dataset import ImageDataset
from .download import download_file
from .folders import DEFAULT_MAX_MEMORY, load_folder, scan_tree
from .trees import open_tree


@dataclass(frozen=True)
class Remote:
    filename: str
    url: str
    checksum: str


MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
NAMED = {
    "digits": [],
    "mnist": [
        Remote("train-images-idx3-ubyte.gz", MNIST_URL, "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        Remote("train-labels-idx1-ubyte.gz", MNIST_URL, "md5:d53e105ee54ea40749a09fcbcd1e9432"),
        Remote("t10k-images-idx3-ubyte.gz", MNIST_URL, "md5:9fb629c4189551a2d022fa330f9573f3"),
        Remote("t10k-labels-idx1-ubyte.gz", MNIST_URL, "md5:ec29112dd5afa0611ce80d1b7f02629c"),
    ],
    "fashion-mnist": [
        Remote("train-images-idx3-ubyte.gz", FASHION_URL, "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        Remote("train-labels-idx1-ubyte.gz", FASHION_URL, "md5:25c81989df183df01b3e8a0aad5dffbe"),
        Remote("t10k-images-idx3-ubyte.gz", FASHION_URL, "md5:bef4ecab320f06d8554ea6380940ec79"),
        Remote("t10k-labels-idx1-ubyte.gz", FASHION_URL, "md5:bb300cfdad3c16e7a12a480ee83cd310"),
    ],
    "cifar10": [Remote("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/",
                       "md5:c58f30108f718f92721af3b95e74349a")],
    "cifar100": [Remote("cifar-100-python.tar.gz", "https://www.cs.toronto.edu/~kriz/",
                        "md5:eb9058c3a382ffc7106e4002c42a8d85")],
}
# Where Debian's dataset packages put their files; searched after the data directory.
SYSTEM_DIRS = {"fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")]}
ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "cifar-10": "cifar10",
           "cifar-100": "cifar100", "cifar100-coarse": "cifar100"}


def default_data_dir() -> Path:
    if os.environ.get("CLASSLAB_DATA"):
        return Path(os.environ["CLASSLAB_DATA"])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "classlab" / "datasets"


def _named_dir(name: str, data_dir: Path) -> Path | None:
    """The first candidate folder that holds this dataset's files, or None."""
    for folder in [data_dir / name, *SYSTEM_DIRS.get(name, [])]:
        if name in ("mnist", "fashion-mnist") and arrays.is_idx_folder(folder):
            return folder
        if name.startswith("cifar"):
            if arrays.detect_cifar(folder) == name:
                return folder
            archive = folder / NAMED[name][0].filename
            if archive.is_file():
                return archive
    return None


def _missing_message(name: str, data_dir: Path) -> str:
    files = ", ".join(r.filename for r in NAMED[name])
    return (f"dataset '{name}' not found: run 'classlab download {name} --data-dir {data_dir}', "
            f"or place {files} in {data_dir / name} (or pass --data-dir / set CLASSLAB_DATA)")


def download(name: str, data_dir: str | Path | None = None, mirror: str | None = None) -> Path:
    """Fetch a named dataset's official files into DATA_DIR/NAME (checksummed, atomic)."""
    name = ALIASES.get(name, name)
    if name not in NAMED or not NAMED[name]:
        known = ", ".join(n for n, files in NAMED.items() if files)
        raise ClasslabError(f"nothing to download for '{name}'; downloadable datasets: {known}")
    folder = Path(data_dir or default_data_dir()) / name
    for remote in NAMED[name]:
        base = mirror.rstrip("/") + "/" if mirror else remote.url
        download_file(base + remote.filename, folder / remote.filename, remote.checksum)
    return folder


def load_dataset(spec: str | os.PathLike = "digits", *, data_dir: str | Path | None = None,
                 image_size: int | tuple[int, int] | None = None, channels: int | None = None,
                 coarse_labels: bool = False, max_memory: int = DEFAULT_MAX_MEMORY,
                 max_size: int | None = None, crop: float | None = None) -> ImageDataset:
    """Load a dataset by name (digits, mnist, fashion-mnist, cifar10, cifar100) or by path
    (image folder, .zip of one, IDX folder, CIFAR pickle folder or .tar.gz, MedMNIST .npz, .csv).

    ``image_size`` (int or (H, W)) and ``channels`` (1 or 3) make every image the same shape;
    by default folders use their most common size and colour mode, arrays keep theirs. ``max_size`` (the
    model's input side, set by the commands) caps that default: larger images are decoded, once, at
    ``max_size`` x ``max_size``, so a folder of phone photos costs what its thumbnails cost. ``crop``: with
    ``image_size``, image files are fit to it as a model's training images were (its contract's crop).
    """
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    if image_size is not None and (min(image_size) < 1 or max(image_size) > 4096):
        raise ClasslabError(f"--image-size must be between 1 and 4096 pixels, got {image_size}")
    if channels not in (None, 1, 3):
        raise ClasslabError(f"--channels must be 1 or 3, got {channels}")
    text = str(spec)
    name = ALIASES.get(text.lower(), text.lower())
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    path = Path(text).expanduser()
    if name in NAMED and not path.exists():
        if name == "digits":
            ds = arrays.load_digits_dataset()
        else:
            found = _named_dir(name, data_dir)
            if found is None:
                raise ClasslabError(_missing_message(name, data_dir))
            ds = _load_path(found, coarse_labels, image_size, channels, max_memory, max_size, crop)
            ds.name = name + ("-coarse" if coarse_labels else "")
    elif path.exists():
        ds = _load_path(path, coarse_labels, image_size, channels, max_memory, max_size, crop)
    else:
        known = ", ".join(NAMED)
        raise ClasslabError(f"'{text}' is neither a known dataset ({known}) nor an existing path")
    if image_size is None and max_size is not None and not ds.is_lazy and ds.images.ndim == 4 \
            and max(ds.images.shape[1:3]) > max_size:  # arrays (npz, Parquet) above the model's input size
        image_size = (max_size, max_size)
        ds.notes.append(f"images are {ds.images.shape[1]}x{ds.images.shape[2]}: resized to {max_size}x{max_size}, "
                        "the size the model takes (set --image-size to choose)")
        warn(ds.notes[-1])
    if not ds.is_lazy and (image_size is not None or channels is not None):
        if image_size is not None and ds.images.ndim == 4:
            need = len(ds) * image_size[0] * image_size[1] * (channels or ds.images.shape[-1])
            if need > max(max_memory, ds.images.nbytes):
                raise ClasslabError(f"--image-size {image_size[0]} would need {need / 2**30:.1f} GiB for the "
                                    f"{len(ds):,} images of {ds.source} (memory budget {max_memory / 2**30:.1f} GiB); "
                                    "choose a smaller --image-size, or raise --max-memory")
        ds.images = arrays.conform(ds.images, image_size, channels)
    if ds.num_classes < 2 or len(set(ds.labels.tolist())) < 2:
        raise ClasslabError(f"{ds.source} has only one class; classification needs at least two")
    return ds


def _load_path(path: Path, coarse: bool, image_size, channels, max_memory, max_size=None, crop=None) -> ImageDataset:
    from . import huggingface

    suffix = "".join(path.suffixes[-2:]).lower() if path.is_file() else ""
    hub = huggingface.detect(path)
    if hub:  # Hugging Face files: Parquet, save_to_disk, imagefolder with metadata
        return huggingface.load(path, hub, image_size, channels, max_memory)
    if path.is_dir() and arrays.is_idx_folder(path):
        names = arrays.FASHION_MNIST_CLASSES if "fashion" in str(path).lower() else None
        return arrays.load_idx_folder(path, path.name, names)
    kind = arrays.detect_cifar(path)
    if kind:
        return arrays.load_cifar(path, kind, coarse)
    if path.is_dir() or suffix.endswith(".zip"):
        return load_folder(path, image_size, channels, max_memory, max_size, crop)
    if suffix.endswith(".npz"):
        return arrays.load_npz(path)
    if suffix.endswith(".csv"):
        return arrays.load_csv(path)
    raise ClasslabError(f"{path}: unsupported file type; give a folder of class folders, a .zip of one, "
                        "an IDX folder, a CIFAR folder or .tar.gz, a MedMNIST .npz, a .csv, or Hugging Face files "
                        "(Parquet, a save_to_disk folder, an imagefolder with metadata.csv)")


def class_names_of(spec: str, data_dir: str | Path | None = None) -> list[str] | None:
    """The class names a dataset would load with, read without decoding any image (a folder's or zip's class
    folders, the known names of the named datasets), or None where only a full load can tell (arrays, CSV,
    Hugging Face files). For checking a model's classes against data before a long job starts."""
    text = str(spec)
    name = ALIASES.get(text.lower(), text.lower())
    path = Path(text).expanduser()
    if name in NAMED and not path.exists():
        if name in ("digits", "mnist"):
            return [str(c) for c in range(10)]
        if name == "fashion-mnist":
            return list(arrays.FASHION_MNIST_CLASSES)
        path = _named_dir(name, Path(data_dir) if data_dir else default_data_dir())
        if path is None:
            return None
    if not (path.is_dir() or path.suffix.lower() == ".zip") or (path.is_dir() and arrays.is_idx_folder(path)):
        return None
    try:
        names = [display(c) for c in scan_tree(open_tree(path)).class_names]
    except (ClasslabError, OSError, ValueError):
        return None
    return names or None
