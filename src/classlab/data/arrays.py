"""Loaders for array-shaped sources: digits, IDX (MNIST family), CIFAR pickles, MedMNIST .npz, CSV."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from ..errors import ClasslabError
from .dataset import ImageDataset

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _from_splits(parts: list[tuple[str, np.ndarray, np.ndarray]], class_names, name, source) -> ImageDataset:
    """Concatenate (split, images, labels) parts into one dataset with ids 'split/00042'."""
    images = np.concatenate([p[1] for p in parts])
    labels = np.concatenate([np.asarray(p[2], dtype=np.int64).ravel() for p in parts])
    ids = [f"{split}/{i:05d}" for split, imgs, _ in parts for i in range(len(imgs))]
    official = np.array([split for split, imgs, _ in parts for _ in range(len(imgs))], dtype=object)
    has_split = len(parts) > 1 or parts[0][0] != "all"
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise ClasslabError(f"{source}: labels must lie in 0..{len(class_names) - 1}, found {labels.min()}..{labels.max()}")
    return ImageDataset(images=images, labels=labels, class_names=list(class_names), ids=ids, name=name,
                        source=str(source), official_split=official if has_split else None)


# --- scikit-learn digits -------------------------------------------------------------------------

def load_digits_dataset() -> ImageDataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    # sklearn stores 0..16 intensities; scale to 0..255 so every source has the same pixel range.
    images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return _from_splits([("all", images, d.target)], [str(c) for c in range(10)], "digits", "sklearn.datasets.load_digits")


# --- IDX (MNIST, Fashion-MNIST, KMNIST, ...) -----------------------------------------------------

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise ClasslabError(f"cannot read {path}: {e}; re-download it (classlab download ...)") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ClasslabError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if len(data) != expected:
        raise ClasslabError(f"{path} is truncated or corrupt: {len(data)} bytes, header promises {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find_idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def is_idx_folder(folder: Path) -> bool:
    return folder.is_dir() and find_idx_file(folder, IDX_FILES["train"][0]) is not None


def load_idx_folder(folder: Path, name: str, class_names=None) -> ImageDataset:
    parts = []
    for split, (img_stem, lbl_stem) in IDX_FILES.items():
        img_path, lbl_path = find_idx_file(folder, img_stem), find_idx_file(folder, lbl_stem)
        if img_path is None or lbl_path is None:
            missing = [s + ".gz" for s, p in ((img_stem, img_path), (lbl_stem, lbl_path)) if p is None]
            raise ClasslabError(f"{folder} lacks {', '.join(missing)}: place the four IDX files there")
        images, labels = read_idx(img_path), read_idx(lbl_path)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ClasslabError(f"{img_path} and {lbl_path} do not match: {images.shape} images, {labels.shape} labels")
        parts.append((split, images[..., None], labels))
    if class_names is None:
        class_names = [str(c) for c in range(int(max(p[2].max() for p in parts)) + 1)]
    return _from_splits(parts, class_names, name, folder)


# --- CIFAR-10 / CIFAR-100 pickles -----------------------------------------------------------------

class _SafeUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles; allow only what they contain, so a hostile file cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"), ("builtins", "bytearray"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR pickle")


def _unpickle(data: bytes, what: str) -> dict:
    try:
        obj = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:
        raise ClasslabError(f"{what} is not a valid CIFAR batch ({e}); re-download it (classlab download cifar10)") from None
    if not isinstance(obj, dict):
        raise ClasslabError(f"{what} is not a valid CIFAR batch (expected a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _names(meta: dict, key: str) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in meta[key]]


CIFAR_LAYOUTS = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta", "label_names", "labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_label_names", "fine_labels"),
}


def detect_cifar(path: Path) -> str | None:
    """'cifar10' / 'cifar100' if path is a CIFAR pickle folder, its parent, or an official .tar.gz."""
    if path.is_dir():
        for kind, (folder, train, *_rest) in CIFAR_LAYOUTS.items():
            if (path / train[0]).is_file() or (path / folder / train[0]).is_file():
                return kind
        return None
    if path.name.endswith((".tar.gz", ".tgz")) and path.is_file():
        name = path.name.lower()
        return "cifar100" if "100" in name else "cifar10" if "cifar" in name else None
    return None


def load_cifar(path: Path, kind: str, coarse: bool = False) -> ImageDataset:
    folder, train_files, test_files, meta_file, names_key, labels_key = CIFAR_LAYOUTS[kind]
    if coarse:
        names_key, labels_key = "coarse_label_names", "coarse_labels"
    if path.is_dir():
        base = path / folder if (path / folder).is_dir() else path

        def read(member):
            f = base / member
            if not f.is_file():
                raise ClasslabError(f"{base} lacks {member}: extract the official archive there or run 'classlab download {kind}'")
            return f.read_bytes()
        batches = {m: _unpickle(read(m), base / m) for m in [*train_files, *test_files, meta_file]}
    else:
        try:
            with tarfile.open(path, "r:gz") as tar:
                members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
                batches = {}
                for m in [*train_files, *test_files, meta_file]:
                    if m not in members:
                        raise ClasslabError(f"{path} has no member {folder}/{m}: is it the official {kind} python archive?")
                    batches[m] = _unpickle(tar.extractfile(members[m]).read(), f"{path}:{m}")
        except (tarfile.TarError, OSError, EOFError) as e:
            raise ClasslabError(f"cannot read {path} ({e}); re-download it with 'classlab download {kind}'") from None
    class_names = _names(batches[meta_file], names_key)

    def stack(files):
        data = np.concatenate([np.asarray(batches[f]["data"], dtype=np.uint8) for f in files])
        labels = np.concatenate([np.asarray(batches[f][labels_key]) for f in files])
        return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels
    parts = [("train", *stack(train_files)), ("test", *stack(test_files))]
    return _from_splits(parts, class_names, kind + ("-coarse" if coarse else ""), path)


# --- MedMNIST-style .npz --------------------------------------------------------------------------

def load_npz(path: Path) -> ImageDataset:
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ClasslabError(f"cannot read {path} as .npz ({e})") from None
    with npz:
        parts = []
        for split in ("train", "val", "test"):
            if f"{split}_images" not in npz.files:
                continue
            images, labels = npz[f"{split}_images"], npz[f"{split}_labels"]
            if labels.ndim == 2 and labels.shape[1] > 1:
                raise ClasslabError(f"{path}: {split}_labels has {labels.shape[1]} columns (multi-label); classlab needs one label per image")
            if images.ndim == 3 or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
                images = images[..., None]  # (N,H,W) gray or (N,D,H,W) volume: add the channel axis
            if images.dtype != np.uint8:
                if images.min() < 0 or images.max() > 255:
                    raise ClasslabError(f"{path}: {split}_images must hold 0..255 pixel values, found {images.min()}..{images.max()}")
                images = images.astype(np.uint8)
            parts.append((split, images, labels.ravel()))
    if not parts:
        raise ClasslabError(f"{path} has no 'train_images' array; expected the MedMNIST layout "
                            "(train_images, train_labels, val_images, val_labels, test_images, test_labels)")
    shapes = {p[1].shape[1:] for p in parts}
    if len(shapes) > 1:
        raise ClasslabError(f"{path}: splits have different image shapes {sorted(shapes)}")
    n_classes = int(max(p[2].max() for p in parts)) + 1
    return _from_splits(parts, [str(c) for c in range(n_classes)], path.stem, path)


# --- CSV (Sign-Language-MNIST layout: label, pixel1, pixel2, ...) ---------------------------------

def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    if not header or header == [""]:
        raise ClasslabError(f"{path} is empty")
    lower = [h.strip().lower() for h in header]
    label_col = lower.index("label") if "label" in lower else 0
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    except ValueError as e:
        raise ClasslabError(f"{path}: every value after the header must be an integer ({e})") from None
    if table.shape[0] == 0:
        raise ClasslabError(f"{path} has a header but no rows")
    labels = table[:, label_col]
    pixels = np.delete(table, label_col, axis=1)
    if pixels.min() < 0 or pixels.max() > 255:
        raise ClasslabError(f"{path}: pixel values must lie in 0..255, found {pixels.min()}..{pixels.max()}")
    n = pixels.shape[1]
    for c in (1, 3):
        side = int(round((n / c) ** 0.5))
        if side * side * c == n:
            return pixels.astype(np.uint8).reshape(-1, side, side, c), labels
    raise ClasslabError(f"{path}: {n} pixel columns is not a square image (e.g. 784 = 28x28, or 3072 = 32x32x3)")


def load_csv(path: Path) -> ImageDataset:
    parts = [("train" if "train" in path.name else "all", *_read_csv(path))]
    test_path = path.with_name(path.name.replace("train", "test"))
    if "train" in path.name and test_path.is_file():
        parts.append(("test", *_read_csv(test_path)))
    else:
        parts = [("all", parts[0][1], parts[0][2])]
    # Labels may skip values (Sign-Language-MNIST has no J=9 or Z=25): map them to 0..K-1.
    original = np.unique(np.concatenate([p[2] for p in parts]))
    parts = [(s, im, np.searchsorted(original, lb)) for s, im, lb in parts]
    return _from_splits(parts, [str(v) for v in original], path.stem.replace("_train", ""), path)


# --- Changing size and channels of array sources ---------------------------------------------------

def conform(images: np.ndarray, image_size: tuple[int, int] | None, channels: int | None) -> np.ndarray:
    """Resize (bilinear, antialiased, as for files) and convert channels of an (N,H,W,C) array."""
    if channels is not None and channels != images.shape[-1]:
        if channels == 3:
            images = np.repeat(images, 3, axis=-1)
        else:  # ITU-R 601-2 luma, Pillow's 'L' conversion, so arrays and files agree
            rgb = images.astype(np.uint32)
            images = ((rgb[..., 0] * 299 + rgb[..., 1] * 587 + rgb[..., 2] * 114 + 500) // 1000).astype(np.uint8)[..., None]
    if image_size is not None and tuple(images.shape[1:3]) != tuple(image_size):
        if images.ndim != 4:
            raise ClasslabError("--image-size applies to 2D images, not to volumes")
        from PIL import Image

        h, w = image_size
        out = np.empty((len(images), h, w, images.shape[-1]), dtype=np.uint8)
        for i, im in enumerate(images):
            pil = Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im)
            out[i] = np.asarray(pil.resize((w, h), Image.Resampling.BILINEAR)).reshape(h, w, -1)
        images = out
    return images
