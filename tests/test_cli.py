"""The command line: every subcommand's help has an example; user errors exit 2 with one line."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from classlab.cli import build_parser, main
from conftest import make_class_folder, pattern, png_bytes


def run_cli(*args, env_runs=None):
    return subprocess.run([sys.executable, "-m", "classlab", *args], capture_output=True, text=True, timeout=300)


def _subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    return sorted(action.choices)


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_has_help_with_an_example(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "example" in out and f"classlab {command}" in out


@pytest.mark.parametrize("command", ["check", "explore", "runs", "download", "cache"])
def test_data_commands_parse_without_importing_torch(command):
    """check and explore (and the other data commands) start without paying for torch's import."""
    code = ("import sys; from classlab.cli import build_parser, main\n"
            f"assert main(['{command}', '--help']) == 0\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def knn_run(tmp_path_factory):
    """One k-NN run on digits from the command line, shared by the tests of what it left behind."""
    runs = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CLASSLAB_RUNS", str(runs))
        assert main(["knn", "digits", "--k", "1,3,5,7"]) == 0
    return next(runs.iterdir())


def test_a_knn_run_holds_every_file(knn_run):
    assert knn_run.name.split("-")[2:] == ["knn", "digits"]
    for name in ("config.json", "split.csv", "metrics.json", "report.md", "predictions.csv", "confusion_matrix.png",
                 "confusion_matrix_normalized.png", "accuracy_vs_k.png", "classification_report.txt", "leakage.json",
                 "probabilities.npz"):
        assert (knn_run / name).is_file(), name


def test_a_knn_run_chooses_k_on_validation_and_records_it(knn_run):
    metrics = json.loads((knn_run / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.95 and metrics["knn"]["k"] in (1, 3, 5, 7)
    assert set(metrics["knn"]["validation_accuracy"]) == {"1", "3", "5", "7"}
    config = json.loads((knn_run / "config.json").read_text())
    assert config["seed"] == 0 and "torch" in config["versions"] and config["options"]["ks"] == [1, 3, 5, 7]


def test_a_knn_run_lists_every_test_prediction_and_reports_them(knn_run):
    metrics = json.loads((knn_run / "metrics.json").read_text())
    with open(knn_run / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == metrics["n"] and {"id", "true_label", "predicted_label", "top1_prob"} <= set(rows[0])
    report = (knn_run / "report.md").read_text()
    assert "confusion_matrix.png" in report and "specificity" in report and "k = " in report


def test_a_saved_manifest_reproduces_the_split(knn_run, runs_dir):
    assert main(["knn", "digits", "--k", "3", "--split", str(knn_run / "split.csv")]) == 0
    second = next(runs_dir.iterdir())
    assert (second / "split.csv").read_text() == (knn_run / "split.csv").read_text()


def test_runs_lists_a_run_with_its_headline_metrics(knn_run, capsys):
    metrics = json.loads((knn_run / "metrics.json").read_text())
    assert main(["runs", "--runs-dir", str(knn_run.parent)]) == 0
    listing = capsys.readouterr().out
    assert str(knn_run) in listing and f"{metrics['accuracy']:.4f}" in listing


def test_explore_on_digits(runs_dir, capsys):
    assert main(["explore", "digits"]) == 0
    run = next(runs_dir.iterdir())
    stats = json.loads((run / "stats.json").read_text())
    assert stats["images"] == 1797 and len(stats["channel_mean"]) == 1
    assert np.isclose(stats["channel_mean"][0], load_mean())
    for name in ("samples.png", "class_distribution.png", "stats.txt", "report.md", "split.csv"):
        assert (run / name).is_file()


def load_mean():
    from classlab import load_dataset

    return load_dataset("digits").images.mean() / 255


def test_explore_hundred_classes_shows_a_subset(tmp_path, runs_dir, capsys):
    rng = np.random.default_rng(0)
    arrays = {"train_images": rng.integers(0, 256, (1000, 8, 8, 3), dtype=np.uint8),
              "train_labels": np.repeat(np.arange(100), 10)[:, None],
              "test_images": rng.integers(0, 256, (200, 8, 8, 3), dtype=np.uint8),
              "test_labels": np.repeat(np.arange(100), 2)[:, None]}
    np.savez(tmp_path / "hundred.npz", **arrays)
    assert main(["explore", str(tmp_path / "hundred.npz")]) == 0
    run = next(runs_dir.iterdir())
    from PIL import Image

    assert "20 of 100 classes" in (run / "report.md").read_text()
    w, h = Image.open(run / "samples.png").size
    assert h < 2500 and w < 1500  # 20 rows of 8 samples, not 100 rows


def test_check_json_and_strict(tmp_path, runs_dir, capsys):
    root = make_class_folder(tmp_path / "d", ("a", "b"), per_class=3, size=(20, 20))
    assert main(["check", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["errors"] == 0 and report["class_counts"] == {"a": 3, "b": 3}
    (root / "a" / "bad.png").write_text("not an image")
    assert main(["check", str(root), "--strict"]) == 1


@pytest.mark.parametrize("args, needle", [
    (["knn", "no-such-dataset"], "neither a known dataset"),
    (["knn", "mnist", "--data-dir", "/nonexistent"], "classlab download mnist"),
    (["knn", "digits", "--k", "0"], "positive integer"),
    (["knn", "digits", "--k", ","], "at least one integer"),
    (["knn", "digits", "--k", "5000"], "larger than the training set"),
    (["knn", "digits", "--val-fraction", "0.95"], "fraction"),
    (["knn", "digits", "--val-fraction", "nan"], "finite"),
    (["knn", "digits", "--max-train", "0"], "at least 1"),
    (["knn", "digits", "--seed", "-1"], "--seed"),
    (["explore", "digits", "--image-size", "0"], "image-size"),
    (["train", "digits", "--weight-decay", "nan"], "finite"),
    (["train", "digits", "-o", "hidden=inf"], "finite"),
    (["knn", "digits", "--device", "cuda:7"] if not __import__("torch").cuda.is_available() else
     ["knn", "digits", "--device", "nonsense"], "device"),
])
def test_user_errors_exit_2_with_one_line(args, needle, runs_dir, capsys):
    assert main(args) == 2
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("classlab: error:") and needle in lines[0], lines


def test_a_user_error_from_the_installed_command_is_one_line_without_traceback(runs_dir):
    result = run_cli("knn", "no-such-dataset")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [line for line in result.stderr.strip().splitlines()
                                                  if line.startswith("classlab: error:")]


def test_folder_edge_cases_exit_2(tmp_path, runs_dir, capsys):
    one = make_class_folder(tmp_path / "one", ("only",), per_class=4)
    assert main(["knn", str(one)]) == 2 and "at least two" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["explore", str(empty)]) == 2 and "no images in class folders" in capsys.readouterr().err


def test_bad_files_are_skipped_and_the_run_finishes(tmp_path, runs_dir, capsys):
    root = make_class_folder(tmp_path / "d", ("a", "b"), per_class=12, size=(16, 16))
    full = png_bytes(pattern(4242, (16, 16)), fmt="JPEG")
    (root / "a" / "truncated.jpg").write_bytes(full[:200])
    (root / "a" / "zero.png").write_bytes(b"")
    (root / "b" / "text.png").write_text("hello")
    (root / "b" / "odd_size.png").write_bytes(png_bytes(pattern(4243, (30, 20))))
    assert main(["knn", str(root), "--k", "1,3"]) == 0
    out, err = capsys.readouterr()
    for name in ("truncated.jpg", "zero.png", "text.png"):
        assert name in err
    assert "16x16" in err  # the size choice is reported
    assert "report:" in out


def test_volumes_explore_and_knn(tmp_path, runs_dir, capsys):
    """MedMNIST-3D-style volumes: explore shows middle slices; k-NN flattens D x H x W."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 60), ("val", 12), ("test", 12)):
        labels = np.arange(n) % 2
        vol = rng.integers(0, 60, (n, 8, 10, 10), dtype=np.uint8)
        vol[labels == 1, 2:6, 2:8, 2:8] += 150  # class 1 has a bright cube inside
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = vol, labels[:, None]
    np.savez(tmp_path / "cubes3d.npz", **arrays)
    assert main(["explore", str(tmp_path / "cubes3d.npz")]) == 0
    assert main(["knn", str(tmp_path / "cubes3d.npz"), "--k", "1,3"]) == 0
    knn_run = sorted(runs_dir.iterdir())[-1]
    assert json.loads((knn_run / "metrics.json").read_text())["accuracy"] == 1.0
    assert "800 values per image" in (knn_run / "report.md").read_text()
