"""Hostile and broken input, by category: every case ends in a clean result, a named warning, or a
one-line error (exit status 2), with nothing lost and nothing hanging. Inputs are generated here (real
MNIST images where the data matters); no large file is committed."""

import http.server
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from classlab import ClasslabError, load_dataset
from classlab.cli import main
from conftest import DATA, make_class_folder, need, pattern, png_bytes


def one_line_error(capsys, code, needle=None):
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("classlab: error")]
    assert code == 2 and len(err) == 1, err
    if needle:
        assert needle in err[0], err[0]
    return err[0]


def mnist_npz(path: Path, n=60, **arrays) -> Path:
    """Real MNIST digits in the MedMNIST layout; ``arrays`` replace members."""
    ds = load_dataset("mnist", data_dir=need(DATA))
    x, y = ds.images[:n, ..., 0], ds.labels[:n]
    members = {"train_images": x[: n // 2], "train_labels": y[: n // 2],
               "test_images": x[n // 2 :], "test_labels": y[n // 2 :], **arrays}
    np.savez(path, **{k: v for k, v in members.items() if v is not None})
    return path


def run_child(code: str, timeout=120, limit_bytes=None):
    """Python in a child process, optionally under an address-space limit; (returncode, stderr)."""
    pre = ""
    if limit_bytes:
        pre = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({limit_bytes}, {limit_bytes}))\n"
    result = subprocess.run([sys.executable, "-c", pre + code], capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stderr


# -- resource exhaustion and hangs ------------------------------------------------------------------

def test_a_single_huge_label_value_does_not_allocate_a_class_per_value(tmp_path):
    y = np.arange(60) % 2
    y[5] = 10**12
    ds = load_dataset(mnist_npz(tmp_path / "big.npz", train_labels=y[:30], test_labels=y[30:]))
    assert ds.class_names == ["0", "1", str(10**12)] and ds.labels.max() == 2
    assert any("mapped to class indices" in n for n in ds.notes)


def test_more_distinct_labels_than_any_classifier_has_are_refused(tmp_path):
    y = np.arange(60) * 1000  # ids, not classes
    with pytest.raises(ClasslabError, match="distinct labels"):
        from classlab.data import validate

        validate.class_indices([np.arange(20_000)], "x.npz", [])
    load_dataset(mnist_npz(tmp_path / "ids.npz", train_labels=y[:30], test_labels=y[30:]))  # 60 classes: fine


def _zip_with_member(path: Path, name: str, size: int) -> Path:
    """A zip whose member inflates to ``size`` zero bytes (written in blocks: the test stays small)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for cls in ("a", "b"):
            for i in range(3):
                z.writestr(f"{cls}/{i}.png", png_bytes(pattern(i + (9 if cls == "b" else 0))))
        with z.open(name, "w", force_zip64=True) as f:
            block = bytes(1 << 20)
            for _ in range(size >> 20):
                f.write(block)
    return path


def test_a_zip_bomb_is_refused_before_it_is_inflated_under_a_memory_limit(tmp_path):
    bomb = _zip_with_member(tmp_path / "bomb.zip", "a/bomb.png", 200 << 20)
    assert bomb.stat().st_size < 5 << 20
    code, err = run_child(f"from classlab.data import load_dataset\nds = load_dataset({str(bomb)!r})\n"
                          "print(len(ds))", limit_bytes=1 << 30)
    assert code == 0, err
    assert "a/bomb.png" in err and "zip bomb" in err


def test_a_fifo_or_a_device_named_png_is_skipped_without_blocking(tmp_path):
    root = make_class_folder(tmp_path / "d", per_class=4)
    os.mkfifo(root / "cat" / "pipe.png")
    os.symlink("/dev/zero", root / "dog" / "zero.png")
    code, err = run_child(f"from classlab.data import load_dataset\nprint(len(load_dataset({str(root)!r})))",
                          timeout=60)
    assert code == 0, err
    assert "cat/pipe.png" in err and "FIFO" in err and "dog/zero.png" in err and "device" in err


def test_symlink_loops_and_dangling_links_are_named(tmp_path, capsys):
    root = make_class_folder(tmp_path / "d", per_class=4)
    os.symlink(root / "cat", root / "cat" / "again")  # a folder loop
    os.symlink(root / "cat" / "loop.png", root / "cat" / "loop.png")  # a file loop
    os.symlink(tmp_path / "gone.png", root / "dog" / "gone.png")
    ds = load_dataset(root)
    err = capsys.readouterr().err
    assert len(ds) == 8 and "symlink loop" in err and "gone.png" in err and "does not exist" in err


class _Slow(http.server.BaseHTTPRequestHandler):
    mode = "trickle"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "abc" if self.mode == "bad-length" else "1000")
        self.end_headers()
        if self.mode == "bad-length":
            self.wfile.write(b"x" * 1000)
            return
        try:
            for _ in range(1000):
                if self.mode == "stall":
                    time.sleep(5)
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up, as it should
            pass

    def log_message(self, *a):
        pass


@pytest.fixture
def slow_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("mode, needle", [("trickle", "took longer than"), ("stall", "failed after")])
def test_a_download_that_trickles_or_stalls_ends_and_leaves_nothing(slow_server, tmp_path, mode, needle):
    from classlab.data import download_file

    _Slow.mode = mode
    url = f"http://127.0.0.1:{slow_server.server_address[1]}/f.gz"
    t0 = time.monotonic()
    with pytest.raises(ClasslabError, match=needle):
        download_file(url, tmp_path / "f.gz", "md5:" + "0" * 32, timeout=1, progress=False, deadline=2)
    assert time.monotonic() - t0 < 10 and list(tmp_path.iterdir()) == []


def test_a_non_numeric_content_length_is_an_unknown_length(slow_server, tmp_path):
    import hashlib

    from classlab.data import download_file

    _Slow.mode = "bad-length"
    url = f"http://127.0.0.1:{slow_server.server_address[1]}/f.bin"
    good = "md5:" + hashlib.md5(b"x" * 1000).hexdigest()
    assert download_file(url, tmp_path / "f.bin", good, progress=False).read_bytes() == b"x" * 1000


def test_a_server_that_does_not_speak_http_is_one_error(tmp_path):
    from classlab.data import download_file

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)

    def answer():
        conn, _ = sock.accept()
        conn.recv(1024)
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        conn.close()
    threading.Thread(target=answer, daemon=True).start()
    with pytest.raises(ClasslabError, match="cannot download"):
        download_file(f"http://127.0.0.1:{sock.getsockname()[1]}/f", tmp_path / "f", "md5:" + "0" * 32,
                      timeout=2, progress=False)
    sock.close()
    assert list(tmp_path.iterdir()) == []


# -- silently wrong results ---------------------------------------------------------------------------

def test_float_pixels_in_0_1_are_scaled_with_a_note_not_cast_to_zero(tmp_path):
    ds = load_dataset("mnist", data_dir=need(DATA))
    x = ds.images[:60, ..., 0]
    floats = load_dataset(mnist_npz(tmp_path / "f.npz", train_images=x[:30] / 255.0, test_images=x[30:] / 255.0))
    assert np.array_equal(floats.images[..., 0], x) and any("scaled to 0..255" in n for n in floats.notes)


@pytest.mark.parametrize("images, needle", [
    (np.full((30, 28, 28), np.nan, np.float32), "NaN"),
    (np.full((30, 28, 28), -1.0), "negative"),
    (np.full((30, 28, 28), 300, np.int32), "0..255"),
    (np.full((30, 28, 28), 1000.0), "up to 1000"),
])
def test_impossible_pixels_are_refused(tmp_path, images, needle):
    with pytest.raises(ClasslabError, match=needle):
        load_dataset(mnist_npz(tmp_path / "bad.npz", train_images=images))


def test_float_labels_whole_are_read_fractional_are_refused(tmp_path):
    y = (np.arange(60) % 3).astype(np.float64)
    ds = load_dataset(mnist_npz(tmp_path / "whole.npz", train_labels=y[:30], test_labels=y[30:]))
    assert ds.num_classes == 3 and any("float labels" in n for n in ds.notes)
    y[3] = 1.5
    with pytest.raises(ClasslabError, match="fractional labels"):
        load_dataset(mnist_npz(tmp_path / "frac.npz", train_labels=y[:30], test_labels=y[30:]))


def test_four_channel_arrays_are_rgba_images_not_volumes(tmp_path):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (60, 8, 8, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    ds = load_dataset(mnist_npz(tmp_path / "rgba.npz", train_images=rgba[:30], test_images=rgba[30:]))
    assert not ds.is_volume and ds.images.shape[1:] == (8, 8, 3) and np.array_equal(ds.images, rgba[..., :3])


def test_a_class_named_train_beside_other_classes_is_refused_with_how_to_settle_it(tmp_path, capsys):
    root = make_class_folder(tmp_path / "d", ("cat", "dog"), per_class=4)
    make_class_folder(root / "train", ("x", "y"), per_class=4, start=50)
    line = one_line_error(capsys, main(["explore", str(root)]), "mixes split folders (train/)")
    assert "rename it" in line


def test_a_given_validation_folder_without_test_is_the_held_out_test_split(tmp_path, runs_dir):
    from classlab.data import make_split

    root = tmp_path / "d"
    make_class_folder(root, ("a", "b"), per_class=20, split="train")
    make_class_folder(root, ("a", "b"), per_class=5, split="val", start=500)
    ds = load_dataset(root)
    split = make_split(ds)
    assert np.array_equal(split.assignment == "test", ds.official_split == "val")
    carved = split.indices("val")
    assert len(carved) == 4 and (ds.official_split[carved] == "train").all()  # 10% of train/, stratified
    assert sorted(ds.labels[carved].tolist()) == [0, 0, 1, 1]
    assert "official validation folder as the test split" in split.method


def test_a_file_rewritten_with_its_timestamp_kept_is_decoded_again(tmp_path):
    root = make_class_folder(tmp_path / "d", per_class=4, size=(12, 12))
    target = root / "cat" / "000.png"
    first = load_dataset(root)
    stat = target.stat()
    new = png_bytes(pattern(999, (12, 12)))
    target.write_bytes(new)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = load_dataset(root)
    k = second.ids.index("cat/000.png")
    assert not np.array_equal(first.images[k], second.images[k])


def test_a_symlinked_class_folder_is_followed(tmp_path):
    root = make_class_folder(tmp_path / "d", ("cat",), per_class=4)
    elsewhere = make_class_folder(tmp_path / "other", ("dog",), per_class=4, start=70)
    os.symlink(elsewhere / "dog", root / "dog")
    assert load_dataset(root).class_names == ["cat", "dog"]


def test_manifest_labels_and_duplicate_ids_are_checked(tmp_path):
    from classlab.data import load_manifest, make_split, save_manifest

    root = make_class_folder(tmp_path / "d", per_class=10)
    ds = load_dataset(root)
    path = save_manifest(ds, make_split(ds), tmp_path / "split.csv")
    lines = path.read_text().splitlines()
    (tmp_path / "dup.csv").write_text("\n".join(lines + [lines[1]]) + "\n")
    with pytest.raises(ClasslabError, match="twice"):
        load_manifest(ds, tmp_path / "dup.csv")
    swapped = [lines[0]] + [line.replace(",cat,", ",dog,") for line in lines[1:]]
    (tmp_path / "relabelled.csv").write_text("\n".join(swapped) + "\n")
    with pytest.raises(ClasslabError, match="other labels"):
        load_manifest(ds, tmp_path / "relabelled.csv")
    (tmp_path / "latin1.csv").write_bytes(path.read_bytes().replace(b"cat/000.png", b"cat/\xe9.png"))
    with pytest.raises(ClasslabError, match="gone"):
        load_manifest(ds, tmp_path / "latin1.csv")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    import classlab

    return classlab.train("digits", "logreg", epochs=1, progress=False, runs_dir=tmp_path_factory.mktemp("runs"))


def test_a_checkpoint_with_zero_std_is_refused_not_predicting_nan(digits_run, tmp_path, capsys):
    import shutil

    from classlab.checkpoint import load_checkpoint, save_checkpoint

    run = tmp_path / "run"
    shutil.copytree(digits_run.run_dir, run)
    ckpt = load_checkpoint(run / "best.pt")
    ckpt["preprocessing"]["std"] = [0.0]
    save_checkpoint(run / "best.pt", ckpt)
    one_line_error(capsys, main(["export", str(run), "--format", "torchscript"]), "std must be positive")


def test_two_predict_calls_in_the_same_second_keep_both_files(digits_run, tmp_path, capsys):
    image = tmp_path / "x.png"
    image.write_bytes(png_bytes(load_dataset("digits").images[0, :, :, 0]))
    assert main(["predict", str(digits_run.run_dir), str(image)]) == 0
    assert main(["predict", str(digits_run.run_dir), str(image)]) == 0
    assert len(list(digits_run.run_dir.glob("predict-*.csv"))) >= 2


# -- tracebacks that are now one-line errors ------------------------------------------------------------

def _zip_tree(path: Path, tweak) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for cls in ("a", "b"):
            for i in range(4):
                z.writestr(f"{cls}/{i}.png", png_bytes(pattern(i + (40 if cls == "b" else 0))))
    data = bytearray(path.read_bytes())
    tweak(data)
    path.write_bytes(bytes(data))
    return path


def _set_flags(data: bytearray, name: bytes, flags: int = None, method: int = None):
    """Patch the local and central headers of member ``name``."""
    for sig, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        start = 0
        while (i := data.find(sig, start)) >= 0:
            start = i + 4
            name_at = i + (30 if sig == b"PK\x03\x04" else 46)
            if data[name_at : name_at + len(name)] == name:
                if flags is not None:
                    struct.pack_into("<H", data, i + flag_at, flags)
                if method is not None:
                    struct.pack_into("<H", data, i + method_at, method)


@pytest.mark.parametrize("tweak, reason", [
    (lambda d: _set_flags(d, b"a/0.png", flags=1), "encrypted"),
    (lambda d: _set_flags(d, b"a/1.png", method=99), "compression method"),
    (lambda d: d.__setitem__(slice(d.index(b"IDAT") + 8, d.index(b"IDAT") + 12), b"\0\0\0\0"), "corrupt zip member"),
])
def test_broken_zip_members_are_skipped_with_the_reason(tmp_path, capsys, tweak, reason):
    ds = load_dataset(_zip_tree(tmp_path / "t.zip", tweak))
    assert len(ds) == 7 and reason in capsys.readouterr().err


def test_names_that_are_not_utf8_load_and_report(tmp_path, runs_dir, capsys):
    root = tmp_path / "d"
    make_class_folder(root, ("cat", "dog"), per_class=10)
    bad_class = os.fsdecode(b"caf\xe9")
    (root / bad_class).mkdir()
    for i in range(10):
        (root / bad_class / os.fsdecode(b"\xff%d.png" % i)).write_bytes(png_bytes(pattern(300 + i)))
    assert main(["knn", str(root), "--k", "1"]) == 0
    assert "caf\ufffd" in load_dataset(root).class_names
    run = next(runs_dir.iterdir())
    assert (run / "split.csv").read_bytes().count(b"\xff") == 10  # ids kept byte for byte


def test_an_unwritable_runs_dir_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    one_line_error(capsys, main(["explore", "digits", "--runs-dir", str(blocker / "runs")]), "run directory")


def test_a_full_disk_is_one_line_and_leaves_no_part_file(tmp_path, monkeypatch, capsys, runs_dir):
    import errno

    from classlab import fileio

    real = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(fileio.os, "fsync", full)
    one_line_error(capsys, main(["explore", "digits"]), "No space left")
    monkeypatch.setattr(fileio.os, "fsync", real)
    assert not list(runs_dir.rglob("*.part"))


@pytest.mark.parametrize("content, needle", [
    (b"", "empty (0 bytes)"), (b"PK\x03\x04 not really", "cannot load checkpoint"), (b"\x80\x02]q\x00.", "cannot load"),
])
def test_broken_checkpoints_are_one_line(digits_run, tmp_path, capsys, content, needle):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(digits_run.run_dir, run)
    (run / "best.pt").write_bytes(content)
    one_line_error(capsys, main(["predict", str(run), str(run / "curves.png")]), needle)


def test_a_checkpoint_of_something_else_is_one_line(digits_run, tmp_path, capsys):
    import shutil

    import torch

    run = tmp_path / "run"
    shutil.copytree(digits_run.run_dir, run)
    torch.save(torch.zeros(3), run / "best.pt")
    one_line_error(capsys, main(["export", str(run)]), "not a checkpoint")
    torch.save({"weights": torch.zeros(3)}, run / "best.pt")
    one_line_error(capsys, main(["export", str(run)]), "not a classlab model checkpoint")


def _bad_idx(path: Path):
    path.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (path / name).write_bytes(b"\0\0\x08\xff" + b"\0" * 8)
    return path


def _corrupt_gzip(path: Path):
    path.mkdir()
    src = need(DATA / "mnist")
    for f in src.iterdir():
        data = bytearray(f.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
        (path / f.name).write_bytes(bytes(data))
    return path


def _cifar(path: Path):
    import pickle

    folder = path / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({b"labels": [0, 1]}))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a", b"b"]}))
    return path


def _npz(members):
    def make(path: Path):
        np.savez(path.with_suffix(".npz"), **members)
        return path.with_suffix(".npz")
    return make


def _csv(text: bytes):
    def make(path: Path):
        path.with_suffix(".csv").write_bytes(text)
        return path.with_suffix(".csv")
    return make


@pytest.mark.parametrize("make, needle", [
    (_bad_idx, "malformed IDX header"),
    (_corrupt_gzip, "cannot read"),
    (_cifar, "lacks data"),
    (_npz({"train_images": np.array([object()] * 4, dtype=object), "train_labels": np.zeros(4)}), "cannot read train"),
    (_npz({"train_images": np.zeros((4, 8, 8), np.uint8)}), "no train_labels"),
    (_npz({"train_images": np.zeros((4, 8, 8), np.uint8), "train_labels": np.zeros(5)}), "4 images but 5 labels"),
    (_npz({"train_images": np.zeros((0, 8, 8), np.uint8), "train_labels": np.zeros(0)}), "holds no images"),
    (_csv(b"label\n1\n2\n"), "no pixel columns"),
    (_csv(b"label,p\xe9xel1\n0,300\n"), "0..255"),
])
def test_broken_array_sources_are_one_line(tmp_path, capsys, runs_dir, make, needle):
    one_line_error(capsys, main(["explore", str(make(tmp_path / "data"))]), needle)


def test_a_latin1_csv_header_loads(tmp_path):
    rows = "\n".join(f"{i % 2}," + ",".join(str((i * 7 + j) % 256) for j in range(4)) for i in range(20))
    path = tmp_path / "signs.csv"
    path.write_bytes("label,p\xe9xel1,p2,p3,p4\n".encode("latin-1") + rows.encode() + b"\n")
    assert load_dataset(path).images.shape == (20, 2, 2, 1)


@pytest.mark.parametrize("content, needle", [(b"\xff\xfe{}", "not UTF-8"), (b"[1, 2]", "mapping"),
                                             (b'{"epochs": "ten"}', "number"),
                                             (b'{"model_options": [1]}', "model_options")])
def test_broken_configs_are_one_line(tmp_path, capsys, runs_dir, content, needle):
    (tmp_path / "c.json").write_bytes(content)
    one_line_error(capsys, main(["train", "digits", "--config", str(tmp_path / "c.json")]), needle)


@pytest.mark.parametrize("args, needle", [
    (["train", "digits", "-o", "hidden=abc"], "cannot be built"),
    (["train", "digits", "--grad-clip", "nan"], "finite"),
    (["explore", str(Path(__file__)), "--image-size", "4000"], "unsupported file type"),
])
def test_bad_options_are_one_line(args, needle, capsys, runs_dir):
    one_line_error(capsys, main(args), needle)


def test_an_array_dataset_blown_up_by_image_size_is_refused(tmp_path, capsys, runs_dir):
    path = mnist_npz(tmp_path / "m.npz", n=2000)
    one_line_error(capsys, main(["explore", str(path), "--image-size", "4000", "--max-memory", "64"]),
                   "would need")


def test_export_output_that_is_a_file_or_someone_elses_folder(digits_run, tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    one_line_error(capsys, main(["export", str(digits_run.run_dir), "--output", str(tmp_path / "taken")]), "is a file")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("x")
    one_line_error(capsys, main(["export", str(digits_run.run_dir), "--output", str(tmp_path / "notes")]),
                   "other files")
    assert (tmp_path / "notes" / "thesis.tex").read_text() == "x"


def test_runs_lists_past_malformed_config_and_metrics(runs_dir, capsys):
    for name, config, metrics in (("a", "{", None), ("b", "[]", None), ("c", '{"command": "knn"}', '{"accuracy": "x"}')):
        (runs_dir / name).mkdir(parents=True)
        (runs_dir / name / "config.json").write_text(config)
        if metrics:
            (runs_dir / name / "metrics.json").write_text(metrics)
    assert main(["runs"]) == 0
    assert "knn" in capsys.readouterr().out


def test_a_closed_pipe_is_not_a_traceback(runs_dir):
    result = subprocess.run(f"{sys.executable} -m classlab explore digits | head -1", shell=True,
                            capture_output=True, text=True, timeout=120, env={**os.environ})
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


# -- files keep what is theirs ---------------------------------------------------------------------------

def test_run_files_follow_the_umask(runs_dir):
    old = os.umask(0o022)
    try:
        assert main(["explore", "digits"]) == 0
    finally:
        os.umask(old)
    run = next(runs_dir.iterdir())
    assert {oct(p.stat().st_mode & 0o777) for p in run.iterdir() if p.is_file()} == {"0o644"}


def test_a_run_stopped_between_last_and_best_checkpoint_resumes_with_its_best(runs_dir, capsys):
    from classlab.checkpoint import load_checkpoint

    assert main(["train", "digits", "--model", "logreg", "--epochs", "3", "--val-fraction", "0.2"]) == 0
    run = next(runs_dir.iterdir())
    last = load_checkpoint(run / "last.pt")
    best_epoch = last["fit_state"]["best_epoch"]
    (run / "best.pt").unlink()  # as if the disk filled after last.pt of a best epoch was written
    last["fit_state"] = {**last["fit_state"], "best_epoch": last["fit_state"]["epoch"]}
    from classlab.checkpoint import save_checkpoint

    save_checkpoint(run / "last.pt", last)
    assert main(["train", "--resume", str(run), "--epochs", "4"]) == 0
    assert load_checkpoint(run / "best.pt")["fit_state"]["epoch"] >= min(best_epoch, 3)
    assert json.loads((run / "metrics.json").read_text())["accuracy"] > 0.5


def test_predict_on_a_fifo_or_into_a_folder_is_one_line(digits_run, tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe.png")
    one_line_error(capsys, main(["predict", str(digits_run.run_dir), str(tmp_path / "pipe.png")]), "FIFO")
    image = tmp_path / "x.png"
    image.write_bytes(png_bytes(load_dataset("digits").images[0, :, :, 0]))
    one_line_error(capsys, main(["predict", str(digits_run.run_dir), str(image), "--output", str(tmp_path)]),
                   "is a folder")


def test_a_manifest_without_training_rows_says_so(tmp_path, capsys, runs_dir):
    from classlab.data import make_split, save_manifest

    ds = load_dataset("digits")
    split = make_split(ds)
    split.assignment[split.assignment == "train"] = "unused"
    save_manifest(ds, split, tmp_path / "split.csv")
    one_line_error(capsys, main(["knn", "digits", "--split", str(tmp_path / "split.csv")]), "no training images")


def test_an_unreadable_subfolder_is_named_not_skipped_silently(tmp_path, monkeypatch, capsys):
    """Permission bits do not stop root (the tests' user), so the refusal is simulated where os.walk meets it."""
    root = make_class_folder(tmp_path / "d", ("cat", "dog", "emu"), per_class=4)
    real = os.scandir

    def scandir(path="."):
        if str(path).endswith("emu"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)
    monkeypatch.setattr(os, "scandir", scandir)
    ds = load_dataset(root)
    err = capsys.readouterr().err
    assert ds.class_names == ["cat", "dog"] and "emu: cannot read folder (Permission denied)" in err
