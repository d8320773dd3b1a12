"""classlab evaluate: a trained run scored on other labelled images, cross-checked against scikit-learn and
against the run's own test report."""

import csv
import json

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import accuracy_score, f1_score

import classlab
from classlab.cli import main
from conftest import DATA, make_class_folder, need


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    return classlab.train("digits", "mlp", epochs=3, progress=False, runs_dir=tmp_path_factory.mktemp("runs"))


def _predictions(run_dir):
    with open(run_dir / "predictions.csv", newline="") as f:
        return list(csv.DictReader(f))


def _check_against_sklearn(result):
    rows = _predictions(result.run_dir)
    y, p = [r["true_label"] for r in rows], [r["predicted_label"] for r in rows]
    assert result.metrics["accuracy"] == pytest.approx(accuracy_score(y, p))
    assert result.metrics["macro_avg"]["f1"] == pytest.approx(f1_score(y, p, average="macro", zero_division=0))
    return rows


def test_drop_seen_on_the_training_data_reproduces_the_runs_own_test_report(digits_run, runs_dir, capsys):
    result = classlab.evaluate_run(digits_run, "digits", drop_seen=True)
    rows = _check_against_sklearn(result)
    own = _predictions(digits_run.run_dir)
    assert sorted(map(tuple, (r.values() for r in rows))) == sorted(map(tuple, (r.values() for r in own)))
    assert result.metrics["accuracy"] == pytest.approx(digits_run.metrics["accuracy"])
    seen = result.details["evaluate"]["images_seen_in_training"]
    sizes = {s: 0 for s in ("train", "val", "test")}
    with open(digits_run.run_dir / "split.csv", newline="") as f:
        for r in csv.DictReader(f):
            sizes[r["split"]] += 1
    assert seen == sizes["train"] + sizes["val"] and result.details["evaluate"]["images"] == sizes["test"]
    # a normal run: compare reads it, and it agrees with the run to the image
    assert main(["compare", str(digits_run.run_dir), str(result.run_dir), "--no-images"]) == 0
    assert "+0.00 points" in capsys.readouterr().out


def test_seen_images_are_scored_with_a_warning_unless_dropped(digits_run, runs_dir, capsys):
    assert main(["evaluate", str(digits_run.run_dir), "digits"]) == 0
    captured = capsys.readouterr()
    assert "1797 images: accuracy" in captured.out and "identical to images" in captured.err
    run_dir = next(runs_dir.glob("*-evaluate-digits"))
    report = (run_dir / "report.md").read_text()
    assert "were scored (they flatter the score" in report and "![confusion matrix](confusion_matrix.png)" in report
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["evaluate"]["images_seen_in_training"] > 1500 and len(_predictions(run_dir)) == 1797


def test_a_folder_of_some_classes_maps_labels_by_name(digits_run, tmp_path, runs_dir, capsys):
    """A folder holding only '3' and '7' (PNG files, 4x the size, RGB): decoded at the run's 8x8 gray, labels
    mapped to the model's class indices, the other classes present with no support."""
    ds = classlab.load_dataset("digits")
    picked = np.flatnonzero(np.isin(ds.labels, [3, 7]))[:40]
    for i in picked:
        folder = tmp_path / "new" / ds.class_names[ds.labels[i]]
        folder.mkdir(parents=True, exist_ok=True)
        big = np.repeat(np.repeat(ds.images[i, :, :, 0], 4, 0), 4, 1)
        Image.fromarray(np.stack([big] * 3, -1)).save(folder / f"{i}.png")
    result = classlab.evaluate_run(digits_run, tmp_path / "new")
    rows = _check_against_sklearn(result)
    assert {r["true_label"] for r in rows} == {"3", "7"} and len(rows) == 40
    saved = json.loads((result.run_dir / "metrics.json").read_text())
    assert saved["class_names"] == [str(c) for c in range(10)] and saved["macro_avg_classes"][:2] == ["3", "7"]
    assert [row["support"] for row in saved["per_class"]] == [0, 0, 0, 20, 0, 0, 0, 20, 0, 0]
    assert main(["predict", str(digits_run.run_dir), str(tmp_path / "new"), "--output", str(tmp_path / "p.csv")]) == 0
    assert f"'classlab evaluate {digits_run.run_dir} {tmp_path / 'new'}'" in capsys.readouterr().err
    direct = digits_run.predict(tmp_path / "new", top_k=1)  # the same files through predict
    by_file = {d["input"].split("/")[-1].removesuffix(".png"): d["top"][0][0] for d in direct}
    assert {r["id"].split("/")[-1].removesuffix(".png"): r["predicted_label"] for r in rows} == by_file


@pytest.mark.parametrize("args, needle", [
    (["{run}", "{folder}"], "classes the model does not know: 'cat', 'dog'"),
    (["{run}", "digits", "--split", "test"], "no split of its own; use --split all"),
    (["{runs}", "digits"], "holds no model to evaluate"),
    (["{run}", "digits", "--split", "holdout"], "invalid choice"),
    (["{run}", "{missing}"], "missing"),
    (["{run}", "digits", "--seed", "-1"], "--seed must be from 0"),
    (["{run}", "digits", "--max-images", "0"], "--max-images"),
])
def test_bad_requests_are_one_line(args, needle, digits_run, tmp_path, runs_dir, capsys):
    from conftest import make_class_folder

    folder = make_class_folder(tmp_path / "pets")
    subs = {"run": str(digits_run.run_dir), "folder": str(folder), "runs": str(tmp_path), "missing": str(tmp_path / "missing")}
    assert main(["evaluate", *[a.format(**subs) for a in args]]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not list(runs_dir.glob("*-evaluate-*"))  # a refused evaluation leaves no run behind


def test_unknown_api_option_is_named():
    with pytest.raises(classlab.ClasslabError, match="no option drop_sene"):
        classlab.evaluate_run("runs/x", "digits", drop_sene=True)


def test_mnist_run_on_the_official_test_split_and_refused_on_fashion(tmp_path, runs_dir, capsys):
    """Real data: an MNIST model scored on a sample of MNIST's official test split (none of it seen), with
    every probability as predict_proba gives it; Fashion-MNIST's classes are not the model's."""
    need(DATA / "mnist")
    run = classlab.train("mnist", "mlp", epochs=1, progress=False,
                         data_options={"data_dir": str(DATA), "max_train": 3000, "max_eval": 300})
    result = classlab.evaluate_run(run, "mnist", data_dir=DATA, max_images=1000)
    rows = _check_against_sklearn(result)
    assert len(rows) == 1000 and result.details["evaluate"]["images_seen_in_training"] == 0
    assert result.metrics["accuracy"] > 0.8
    assert all(r["id"].startswith("test/") for r in rows) or "test" in result.report.read_text()
    ds = classlab.load_dataset("mnist", data_dir=DATA)
    index = {item: i for i, item in enumerate(ds.ids)}
    picked = np.array([index[r["id"]] for r in rows])
    with np.load(result.run_dir / "probabilities.npz") as z:
        assert np.allclose(z["test_probs"], run.predict_proba(ds.images[picked]), atol=1e-5)
    assert main(["evaluate", str(run.run_dir), "fashion-mnist", "--data-dir", str(DATA)]) == 2
    assert "classes the model does not know: 'T-shirt/top'" in capsys.readouterr().err


def test_the_workbench_shows_an_evaluation_with_its_images(digits_run, tmp_path):
    from starlette.testclient import TestClient

    from classlab.web.app import create_app

    result = classlab.evaluate_run(digits_run, "digits", drop_seen=True, max_images=50, runs_dir=tmp_path / "runs")
    first = _predictions(result.run_dir)[0]
    with TestClient(create_app(tmp_path / "runs"), base_url="http://127.0.0.1") as client:
        listing = client.get("/runs").text
        assert result.run_dir.name in listing and "evaluate" in listing
        page = client.get(f"/runs/{result.run_dir.name}")
        assert page.status_code == 200 and f"{digits_run.run_dir.name}</a> scored on 50 images of digits" in page.text
        image = client.get(f"/runs/{result.run_dir.name}/image", params={"id": first["id"]})
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        cell = client.get(f"/runs/{result.run_dir.name}/cell", params={"t": 3, "p": 3})
        assert cell.status_code == 200
        card = client.get(f"/runs/{result.run_dir.name}/card", params={"id": first["id"]})
        assert card.status_code == 200 and first["true_label"] in card.text  # predicted by the evaluated model
    assert result.trained().run_dir == digits_run.run_dir
    explained = classlab.explain(result)
    text = explained.report.read_text()
    assert "## Attribution" in text and "no training images of its own" in text


def test_a_transfer_run_is_scored_through_its_contract(torch_home, runs_dir):
    """MobileNetV2 features at 64 px from 8x8 digits: evaluate decodes at the stored 8x8 and lets the contract
    resize on the device, so the run's own test images score exactly as in its report."""
    run = classlab.transfer("digits", "mobilenet_v2", mode="features", image_size=64, head_epochs=2, progress=False)
    result = classlab.evaluate_run(run, "digits", drop_seen=True)
    assert result.metrics["accuracy"] == pytest.approx(run.metrics["accuracy"])
    assert result.details["evaluate"]["images"] == run.metrics["n"]


def test_tta_override_is_the_mean_of_the_views_probabilities(digits_run, runs_dir):
    """--tta flip on a run trained without it: each image's probabilities are the mean of its own and its
    mirror image's softmax, computed here by hand from the model; compare then pits the two evaluations."""
    import torch

    from classlab.inference.preprocess import to_input

    plain = classlab.evaluate_run(digits_run, "digits", drop_seen=True, tta="none")
    flipped = classlab.evaluate_run(digits_run, "digits", drop_seen=True, tta="flip")
    assert flipped.details["evaluate"]["tta"] == "flip" and plain.details["evaluate"]["tta"] == "none"
    run = digits_run.trained()
    ds = classlab.load_dataset("digits")
    index = {item: i for i, item in enumerate(ds.ids)}
    with np.load(flipped.run_dir / "probabilities.npz") as z:
        rows, got = np.array([index[str(i)] for i in z["test_ids"]]), z["test_probs"]
    with torch.no_grad():
        x = to_input(torch.from_numpy(ds.images[rows]), run.preprocessing)
        expected = (run.model(x).softmax(1) + run.model(x.flip(-1)).softmax(1)).numpy() / 2
    assert np.allclose(got, expected, atol=1e-5)
    with np.load(plain.run_dir / "probabilities.npz") as z:
        assert not np.allclose(z["test_probs"], got, atol=1e-3)
    assert classlab.compare(plain, flipped, images=False).details["pairs"][0]["images"] == len(rows)
    with pytest.raises(classlab.ClasslabError, match="--tta takes one of"):
        classlab.evaluate_run(digits_run, "digits", tta="rotate")


@pytest.mark.parametrize("kind", ["knn", "scratch"])
def test_the_decks_first_models_are_evaluated_alike(kind, runs_dir, capsys):
    """A pixel k-NN run (refitted on its training split with its chosen k) and the NumPy MLP score their own test
    images exactly as their reports did; a TTA request and explain's attribution are declined in words."""
    if kind == "knn":
        run = classlab.knn("digits", k=[1, 3], progress=False)
    else:
        run = classlab.train("digits", "scratch-mlp", epochs=3, progress=False)
    result = classlab.evaluate_run(run, "digits", drop_seen=True)
    assert result.metrics["accuracy"] == pytest.approx(run.metrics["accuracy"])
    assert _predictions(result.run_dir) == _predictions(run.run_dir)
    assert ("k-NN on pixels" if kind == "knn" else "NumPy MLP") in result.report.read_text()
    with pytest.raises(classlab.ClasslabError, match="--tta needs a network"):
        classlab.evaluate_run(run, "digits", tta="flip")
    _predict_agrees_with_the_run(run.run_dir, result.run_dir, runs_dir.parent / "images", capsys)
    explained = classlab.explain(result)  # the evaluated run's model explains the evaluation's mistakes
    assert "Occlusion" in explained.report.read_text() and (explained.run_dir / "explain/attribution.png").is_file()
    from starlette.testclient import TestClient

    from classlab.web.app import create_app

    with TestClient(create_app(run.run_dir.parent), base_url="http://127.0.0.1") as client:
        assert 'id="evaluate-form"' in client.get(f"/runs/{run.run_dir.name}").text
        assert result.run_dir.name in client.get(f"/runs/{run.run_dir.name}").text  # listed as its evaluation
        assert 'id="evaluate-form"' not in client.get(f"/runs/{result.run_dir.name}").text
        _card_agrees_with_predictions(client, result.run_dir)


def _predict_agrees_with_the_run(run_dir, evaluation_dir, folder, capsys, rows: int = 5):
    """'classlab predict' on image files, with the run (any kind) and with an evaluation of it, labels them as
    the run's own test predictions did."""
    ds = classlab.load_dataset("digits")
    index = {item: i for i, item in enumerate(ds.ids)}
    expected = _predictions(run_dir)[:rows]
    folder.mkdir(exist_ok=True)
    files = []
    for row in expected:
        files.append(folder / (row["id"].replace("/", "_") + ".png"))
        Image.fromarray(ds.images[index[row["id"]], :, :, 0]).save(files[-1])
    model = classlab.load_model(run_dir)  # the Python API of the same: any run's model
    assert [r["top"][0][0] for r in model.predict(files)] == [r["predicted_label"] for r in expected]
    assert model.predict_proba(np.stack([ds.images[index[r["id"]]] for r in expected])).shape == (rows, 10)
    for source in (run_dir, evaluation_dir):
        capsys.readouterr()
        assert main(["predict", str(source), *map(str, files), "--top-k", "2"]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        assert [line.split(": ")[1].split()[0] for line in lines] == [r["predicted_label"] for r in expected]


def _card_agrees_with_predictions(client, run_dir, rows: int = 3):
    """The image card of an evaluation names the same top class, with the same probability, as its
    predictions.csv: the model's classes, not the evaluated data's."""
    import html
    import re

    for row in _predictions(run_dir)[:rows]:
        card = client.get(f"/runs/{run_dir.name}/card", params={"id": row["id"]})
        assert card.status_code == 200, card.text
        top = re.findall(r'<text x="0" y="\d+" class="label">([^<]*)</text>', card.text)
        assert top and html.unescape(top[0]) == row["predicted_label"][:18], (top[:3], row)


def test_the_manifest_keeps_the_datas_labels_where_the_model_has_no_such_class(digits_run, tmp_path, runs_dir):
    """A tree whose train/ holds a class the model does not know and whose test/ is scored: split.csv names
    every image by the data's own class, so the workbench and explain reload the data against it."""
    from classlab.data.options import load_and_split, saved_options

    ds = classlab.load_dataset("digits")
    for split, classes in (("train", {"3": 3, "x": 1}), ("test", {"3": 3, "7": 7})):
        for name, digit in classes.items():
            folder = tmp_path / "tree" / split / name
            folder.mkdir(parents=True)
            for i in np.flatnonzero(ds.labels == digit)[:6]:
                Image.fromarray(ds.images[i, :, :, 0]).save(folder / f"{i}.png")
    result = classlab.evaluate_run(digits_run, tmp_path / "tree")
    assert result.details["evaluate"]["images"] == 12
    with open(result.run_dir / "split.csv", newline="") as f:
        labels = {r["id"].split("/")[0] + "/" + r["label"] for r in csv.DictReader(f)}
    assert labels == {"train/3", "train/x", "test/3", "test/7"}
    data, split = load_and_split(saved_options(result.run_dir))
    assert len(split.indices("test")) == 12
    assert data.class_names == ["3", "7", "x"]  # the data's own classes; the model's are 0-9
    from starlette.testclient import TestClient

    from classlab.web.app import create_app

    with TestClient(create_app(result.run_dir.parent), base_url="http://127.0.0.1") as client:
        _card_agrees_with_predictions(client, result.run_dir, rows=12)


def test_a_run_made_with_a_relative_data_path_is_found_from_any_working_directory(tmp_path, runs_dir, monkeypatch,
                                                                                    capsys):
    """The data options are recorded absolute, so a k-NN run (which searches its training images at predict time)
    predicts, explains and resumes from another working directory."""
    from classlab.data.options import saved_options

    make_class_folder(tmp_path / "project" / "pets", per_class=8)
    monkeypatch.chdir(tmp_path / "project")
    run = classlab.knn("pets", k=[1], progress=False)
    assert saved_options(run.run_dir).data == str(tmp_path / "project" / "pets")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    image = tmp_path / "project" / "pets" / "dog" / "000.png"
    capsys.readouterr()
    assert main(["predict", str(run.run_dir), str(image)]) == 0
    assert ": dog" in capsys.readouterr().out  # a training image's nearest neighbour is itself
    assert "Occlusion" in classlab.explain(run).report.read_text()
    (tmp_path / "project" / "pets").rename(tmp_path / "project" / "moved")
    with pytest.raises(classlab.ClasslabError, match="needs the data it trained on"):
        classlab.load_model(run.run_dir)
