import numpy as np
import pytest

from classlab import ClasslabError, load_dataset
from classlab.data import find_leakage, load_manifest, make_split, save_manifest, subsample
from conftest import DATA, make_class_folder, need, pattern, png_bytes


def test_stratified_80_10_10_on_digits():
    ds = load_dataset("digits")
    split = make_split(ds, seed=0)
    sizes = split.sizes()
    assert sum(sizes.values()) == 1797
    assert sizes["test"] == 180 and sizes["val"] == 180 and split.method == "stratified"
    # Stratified: each class's share in every split is within one image of its overall share.
    for s in ("train", "val", "test"):
        idx = split.indices(s)
        expected = ds.class_counts() * len(idx) / len(ds)
        assert np.all(np.abs(ds.class_counts(idx) - expected) <= 1.0)
    again = make_split(ds, seed=0)
    other = make_split(ds, seed=1)
    assert np.array_equal(split.assignment, again.assignment)
    assert not np.array_equal(split.assignment, other.assignment)


def test_official_test_kept_and_val_carved_from_train():
    ds = load_dataset("mnist", data_dir=need(DATA))
    split = make_split(ds, val_fraction=0.1)
    assert np.array_equal(split.indices("test"), np.flatnonzero(ds.official_split == "test"))
    assert split.sizes() == {"train": 54000, "val": 6000, "test": 10000}
    val_counts = ds.class_counts(split.indices("val"))
    train_counts = ds.class_counts(np.flatnonzero(ds.official_split == "train"))
    assert np.all(np.abs(val_counts - train_counts * 0.1) <= 1)


def test_manifest_round_trip_and_change_detection(tmp_path):
    root = make_class_folder(tmp_path / "d", ("a", "b"), per_class=10)
    ds = load_dataset(root)
    split = make_split(ds, seed=3)
    path = save_manifest(ds, split, tmp_path / "split.csv")
    header = path.read_text().splitlines()[0]
    assert header == "id,label,hash,split"
    again = load_manifest(load_dataset(root), path)
    assert np.array_equal(again.assignment, split.assignment)
    # An edited image is caught by its content hash.
    (root / "a" / "000.png").write_bytes(png_bytes(pattern(12345)))
    with pytest.raises(ClasslabError, match="differ"):
        load_manifest(load_dataset(root), path)
    # A new image is caught too.
    (root / "b" / "new.png").write_bytes(png_bytes(pattern(777)))
    with pytest.raises(ClasslabError, match="new"):
        load_manifest(load_dataset(root), path)


def test_leakage_of_identical_images_across_splits(tmp_path):
    root = make_class_folder(tmp_path, ("a", "b"), per_class=10)
    dup = (root / "a" / "000.png").read_bytes()
    for i in range(5):  # five copies: a stratified split must scatter some across splits
        (root / "a" / f"copy{i}.png").write_bytes(dup)
    ds = load_dataset(root)
    split = make_split(ds, seed=0)
    groups = find_leakage(ds, split)
    assert len(groups) == 1
    ids = {m["id"] for m in groups[0]["items"]}
    assert ids == {"a/000.png", *(f"a/copy{i}.png" for i in range(5))}
    assert len({m["split"] for m in groups[0]["items"]}) > 1


def test_too_small_to_split_says_the_minimum(tmp_path):
    make_class_folder(tmp_path, ("a", "b"), per_class=1)
    with pytest.raises(ClasslabError, match="at least"):
        make_split(load_dataset(tmp_path))


@pytest.mark.parametrize("val, test", [(-0.1, 0.1), (0.5, 0.5), (1.2, 0.0)])
def test_absurd_fractions(val, test):
    with pytest.raises(ClasslabError, match="fraction"):
        make_split(load_dataset("digits"), val, test)


def test_subsample_is_stratified_and_bounded():
    ds = load_dataset("digits")
    split = subsample(make_split(ds), ds.labels, {"train": 200, "val": 50, "test": None})
    assert split.sizes() == {"train": 200, "val": 50, "test": 180}
    assert np.all(ds.class_counts(split.indices("train")) >= 19)


def test_leakage_after_subsampling_counts_only_the_images_used(tmp_path):
    """Many duplicated pairs, then --max-train / --max-eval: leakage is recomputed among the images kept
    (unused images are in no split), and equals find_leakage on the subsampled split."""
    root = make_class_folder(tmp_path, ("a", "b"), per_class=30)
    for c in ("a", "b"):
        for i in range(15):  # half of every class has a twin
            (root / c / f"twin{i:03d}.png").write_bytes((root / c / f"{i:03d}.png").read_bytes())
    ds = load_dataset(root)
    full = make_split(ds, seed=0)
    small = subsample(full, ds.labels, {"train": 20, "val": 6, "test": 6}, seed=0)
    assert len(small.leakage) < len(full.leakage)
    assert small.leakage == find_leakage(ds, small)
    for group in small.leakage:
        splits = [item["split"] for item in group["items"]]
        assert "unused" not in splits and len(set(splits)) > 1
