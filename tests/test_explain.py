"""classlab explain: every run keeps its probabilities and embeddings; Grad-CAM checked against captum,
ECE against torchmetrics, temperature scaling used by predict and export; occlusion for k-NN and the
NumPy MLP; bad runs refused in one line with nothing half-written."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import classlab
from classlab import ClasslabError
from classlab.cli import main


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    cnn = classlab.train("digits", "cnn", epochs=2, progress=False, runs_dir=folder,
                         model_options={"filters": [8, 16], "dense": [32]})
    knn = classlab.knn("digits", k=[1, 3], progress=False, runs_dir=folder)
    scratch = classlab.train("digits", "scratch-mlp", epochs=3, progress=False, runs_dir=folder)
    return {"cnn": cnn, "knn": knn, "scratch": scratch}


def test_every_run_keeps_its_probabilities_and_networks_their_embeddings(runs):
    for name, run in runs.items():
        with np.load(run.run_dir / "probabilities.npz") as z:
            probs, labels, ids = z["test_probs"], z["test_labels"], z["test_ids"]
            assert {"val_probs", "val_labels", "val_ids", "class_names"} <= set(z.files)
        assert np.allclose(probs.sum(1), 1, atol=1e-5) and len(ids) == 180
        assert np.mean(probs.argmax(1) == labels) == pytest.approx(run.accuracy)
        assert np.array_equal(np.load(run.run_dir / "labels.npy"), labels)  # cleanlab's names
        assert np.array_equal(np.load(run.run_dir / "pred_probs.npy"), probs)
        assert (run.run_dir / "embeddings.npz").is_file() == (name == "cnn")
    with np.load(runs["cnn"].run_dir / "embeddings.npz") as z:
        assert z["embeddings"].shape == (180, 32)  # what goes into the classifier: the dense layer


def test_grad_cam_matches_captum_even_with_an_in_place_relu():
    from captum.attr import LayerGradCam

    from classlab.trained.attribution import grad_cam_raw

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(6, 8, 3, padding=1),
                          nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 5))
    x, target = torch.randn(4, 3, 12, 12), torch.tensor([0, 1, 2, 4])
    ours = grad_cam_raw(model, x, target, model[2])
    reference = LayerGradCam(model, model[2]).attribute(x, target=target, relu_attributions=True)[:, 0]
    assert torch.allclose(ours, reference, atol=1e-6) and ours.abs().sum() > 0


def test_grad_cam_matches_captum_on_a_registry_resnet():
    from captum.attr import LayerGradCam

    from classlab.trained.attribution import grad_cam_raw, target_layer
    from classlab.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet18", 10, 3, (32, 32)).eval()
    name, layer = target_layer(model)
    x, target = torch.randn(2, 3, 32, 32), torch.tensor([3, 7])
    reference = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)[:, 0]
    assert torch.allclose(grad_cam_raw(model, x, target, layer), reference, atol=1e-5)


def test_ece_matches_torchmetrics_and_temperature_lowers_the_nll():
    from torchmetrics.classification import MulticlassCalibrationError

    from classlab.evaluation.calibration import apply_temperature, fit_temperature, nll, reliability

    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 2000)
    logits = rng.normal(size=(2000, 5)) + 3 * np.eye(5)[y] * (rng.random(2000) < 0.7)[:, None]
    proba = np.exp(3 * logits) / np.exp(3 * logits).sum(1, keepdims=True)  # overconfident
    reference = MulticlassCalibrationError(num_classes=5, n_bins=15, norm="l1")(torch.tensor(proba), torch.tensor(y))
    assert reliability(proba, y)["ece"] == pytest.approx(float(reference), abs=1e-6)
    t = fit_temperature(proba[:1000], y[:1000])
    scaled = apply_temperature(proba[1000:], t)
    assert t > 1.5 and nll(scaled, y[1000:]) < nll(proba[1000:], y[1000:])
    assert reliability(scaled, y[1000:])["ece"] < reliability(proba[1000:], y[1000:])["ece"]
    assert np.array_equal(scaled.argmax(1), proba[1000:].argmax(1))


def test_occlusion_finds_the_only_region_a_model_looks_at():
    from classlab.trained.attribution import occlusion

    def predict(images):  # class 1 when the top-left 4x4 corner is bright
        corner = images[:, :4, :4, 0].mean((1, 2)) / 255
        return np.stack([1 - corner, corner], 1)
    images = np.zeros((2, 12, 12, 1), np.uint8)
    images[:, :4, :4] = 255
    heat = occlusion(predict, images, np.array([1, 1]), patch=4, stride=2)
    assert heat[:, :4, :4].mean() > 0.5 and heat[:, 8:, 8:].max() == 0


def test_explain_a_cnn_run_from_the_cli(runs, capsys):
    run = runs["cnn"].run_dir
    assert main(["explain", str(run), "--top", "16"]) == 0
    assert "Grad-CAM" in capsys.readouterr().out
    out = run / "explain"
    for name in ("top_losses.png", "attribution.png", "reliability.png", "embedding_map.png", "report.md"):
        assert (out / name).is_file(), name
    findings = json.loads((out / "explain.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    cm = np.array(metrics["confusion_matrix"])
    assert len(findings["cells"]) == int((cm > 0).sum()) == len(list((out / "cells").glob("cell_*.png")))
    top = findings["most_confused"][0]
    names = metrics["class_names"]
    assert top["count"] == max(cm[i, j] for i in range(10) for j in range(10) if i != j)
    assert cm[names.index(top["true"]), names.index(top["predicted"])] == top["count"]
    assert len(findings["top_losses"]) == min(16, findings["mistakes"])
    assert "## Explanation" in (run / "report.md").read_text()


def test_the_fitted_temperature_is_used_by_predict_and_export(runs, tmp_path):
    from classlab.evaluation.calibration import apply_temperature
    from classlab.trained.export import export_run, run_exported
    from classlab.inference.preprocess import to_input
    from classlab.trained.network import TrainedNetwork

    run = runs["cnn"].run_dir
    classlab.explain(run, top=4)
    t = json.loads((run / "calibration.json").read_text())["temperature"]
    trained = TrainedNetwork.load(run)
    assert trained.temperature == pytest.approx(t) and t != 1.0
    images = classlab.load_dataset("digits").images[:20]
    raw = torch.softmax(trained.model(to_input(torch.from_numpy(images), trained.preprocessing)), 1).detach().numpy()
    assert np.allclose(trained.predict_proba(images), apply_temperature(raw.astype(np.float64), t), atol=1e-5)
    bundle = export_run(run, "torchscript", tmp_path / "bundle")
    x = to_input(torch.from_numpy(images), trained.preprocessing).numpy()
    exported = torch.softmax(torch.from_numpy(run_exported(bundle["model"], x)), 1).numpy()
    assert np.allclose(exported, trained.predict_proba(images), atol=1e-5)


def test_explain_knn_and_the_numpy_mlp_by_occlusion(runs, capsys):
    for name in ("knn", "scratch"):
        result = classlab.explain(runs[name], top=8)
        assert result.details["attribution"].startswith("Occlusion")
        assert (runs[name].run_dir / "explain" / "attribution.png").is_file()
    assert main(["explain", str(runs["knn"].run_dir), "--method", "gradcam"]) == 2
    assert "Grad-CAM needs a convolutional network" in capsys.readouterr().err


def test_runs_that_cannot_be_explained_are_one_line_and_leave_nothing(runs, tmp_path, capsys):
    import shutil

    run = tmp_path / "old"
    shutil.copytree(runs["cnn"].run_dir, run)
    shutil.rmtree(run / "explain", ignore_errors=True)
    (run / "probabilities.npz").unlink()
    assert main(["explain", str(run)]) == 2
    assert "no probabilities.npz" in capsys.readouterr().err and not (run / "explain").exists()
    explored = classlab.explore("digits", runs_dir=tmp_path / "r")
    with pytest.raises(ClasslabError, match="probabilities"):
        classlab.explain(explored)
    assert not [p for p in run.iterdir() if p.name.startswith(".explain-")]


def test_confident_learning_by_hand():
    from classlab.evaluation.label_issues import find_label_issues, precision_recall

    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([[.9, .1], [.8, .2], [.2, .8],   # image 2 is labelled 0 but confidently 1
                      [.1, .9], [.3, .7], [.7, .3]])  # image 5 is labelled 1 but confidently 0
    found = find_label_issues(labels, probs)
    # thresholds: class 0 -> mean(.9, .8, .2) = .633, class 1 -> mean(.9, .7, .3) = .633
    assert found["thresholds"] == pytest.approx([0.6333333, 0.6333333])
    assert found["issues"].tolist() == [2, 5] and found["suggested"].tolist() == [1, 0]  # margin -.6 before -.4
    probs[5] = [.6, .4]  # now below class 0's threshold (.633): not confidently anything, not flagged
    assert find_label_issues(labels, probs)["issues"].tolist() == [2]
    assert precision_recall(found["issues"], [2]) == (0.5, 1.0)


def test_label_issues_find_flipped_mnist_labels(tmp_path):
    """Flip 5% of 3,000 real MNIST training labels: leave-one-out k-NN + confident learning finds most."""
    from conftest import DATA, need

    from classlab.evaluation.label_issues import find_label_issues, out_of_sample_knn, precision_recall

    ds = classlab.load_dataset("mnist", data_dir=need(DATA))
    rng = np.random.default_rng(0)
    rows = rng.choice(np.flatnonzero(ds.official_split == "train"), 3000, replace=False)
    labels = ds.labels[rows].copy()
    flipped = rng.choice(3000, 150, replace=False)
    labels[flipped] = (labels[flipped] + rng.integers(1, 10, 150)) % 10
    probs = out_of_sample_knn(ds.flat(rows), labels, 10)
    precision, recall = precision_recall(find_label_issues(labels, probs)["issues"], flipped)
    assert precision > 0.6 and recall > 0.5


def test_explain_adds_neighbours_and_label_issues_and_predict_explains(runs, tmp_path, capsys):
    from PIL import Image

    run = runs["cnn"].run_dir
    result = classlab.explain(run, top=8)
    out = run / "explain"
    assert (out / "nearest_training.png").is_file() and (out / "label_issues.csv").is_file()
    assert result.details["label_issues"]["searched"] == 1437
    assert "embeddings" in result.details["label_issues"]["space"]
    image = tmp_path / "digit.png"
    Image.fromarray(classlab.load_dataset("digits").images[7, :, :, 0]).save(image)
    assert main(["predict", str(run), str(image), "--explain", "--output", str(tmp_path / "p.csv")]) == 0
    assert [p.name for p in (tmp_path / "p").iterdir()] == ["000-digit.png"]


def test_explain_a_transfer_run_with_grad_cam_in_the_backbone(torch_home, runs_dir):
    run = classlab.transfer("digits", "mobilenet_v2", mode="features", image_size=32, head_epochs=1,
                            progress=False)
    result = classlab.explain(run, top=8)
    assert result.details["attribution"].startswith("Grad-CAM at layer `backbone.")
    assert (run.run_dir / "explain" / "attribution.png").is_file()
    assert "embeddings" in result.details["label_issues"]["space"]


@pytest.mark.slow
def test_explain_and_compare_on_mnist_and_the_cifar10_zip(runs_dir):
    from conftest import CIFAR_ZIP, DATA, need

    mnist = {"data_dir": str(need(DATA)), "max_train": 3000, "max_eval": 500}
    cnn = classlab.train("mnist", "workshop-cnn", epochs=1, progress=False, data_options=mnist)
    knn = classlab.knn("mnist", k=[1, 3], progress=False, data_options=mnist)
    assert classlab.explain(cnn, top=16).details["attribution"].startswith("Grad-CAM")
    assert classlab.compare(knn, cnn).details["pairs"][0]["images"] == 500
    cifar = {"max_train": 2000, "max_eval": 300}
    zipped = classlab.knn(str(need(CIFAR_ZIP)), k=[1], progress=False, data_options=cifar)
    explained = classlab.explain(zipped, top=8)
    assert explained.details["attribution"].startswith("Occlusion") and explained.details["test_images"] == 300
    assert (zipped.run_dir / "explain" / "cells").is_dir()
