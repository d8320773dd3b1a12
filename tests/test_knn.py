"""k-NN: identical predictions to scikit-learn's brute force, exact distances, clear errors."""

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from classlab import ClasslabError, KNNClassifier, load_dataset
from conftest import CIFAR_ZIP, DATA, need


@pytest.fixture(scope="module")
def mnist_subset():
    ds = load_dataset("mnist", data_dir=need(DATA))
    train = np.flatnonzero(ds.official_split == "train")[:6000]
    test = np.flatnonzero(ds.official_split == "test")[:1000]
    return ds.flat(train), ds.labels[train], ds.flat(test), ds.labels[test]


@pytest.mark.parametrize("metric, sk_metric", [("l2", "euclidean"),
                                               pytest.param("l1", "manhattan", marks=pytest.mark.slow)])
def test_identical_to_sklearn_brute_on_real_mnist(mnist_subset, metric, sk_metric):
    Xtr, ytr, Xte, yte = mnist_subset
    if metric == "l1":  # scikit-learn's single-threaded L1 search is slow: a third of the subset
        Xtr, ytr, Xte, yte = Xtr[:2000], ytr[:2000], Xte[:400], yte[:400]
    ks = [1, 2, 3, 4, 5, 8]  # even k produce tied votes, exercising the lowest-label rule
    ours = KNNClassifier(1, metric).fit(Xtr, ytr).predict_for_ks(Xte, ks)
    # scikit-learn's multi-threaded search resolves equal distances at the k-th place by how its
    # threads split the training set, so its answer changes with the thread count; single-threaded
    # it keeps the earlier training sample, our rule. L1 on this subset has such ties at k=4 and 5.
    with threadpool_limits(1):
        for k in ks:
            ref = KNeighborsClassifier(k, algorithm="brute", metric=sk_metric).fit(Xtr.astype(np.float64), ytr)
            assert np.array_equal(ours[k][0], ref.predict(Xte.astype(np.float64))), f"k={k}"
            assert np.array_equal(ours[k][1], ref.predict_proba(Xte.astype(np.float64))), f"k={k}"
    assert np.mean(ours[3][0] == yte) > (0.9 if metric == "l2" else 0.8)  # L1 on a third of the subset


def test_distances_are_exact(mnist_subset):
    Xtr, ytr, Xte, _ = mnist_subset
    dist, idx = KNNClassifier(metric="l2").fit(Xtr[:2000], ytr[:2000]).kneighbors(Xte[:50], 5)
    diff = Xte[:50, None, :].astype(np.int64) - Xtr[idx].astype(np.int64)
    assert np.array_equal(np.round(dist**2), (diff**2).sum(-1).astype(np.float64))  # exact squared L2
    assert np.all(np.diff(dist, axis=1) >= 0)


def test_ties_go_to_the_earlier_training_sample_like_sklearn():
    # Three identical training points with different labels and one query equal to them.
    X = np.array([[5, 5], [0, 0], [5, 5], [5, 5], [9, 9]], dtype=np.uint8)
    y = np.array([2, 0, 1, 0, 1])
    q = np.array([[5, 5]], dtype=np.uint8)
    for k in (1, 2, 3, 4):
        ours = KNNClassifier(k).fit(X, y).predict(q)
        ref = KNeighborsClassifier(k, algorithm="brute").fit(X.astype(float), y).predict(q.astype(float))
        assert ours[0] == ref[0], k
    _, idx = KNNClassifier(2).fit(X, y).kneighbors(q, 3)
    assert idx.tolist() == [[0, 2, 3]]


def test_small_memory_budget_gives_the_same_answer(mnist_subset):
    Xtr, ytr, Xte, _ = mnist_subset
    big = KNNClassifier(3).fit(Xtr, ytr).predict(Xte[:300])
    small = KNNClassifier(3, memory_mb=1).fit(Xtr, ytr).predict(Xte[:300])  # one query row per block
    assert np.array_equal(big, small)


def test_cosine_and_float_inputs_match_sklearn():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 20)), rng.integers(0, 4, 300)
    Q = rng.normal(size=(50, 20))
    for metric, sk in (("cosine", "cosine"), ("l2", "euclidean")):
        ours = KNNClassifier(5, metric).fit(X, y).predict(Q)
        ref = KNeighborsClassifier(5, algorithm="brute", metric=sk).fit(X, y).predict(Q)
        assert np.array_equal(ours, ref), metric


def test_estimator_verbs():
    ds = load_dataset("digits")
    X, y = ds.flat(), ds.labels
    model = KNNClassifier(3).fit(X[:1500], y[:1500])
    proba = model.predict_proba(X[1500:])
    assert np.allclose(proba.sum(1), 1) and proba.shape == (297, 10)
    assert model.score(X[1500:], y[1500:]) > 0.95


@pytest.mark.parametrize("k", [0, -1, 2.5, "3"])
def test_bad_k_is_refused_by_fit(k):
    model = KNNClassifier(k)  # scikit-learn style: __init__ stores, fit validates
    assert model.get_params()["k"] == k
    with pytest.raises(ClasslabError, match="positive integer"):
        model.fit(np.zeros((5, 4), np.uint8), np.arange(5) % 2)


def test_k_larger_than_training_set():
    model = KNNClassifier(10).fit(np.zeros((5, 4), np.uint8), np.arange(5) % 2)
    with pytest.raises(ClasslabError, match="larger than the training set"):
        model.predict(np.zeros((1, 4), np.uint8))


def test_wrong_shape_and_unknown_metric():
    model = KNNClassifier(1).fit(np.zeros((5, 4), np.uint8), np.arange(5) % 2)
    with pytest.raises(ClasslabError, match="same --image-size"):
        model.predict(np.zeros((1, 9), np.uint8))
    with pytest.raises(ClasslabError, match="unknown metric"):
        KNNClassifier(1, "hamming").fit(np.zeros((5, 4), np.uint8), np.arange(5) % 2)
    with pytest.raises(ClasslabError, match="not fitted"):
        KNNClassifier(1).predict(np.zeros((1, 4), np.uint8))


def test_many_boundary_ties_match_single_threaded_sklearn():
    # Tiny integer range: most distances tie, so the k-th place is almost always contested.
    rng = np.random.default_rng(0)
    X = rng.integers(0, 3, (400, 3)).astype(np.uint8)
    y = rng.integers(0, 5, 400)
    Q = rng.integers(0, 3, (300, 3)).astype(np.uint8)
    for metric, sk in (("l2", "euclidean"), ("l1", "manhattan")):
        ours = KNNClassifier(1, metric).fit(X, y).predict_for_ks(Q, [1, 2, 3, 5, 7, 10])
        with threadpool_limits(1):
            for k, (pred, proba) in ours.items():
                ref = KNeighborsClassifier(k, algorithm="brute", metric=sk).fit(X.astype(float), y)
                assert np.array_equal(proba, ref.predict_proba(Q.astype(float))), (metric, k)
                assert np.array_equal(pred, ref.predict(Q.astype(float))), (metric, k)


def test_grouped_selection_with_heavy_ties_matches_sklearn_and_full_topk():
    # Enough training rows that every k is searched through the group minima, not a full top-k; a
    # tiny value range makes most scores tie, the hardest case for that selection.
    import torch

    rng = np.random.default_rng(1)
    X = rng.integers(0, 4, (5000, 6)).astype(np.uint8)
    y = rng.integers(0, 4, 5000)
    Q = rng.integers(0, 4, (200, 6)).astype(np.uint8)
    clf = KNNClassifier(1).fit(X, y)
    scores = clf._scores(clf._prepare(torch.from_numpy(Q)))
    for k in (1, 4, 9, 16):
        top, cols = clf._smallest(scores, k)
        assert torch.equal(top, torch.topk(scores[:, :5000], k, dim=1, largest=False).values), k
        assert torch.equal(scores.gather(1, cols), top) and int(cols.max()) < 5000, k
    ours = clf.predict_for_ks(Q, [1, 3, 8, 15])
    with threadpool_limits(1):
        for k, (pred, proba) in ours.items():
            ref = KNeighborsClassifier(k, algorithm="brute").fit(X.astype(float), y)
            assert np.array_equal(proba, ref.predict_proba(Q.astype(float))), k


def test_square_norms_are_exact_at_the_extremes():
    import torch

    from classlab.models.knn_kernels import INT_MM_MAX_DIM as _INT_MM_MAX_DIM, square_norms as _square_norms

    rows = torch.tensor([[-128] * _INT_MM_MAX_DIM, [127] * _INT_MM_MAX_DIM, [0] * _INT_MM_MAX_DIM], dtype=torch.int8)
    assert _square_norms(rows).tolist() == [_INT_MM_MAX_DIM * 128**2, _INT_MM_MAX_DIM * 127**2, 0]
    rand = torch.randint(-128, 128, (3000, 3072), dtype=torch.int8)
    assert torch.equal(_square_norms(rand).long(), rand.long().pow(2).sum(1))


def test_string_labels_round_trip_through_classes_():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (40, 3, 3), dtype=np.uint8)
    names = np.array(["cat", "dog", "emu"])[np.arange(40) % 3]
    model = KNNClassifier(3).fit(X, names)
    assert list(model.classes_) == ["cat", "dog", "emu"] and model.n_features_in_ == 9
    reference = KNeighborsClassifier(3, algorithm="brute").fit(X.reshape(40, -1), names)
    assert list(model.predict(X)) == list(reference.predict(X.reshape(40, -1)))
    assert model.predict_proba(X).shape == (40, 3) and np.allclose(model.predict_proba(X),
                                                                     reference.predict_proba(X.reshape(40, -1)))
    assert model.score(X, names) == reference.score(X.reshape(40, -1), names)


# Every one of scikit-learn's estimator checks runs (a few skip themselves, e.g. sample weights).
@parametrize_with_checks([KNNClassifier(k=1, progress=False), KNNClassifier(k=3, metric="l1", progress=False)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_lower_bounds_from_rounded_group_means_never_exceed_the_distance():
    """The bound the pruned search rests on (knn_kernels): |a-b| >= 2 (|r_a - r_b| - |e_a| - |e_b|), checked
    against brute-force distances for 2x2 blocks and for consecutive groups (odd length: a padded group)."""
    import torch

    from classlab.models.knn_kernels import group_means

    rng = np.random.default_rng(7)
    smooth = np.repeat(np.repeat(rng.integers(0, 256, (300, 4, 4, 3)), 2, 1), 2, 2)  # tight bounds
    noisy = rng.integers(0, 256, (300, 8, 8, 3))
    for images in (smooth, noisy, np.clip(smooth + rng.integers(-3, 4, smooth.shape), 0, 255)):
        pixels = torch.from_numpy(images.astype(np.uint8).reshape(300, -1))
        for shape in ((8, 8, 3), (191,)):  # (191,): consecutive groups over the first 191 values
            rows = pixels[:, : int(np.prod(shape))].contiguous()
            means, error = group_means(rows, shape)
            true = torch.cdist(rows.double(), rows.double())
            coarse = torch.cdist(means.double(), means.double())
            bound = 2 * (coarse - error[:, None] - error[None, :])
            assert bool((bound <= true + 1e-9).all()), shape
            if images is smooth and shape == (8, 8, 3):  # block-constant images: the bound is the distance
                assert torch.allclose(bound, true) and float(error.max()) == 0


@pytest.mark.parametrize("case", ["cifar", "ties", "flat"])
def test_pruned_search_equals_brute_force_and_sklearn(case):
    """algorithm="auto" (lower bounds skip most products) gives the very neighbours of "brute": on real
    CIFAR-10 images; on near-duplicates whose bounds are too loose to prune (the full-product fallback)
    with many exact ties; on flat rows whose groups are consecutive values."""
    rng = np.random.default_rng(3)
    if case == "cifar":
        ds = load_dataset(need(CIFAR_ZIP))
        train, test = np.flatnonzero(ds.official_split == "train")[:6000], np.flatnonzero(ds.official_split == "test")[:300]
        X, y, Q = ds.images[train], ds.labels[train], ds.images[test]
    elif case == "ties":
        base = rng.integers(0, 256, (4, 16, 16, 1))
        X = np.clip(base[rng.integers(0, 4, 5000)] + rng.integers(0, 2, (5000, 16, 16, 1)), 0, 255).astype(np.uint8)
        y, Q = rng.integers(0, 3, 5000), X[rng.integers(0, 5000, 120)]
    else:
        X = rng.integers(0, 256, (5000, 99)).astype(np.uint8)
        X[:, 50:] = X[:, :49] // 2 + 60  # some structure
        y, Q = rng.integers(0, 5, 5000), X[:150] // 3 + 40
    pruned = KNNClassifier(1, progress=False).fit(X, y)
    brute = KNNClassifier(1, progress=False, algorithm="brute").fit(X, y)
    assert pruned._bounds is not None and brute._bounds is None
    for k in (1, 2, 5):
        dp, ip = pruned.kneighbors(Q, k)
        db, ib = brute.kneighbors(Q, k)
        assert np.array_equal(dp, db) and np.array_equal(ip, ib), k
    ours = pruned.predict_for_ks(Q, [1, 3])
    flat = lambda a: a.reshape(len(a), -1).astype(np.float64)  # noqa: E731
    with threadpool_limits(1):
        for k, (pred, proba) in ours.items():
            ref = KNeighborsClassifier(k, algorithm="brute").fit(flat(X), y)
            assert np.array_equal(pred, ref.predict(flat(Q))) and np.array_equal(proba, ref.predict_proba(flat(Q))), k
    if case == "ties":
        assert np.mean(dp[:, 0] == 0) > 0.99  # queries are training images: exact matches, tied
    with pytest.raises(ClasslabError, match="unknown algorithm"):
        KNNClassifier(1, algorithm="kd_tree").fit(X, y)
