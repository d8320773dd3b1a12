"""Every number evaluate() reports, cross-checked against scikit-learn (and specificity by hand)."""

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from classlab import ClasslabError, evaluate


def _case(n, k, seed, imbalance=False):
    rng = np.random.default_rng(seed)
    p = np.linspace(1, 8, k) if imbalance else np.ones(k)
    y = rng.choice(k, n, p=p / p.sum())
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.5  # better than chance, not perfect
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, proba.argmax(1), proba


@pytest.mark.parametrize("n, k, imbalance", [(500, 2, True), (800, 10, False), (3000, 100, False), (400, 7, True)])
def test_metrics_match_sklearn(n, k, imbalance):
    y, pred, proba = _case(n, k, seed=k, imbalance=imbalance)
    m = evaluate(y, pred, proba, [f"c{i}" for i in range(k)]).metrics
    labels = list(range(k))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["mcc"] == pytest.approx(skm.matthews_corrcoef(y, pred))
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    assert np.allclose([c["precision"] for c in m["per_class"]], p)
    assert np.allclose([c["recall"] for c in m["per_class"]], r)
    assert np.allclose([c["f1"] for c in m["per_class"]], f)
    assert [c["support"] for c in m["per_class"]] == list(s)
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = skm.precision_recall_fscore_support(y, pred, labels=labels, average=avg, zero_division=0)
        assert m[f"{avg}_avg"]["precision"] == pytest.approx(ap)
        assert m[f"{avg}_avg"]["recall"] == pytest.approx(ar)
        assert m[f"{avg}_avg"]["f1"] == pytest.approx(af)
    # Specificity by hand from sklearn's confusion matrix: TN / (TN + FP).
    cm = skm.confusion_matrix(y, pred, labels=labels)
    for i, c in enumerate(m["per_class"]):
        fp = cm[:, i].sum() - cm[i, i]
        tn = cm.sum() - cm[i, :].sum() - cm[:, i].sum() + cm[i, i]
        assert c["specificity"] == pytest.approx(tn / (tn + fp))
    for t, value in m["top_k_accuracy"].items():
        score = proba[:, 1] if k == 2 else proba  # sklearn wants the positive-class score for binary
        assert value == pytest.approx(skm.top_k_accuracy_score(y, score, k=int(t), labels=labels))
    assert set(m["top_k_accuracy"]) == {str(t) for t in (1, 3, 5) if t < k}
    assert m["cross_entropy"] == pytest.approx(skm.log_loss(y, proba, labels=labels))


def test_confusion_matrix_matches_sklearn():
    y, pred, _ = _case(300, 5, seed=1)
    ev = evaluate(y, pred)
    assert np.array_equal(ev.confusion_matrix, skm.confusion_matrix(y, pred))


def test_bottle_example_from_the_deck():
    """The waste deck: 21% of test images hold a bottle; predicting 'no bottle' always scores 79%
    accuracy yet finds no bottle. Balanced accuracy and recall expose it."""
    y = np.array([1] * 21 + [0] * 79)
    ev = evaluate(y, np.zeros(100, int), class_names=["no bottle", "bottle"])
    m = ev.metrics
    assert m["accuracy"] == pytest.approx(0.79)
    assert m["balanced_accuracy"] == pytest.approx(0.5)
    bottle = m["per_class"][1]
    assert bottle["recall"] == 0 and bottle["precision"] == 0 and bottle["specificity"] == 1
    assert m["mcc"] == 0
    assert "bottle" in ev.text()


def test_bootstrap_ci_brackets_the_estimate_and_narrows_with_n():
    y, pred, _ = _case(2000, 4, seed=2)
    m = evaluate(y, pred, seed=0).metrics
    lo, hi = m["confidence_intervals"]["accuracy"]
    assert lo < m["accuracy"] < hi
    flo, fhi = m["confidence_intervals"]["macro_f1"]
    assert flo < m["macro_avg"]["f1"] < fhi
    small = evaluate(y[:200], pred[:200], seed=0).metrics["confidence_intervals"]["accuracy"]
    assert (small[1] - small[0]) > (hi - lo)
    # Binomial standard error check: the 95% interval is about +-1.96 sqrt(p(1-p)/n).
    p = m["accuracy"]
    assert (hi - lo) / 2 == pytest.approx(1.96 * np.sqrt(p * (1 - p) / 2000), rel=0.15)


def test_save_writes_report_json_and_readable_pngs(tmp_path):
    y, pred, proba = _case(3000, 100, seed=3)
    ev = evaluate(y, pred, proba, [f"class_{i}" for i in range(100)])
    paths = ev.save(tmp_path, extra={"model": "test"})
    data = json.loads(paths["metrics"].read_text())
    assert data["model"] == "test" and len(data["confusion_matrix"]) == 100 and data["class_names"][5] == "class_5"
    from PIL import Image

    for key in ("confusion_matrix", "confusion_matrix_normalized"):
        w, h = Image.open(paths[key]).size
        assert w >= 2000 and h >= 2000  # 100 class names need room
    assert "class_99" in paths["classification_report"].read_text()


@pytest.mark.parametrize("args, match", [
    (([0, 1], [0]), "has 2 items"),
    (([0, 1], [0, 5], None, ["a", "b"]), "outside"),
    (([0.5, 1], [0, 1]), "integer"),
    (([0, 1], [0, 1], np.ones((2, 3)), ["a", "b"]), "shape"),
    (([], []), "nothing"),
])
def test_bad_input(args, match):
    with pytest.raises(ClasslabError, match=match):
        evaluate(*args)


def test_macro_averages_over_the_classes_present_match_sklearns_default():
    """Images of 3 of 10 classes, one prediction into a fourth: 'present' averages over the 4 classes in
    labels or predictions, as scikit-learn does without labels=; 'all' over the 10, as it does with them."""
    rng = np.random.default_rng(3)
    y = rng.choice([2, 5, 7], 300)
    pred = np.where(rng.random(300) < 0.8, y, rng.choice([2, 5, 7, 9], 300))
    names = [f"c{i}" for i in range(10)]
    present = evaluate(y, pred, class_names=names, average_over="present").metrics
    every = evaluate(y, pred, class_names=names).metrics
    for key, average in (("f1", "macro"), ("precision", "macro"), ("recall", "macro")):
        score = getattr(skm, f"{key}_score" if key != "f1" else "f1_score")
        assert present["macro_avg"][key] == pytest.approx(score(y, pred, average=average, zero_division=0))
        assert every["macro_avg"][key] == pytest.approx(score(y, pred, average=average, labels=range(10),
                                                              zero_division=0))
    assert present["macro_avg_classes"] == ["c2", "c5", "c7", "c9"] and "macro_avg_classes" not in every
    lo, hi = present["confidence_intervals"]["macro_f1"]
    assert lo <= present["macro_avg"]["f1"] <= hi and hi > every["confidence_intervals"]["macro_f1"][1]
    assert present["accuracy"] == every["accuracy"] and present["balanced_accuracy"] == every["balanced_accuracy"]
    with pytest.raises(ClasslabError, match="'all' or 'present'"):
        evaluate(y, pred, class_names=names, average_over="some")
