"""The data-centric doctor: near-duplicates by content (perceptual hash + thumbnail similarity) within and
across splits, and image-quality findings, on real CIFAR-10 images and their re-encoded, shifted copies."""

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from classlab.cli import main
from classlab.data import near_duplicates as nd
from conftest import CIFAR_ZIP, need


@pytest.fixture(scope="module")
def cifar_images():
    """80 real CIFAR-10 training images (two classes), read from the zip in place."""
    with zipfile.ZipFile(need(CIFAR_ZIP)) as z:
        names = sorted(n for n in z.namelist() if n.startswith("train/") and n.endswith(".jpg"))
        picked = [n for n in names if "/airplane/" in n][:40] + [n for n in names if "/frog/" in n][:40]
        return [(n.split("/")[-2], np.asarray(Image.open(io.BytesIO(z.read(n))).convert("RGB"))) for n in picked]


def _jpeg(a, quality=50):
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def test_hash_is_robust_to_reencoding_and_colour_but_tells_pictures_apart(cifar_images):
    images = np.stack([a for _, a in cifar_images])
    bits = nd.phash(images)
    copies = nd.phash(np.stack([_jpeg(a) for a in images]))
    brighter = nd.phash(np.stack([np.asarray(ImageEnhance.Brightness(Image.fromarray(a)).enhance(1.15))
                                  for a in images]))
    assert np.median((bits != copies).sum(1)) <= 2 and np.median((bits != brighter).sum(1)) <= 2
    different = (bits[:, None] != bits[None]).sum(2)[np.triu_indices(len(bits), 1)]
    assert np.median(different) > 24


def test_radius_search_equals_brute_force():
    rng = np.random.default_rng(0)
    bits = (rng.random((700, 64)) < 0.5).astype(np.uint8)
    bits[100] = bits[5]
    bits[101] = bits[5] ^ (np.arange(64) < 7)  # 7 bits away
    found = {(i, j): d for i, j, d in nd.near_duplicate_pairs(bits, 8)}
    brute = {(i, j): int((bits[i] != bits[j]).sum()) for i in range(700) for j in range(i + 1, 700)
             if (bits[i] != bits[j]).sum() <= 8}
    assert found == brute and found[(5, 100)] == 0 and found[(5, 101)] == 7


def test_flat_images_match_only_flat_images_of_the_same_brightness(cifar_images):
    """A constant image's hash is noise (no AC coefficients) and its correlation undefined: solid red, white
    and black hash alike, but only two near-black images are near-duplicates of each other."""
    def solid(rgb):
        return np.broadcast_to(np.array(rgb, np.uint8), (32, 32, 3)).copy()

    black, near_black = solid((0, 0, 0)), solid((3, 2, 4))
    images = np.stack([solid((255, 0, 0)), solid((255, 255, 255)), black, near_black, cifar_images[0][1]])
    bits = nd.phash(images)
    assert (bits[0] != bits[1]).sum() <= nd.SURE_DISTANCE  # the hash alone would call red and white alike
    assert [(i, j) for i, j, *_ in nd.find(images)] == [(2, 3)]


def _folder(root, cifar_images, extra):
    for k, (cls, a) in enumerate(cifar_images):
        split = "test" if k % 10 == 0 else "train"
        (root / split / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(root / split / cls / f"{k:03d}.png")
    for rel, a in extra.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(root / rel)
    return root


def test_the_doctor_finds_near_duplicates_across_and_within_splits_and_names_them(tmp_path, cifar_images, runs_dir,
                                                                                 capsys):
    train_image = cifar_images[1][1]  # an airplane in train
    shifted = np.roll(cifar_images[2][1], 1, axis=1)
    shifted[:, 0] = cifar_images[2][1][:, 0]
    root = _folder(tmp_path / "d", cifar_images, {
        "test/airplane/reencoded.jpg": _jpeg(train_image, 60),  # a leak: the same shot in test
        "train/airplane/brighter.png": np.asarray(ImageEnhance.Brightness(Image.fromarray(cifar_images[3][1])).enhance(1.1)),
        "train/airplane/shifted.png": shifted})
    assert main(["check", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    near = report["near_duplicates"]
    across = [sorted(p["files"]) for p in near["across_splits"]]
    assert sorted(["test/airplane/reencoded.jpg", "train/airplane/001.png"]) in across
    within = [sorted(p["files"]) for p in near["within_split"]]
    assert sorted(["train/airplane/003.png", "train/airplane/brighter.png"]) in within
    flagged = {f for p in near["across_splits"] + near["within_split"] for f in p["files"]}
    originals = {f"{s}/{c}/{k:03d}.png" for k, (c, _) in enumerate(cifar_images)
                 for s in ("test" if k % 10 == 0 else "train",)}
    # no pair of two distinct originals (the dataset's own near-duplicates aside: none in this sample)
    assert not [p for p in near["across_splits"] + near["within_split"] if set(p["files"]) <= originals]
    assert report["warnings"] >= 1 and "test/airplane/reencoded.jpg" in flagged
    groups = [sorted(g["files"]) for g in near["groups"]]  # connected groups: every pair inside one
    assert sorted(["test/airplane/reencoded.jpg", "train/airplane/001.png"]) in groups
    assert all(g["crosses_splits"] == (len(set(g["splits"])) > 1) for g in near["groups"])
    assert sum(len(g) - 1 for g in groups) <= len(near["across_splits"]) + len(near["within_split"])
    run = next(runs_dir.glob("*-check-*"))
    assert (run / "near_duplicates.png").is_file() and "near_duplicates.png" in (run / "report.md").read_text()


def test_image_quality_findings_name_their_files(tmp_path, cifar_images, runs_dir, capsys):
    blurred = np.asarray(Image.fromarray(cifar_images[5][1]).filter(ImageFilter.GaussianBlur(3)))
    root = _folder(tmp_path / "d", cifar_images, {
        "train/frog/black.png": np.zeros((32, 32, 3), np.uint8),
        "train/frog/white.png": np.full((32, 32, 3), 255, np.uint8),
        "train/frog/flat.png": np.full((32, 32, 3), 120, np.uint8),
        "train/frog/blurred.png": blurred,
        "train/frog/wide.png": np.asarray(Image.fromarray(cifar_images[6][1]).resize((128, 32)))})
    assert main(["check", str(root)]) == 0
    text = capsys.readouterr().out
    report = json.loads((next(runs_dir.glob("*-check-*")) / "check.json").read_text())
    q = report["quality"]
    assert "train/frog/black.png" in q["very_dark"] and "train/frog/white.png" in q["very_bright"]
    assert "train/frog/flat.png" in q["low_information"] and "train/frog/blurred.png" in q["blurry"]
    assert "train/frog/wide.png" in q["extreme_aspect_ratio"]
    assert "very dark images" in text and "blurry images" in text


def test_data_the_hash_cannot_separate_is_skipped_with_a_reason(runs_dir, capsys):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (24, 24, 1), dtype=np.uint8)
    alike = np.clip(base[None].astype(int) + rng.integers(-3, 4, (400, 24, 24, 1)), 0, 255).astype(np.uint8)
    with pytest.raises(nd.TooAlike):
        nd.find(alike)
    assert main(["check", "digits"]) == 0
    assert "near-duplicate search skipped: images under 16 px" in capsys.readouterr().out


def test_dedupe_test_drops_the_leaked_test_images_and_the_manifest_records_them(tmp_path, cifar_images, runs_dir,
                                                                               capsys):
    import csv

    root = _folder(tmp_path / "d", cifar_images, {"test/airplane/reencoded.jpg": _jpeg(cifar_images[1][1], 60)})
    assert main(["knn", str(root), "--k", "1", "--dedupe", "test"]) == 0
    err = capsys.readouterr().err
    assert "dropped 1 test images that have a near-duplicate in train or val" in err
    run = next(runs_dir.iterdir())
    rows = {r["id"]: r["split"] for r in csv.DictReader(open(run / "split.csv"))}
    assert rows["test/airplane/reencoded.jpg"] == "dropped" and rows["test/airplane/000.png"] == "test"
    assert "near-duplicates of seen images dropped" in (run / "report.md").read_text()
    leaks = json.loads((run / "leakage.json").read_text())["near_duplicates_across_splits"]
    assert ["test/airplane/reencoded.jpg", "train/airplane/001.png"] in [sorted(p["ids"]) for p in leaks]
    assert main(["knn", str(root), "--k", "1", "--split", str(run / "split.csv")]) == 0  # reproduced as saved
    second = sorted(runs_dir.iterdir())[-1]
    assert (second / "split.csv").read_text() == (run / "split.csv").read_text()


def test_the_embedding_pass_finds_shifted_copies_outliers_and_neighbours_with_other_labels(
        tmp_path, cifar_images, runs_dir, torch_home, capsys):
    shifted = np.roll(cifar_images[5][1], 2, axis=1)
    shifted[:, :2] = cifar_images[5][1][:, :1]
    root = _folder(tmp_path / "d", cifar_images, {"test/airplane/shifted.png": shifted,
                                                  "train/frog/black.png": np.zeros((32, 32, 3), np.uint8)})
    assert main(["check", str(root), "--embeddings", "mobilenet_v2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert not any("shifted.png" in p["files"] for p in report["near_duplicates"]["across_splits"])  # hash misses it
    e = report["embeddings"]
    assert sorted(["test/airplane/shifted.png", "train/airplane/005.png"]) in \
        [sorted(p["files"]) for p in e["near_duplicates"]["across_splits"]]
    assert e["calibration"]["copies_kept"] >= 0.85 and 0 < e["threshold"] < 1
    assert "train/frog/black.png" in [o["file"] for o in e["outliers"]]
    assert all(n["neighbours_say"] != n["class"] for n in e["neighbours_disagree"])
    run = next(runs_dir.iterdir())  # and every finding has its thumbnails in the report
    assert (run / "near_duplicates_embeddings.png").is_file() and (run / "outliers.png").is_file()
    assert (run / "neighbours_disagree.png").is_file() == bool(e["neighbours_disagree"])
    assert "![Outliers (embeddings)](outliers.png)" in (run / "report.md").read_text()
    assert e["features_from_cache"] is False
    assert main(["check", str(root), "--embeddings", "mobilenet_v2", "--json"]) == 0  # bounded by the cache
    again = json.loads(capsys.readouterr().out)["embeddings"]
    assert again["features_from_cache"] is True and again["near_duplicates"] == e["near_duplicates"]
