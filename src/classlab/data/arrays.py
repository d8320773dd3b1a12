"""Loaders for array-shaped sources: digits, IDX (MNIST family), CIFAR pickles, MedMNIST .npz, CSV."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import ClasslabError, warn
from ..safe_files import MAX_ARCHIVE_BYTES, UnreadableFile, check_path, read_file
from . import validate
from .dataset import ImageDataset

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _from_splits(parts: list[tuple[str, np.ndarray, np.ndarray]], class_names, name, source,
                 notes: list[str] | None = None) -> ImageDataset:
    """Concatenate (split, images, labels) parts into one dataset with ids 'split/00042'. Every part's images
    and labels go through ``validate`` (converted with a note, or refused); ``class_names`` None: the labels'
    own values name the classes."""
    notes = [] if notes is None else notes
    checked = []
    for split, images, y in parts:
        where = f"{source} ({split})" if split != "all" else str(source)
        images = validate.image_shape(validate.pixels(images, where, notes), where, notes)
        y = validate.labels(y, f"{where} labels", notes)
        validate.check_counts(images, y, where)
        if len(images):
            checked.append((split, images, y))
        elif split == "train" or split == "all":
            raise ClasslabError(f"{where} holds no images")
        else:
            notes.append(f"{where} is empty; it is left out")
    shapes = {p[1].shape[1:] for p in checked}
    if len(shapes) > 1:
        raise ClasslabError(f"{source}: splits have different image shapes {sorted(shapes)}")
    indices, class_names = validate.class_indices([p[2] for p in checked], str(source), notes, class_names)
    images = np.concatenate([p[1] for p in checked])
    ids = [f"{split}/{i:05d}" for split, imgs, _ in checked for i in range(len(imgs))]
    official = np.array([split for split, imgs, _ in checked for _ in range(len(imgs))], dtype=object)
    has_split = len(checked) > 1 or checked[0][0] != "all"
    for note in notes:
        warn(note)
    return ImageDataset(images=images, labels=np.concatenate(indices), class_names=list(class_names), ids=ids,
                        name=name, source=str(source), official_split=official if has_split else None, notes=notes)


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


def _read_limited(path: Path) -> bytes:
    """A data file's bytes (gunzipped if .gz), within the archive budget: a gzip bomb stops at the limit."""
    try:
        raw = read_file(path, MAX_ARCHIVE_BYTES)
        if path.suffix != ".gz":
            return raw
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
            data = f.read(MAX_ARCHIVE_BYTES + 1)
    except UnreadableFile as e:
        raise ClasslabError(str(e)) from None
    except (OSError, EOFError, zlib.error) as e:
        raise ClasslabError(f"cannot read {path}: {e}; re-download it (classlab download ...)") from None
    if len(data) > MAX_ARCHIVE_BYTES:
        raise ClasslabError(f"{path} inflates past {MAX_ARCHIVE_BYTES >> 20} MiB: refused (CLASSLAB_MAX_ARCHIVE_MB)")
    return data


def read_idx(path: Path) -> np.ndarray:
    data = _read_limited(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ClasslabError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    if not 1 <= ndim <= 4 or len(data) < 4 + 4 * ndim:
        raise ClasslabError(f"{path} has a malformed IDX header ({ndim} dimensions); re-download it")
    dims = np.frombuffer(data, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    expected = 4 + 4 * ndim + int(np.prod(dims, dtype=object))
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
            if not f.exists():
                raise ClasslabError(f"{base} lacks {member}: extract the official archive there or run 'classlab download {kind}'")
            try:
                return read_file(f, MAX_ARCHIVE_BYTES)
            except UnreadableFile as e:
                raise ClasslabError(str(e)) from None
        batches = {m: _unpickle(read(m), base / m) for m in [*train_files, *test_files, meta_file]}
    else:
        try:
            with tarfile.open(path, "r:gz") as tar:
                members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
                batches = {}
                for m in [*train_files, *test_files, meta_file]:
                    if m not in members:
                        raise ClasslabError(f"{path} has no member {folder}/{m}: is it the official {kind} python archive?")
                    if members[m].size > MAX_ARCHIVE_BYTES:
                        raise ClasslabError(f"{path}:{m} is {members[m].size >> 20} MiB, over the archive limit")
                    batches[m] = _unpickle(tar.extractfile(members[m]).read(), f"{path}:{m}")
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise ClasslabError(f"cannot read {path} ({e}); re-download it with 'classlab download {kind}'") from None
    try:
        class_names = _names(batches[meta_file], names_key)
    except (KeyError, TypeError) as e:
        raise ClasslabError(f"{path}: {meta_file} has no usable {names_key} ({e}); is it the official {kind} archive?") from None

    def batch(f):
        b = batches[f]
        try:
            data, labels = np.asarray(b["data"]), np.asarray(b[labels_key])
        except (KeyError, ValueError, TypeError) as e:
            raise ClasslabError(f"{path}: batch {f} lacks data or {labels_key} ({e}); re-download it") from None
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
            raise ClasslabError(f"{path}: batch {f} holds {data.dtype} data of shape {data.shape} and {len(labels)} "
                                "labels; CIFAR batches hold uint8 rows of 3072 values, one label each")
        return data, labels

    def stack(files):
        pairs = [batch(f) for f in files]
        data = np.concatenate([d for d, _ in pairs])
        return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), np.concatenate([y for _, y in pairs])
    parts = [("train", *stack(train_files)), ("test", *stack(test_files))]
    return _from_splits(parts, class_names, kind + ("-coarse" if coarse else ""), path)


# --- MedMNIST-style .npz --------------------------------------------------------------------------

def load_npz(path: Path) -> ImageDataset:
    """MedMNIST layout. Arrays are read without pickle; each member is checked against the archive budget
    before it is inflated (a small .npz can hold a member that inflates to gigabytes)."""
    import zipfile

    from ..safe_files import check_member

    try:
        check_path(path)
        npz = np.load(path, allow_pickle=False)
    except UnreadableFile as e:
        raise ClasslabError(str(e)) from None
    except Exception as e:
        raise ClasslabError(f"cannot read {path} as .npz ({e})") from None
    with npz:
        if "train_images" not in npz.files:
            raise ClasslabError(f"{path} has no 'train_images' array; expected the MedMNIST layout "
                                "(train_images, train_labels, val_images, val_labels, test_images, test_labels)")
        parts = []
        for split in ("train", "val", "test"):
            keys = (f"{split}_images", f"{split}_labels")
            present = [k for k in keys if k in npz.files]
            if not present:
                continue
            if len(present) == 1:
                raise ClasslabError(f"{path} has {present[0]} but no {({*keys} - {*present}).pop()}; each split "
                                    "needs its images and labels")
            try:
                for k in keys:
                    if isinstance(npz.zip, zipfile.ZipFile):
                        check_member(npz.zip.getinfo(k + ".npy"), MAX_ARCHIVE_BYTES)
                parts.append((split, npz[keys[0]], npz[keys[1]]))
            except UnreadableFile as e:
                raise ClasslabError(f"{path}: {keys[0]}: {e}") from None
            except Exception as e:  # object arrays (which need pickle), a corrupt member, a bad header
                raise ClasslabError(f"{path}: cannot read {split} arrays ({type(e).__name__}: "
                                    f"{str(e).splitlines()[0][:160]}); save plain numeric arrays without pickle") from None
    return _from_splits(parts, None, path.stem, path)


# --- CSV (Sign-Language-MNIST layout: label, pixel1, pixel2, ...) ---------------------------------

def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels as given) of a CSV: a header, then one image per row (a label column and pixels)."""
    text = _read_limited(path)
    try:
        text = text.decode("utf-8")
    except UnicodeDecodeError:  # only the header can hold text; latin-1 reads any byte
        text = text.decode("latin-1")
    header_line, _, body = text.partition("\n")
    header = header_line.strip().split(",")
    if not header or header == [""]:
        raise ClasslabError(f"{path} is empty")
    lower = [h.strip().lower() for h in header]
    label_col = lower.index("label") if "label" in lower else 0
    if len(header) < 2:
        raise ClasslabError(f"{path} has no pixel columns: expected a label column and one column per pixel")
    try:
        table = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise ClasslabError(f"{path}: every value after the header must be a number ({e})") from None
    if table.shape[0] == 0:
        raise ClasslabError(f"{path} has a header but no rows")
    if table.shape[1] != len(header):
        raise ClasslabError(f"{path}: rows have {table.shape[1]} values but the header names {len(header)} columns")
    if np.isfinite(table).all() and np.array_equal(table, np.round(table)):
        table = table.astype(np.int64)  # whole numbers (the usual case) stay integers: no float notes
    labels = table[:, label_col]
    pixels = np.delete(table, label_col, axis=1)
    n = pixels.shape[1]
    for c in (1, 3):
        side = int(round((n / c) ** 0.5))
        if side * side * c == n:
            return pixels.reshape(-1, side, side, c), labels
    raise ClasslabError(f"{path}: {n} pixel columns is not a square image (e.g. 784 = 28x28, or 3072 = 32x32x3)")


def load_csv(path: Path) -> ImageDataset:
    parts = [("train" if "train" in path.name else "all", *_read_csv(path))]
    test_path = path.with_name(path.name.replace("train", "test"))
    if "train" in path.name and test_path.is_file():
        parts.append(("test", *_read_csv(test_path)))
    else:
        parts = [("all", parts[0][1], parts[0][2])]
    # Labels may skip values (Sign-Language-MNIST has no J=9 or Z=25): _from_splits maps them to 0..K-1.
    return _from_splits(parts, None, path.stem.replace("_train", ""), path)


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
