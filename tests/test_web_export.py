"""Export a model from its run page and download the bundle (.zip), through Starlette's TestClient: the zip's
model gives PyTorch's answers on real digits; bad formats, runs without a network and foreign origins are
refused."""

import io
import json
import shutil
import zipfile

import numpy as np
import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

import classlab  # noqa: E402
from classlab.web.app import create_app  # noqa: E402

from test_web import ORIGIN  # noqa: E402


@pytest.fixture(scope="module")
def bench(digits_runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("export") / "runs"
    shutil.copytree(digits_runs["root"], root)
    knn = classlab.knn("digits", k=[1], runs_dir=root, progress=False)
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        yield client, root, {**digits_runs, "knn": knn.run_dir.name}


@pytest.mark.parametrize("fmt, model_file", [("onnx", "model.onnx"), ("torchscript", "model.pt")])
def test_a_model_exported_from_its_page_downloads_as_a_zip_that_predicts(bench, tmp_path, fmt, model_file):
    from classlab.trained.export import run_exported

    client, root, runs = bench
    page = client.get(f"/runs/{runs['cnn']}").text
    assert 'id="export-form"' in page and "python predict.py photo.jpg" in page  # and how to use the zip
    response = client.post(f"/runs/{runs['cnn']}/export", data={"format": fmt}, headers=ORIGIN)
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert f'filename="{runs["cnn"]}-{fmt}.zip"' in response.headers["content-disposition"]
    zipfile.ZipFile(io.BytesIO(response.content)).extractall(tmp_path)
    bundle = tmp_path / f"{runs['cnn']}-{fmt}"
    assert sorted(p.name for p in bundle.iterdir()) == sorted(["README.txt", "classes.json", model_file,
                                                                "predict.py", "preprocessing.json"])
    contract = json.loads((bundle / "preprocessing.json").read_text())
    ds = classlab.load_dataset("digits")
    x = (ds.images[:40].astype(np.float32) / 255 - contract["mean"][0]) / contract["std"][0]
    logits = run_exported(bundle / model_file, x.transpose(0, 3, 1, 2).copy())
    expected = classlab.load_model(root / runs["cnn"]).predict_proba(ds.images[:40])
    assert np.array_equal(logits.argmax(1), expected.argmax(1))
    assert json.loads((bundle / "classes.json").read_text()) == [str(d) for d in range(10)]


def test_exports_that_cannot_be_made_are_refused_in_words(bench):
    client, root, runs = bench
    assert 'id="export-form"' not in client.get(f"/runs/{runs['knn']}").text
    knn = client.post(f"/runs/{runs['knn']}/export", data={"format": "onnx"}, headers=ORIGIN)
    assert knn.status_code == 400 and "is a knn run, which holds no network" in knn.text
    bad = client.post(f"/runs/{runs['cnn']}/export", data={"format": "tflite"}, headers=ORIGIN)
    assert bad.status_code == 400 and "choose onnx, torchscript" in bad.text
    assert client.post("/runs/nope/export", data={"format": "onnx"}, headers=ORIGIN).status_code == 404
    assert client.post(f"/runs/{runs['cnn']}/export", data={"format": "onnx"},
                       headers={"origin": "http://evil.example"}).status_code == 403


def test_the_pages_formats_are_the_exporters(bench):
    import re

    from classlab.trained.export import FORMATS

    client, _, runs = bench
    form = client.get(f"/runs/{runs['cnn']}").text.split('id="export-form"')[1].split("</form>")[0]
    assert tuple(re.findall(r'<option value="([^"]+)"', form)) == FORMATS
