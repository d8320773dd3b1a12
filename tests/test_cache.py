"""The on-disk cache keeps itself under a size cap (least recently used first), never touches files that are
not its own, and ``classlab cache`` shows, prunes and clears it."""

import json
import os
import time

import numpy as np
import pytest
import torch

from classlab.cli import main
from classlab.data import cache
from classlab.data.folders import load_folder
from classlab.inference.preprocess import Preprocessing
from classlab.backbones.features import cached_features
from conftest import make_class_folder

KEY_A, KEY_B = "a" * 32, "b" * 32


def _age(path, seconds_ago: float) -> None:
    then = time.time() - seconds_ago
    os.utime(path, (then, then))


def _decoded_entries(folder):
    return sorted(e.path.name for e in cache.entries(folder) if e.kind == "decoded")


@pytest.mark.parametrize("text, size", [("0", 0), ("512", 512), ("500M", 500 * 2**20), ("1.5GB", 3 * 2**29),
                                        ("2g", 2 * 2**30), (" 10 kb ", 10 * 2**10)])
def test_parse_size(text, size):
    assert cache.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "5x", "-1G", "G", "1e3M", "nan"])
def test_parse_size_refuses_what_it_cannot_read(text):
    with pytest.raises(cache.ClasslabError, match="like 500M"):
        cache.parse_size(text)


def test_a_new_entry_past_the_cap_evicts_the_least_recently_used(tmp_path, private_cache, monkeypatch):
    first = make_class_folder(tmp_path / "first", per_class=8)
    second = make_class_folder(tmp_path / "second", per_class=8, start=50)
    load_folder(first)
    (entry_a,) = cache.entries(private_cache)
    monkeypatch.setenv(cache.MAX_SIZE_ENV, str(int(entry_a.size * 1.5)))  # room for one tree, not two
    loaded = load_folder(second)
    assert _decoded_entries(private_cache) != [entry_a.path.name] and len(_decoded_entries(private_cache)) == 1
    # the evicted tree is decoded again, to the same pixels, and in turn evicts the second
    again = load_folder(first)
    assert _decoded_entries(private_cache) == [entry_a.path.name]
    assert not np.array_equal(again.images, loaded.images)


def test_a_cache_hit_counts_as_a_use(tmp_path, private_cache):
    first = make_class_folder(tmp_path / "first")
    second = make_class_folder(tmp_path / "second", start=50)
    load_folder(first)
    (entry_first,) = cache.entries(private_cache)
    load_folder(second)
    entry_second = next(e for e in cache.entries(private_cache) if e.path != entry_first.path)
    _age(entry_first.path, 200)
    _age(entry_second.path, 100)
    load_folder(first)  # a hit: the first tree is now the most recently used
    assert cache.entries(private_cache)[-1].path == entry_first.path
    removed, freed = cache.prune(max_bytes=entry_first.size, folder=private_cache)
    assert (removed, freed) == (1, entry_second.size)
    assert [e.path for e in cache.entries(private_cache)] == [entry_first.path]


def test_feature_entries_are_capped_and_touched(private_cache, monkeypatch):
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    pre = Preprocessing(image_size=[8, 8], channels=3, mean=[0.5] * 3, std=[0.25] * 3)
    images = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(6) % 2
    spec = {"backbone": "tiny"}
    feats, hit = cached_features(backbone, images, labels, pre, torch.device("cpu"), spec, progress=False)
    (entry,) = cache.entries(private_cache)
    assert entry.kind == "features" and not hit
    _age(entry.path, 1000)
    again, hit = cached_features(backbone, images, labels, pre, torch.device("cpu"), spec, progress=False)
    assert hit and torch.equal(again, feats)
    assert time.time() - cache.entries(private_cache)[0].last_used < 100  # the hit refreshed it
    monkeypatch.setenv(cache.MAX_SIZE_ENV, "1")  # smaller than any entry: each new one evicts the others
    cached_features(backbone, images, labels, pre, torch.device("cpu"), {"backbone": "other"}, progress=False)
    (kept,) = cache.entries(private_cache)
    assert kept.path != entry.path  # the entry just written stays even when it alone passes the cap


def test_prune_removes_only_its_own_files(tmp_path):
    folder = tmp_path / "shared-folder"
    (folder / "features").mkdir(parents=True)
    own = [folder / f"{KEY_A}.npz", folder / "features" / f"{KEY_B}.npy"]
    foreign = [folder / "notes.txt", folder / f"{KEY_A}.npz.bak", folder / "features" / "model.npy",
               folder / f"{KEY_A.upper()}.npz"]
    stale_part, fresh_part = folder / f".{KEY_B}.npz.x1.part", folder / f".{KEY_A}.npz.x2.part"
    for path in own + foreign + [stale_part, fresh_part]:
        path.write_bytes(b"x" * 100)
    (folder / f"{KEY_B}.npz").mkdir()  # a folder with an entry's name is not an entry
    os.symlink(folder / "notes.txt", folder / "features" / f"{'c' * 32}.npy")  # nor is a link
    _age(stale_part, 2 * cache.STALE_PART_SECONDS)
    assert sorted(e.kind for e in cache.entries(folder)) == ["decoded", "features", "partial", "partial"]
    assert cache.prune(max_bytes=0, older_than=0, folder=folder) == (3, 300)
    assert all(p.exists() for p in foreign + [fresh_part]) and not any(p.exists() for p in own + [stale_part])
    assert (folder / f"{KEY_B}.npz").is_dir() and (folder / "notes.txt").read_bytes() == b"x" * 100


def test_prune_by_age(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    for key, days in ((KEY_A, 40), (KEY_B, 2)):
        (folder / f"{key}.npz").write_bytes(b"x" * 10)
        _age(folder / f"{key}.npz", days * 86400)
    assert cache.prune(older_than=30 * 86400, folder=folder) == (1, 10)
    assert _decoded_entries(folder) == [f"{KEY_B}.npz"]


def test_cache_command_info_prune_clear(tmp_path, private_cache, capsys):
    load_folder(make_class_folder(tmp_path / "first"))
    load_folder(make_class_folder(tmp_path / "second", start=50))
    (private_cache / "keep.txt").write_text("not the cache's")
    sizes = [e.size for e in cache.entries(private_cache)]
    assert main(["cache"]) == 0
    out = capsys.readouterr().out
    assert str(private_cache) in out and "decoded image trees" in out and "2 entries" in out
    assert main(["cache", "prune", "--max-size", str(max(sizes)), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["removed"] == 1 and report["kinds"]["decoded"]["entries"] == 1
    assert report["total_bytes"] == sum(sizes) - report["freed_bytes"]
    assert main(["cache", "clear"]) == 0
    assert "removed 1 entries" in capsys.readouterr().out
    assert cache.entries(private_cache) == [] and (private_cache / "keep.txt").exists()


def test_cache_command_errors_are_one_line(tmp_path, monkeypatch, capsys):
    assert main(["cache", "prune", "--max-size", "lots"]) == 2
    assert "write it like 500M" in capsys.readouterr().err
    assert main(["cache", "prune", "--older-than", "-3"]) == 2
    assert "0 or more" in capsys.readouterr().err
    monkeypatch.setenv(cache.MAX_SIZE_ENV, "big")
    assert main(["cache"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and cache.MAX_SIZE_ENV in err
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    monkeypatch.setenv("CLASSLAB_CACHE", str(not_a_folder))
    monkeypatch.delenv(cache.MAX_SIZE_ENV)
    assert main(["cache", "clear"]) == 0
    assert "is not a folder" in capsys.readouterr().out and not_a_folder.read_text() == "x"
    monkeypatch.setenv("CLASSLAB_CACHE", "off")
    assert main(["cache", "clear"]) == 0
    assert "the cache is off" in capsys.readouterr().out


def test_a_bad_cap_setting_warns_and_the_run_goes_on(tmp_path, private_cache, monkeypatch, capsys):
    monkeypatch.setenv(cache.MAX_SIZE_ENV, "lots of it")
    ds = load_folder(make_class_folder(tmp_path / "first"))
    load_folder(make_class_folder(tmp_path / "second", start=50))
    assert len(ds) == 12 and len(cache.entries(private_cache)) == 2
    assert capsys.readouterr().err.count("CLASSLAB_CACHE_MAX_SIZE: cannot read the size 'lots of it'") == 1
