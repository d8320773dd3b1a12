"""The dataset doctor finds every listed problem, and every other command skips bad files."""

import hashlib
import json

import numpy as np
import pytest

from classlab import load_dataset
from classlab.commands.check import check, report_text
from conftest import make_class_folder, pattern, png_bytes


def _tree_digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def messy(tmp_path):
    root = make_class_folder(tmp_path / "messy", ("cat", "dog"), per_class=8, size=(32, 32))
    full = png_bytes(pattern(9001, (32, 32)), fmt="JPEG")
    (root / "cat" / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (root / "cat" / "empty.jpg").write_bytes(b"")
    (root / "dog" / "notes.png").write_text("this is not a picture")
    (root / "dog" / "really_png.jpg").write_bytes(png_bytes(pattern(9002, (32, 32))))
    (root / "dog" / "tiny.png").write_bytes(png_bytes(pattern(9003, (4, 4))))
    (root / "dog" / "gray.png").write_bytes(png_bytes(pattern(9004, (32, 32), channels=1)))
    (root / "dog" / "readme.txt").write_text("labels by hand")
    (root / "bird").mkdir()
    (root / ".ipynb_checkpoints").mkdir()
    (root / ".ipynb_checkpoints" / "a.png").write_bytes(png_bytes(pattern(9005, (32, 32))))
    (root / "dog" / "copy_of_cat.png").write_bytes((root / "cat" / "000.png").read_bytes())  # conflicting labels
    return root


def test_doctor_finds_everything_and_modifies_nothing(messy):
    before = _tree_digest(messy)
    r = check(str(messy))
    assert _tree_digest(messy) == before
    p = r["problems"]
    assert [e["file"] for e in p["corrupt"]] == ["cat/truncated.jpg"] and "truncated" in p["corrupt"][0]["reason"]
    assert [e["file"] for e in p["zero_byte"]] == ["cat/empty.jpg"]
    assert [e["file"] for e in p["not_an_image"]] == ["dog/notes.png"]
    assert p["wrong_extension"] == [{"file": "dog/really_png.jpg", "format": "PNG"}]
    assert [e["file"] for e in p["tiny_images"]] == ["dog/tiny.png"]
    assert p["non_image_files"] == ["dog/readme.txt"]
    assert p["empty_class_folders"] == ["bird"]
    assert ".ipynb_checkpoints" in p["hidden"]
    assert r["mixed_colour_modes"] and r["colour_modes"]["L"] == 1
    conflicting = r["duplicates"]["conflicting_labels"]
    assert len(conflicting) == 1 and {m["id"] for m in conflicting[0]} == {"cat/000.png", "dog/copy_of_cat.png"}
    assert r["class_counts"] == {"bird": 0, "cat": 8, "dog": 12}
    assert r["imbalance_ratio"] == pytest.approx(12 / 8)
    assert r["errors"] == 4  # corrupt, zero-byte, not an image, empty class folder
    text = report_text(r)
    for needle in ("truncated.jpg", "empty.jpg", "notes.png", "really_png.jpg", "bird", "imbalance ratio 1.50"):
        assert needle in text
    json.dumps(r)  # JSON-ready


def test_other_commands_skip_bad_files_with_named_warnings(messy, capsys):
    ds = load_dataset(messy)
    err = capsys.readouterr().err
    for name in ("truncated.jpg", "empty.jpg", "notes.png"):
        assert name in err
        assert not any(i.endswith(name) for i in ds.ids)
    assert "dog/really_png.jpg" in ds.ids and "dog/tiny.png" in ds.ids  # readable, so used
    assert ds.class_names == ["cat", "dog"] and ds.item_shape == (32, 32, 3)


def test_duplicates_across_official_splits(tmp_path):
    make_class_folder(tmp_path, ("a", "b"), per_class=3, split="train")
    make_class_folder(tmp_path, ("a", "b"), per_class=3, split="test", start=0)  # same seeds: same pixels
    r = check(str(tmp_path))
    assert len(r["duplicates"]["across_splits"]) == 6


def test_doctor_on_array_datasets():
    r = check("digits")
    assert r["layout"] == "arrays" and r["num_classes"] == 10 and r["problems"]["tiny_images"]
    assert sum(r["class_counts"].values()) == 1797


def test_huge_image_is_downscaled_not_a_crash(tmp_path):
    make_class_folder(tmp_path, ("a", "b"), per_class=3, size=(16, 16))
    big = np.zeros((10000, 10000), np.uint8)
    big[:5000] = 255
    (tmp_path / "a" / "huge.png").write_bytes(png_bytes(big))
    ds = load_dataset(tmp_path)
    img = dict(zip(ds.ids, ds.images))["a/huge.png"]
    assert img.shape == (16, 16, 3) and img[:7].min() > 200 and img[-7:].max() < 50
