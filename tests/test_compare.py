"""classlab compare: paired tests checked by hand and against scikit-learn, real runs compared, and
runs of different test images refused."""

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

import classlab
from classlab import ClasslabError
from classlab.cli import main
from classlab.evaluation.significance import bootstrap_difference, macro_f1, mcnemar


def test_mcnemar_by_hand():
    # 30 images: A alone right on 10, B alone right on 2, both right on 15, both wrong on 3.
    a = np.array([1] * 10 + [0] * 2 + [1] * 15 + [0] * 3, bool)
    b = np.array([0] * 10 + [1] * 2 + [1] * 15 + [0] * 3, bool)
    small = mcnemar(a, b)  # 12 disagreements: exact two-sided binomial, 2 * P(X <= 2), X ~ Bin(12, 1/2)
    assert small["method"] == "exact binomial" and (small["a_only_correct"], small["b_only_correct"]) == (10, 2)
    assert small["p_value"] == pytest.approx(2 * (1 + 12 + 66) / 2**12)
    big = mcnemar(np.r_[a, a, a], np.r_[b, b, b])  # 36 disagreements: chi-square, (|30 - 6| - 1)^2 / 36
    assert big["statistic"] == pytest.approx(23**2 / 36)
    from scipy.stats import chi2

    assert big["p_value"] == pytest.approx(chi2.sf(23**2 / 36, 1))
    assert mcnemar(a, a)["p_value"] == 1.0


def test_macro_f1_matches_scikit_learn_on_random_labels():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 6, (5, 200)), rng.integers(0, 6, (5, 200))
    p[0][p[0] == 5] = 4  # a class nobody predicts
    y[1][y[1] == 3] = 2  # a class absent from the truth
    ours = macro_f1(y, p, 6)
    for row in range(5):
        assert ours[row] == pytest.approx(f1_score(y[row], p[row], average="macro", zero_division=0))


def test_bootstrap_difference_is_centred_on_the_observed_difference():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 400)
    a = np.where(rng.random(400) < 0.6, y, (y + 1) % 3)
    b = np.where(rng.random(400) < 0.9, y, (y + 1) % 3)
    out = bootstrap_difference(y, a, b, 3, n_boot=500)
    expected = f1_score(y, b, average="macro") - f1_score(y, a, average="macro")
    assert out["difference"] == pytest.approx(expected)
    assert out["ci95"][0] < expected < out["ci95"][1] and out["ci95"][0] > 0 and out["p_value"] < 0.01
    same = bootstrap_difference(y, a, a, 3, n_boot=200)
    assert same["difference"] == 0 and same["p_value"] == 1.0


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    knn = classlab.knn("digits", k=[1], runs_dir=runs, progress=False)
    logreg = classlab.train("digits", "logreg", epochs=1, runs_dir=runs, progress=False)
    return knn, logreg, runs


def test_compare_two_real_runs_on_the_same_images(two_runs, capsys):
    knn, logreg, runs = two_runs
    assert main(["compare", str(knn.run_dir), str(logreg.run_dir), "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    folder = sorted(runs.glob("*-compare-*"))[-1]
    data = json.loads((folder / "comparison.json").read_text())
    pair = data["pairs"][0]
    assert pair["images"] == 180 and pair["accuracy_a"] == pytest.approx(knn.accuracy)
    assert pair["accuracy_b"] == pytest.approx(logreg.accuracy)
    a_right = pair["mcnemar"]["a_only_correct"]
    assert a_right == len(pair["broken"]) and pair["mcnemar"]["b_only_correct"] == len(pair["fixed"])
    assert "significantly" in out or "No significant difference" in out
    report = (folder / "report.md").read_text()
    for name in ("f1_deltas_1.png", "confusion_difference_1.png", "curves.png"):
        assert (folder / name).is_file() and name in report
    assert (folder / "broken_1.png").is_file() == bool(pair["broken"])


def test_runs_of_different_test_images_are_refused_or_compared_on_the_shared_ones(two_runs, capsys, tmp_path):
    knn, _, runs = two_runs
    other = classlab.knn("digits", k=[1], runs_dir=runs, progress=False, data_options={"seed": 5})
    code = main(["compare", str(knn.run_dir), str(other.run_dir), "--runs-dir", str(runs)])
    err = capsys.readouterr().err
    assert code == 2 and "different test images" in err and "--common" in err
    assert main(["compare", str(knn.run_dir), str(other.run_dir), "--common", "--no-images",
                 "--runs-dir", str(runs)]) == 0
    assert "on" in capsys.readouterr().out


def test_a_run_without_test_predictions_is_one_line(two_runs, capsys):
    knn, _, runs = two_runs
    explored = classlab.explore("digits", runs_dir=runs)
    assert main(["compare", str(explored.run_dir), str(knn.run_dir), "--runs-dir", str(runs)]) == 2
    assert "no test predictions" in capsys.readouterr().err
    with pytest.raises(ClasslabError, match="at least two"):
        from classlab.commands.compare import compare_runs

        compare_runs([knn.run_dir])
