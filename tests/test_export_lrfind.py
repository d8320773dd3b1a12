"""Export bundles match PyTorch (ONNX through onnxruntime); the learning-rate finder suggests a usable rate."""

import json
import os

import numpy as np
import pytest
import torch

import classlab
from classlab.cli import main
from classlab.trained.export import export_run, run_exported


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    return classlab.train("digits", "cnn", epochs=2, runs_dir=runs, progress=False,
                          model_options={"filters": [8, 16], "dense": [32], "batch_norm": True})


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch(cnn_run, fmt, tmp_path):
    result = export_run(cnn_run.run_dir, fmt, tmp_path / fmt)
    bundle = result["bundle"]
    assert json.loads((bundle / "classes.json").read_text()) == cnn_run.trained().class_names
    contract = json.loads((bundle / "preprocessing.json").read_text())
    assert contract["input"]["image_size"] == [8, 8] and contract["input"]["layout"] == "NCHW"
    assert contract["mean"] == cnn_run.trained().preprocessing.mean
    # Real digits through the contract: the exported model and PyTorch agree, and so do the labels.
    ds = classlab.load_dataset("digits")
    x = (ds.images[:64].astype(np.float32) / 255 - contract["mean"][0]) / contract["std"][0]
    x = x.transpose(0, 3, 1, 2).copy()
    exported = run_exported(result["model"], x)
    with torch.no_grad():
        reference = cnn_run.trained().model(torch.from_numpy(x)).numpy()
    assert np.abs(exported - reference).max() < 1e-4
    assert np.array_equal(exported.argmax(1), cnn_run.predict_proba(ds.images[:64]).argmax(1))


def test_export_cli_and_bad_format(cnn_run, capsys):
    assert main(["export", str(cnn_run.run_dir), "--format", "torchscript"]) == 0
    assert "bundle:" in capsys.readouterr().out
    assert main(["export", str(cnn_run.run_dir), "--format", "tflite"]) == 2


def test_export_of_a_run_without_a_network_says_which_run_to_give(cnn_run, tmp_path, capsys):
    """A k-NN run, a training cut off before its first best.pt, a folder that is no run, a missing path:
    each one line naming what to give instead, exit 2."""
    import shutil

    knn = classlab.knn("digits", k=[1], runs_dir=tmp_path / "runs", progress=False)
    cut = tmp_path / "cut"
    shutil.copytree(cnn_run.run_dir, cut, ignore=shutil.ignore_patterns("*.pt"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "piped").mkdir()
    os.mkfifo(tmp_path / "piped" / "config.json")  # read as a file it would block forever
    cases = {knn.run_dir: "is a knn run, which holds no network", cut: "'classlab train --resume",
             tmp_path / "empty": "is not a classlab run directory",
             tmp_path / "piped": "is not a classlab run directory", tmp_path / "nowhere": "is not a run directory"}
    for run_dir, message in cases.items():
        capsys.readouterr()
        assert main(["export", str(run_dir)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_lr_find_suggests_a_rate_that_trains(runs_dir, capsys):
    assert main(["lr-find", "digits", "--model", "mlp"]) == 0
    run = sorted(runs_dir.iterdir())[-1]
    result = json.loads((run / "lr_find.json").read_text())
    assert 1e-4 < result["suggested_lr"] < 1 and (run / "lr_find.png").is_file()
    capsys.readouterr()
    assert main(["train", "digits", "--model", "mlp", "--epochs", "5", "--lr", str(result["suggested_lr"])]) == 0
    assert json.loads((sorted(runs_dir.iterdir())[-1] / "metrics.json").read_text())["accuracy"] > 0.9
    assert main(["lr-find", "digits", "--start", "1", "--end", "0.1"]) == 2


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_the_bundles_predict_script_classifies_a_file_as_classlab_does_without_classlab(cnn_run, fmt, tmp_path):
    """predict.py in the bundle (numpy, Pillow and the runtime only): the same top classes and probabilities as
    the run's own predict on the same file, a 32 px PNG resized to the model's 8 x 8 by the script itself."""
    import subprocess
    import sys

    from PIL import Image

    bundle = export_run(cnn_run.run_dir, fmt, tmp_path / fmt)["bundle"]
    script = (bundle / "predict.py").read_text()
    imports = [ln for ln in script.splitlines() if ln.startswith(("import ", "from "))]
    assert imports and not any("classlab" in ln for ln in imports)  # nothing of classlab's (run with -I below)
    assert "predict.py" in (bundle / "README.txt").read_text()
    ds = classlab.load_dataset("digits")
    image = tmp_path / "digit.png"
    Image.fromarray(ds.images[7, :, :, 0]).resize((32, 32), Image.Resampling.NEAREST).save(image)
    out = subprocess.run([sys.executable, "-I", str(bundle / "predict.py"), str(image)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    words = out.stdout.split()
    assert words[0] == str(image)
    theirs = [(words[i], float(words[i + 1])) for i in range(1, len(words), 2)]
    ours = cnn_run.predict([image], top_k=3)[0]["top"]
    assert [label for label, _ in theirs] == [label for label, _ in ours]
    assert np.allclose([p for _, p in theirs], [p for _, p in ours], atol=2e-4)
    # the run page's other recipe: import it from your own code
    code = (f"import sys; sys.path.insert(0, {str(bundle)!r}); import predict; "
            f"logits = predict.run(predict.load({str(image)!r}))[0]; print(predict.classes[logits.argmax()]); "
            "assert not [m for m in sys.modules if m.startswith('classlab')]")
    imported = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=120)
    assert imported.stdout.strip() == ours[0][0], imported.stderr
