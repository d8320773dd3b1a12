"""Making a dataset in the workbench (Teachable Machine's flow): name it, add images class by class, train on
it. Through Starlette's TestClient, with real digits, hostile names and files, and the user's own folders,
which must never be written to."""

import io
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from classlab import load_dataset  # noqa: E402
from classlab.web.app import create_app  # noqa: E402
from classlab.web.collect import MARKER, add_images  # noqa: E402

from conftest import png_bytes  # noqa: E402
from test_web import ORIGIN, wait_for  # noqa: E402


def digits_of(value: int, n: int, fmt: str = "PNG") -> list[tuple[str, bytes]]:
    ds = load_dataset("digits")
    out = []
    for i in np.flatnonzero(ds.labels == value)[:n]:
        buffer = io.BytesIO()
        Image.fromarray(ds.images[i, :, :, 0]).resize((32, 32)).save(buffer, format=fmt)
        out.append((f"digit-{i}.{fmt.lower()}", buffer.getvalue()))
    return out


@pytest.fixture
def bench(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with TestClient(create_app(tmp_path / "runs", data_dir=data), base_url="http://127.0.0.1") as client:
        yield client, data


def post(client, dataset, class_name, files):
    """The form posted; a success redirects to the page with its result (followed here, as a browser does)."""
    return client.post("/data/new", data={"dataset": dataset, "class_name": class_name}, headers=ORIGIN,
                       files=[("images", (name, data, "image/png")) for name, data in files])


def test_a_dataset_made_class_by_class_trains(bench):
    client, data = bench
    runs = data.parent / "runs"
    assert 'id="collect-form"' in client.get("/data/new").text and 'href="/data/new"' in client.get("/data").text
    zeros = digits_of(0, 12)
    page = post(client, "my-digits", "zero", zeros + [("notes.txt", b"not an image"), ("empty.png", b"")])
    assert page.status_code == 200 and [r.status_code for r in page.history] == [303]  # reloads never re-post
    assert "<strong>12</strong> images added to <strong>my-digits / zero</strong>" in page.text
    assert "notes.txt: not a readable image" in page.text and "empty.png: the file is empty" in page.text
    assert "add a second class to train" in page.text
    again = post(client, "my-digits", "zero", zeros[:3])  # the same files once more: kept once
    assert "<strong>0</strong> images added" in again.text and "3 already there (identical), skipped" in again.text
    ones = digits_of(1, 10, "JPEG")
    ones = [(f"a folder/sub/{name}".replace(".jpeg", ".png"), body) for name, body in ones]  # misnamed JPEGs
    page = post(client, "my-digits", "one", ones)
    assert "<strong>10</strong> images added to <strong>my-digits / one</strong>" in page.text
    assert 'href="/train?dataset=my-digits&amp;command=transfer"' in page.text  # few photos: transfer learning
    assert "zero (12)" in page.text and "one (10)" in page.text
    strip = client.get("/data/new/sample.png", params={"dataset": "my-digits", "class": "one"})
    assert strip.status_code == 200 and Image.open(io.BytesIO(strip.content)).size == (8 * 50, 48)  # 8 latest
    for params in ({"dataset": "my-digits", "class": "two"}, {"dataset": "../x", "class": "one"},
                   {"dataset": "my-digits", "class": "../one"}, {}):
        assert client.get("/data/new/sample.png", params=params).status_code == 404
    kept = sorted((data / "my-digits" / "one").iterdir())
    assert [p.suffix for p in kept] == [".jpg"] * 10  # named by what they are, bytes as uploaded
    assert sorted(p.read_bytes() for p in kept) == sorted(body for _, body in ones)
    ds = load_dataset(data / "my-digits")
    assert ds.class_names == ["one", "zero"] and np.bincount(ds.labels).tolist() == [10, 12]
    from classlab.commands.check import check

    doctor = check(str(data / "my-digits"))  # the marker is classlab's own: no stray hidden file
    assert doctor["warnings"] == 0 and doctor["errors"] == 0 and not doctor["problems"].get("hidden")
    assert 'value="my-digits" selected' in client.get("/data?dataset=my-digits").text  # the doctor's form
    form = client.get("/train?dataset=my-digits&command=transfer").text
    assert 'value="my-digits" selected' in form and 'value="transfer" selected' in form
    form = {"command": "train", "dataset": "my-digits", "model": "mlp", "epochs": "3", "balance": "1"}
    start = client.post("/jobs", data=form, headers=ORIGIN, follow_redirects=False)
    panel = wait_for(start.headers["location"], client)
    assert 'id="job-status">done<' in panel, panel[-2000:]
    run_id = re.search(r'run <a href="/runs/([^"]+)"', panel).group(1)
    config = json.loads((runs / run_id / "config.json").read_text())  # "Balance the classes" ticked
    assert config["options"]["train"]["class_weight"] == "balanced" and "balanced" in config["argv"]


@pytest.mark.parametrize("dataset, class_name, message", [
    ("../up", "a", "cannot name a dataset"), (".hidden", "a", "cannot name a dataset"),
    ("a/b", "a", "cannot name a dataset"), ("digits", "a", "built-in dataset"), ("MNIST", "a", "built-in"),
    ("x" * 65, "a", "cannot name a dataset"), ("", "a", "cannot name a dataset"),
    ("ok", "../x", "cannot name a class"), ("ok", ".x", "cannot name a class"), ("ok", "a/b", "cannot name a class"),
    ("ok", "", "cannot name a class"), ("ok", "c:d", "cannot name a class"), ("ok", "tab\there", "cannot name a class"),
])
def test_bad_names_are_refused_and_write_nothing(bench, dataset, class_name, message):
    client, data = bench
    page = post(client, dataset, class_name, digits_of(3, 2))
    assert page.status_code == 400 and message in page.text
    assert os.listdir(data) == []


def test_the_users_own_folders_are_never_written_to(bench, tmp_path):
    client, data = bench
    (data / "photos" / "cats").mkdir(parents=True)
    (data / "photos" / "cats" / "mine.png").write_bytes(png_bytes(np.zeros((4, 4), np.uint8)))
    (tmp_path / "elsewhere").mkdir()
    (data / "linked").symlink_to(tmp_path / "elsewhere")
    for name in ("photos", "linked"):
        page = post(client, name, "cats", digits_of(4, 2))
        assert page.status_code == 400 and "was not made here" in page.text
    assert os.listdir(data / "photos" / "cats") == ["mine.png"] and os.listdir(tmp_path / "elsewhere") == []
    assert client.get("/data/new/sample.png", params={"dataset": "photos", "class": "cats"}).status_code == 404
    post(client, "mine", "a", digits_of(4, 2))
    (data / "mine" / "notes.txt").write_text("a file where a class would be")
    page = post(client, "mine", "notes.txt", digits_of(5, 1))
    assert page.status_code == 400 and "not a class folder made here" in page.text


def test_nothing_readable_writes_nothing_and_no_data_folder_says_how(bench, tmp_path):
    client, data = bench
    huge = np.zeros((7000, 7000), np.uint8)  # 49 M pixels in a small PNG
    page = post(client, "fresh", "a", [("huge.png", png_bytes(huge)), ("bad.png", b"\x89PNG\r\n\x1a\nbroken")])
    assert page.status_code == 400 and "huge.png: 7000x7000 pixels is over" in page.text
    assert "bad.png: not a readable image" in page.text and os.listdir(data) == []
    assert "choose one or more image files" in post(client, "fresh", "a", []).text
    assert client.post("/data/new", data={"dataset": "x", "class_name": "a"},
                       headers={"origin": "http://evil.example"}).status_code == 403
    with TestClient(create_app(tmp_path / "runs"), base_url="http://127.0.0.1") as bare:
        assert "classlab serve --data-dir FOLDER" in bare.get("/data/new").text
        page = post(bare, "fresh", "a", digits_of(2, 1))
        assert page.status_code == 400 and "No data folder is served" in page.text


def test_upload_names_are_made_safe_and_numbered(tmp_path):
    image = digits_of(6, 1)[0][1]
    other = digits_of(6, 2)[1][1]
    first = add_images(tmp_path, "safe", "six", [("../../etc/passwd.png", image), ("C:\\x\\y z!.png", other)])
    assert first.kept == ["passwd.png", "y_z.png"] and (tmp_path / "safe" / MARKER).is_file()
    more = [("passwd.png", digits_of(6, 3)[2][1]), ("...png", digits_of(6, 4)[3][1])]
    second = add_images(tmp_path, "safe", "six", more)
    assert second.kept == ["passwd-2.png", "image.png"]
    assert sorted(os.listdir(tmp_path / "safe" / "six")) == ["image.png", "passwd-2.png", "passwd.png", "y_z.png"]
    assert not any(re.search(r"[^A-Za-z0-9_.-]", name) for name in os.listdir(tmp_path / "safe" / "six"))


def test_a_full_disk_keeps_what_was_written_and_names_the_rest(tmp_path, monkeypatch):
    """Writes stop at the first failure with a line per file not added; a data folder that cannot be written
    to is one line; a FIFO or a link planted in a class folder is neither read (no hang) nor a duplicate."""
    import errno

    from classlab.errors import ClasslabError
    from classlab.web import collect

    real, calls = collect.write_new_file, []

    def fills_up(folder, stem, suffix, data):
        calls.append(stem)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(folder, stem, suffix, data)

    monkeypatch.setattr(collect, "write_new_file", fills_up)
    added = add_images(tmp_path, "disk", "eight", digits_of(8, 3))
    assert len(added.kept) == 1 and len(added.errors) == 2
    assert all(e.endswith(": not written (No space left on device)") for e in added.errors)
    assert len(os.listdir(tmp_path / "disk" / "eight")) == 1  # no partial file
    monkeypatch.setattr(collect, "write_new_file", real)
    os.mkfifo(tmp_path / "disk" / "eight" / "pipe.png")
    (tmp_path / "disk" / "eight" / "link.png").symlink_to("/dev/zero")
    again = add_images(tmp_path, "disk", "eight", digits_of(8, 3))
    assert len(again.kept) == 2 and len(again.duplicates) == 1
    monkeypatch.setattr(collect, "write_json", lambda *a: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    with pytest.raises(ClasslabError, match=r"cannot write to the data folder \(Permission denied\); nothing was added"):
        add_images(tmp_path, "other", "a", digits_of(8, 1))
    assert not (tmp_path / "other").exists()  # nothing half-made that would block the name


def digits_zip(classes: dict[str, int], wrap: str = "") -> bytes:
    buffer = io.BytesIO()
    with __import__("zipfile").ZipFile(buffer, "w") as archive:
        for name, digit in classes.items():
            for i, (file, body) in enumerate(digits_of(digit, 10)):
                archive.writestr(f"{wrap}{name}/{file}", body)
    return buffer.getvalue()


def post_zip(client, dataset, body, filename="pets.zip"):
    return client.post("/data/new/zip", data={"dataset": dataset}, headers=ORIGIN,
                       files=[("archive", (filename, body, "application/zip"))] if body is not None else [])


def test_a_zip_of_class_folders_is_kept_whole_and_trains(bench):
    client, data = bench
    body = digits_zip({"zero": 0, "one": 1, "two": 2}, wrap="mine/")
    page = post_zip(client, "zipped", body)
    assert page.status_code == 200 and [r.status_code for r in page.history] == [303]
    assert "<strong>zipped.zip</strong> kept: 30 images in 3 classes (one 10, two 10, zero 10)" in page.text
    assert (data / "zipped.zip").read_bytes() == body and os.listdir(data) == ["zipped.zip"]  # no .part left
    assert load_dataset(data / "zipped.zip").class_names == ["one", "two", "zero"]
    assert 'value="zipped.zip" selected' in client.get("/train?dataset=zipped.zip").text
    again = post_zip(client, "zipped", body)
    assert again.status_code == 400 and "an upload never replaces a dataset" in again.text
    assert (data / "zipped.zip").read_bytes() == body


@pytest.mark.parametrize("body, message", [
    (b"PK\x03\x04 not really a zip", "cannot open the upload as a zip"),
    (b"", "cannot open the upload as a zip"),
    (None, "choose a .zip of class folders"),
])
def test_a_bad_zip_upload_is_refused_and_leaves_nothing(bench, body, message):
    client, data = bench
    page = post_zip(client, "broken", body)
    assert page.status_code == 400 and message in page.text, page.text[-800:]
    assert os.listdir(data) == []


def test_a_zip_needs_two_classes_and_a_free_name(bench):
    client, data = bench
    page = post_zip(client, "single", digits_zip({"zero": 0}))
    assert page.status_code == 400 and "images of 1 class folder(s); a dataset needs two or more" in page.text
    post(client, "taken", "zero", digits_of(0, 2))  # a dataset made here is a folder: its name is taken too
    page = post_zip(client, "taken", digits_zip({"zero": 0, "one": 1}))
    assert page.status_code == 400 and "already exists" in page.text
    assert sorted(os.listdir(data)) == ["taken"]
    assert post_zip(client, "../up", digits_zip({"a": 0, "b": 1})).status_code == 400


def test_an_image_removed_from_a_class_is_moved_aside_and_restored(bench):
    client, data = bench
    post(client, "pets", "zero", digits_of(0, 3))
    post(client, "pets", "one", digits_of(1, 3))
    assert 'href="/data/new/class?dataset=pets&amp;class=zero"' in client.get("/data/new").text
    page = client.get("/data/new/class", params={"dataset": "pets", "class": "zero"})
    files = re.findall(r'name="file" value="([^"]+)"', page.text)
    assert page.status_code == 200 and len(files) == 3 and "<title>pets / zero · classlab</title>" in page.text
    thumb = client.get("/data/new/image", params={"dataset": "pets", "class": "zero", "file": files[0]})
    assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.content)).size == (32, 32)  # never enlarged
    body = (data / "pets" / "zero" / files[0]).read_bytes()
    done = client.post("/data/new/remove", data={"dataset": "pets", "class": "zero", "file": files[0]}, headers=ORIGIN)
    assert done.status_code == 200 and [r.status_code for r in done.history] == [303]
    in_class = re.findall(r'name="file" value="([^"]+)"', done.text.split('id="removed-images"')[0])
    assert f"Removed <strong>{files[0]}</strong>" in done.text and in_class == files[1:]
    assert (data / "pets" / ".classlab-removed" / "zero" / files[0]).read_bytes() == body  # kept, not deleted
    ds = load_dataset(data / "pets")
    assert dict(zip(ds.class_names, np.bincount(ds.labels).tolist())) == {"one": 3, "zero": 2}
    from classlab.commands.check import check

    assert check(str(data / "pets"))["warnings"] == 0  # the removed folder is the workbench's own
    for form in ({"dataset": "pets", "class": "zero", "file": "../one/" + files[1]},
                 {"dataset": "pets", "class": "zero", "file": "../.classlab-dataset.json"},
                 {"dataset": "pets", "class": "..", "file": "zero"}, {"dataset": "..", "class": "pets", "file": "x"}):
        assert client.post("/data/new/remove", data=form, headers=ORIGIN).status_code == 400
        assert client.get("/data/new/image", params=form).status_code == 404
    assert client.get("/data/new/class", params={"dataset": "pets", "class": "../x"}).status_code == 404
    assert sorted(os.listdir(data / "pets" / "zero")) == sorted(files[1:])
    assert client.post("/data/new/remove", data={"dataset": "pets", "class": "zero", "file": files[1]},
                       headers={"origin": "http://evil.example"}).status_code == 403
    removed = client.get("/data/new/class", params={"dataset": "pets", "class": "zero"}).text
    assert 'action="/data/new/restore"' in removed and f"file={files[0]}&amp;removed=1" in removed
    assert client.get("/data/new/image", params={"dataset": "pets", "class": "zero", "file": files[0],
                                                  "removed": "1"}).status_code == 200
    back = client.post("/data/new/restore", data={"dataset": "pets", "class": "zero", "file": files[0]},
                       headers=ORIGIN)
    assert back.status_code == 200 and f"Restored <strong>{files[0]}</strong>" in back.text
    assert (data / "pets" / "zero" / files[0]).read_bytes() == body and not os.listdir(
        data / "pets" / ".classlab-removed" / "zero")
    assert client.post("/data/new/restore", data={"dataset": "pets", "class": "zero", "file": files[0]},
                       headers=ORIGIN).status_code == 400  # nothing of that name is aside any more


def test_train_on_it_without_pretrained_weights_says_so_and_takes_a_file_or_trains_from_scratch(
        bench, tmp_path, monkeypatch):
    """Make a dataset of real photos -> Train on it, on a machine without MobileNetV2's weights: the page says
    so before anything starts and offers a CNN from scratch; starting transfer is refused in words; a weights
    file given by path trains; an upload is installed in the torch hub cache once its digits check out."""
    import zipfile

    from conftest import DATA, MOBILENET, need

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    monkeypatch.setenv("CLASSLAB_OFFLINE", "1")
    client, data = bench
    with zipfile.ZipFile(need(DATA / "hymenoptera" / "hymenoptera_data.zip")) as z:
        for cls in ("ants", "bees"):
            names = sorted(n for n in z.namelist() if n.startswith(f"hymenoptera_data/train/{cls}/")
                           and n.endswith(".jpg"))[:8]
            page = post(client, "bugs", cls, [(n.rsplit("/", 1)[-1], z.read(n)) for n in names])
            assert "<strong>8</strong> images added" in page.text
    form_page = client.get("/train?dataset=bugs&command=transfer").text
    assert "Pretrained weights not on this machine" in form_page and "mobilenet_v2-7ebf99e0.pth" in form_page
    assert 'href="/train?command=train&amp;dataset=bugs"' in form_page  # the way on without weights
    transfer = {"command": "transfer", "dataset": "bugs", "backbone": "mobilenet_v2", "mode": "features"}
    refused = client.post("/jobs", data=transfer, headers=ORIGIN)
    assert refused.status_code == 400 and "not on this machine" in refused.text and "train a model" in refused.text
    bad_path = client.post("/jobs", data={**transfer, "weights_path": str(tmp_path)}, headers=ORIGIN)
    assert bad_path.status_code == 400 and "is not a .pth or .pt weights file" in bad_path.text
    start = client.post("/jobs", data={**transfer, "weights_path": str(need(MOBILENET))}, headers=ORIGIN,
                        follow_redirects=False)
    assert f"--weights {MOBILENET.resolve()}" in client.get(start.headers["location"]).text
    panel = wait_for(start.headers["location"], client, timeout=300)
    assert 'id="job-status">done<' in panel, panel[-2000:]
    scratch = client.post("/jobs", data={"command": "train", "dataset": "bugs", "model": "cnn", "epochs": "2"},
                          headers=ORIGIN, follow_redirects=False)
    panel = wait_for(scratch.headers["location"], client, timeout=300)
    assert 'id="job-status">done<' in panel, panel[-2000:]
    run_id = re.search(r'run <a href="/runs/([^"]+)"', panel).group(1)
    runs = data.parent / "runs"
    assert json.loads((runs / run_id / "config.json").read_text())["options"]["model"]["image_size"][0] <= 64
    wrong = client.post("/jobs", data=transfer, files={"weights_file": ("mobilenet_v2-b0353104.pth", b"junk")},
                        headers=ORIGIN)
    assert wrong.status_code == 400 and "does not match its name" in wrong.text
    with open(MOBILENET, "rb") as f:
        started = client.post("/jobs", data=transfer, files={"weights_file": (MOBILENET.name, f.read())},
                              headers=ORIGIN, follow_redirects=False)
    assert started.status_code == 303
    assert (tmp_path / "empty-torch-home" / "hub" / "checkpoints" / MOBILENET.name).read_bytes() == MOBILENET.read_bytes()
    notice = client.get("/train?dataset=bugs&command=transfer").text
    assert "mobilenet_v2-7ebf99e0.pth" not in notice and "Ready: mobilenet_v2." in notice
    job = started.headers["location"]
    assert "--weights" not in client.get(job).text  # the installed file is found where transfer looks first
    client.post(job + "/cancel", headers=ORIGIN)  # it would train as the job above did
    assert re.search(r'id="job-status">(\w+)<', wait_for(job, client)).group(1) in ("cancelled", "done")
