"""Is run B really better than run A on the same test images? Paired tests, not overlapping intervals.

``mcnemar`` compares accuracy through the images the two runs disagree on: b (A right, B wrong) and c
(A wrong, B right). Under "no difference" each disagreement is a fair coin, so the exact test is a
two-sided binomial test of b against b + c (used below 25 disagreements); above, the chi-square statistic
with continuity correction, (|b - c| - 1)^2 / (b + c), on one degree of freedom. ``bootstrap_difference``
resamples the test images (the same draw for both runs) for any metric, macro F1 by default.
"""

from __future__ import annotations

import numpy as np

EXACT_BELOW = 25


def mcnemar(a_correct: np.ndarray, b_correct: np.ndarray) -> dict:
    from scipy import stats

    a, b = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = only_a + only_b
    if n == 0:
        return {"a_only_correct": 0, "b_only_correct": 0, "statistic": 0.0, "p_value": 1.0, "method": "no disagreements"}
    if n < EXACT_BELOW:
        p = stats.binomtest(min(only_a, only_b), n, 0.5).pvalue
        return {"a_only_correct": only_a, "b_only_correct": only_b, "statistic": float(min(only_a, only_b)),
                "p_value": float(min(1.0, p)), "method": "exact binomial"}
    statistic = (abs(only_a - only_b) - 1) ** 2 / n
    return {"a_only_correct": only_a, "b_only_correct": only_b, "statistic": float(statistic),
            "p_value": float(stats.chi2.sf(statistic, 1)), "method": "chi-square with continuity correction"}


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Macro F1 of one or many (rows) label vectors, vectorised (scikit-learn's definition, zero_division=0),
    over the classes present in y_true or y_pred of each row."""
    y_true, y_pred = np.atleast_2d(y_true), np.atleast_2d(y_pred)
    rows, k = len(y_true), num_classes
    offset = (np.arange(rows) * k)[:, None]

    def count(labels, weights=None):
        return np.bincount((labels + offset).ravel(), None if weights is None else weights.ravel(),
                           minlength=rows * k).reshape(rows, k)
    tp = count(y_true, (y_true == y_pred).astype(float))
    denominator = count(y_true) + count(y_pred)  # support + predicted = 2TP + FP + FN
    f1 = np.divide(2 * tp, denominator, out=np.zeros(tp.shape), where=denominator > 0)
    return f1.sum(1) / (denominator > 0).sum(1)


def bootstrap_difference(y_true, pred_a, pred_b, num_classes: int, n_boot: int = 2000, seed: int = 0,
                         metric: str = "macro_f1") -> dict:
    """B minus A with a 95% percentile interval, resampling images (the same draw for both runs), and the
    two-sided bootstrap p-value (how often the resampled difference crosses zero, doubled)."""
    y, a, b = (np.asarray(v, np.int64) for v in (y_true, pred_a, pred_b))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(y), (n_boot, len(y)))
    if metric == "accuracy":
        score = lambda yy, pp: (yy == pp).mean(axis=-1)  # noqa: E731
    else:
        score = lambda yy, pp: macro_f1(yy, pp, num_classes)  # noqa: E731
    observed = float(np.ravel(score(y, b) - score(y, a))[0])
    diffs = np.empty(n_boot)
    for start in range(0, n_boot, 200):  # bounded memory: 200 resamples at a time
        idx = draws[start : start + 200]
        diffs[start : start + 200] = score(y[idx], b[idx]) - score(y[idx], a[idx])
    low, high = np.percentile(diffs, [2.5, 97.5])
    p = min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0)))
    return {"metric": metric, "difference": observed, "ci95": [float(low), float(high)], "p_value": float(p),
            "resamples": n_boot}


def in_words(name_a: str, name_b: str, test: dict, difference: float, what: str = "accuracy",
             alpha: float = 0.05) -> str:
    """One sentence a person can act on."""
    points = abs(difference) * 100
    if test["p_value"] >= alpha or difference == 0:
        return (f"No significant difference in {what} between {name_a} and {name_b} "
                f"({difference * 100:+.2f} points, p = {test['p_value']:.3g}): treat them as equally good on this test set.")
    better, worse = (name_b, name_a) if difference > 0 else (name_a, name_b)
    return (f"{better} is significantly better than {worse} in {what}, by {points:.2f} points "
            f"(p = {test['p_value']:.3g} < {alpha}).")
