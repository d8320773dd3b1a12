"""Every source format load_dataset reads: real data from ../shared and synthetic canonical files."""

import gzip
import io
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from classlab import ClasslabError, load_dataset
from classlab.data.arrays import read_idx
from conftest import CIFAR_ZIP, DATA, make_class_folder, need, pattern, png_bytes


def test_digits_is_the_embedded_default():
    ds = load_dataset()
    assert ds.name == "digits" and len(ds) == 1797 and ds.item_shape == (8, 8, 1)
    assert ds.images.dtype == np.uint8 and ds.images.max() == 255 and ds.num_classes == 10
    assert ds.official_split is None


@pytest.mark.parametrize("name, first_class", [("mnist", "0"), ("fashion-mnist", "T-shirt/top")])
def test_idx_real_data_by_name_and_path(name, first_class):
    folder = need(DATA / name)
    ds = load_dataset(name, data_dir=DATA)
    assert len(ds) == 70000 and ds.item_shape == (28, 28, 1) and ds.class_names[0] == first_class
    assert (ds.official_split == "train").sum() == 60000 and (ds.official_split == "test").sum() == 10000
    assert np.array_equal(np.bincount(ds.labels), ds.class_counts())
    by_path = load_dataset(folder)
    assert np.array_equal(by_path.labels, ds.labels)
    # The first training label of MNIST is the famous 5; Fashion-MNIST's is an ankle boot (9).
    assert ds.labels[0] == (5 if name == "mnist" else 9)


def test_idx_truncated_file_is_a_clear_error(tmp_path):
    raw = gzip.decompress(need(DATA / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    bad = tmp_path / "labels-idx1-ubyte"
    bad.write_bytes(raw[:-10])
    with pytest.raises(ClasslabError, match="truncated"):
        read_idx(bad)


@pytest.mark.slow
def test_cifar10_zip_read_in_place(tmp_path):
    ds = load_dataset(need(CIFAR_ZIP))
    assert len(ds) == 60000 and ds.item_shape == (32, 32, 3)
    assert ds.class_names[:3] == ["airplane", "automobile", "bird"]
    assert (ds.official_split == "test").sum() == 10000
    assert np.all(ds.class_counts() == 6000)
    # Per-channel means quoted in ../shared/data/README.md for the re-encoded JPEGs.
    train = ds.images[ds.official_split == "train"]
    means = train.reshape(-1, 3).mean(0) / 255
    assert np.allclose(means, [0.4912, 0.4817, 0.4485], atol=2e-3)
    assert not list(tmp_path.rglob("*.jpg"))  # nothing extracted anywhere


def _cifar_batch(n, seed, n_classes, fine_key=b"labels"):
    rng = np.random.default_rng(seed)
    batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), fine_key: list(rng.integers(0, n_classes, n)),
             b"batch_label": b"batch", b"filenames": [b"x.png"] * n}
    if fine_key == b"fine_labels":
        batch[b"coarse_labels"] = list(rng.integers(0, 20, n))
    return batch


def _write_cifar10(folder):
    folder.mkdir(parents=True)
    batches = {f"data_batch_{i}": _cifar_batch(20, i, 10) for i in range(1, 6)}
    batches["test_batch"] = _cifar_batch(10, 9, 10)
    for name, b in batches.items():
        (folder / name).write_bytes(pickle.dumps(b, protocol=2))
    names = [n.encode() for n in ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    return batches


def test_cifar10_pickles_folder_and_tar_gz(tmp_path):
    batches = _write_cifar10(tmp_path / "cifar-10-batches-py")
    ds = load_dataset(tmp_path)  # the parent of cifar-10-batches-py works too
    assert len(ds) == 110 and ds.class_names[-1] == "truck" and (ds.official_split == "test").sum() == 10
    # Row-major CHW in the pickle -> HWC here: pixel (0,0) red is byte 0, green byte 1024.
    first = batches["data_batch_1"][b"data"][0]
    assert ds.images[0, 0, 0, 0] == first[0] and ds.images[0, 0, 0, 1] == first[1024]
    assert ds.labels[0] == batches["data_batch_1"][b"labels"][0]
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    from_tar = load_dataset(archive)
    assert np.array_equal(from_tar.images, ds.images) and np.array_equal(from_tar.labels, ds.labels)
    data_dir = tmp_path / "datasets"
    (data_dir / "cifar10").mkdir(parents=True)
    archive.rename(data_dir / "cifar10" / "cifar-10-python.tar.gz")
    named = load_dataset("cifar10", data_dir=data_dir)  # the official archive, found by name
    assert named.name == "cifar10" and np.array_equal(named.labels, ds.labels)


def test_cifar100_fine_and_coarse(tmp_path):
    folder = tmp_path / "cifar100" / "cifar-100-python"
    folder.mkdir(parents=True)
    train, test = _cifar_batch(30, 1, 100, b"fine_labels"), _cifar_batch(10, 2, 100, b"fine_labels")
    (folder / "train").write_bytes(pickle.dumps(train))
    (folder / "test").write_bytes(pickle.dumps(test))
    meta = {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"c{i}".encode() for i in range(20)]}
    (folder / "meta").write_bytes(pickle.dumps(meta))
    fine = load_dataset("cifar100", data_dir=tmp_path)
    coarse = load_dataset("cifar100", data_dir=tmp_path, coarse_labels=True)
    assert fine.num_classes == 100 and coarse.num_classes == 20 and fine.name == "cifar100"
    assert list(coarse.labels[:30]) == list(train[b"coarse_labels"])


def test_hostile_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar10(folder)
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(ClasslabError, match="refusing to load builtins.print"):
        load_dataset(tmp_path)


@pytest.mark.parametrize("shape", [(28, 28), (28, 28, 3), (8, 16, 16)])
def test_medmnist_npz_2d_rgb_and_3d(tmp_path, shape):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 20), ("val", 6), ("test", 8)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 3, (n, 1))
    path = tmp_path / "organmnist.npz"
    np.savez(path, **arrays)
    ds = load_dataset(path)
    assert len(ds) == 34 and ds.num_classes == 3
    assert set(ds.official_split) == {"train", "val", "test"}
    assert ds.is_volume == (len(shape) == 3 and shape[-1] != 3)
    assert ds.images.shape[-1] == (3 if shape[-1] == 3 else 1)


def test_npz_multilabel_is_refused(tmp_path):
    path = tmp_path / "chest.npz"
    np.savez(path, train_images=np.zeros((4, 8, 8), np.uint8), train_labels=np.zeros((4, 14)))
    with pytest.raises(ClasslabError, match="multi-label"):
        load_dataset(path)


def test_csv_sign_language_layout_with_test_pair(tmp_path):
    rng = np.random.default_rng(0)

    def write(path, n):
        labels = rng.choice([0, 1, 10, 24], n)  # the real data skips 9 (J) and 25 (Z)
        pixels = rng.integers(0, 256, (n, 784))
        header = "label," + ",".join(f"pixel{i}" for i in range(1, 785))
        np.savetxt(path, np.column_stack([labels, pixels]), fmt="%d", delimiter=",", header=header, comments="")
        return labels, pixels
    labels, pixels = write(tmp_path / "sign_mnist_train.csv", 30)
    write(tmp_path / "sign_mnist_test.csv", 12)
    ds = load_dataset(tmp_path / "sign_mnist_train.csv")
    assert ds.class_names == ["0", "1", "10", "24"] and ds.item_shape == (28, 28, 1)
    assert (ds.official_split == "test").sum() == 12
    assert ds.class_names[ds.labels[0]] == str(labels[0]) and ds.images[0].ravel().tolist() == pixels[0].tolist()


def test_csv_bad_pixel_count(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("label,a,b,c,d,e\n0,1,2,3,4,5\n1,4,5,6,7,8\n")
    with pytest.raises(ClasslabError, match="not a square image"):
        load_dataset(path)


def test_class_folder_and_zip_of_it(tmp_path):
    root = make_class_folder(tmp_path / "pets", ("cat", "dog", "fox"), per_class=5)
    (root / ".ipynb_checkpoints").mkdir()
    (root / ".ipynb_checkpoints" / "x.png").write_bytes(png_bytes(pattern(99)))
    (root / "cat" / ".DS_Store").write_bytes(b"\x00\x01junk")
    ds = load_dataset(root)
    assert ds.class_names == ["cat", "dog", "fox"] and len(ds) == 15 and ds.official_split is None
    assert not ds.skipped  # hidden files are ignored, not reported as broken
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                z.write(f, "pets/" + f.relative_to(root).as_posix())  # a wrapping folder, as zips often have
    from_zip = load_dataset(archive)
    assert from_zip.ids == ds.ids and np.array_equal(from_zip.images, ds.images)


def test_presplit_folder(tmp_path):
    make_class_folder(tmp_path, ("a", "b"), per_class=4, split="train")
    make_class_folder(tmp_path, ("a", "b"), per_class=2, split="val", start=100)
    make_class_folder(tmp_path, ("a", "b"), per_class=3, split="test", start=200)
    ds = load_dataset(tmp_path)
    assert [int((ds.official_split == s).sum()) for s in ("train", "val", "test")] == [8, 4, 6]


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((10, 20, 3), np.uint8)
    a[:, :5] = 255  # a white band on the left of a landscape image
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    for c in ("x", "y"):
        (tmp_path / c).mkdir()
        (tmp_path / c / "img.jpg").write_bytes(png_bytes(a, fmt="JPEG", exif=exif.tobytes(), quality=95))
    ds = load_dataset(tmp_path)
    assert ds.item_shape == (20, 10, 3)  # displayed upright: portrait
    assert ds.images[0, :5].mean() > 200 and ds.images[0, -5:].mean() < 50  # band now on top


def test_colour_modes_convert_consistently(tmp_path):
    rgb = pattern(1, (8, 8))
    gray = pattern(2, (8, 8), channels=1)
    files = {
        "rgb.png": png_bytes(rgb),
        "rgba.png": png_bytes(np.dstack([rgb, np.full((8, 8), 255, np.uint8)])),
        "pal.png": _to_bytes(Image.fromarray(rgb).convert("P")),
        "cmyk.jpg": _to_bytes(Image.fromarray(rgb).convert("CMYK"), "JPEG"),
        "gray.png": png_bytes(gray),
        "gray16.png": _to_bytes(Image.fromarray(gray.astype(np.uint16) * 257)),
    }
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for name, data in files.items():
            (tmp_path / c / name).write_bytes(data)
    ds = load_dataset(tmp_path)  # 4 colour vs 2 gray files per class: the majority is RGB
    assert ds.channels == 3 and any("colour modes are mixed" in n for n in ds.notes)
    by_id = dict(zip(ds.ids, ds.images))
    assert np.array_equal(by_id["a/rgba.png"], rgb) and np.array_equal(by_id["a/rgb.png"], rgb)
    assert np.array_equal(by_id["a/gray16.png"], by_id["a/gray.png"])  # 16-bit scaled, not clipped
    assert np.array_equal(by_id["a/gray.png"][..., 0], gray) and np.ptp(by_id["a/gray.png"], axis=2).max() == 0
    one = load_dataset(tmp_path, channels=1)
    assert one.channels == 1
    assert np.array_equal(dict(zip(one.ids, one.images))["a/gray16.png"][..., 0], gray)


def _to_bytes(img, fmt="PNG"):
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def test_mixed_sizes_resize_to_most_common_and_report(tmp_path):
    make_class_folder(tmp_path, ("a", "b"), per_class=3, size=(12, 12))
    (tmp_path / "a" / "big.png").write_bytes(png_bytes(pattern(7, (40, 30))))
    ds = load_dataset(tmp_path)
    assert ds.item_shape == (12, 12, 3) and "12x12" in ds.notes[0] and "40x30" in ds.notes[0]
    assert load_dataset(tmp_path, image_size=20).item_shape == (20, 20, 3)


def test_large_folder_is_decoded_lazily(tmp_path):
    make_class_folder(tmp_path, ("a", "b"), per_class=4)
    eager = load_dataset(tmp_path)
    lazy = load_dataset(tmp_path, max_memory=100)
    assert lazy.is_lazy and not eager.is_lazy
    assert np.array_equal(np.asarray(lazy.images), eager.images)
    assert np.array_equal(lazy.images[3], eager.images[3])
    assert lazy.content_hashes() == eager.content_hashes()
    assert np.array_equal(lazy.subset([5, 1]).flat(), eager.flat([5, 1]))


def test_array_sources_can_be_resized_and_recoloured():
    ds = load_dataset("digits", image_size=16, channels=3)
    assert ds.item_shape == (16, 16, 3)
    assert np.array_equal(ds.images[..., 0], ds.images[..., 2])


def test_named_dataset_missing_says_what_to_do(tmp_path):
    with pytest.raises(ClasslabError) as e:
        load_dataset("mnist", data_dir=tmp_path)
    msg = str(e.value)
    assert "classlab download mnist" in msg and "train-images-idx3-ubyte.gz" in msg and str(tmp_path / "mnist") in msg


def test_unknown_name_lists_known_ones():
    with pytest.raises(ClasslabError, match="digits, mnist, fashion-mnist, cifar10, cifar100"):
        load_dataset("imagenet-9000")


def test_one_class_is_refused(tmp_path):
    make_class_folder(tmp_path, ("only",), per_class=3)
    with pytest.raises(ClasslabError, match="at least two"):
        load_dataset(tmp_path)


def test_empty_class_folder_is_left_out_with_warning(tmp_path, capsys):
    make_class_folder(tmp_path, ("a", "b"), per_class=3)
    (tmp_path / "empty").mkdir()
    ds = load_dataset(tmp_path)
    assert ds.class_names == ["a", "b"]
    assert "class folder 'empty'" in capsys.readouterr().err


def test_fashion_mnist_found_in_debian_location(tmp_path, monkeypatch):
    from classlab.data import registry

    src = need(DATA / "fashion-mnist")
    monkeypatch.setitem(registry.SYSTEM_DIRS, "fashion-mnist", [src])
    ds = load_dataset("fashion-mnist", data_dir=tmp_path)  # not in the data dir: found in the system dir
    assert len(ds) == 70000 and ds.class_names[-1] == "Ankle boot"


def test_decoded_trees_are_cached_and_invalidated(tmp_path, private_cache, capsys):
    root = make_class_folder(tmp_path / "d", ("a", "b"), per_class=4)
    (root / "a" / "broken.png").write_text("not an image")
    first = load_dataset(root)
    assert len(list(private_cache.glob("*.npz"))) == 1
    capsys.readouterr()
    second = load_dataset(root)
    assert "broken.png" in capsys.readouterr().err  # the skip is still reported from the cache
    assert second.ids == first.ids and np.array_equal(second.images, first.images)
    assert second.skipped == first.skipped and second.official_split is None
    (root / "b" / "new.png").write_bytes(png_bytes(pattern(4321)))
    third = load_dataset(root)  # a new file changes the key
    assert len(third) == len(first) + 1
    assert load_dataset(root, image_size=6).item_shape == (6, 6, 3)  # options are part of the key
    np.savez(private_cache / "junk.npz", x=np.zeros(1))
    for entry in private_cache.glob("*.npz"):
        entry.write_bytes(b"damaged")
    assert np.array_equal(load_dataset(root).images, third.images)  # damaged entries are rebuilt
