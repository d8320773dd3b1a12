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
    groups = [sorted(g["files"]) for g in near["groups"]]  # groups: each member pairs with the first
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


def _moved(a, dx, dy):
    pad = np.pad(a, ((4, 4), (4, 4), (0, 0)), mode="edge")  # the uncovered edge repeats the border
    return pad[4 - dy : 4 - dy + a.shape[0], 4 - dx : 4 - dx + a.shape[1]].copy()


def _boxed(a, fraction, x, y):
    side = round(32 * (1 - fraction))
    return np.asarray(Image.fromarray(a).crop((x, y, x + side, y + side)).resize((32, 32), Image.Resampling.BILINEAR))


def _rotated(a, degrees):
    big = np.pad(a, ((8, 8), (8, 8), (0, 0)), mode="edge")
    return np.asarray(Image.fromarray(big).rotate(degrees, Image.Resampling.BILINEAR))[8:-8, 8:-8].copy()


COPIES = {  # near-duplicates as people make them (issue 29), each made 6 times from different pictures
    "shift": lambda a, k: _moved(a, (1, 2, 3, 4, -2, -3)[k], (0, 2, -1, 4, 0, 3)[k]),
    "crop": lambda a, k: _boxed(a, (0.05, 0.1, 0.15, 0.2, 0.1, 0.15)[k], (0, 3, 1, 6, 0, 4)[k], (1, 0, 4, 2, 3, 0)[k]),
    "zoom": lambda a, k: _boxed(a, (0.05, 0.1, 0.15, 0.2, 0.08, 0.12)[k], *([round(32 * (0.05, 0.1, 0.15, 0.2, 0.08, 0.12)[k] / 2)] * 2)),
    "rotate": lambda a, k: _rotated(a, (-5, -3, -1, 2, 4, 5)[k]),
    "colour+shift": lambda a, k: _moved(np.asarray(ImageEnhance.Color(Image.fromarray(a)).enhance((0.6, 1.4)[k % 2])),
                                        1 + k % 3, 0),
    "jpeg": lambda a, k: _jpeg(a, 40 + 8 * k),
}


def test_shifted_cropped_zoomed_and_rotated_copies_are_found_and_different_pictures_are_not(cifar_images):
    """80 real CIFAR-10 pictures and 36 copies of 36 of them: at least 5 of each transformation's 6 copies are
    found (shifts and crops were the misses before: 0.18 and 0.28 recall), and no two distinct pictures pair."""
    originals = np.stack([a for _, a in cifar_images])
    copies, truth = [], {}
    for t, (name, make) in enumerate(COPIES.items()):
        for k in range(6):
            source = 6 * t + k
            truth[(source, len(originals) + len(copies))] = name
            copies.append(make(originals[source], k))
    pairs = nd.find(np.concatenate([originals, np.stack(copies)]))
    found = {(i, j) for i, j, *_ in pairs}
    for name in COPIES:
        mine = {p for p, n in truth.items() if n == name}
        assert len(mine & found) >= 5, (name, sorted(mine - found))
    assert not [p for p in found if p[1] < len(originals)]  # never two distinct originals
    assert all(p in truth or (p[0] >= len(originals)) for p in found)


def test_alignment_confirms_a_moved_copy_that_plain_correlation_rejects(cifar_images):
    a = cifar_images[11][1]
    moved = _moved(a, 3, 2)
    thumbs = nd.grayscale_32(np.stack([a, moved]))
    unit = thumbs - thumbs.mean((1, 2), keepdims=True)
    unit /= np.linalg.norm(unit.reshape(2, -1), axis=1)[:, None, None]
    assert float((unit[0] * unit[1]).sum()) < nd.MIN_SIMILARITY  # what the doctor used to compare
    moved_view = nd.VIEWS.index((1.0, 3, 3))  # the hashed view nearest a (3, 2) move
    similarity = nd.aligned_similarity(thumbs, np.array([1]), np.array([0]), np.array([moved_view]))
    assert similarity[0] >= nd.MIN_SIMILARITY


def test_groups_hold_only_images_that_pair_with_their_representative():
    """A chain of single links (0-1, 1-2, 2-3, 3-4, and 5-6) is not one group: each group is an image and
    partners it confirmed against itself."""
    pairs = [(0, 1, 2, 0.95), (1, 2, 2, 0.95), (2, 3, 2, 0.95), (3, 4, 2, 0.95), (5, 6, 0, 1.0)]
    found = nd.groups(pairs, 7)
    linked = {(a, b) for a, b, *_ in pairs} | {(b, a) for a, b, *_ in pairs}
    assert all((g[0], m) in linked for g in found for m in g[1:])
    assert len({m for g in found for m in g}) == sum(len(g) for g in found)  # no image in two groups
    assert [5, 6] in found and max(len(g) for g in found) == 3


def test_look_alike_pictures_share_a_layout_but_not_detail_and_do_not_pair(cifar_images):
    """A look-alike made of a real picture's layout (it blurred) and another picture's fine detail, as two ships
    of one shape on one sea: its hash is a candidate and its layout correlates above MIN_SIMILARITY (the doctor
    used to pair such pictures), but its detail does not: not a pair. A 2 px moved copy of the picture is."""
    from PIL import ImageFilter

    def blurred(a):
        return np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(1.5))).astype(np.float32)
    picture, other = cifar_images[11][1], cifar_images[18][1]
    look_alike = np.clip(blurred(picture) + other - blurred(other), 0, 255).astype(np.uint8)
    images = np.stack([picture, look_alike, _moved(picture, 2, 0)])
    thumbs = nd.grayscale_32(images)
    assert (0, 1) in nd.candidates(thumbs)
    one = (np.array([0]), np.array([1]), np.array([0]))
    assert nd.aligned_similarity(thumbs, *one)[0] >= nd.MIN_SIMILARITY  # the layout alone would have paired them
    assert nd.aligned_similarity(nd.local_detail(thumbs), *one)[0] < nd.MIN_DETAIL
    found = {(i, j) for i, j, *_ in nd.find(images)}
    assert (0, 1) not in found and (0, 2) in found


def test_a_copy_matched_in_the_wrong_view_is_aligned_again_and_different_pictures_stay_apart(cifar_images):
    """A copy moved 4 px whose hashes happened to match closest in a zoomed view correlates at only 0.8-0.9 in
    that view's alignment (the doctor missed such shifts: recall 0.78); best_alignment tries every move of
    either image, so each is confirmed in a plain move. Two different pictures given the same chance stay apart."""
    originals = np.stack([a for _, a in cifar_images[:40]])
    moved = np.stack([_moved(a, (4, -4, 0, 0)[k % 4], (0, 0, 4, -4)[k % 4]) for k, a in enumerate(originals)])
    thumbs = nd.grayscale_32(np.concatenate([originals, moved]))
    n = len(originals)
    copies, zoomed = np.arange(n, 2 * n), np.full(n, nd.VIEWS.index((0.9, 0, 0)))
    in_zoom = nd.aligned_similarity(thumbs, copies, np.arange(n), zoomed)
    short = np.flatnonzero((in_zoom >= nd.REALIGN_FROM) & (in_zoom < nd.MIN_SIMILARITY))
    assert len(short) >= 3, in_zoom.round(2)  # the case this test is about occurs among these 40 pictures
    similarity, viewed, others, views = nd.best_alignment(thumbs, copies[short], short, zoomed[short], in_zoom[short])
    assert (similarity >= nd.MIN_SIMILARITY).all() and (views < nd.MOVES).all(), (similarity, views)
    assert all({v, o} == {c, s} for v, o, c, s in zip(viewed, others, copies[short], short))  # the same pairs
    # different pictures (each original against the next), given a correlation just short of the bar
    apart = nd.best_alignment(thumbs, np.arange(n - 1), np.arange(1, n), zoomed[1:], np.full(n - 1, 0.85))[0]
    assert (apart < nd.MIN_SIMILARITY).mean() >= 0.9
