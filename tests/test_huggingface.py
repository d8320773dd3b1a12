"""Hugging Face datasets read offline: an imagefolder with metadata, the hub's Parquet layout and a
save_to_disk folder, each built here with the layout the hub and ``datasets`` write (no hub access), from
real images (scikit-learn's digits), with ClassLabel names kept and the pixels checked against the source."""

import io
import json

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from classlab.data.registry import load_dataset
from classlab.errors import ClasslabError

pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def digits(n=60):
    d = load_digits()
    images = (d.images[:n] * 255 / 16).round().astype(np.uint8)
    return images, d.target[:n]


def png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


FEATURES = {"image": {"_type": "Image"}, "label": {"names": NAMES, "_type": "ClassLabel"}}


def table(images, labels):
    return pa.table({"image": [{"bytes": png(im), "path": None} for im in images], "label": labels.tolist()})


def test_parquet_in_the_hubs_layout(tmp_path):
    images, labels = digits()
    root = tmp_path / "repo" / "data"
    root.mkdir(parents=True)
    meta = {b"huggingface": json.dumps({"info": {"features": FEATURES}}).encode()}
    for split, part in (("train", slice(0, 40)), ("test", slice(40, 60))):
        t = table(images[part], labels[part])
        pq.write_table(t.replace_schema_metadata(meta), root / f"{split}-00000-of-00001.parquet")
    ds = load_dataset(tmp_path / "repo")
    assert ds.class_names == NAMES and len(ds) == 60
    order = np.argsort(ds.ids)
    assert sorted(ds.official_split.tolist()).count("test") == 20
    train = [i for i, item in enumerate(ds.ids) if item.startswith("train-")]
    assert np.array_equal(ds.images[train][..., 0], images[:40]) and np.array_equal(ds.labels[train], labels[:40])
    assert len(set(ds.ids)) == 60 and order is not None


def test_save_to_disk_folder(tmp_path):
    images, labels = digits()
    root = tmp_path / "saved"
    for split, part in (("train", slice(0, 50)), ("test", slice(50, 60))):
        folder = root / split
        folder.mkdir(parents=True)
        t = table(images[part], labels[part])
        with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink:
            with pa.ipc.new_stream(sink, t.schema) as writer:
                writer.write_table(t)
        (folder / "dataset_info.json").write_text(json.dumps({"features": FEATURES}))
        (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    (root / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    ds = load_dataset(root)
    assert ds.class_names == NAMES and len(ds) == 60
    assert ds.official_split.tolist().count("test") == 10
    assert np.array_equal(ds.images[:50, ..., 0], images[:50]) and np.array_equal(ds.labels[:50], labels[:50])


def test_imagefolder_with_metadata_csv_and_jsonl(tmp_path):
    images, labels = digits(30)
    root = tmp_path / "imgs"
    (root / "train" / "pics").mkdir(parents=True)
    (root / "test").mkdir()
    rows = []
    for i in range(20):
        (root / "train" / "pics" / f"{i}.png").write_bytes(png(images[i]))
        rows.append(f"pics/{i}.png,{NAMES[labels[i]]}")
    (root / "train" / "metadata.csv").write_text("file_name,label\n" + "\n".join(rows) + "\n")
    lines = []
    for i in range(20, 30):
        (root / "test" / f"{i}.png").write_bytes(png(images[i]))
        lines.append(json.dumps({"file_name": f"{i}.png", "digit": NAMES[labels[i]]}))  # another label column
    (root / "test" / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    ds = load_dataset(root)
    assert len(ds) == 30 and ds.official_split.tolist().count("test") == 10
    by_id = dict(zip(ds.ids, ds.labels))
    assert ds.class_names[by_id["train/pics/3.png"]] == NAMES[labels[3]]
    assert ds.class_names[by_id["test/25.png"]] == NAMES[labels[25]]


def test_the_cli_trains_on_parquet(tmp_path, capsys):
    from classlab.cli import main

    images, labels = digits(200)
    pq.write_table(table(images, labels).replace_schema_metadata(
        {b"huggingface": json.dumps({"info": {"features": FEATURES}}).encode()}), tmp_path / "digits.parquet")
    assert main(["knn", str(tmp_path / "digits.parquet"), "--k", "1", "--runs-dir", str(tmp_path / "runs")]) == 0
    assert "accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("layout, message", [
    ("bad-parquet", "is not a readable Parquet file"),
    ("no-label", "expected an image column and a label column"),
    ("escape", "is not a file inside"),
    ("label-out-of-range", "is not a class index"),
])
def test_broken_hub_files_fail_in_one_line(tmp_path, layout, message):
    images, labels = digits(10)
    root = tmp_path / "d"
    root.mkdir()
    meta = {b"huggingface": json.dumps({"info": {"features": FEATURES}}).encode()}
    if layout == "bad-parquet":
        (root / "train-0.parquet").write_bytes(b"PAR1 not really")
    elif layout == "no-label":
        pq.write_table(pa.table({"image": [{"bytes": png(images[0]), "path": None}]}), root / "train-0.parquet")
    elif layout == "escape":
        (root / "metadata.csv").write_text("file_name,label\n../../etc/passwd,x\n")
    else:
        bad = table(images, labels + 20).replace_schema_metadata(meta)
        pq.write_table(bad, root / "train-0.parquet")
    with pytest.raises(ClasslabError, match=message):
        load_dataset(root)


def test_a_clear_message_without_pyarrow(tmp_path, monkeypatch):
    import sys

    (tmp_path / "train-0.parquet").write_bytes(b"PAR1")
    for name in ("pyarrow", "pyarrow.ipc", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ClasslabError, match=r"needs pyarrow: pip install 'classlab\[hf\]'"):
        load_dataset(tmp_path)


def test_the_doctor_reads_hub_files_as_a_dataset(tmp_path, capsys):
    from classlab.cli import main

    images, labels = digits(40)
    pq.write_table(table(images, labels).replace_schema_metadata(
        {b"huggingface": json.dumps({"info": {"features": FEATURES}}).encode()}), tmp_path / "train-0.parquet")
    assert main(["check", str(tmp_path), "--json", "--runs-dir", str(tmp_path / "runs")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["layout"] == "arrays" and report["readable_images"] == 40
    assert set(report["class_counts"]) == set(NAMES)
