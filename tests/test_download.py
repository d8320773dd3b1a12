"""Downloads against a local HTTP server: checksums, atomic writes, offline messages."""

import hashlib

import pytest

from classlab import ClasslabError, load_dataset
from classlab.data import download, download_file
from classlab.data import registry


def test_download_verifies_and_writes_atomically(server, tmp_path):
    root, url = server
    payload = b"x" * 300_000
    (root / "file.bin").write_bytes(payload)
    good = "sha256:" + hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "out" / "file.bin"
    assert download_file(url + "file.bin", dest, good, progress=False).read_bytes() == payload
    dest.unlink()
    with pytest.raises(ClasslabError, match="corrupt"):
        download_file(url + "file.bin", dest, "md5:" + "0" * 32, progress=False)
    assert not dest.exists() and not list(dest.parent.glob("*.part"))  # nothing half-written left behind


def test_unreachable_server_says_where_to_put_the_file(tmp_path):
    with pytest.raises(ClasslabError, match=str(tmp_path / "f.gz")):
        download_file("http://127.0.0.1:9/f.gz", tmp_path / "f.gz", "md5:" + "0" * 32, timeout=2, progress=False)


def test_download_named_dataset_from_a_mirror_then_load_it(server, tmp_path, monkeypatch):
    """Serve real MNIST-format files (the ../shared copies) under the official names and checksums."""
    from conftest import DATA, need

    root, url = server
    src = need(DATA / "mnist")
    remotes = []
    for f in sorted(src.iterdir()):
        (root / f.name).write_bytes(f.read_bytes())
        remotes.append(registry.Remote(f.name, "unused", "md5:" + hashlib.md5(f.read_bytes()).hexdigest()))
    monkeypatch.setitem(registry.NAMED, "mnist", remotes)
    folder = download("mnist", tmp_path / "data", mirror=url)
    assert sorted(p.name for p in folder.iterdir()) == sorted(r.filename for r in remotes)
    assert len(load_dataset("mnist", data_dir=tmp_path / "data")) == 70000


def test_nothing_to_download_for_digits():
    with pytest.raises(ClasslabError, match="downloadable datasets: mnist"):
        download("digits")
