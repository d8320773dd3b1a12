"""Exact k-nearest neighbours on raw pixels, blockwise in torch with bounded memory.

For uint8 pixels and the L2 metric the distance step is exact integer arithmetic: pixels are
shifted to int8 (x - 128; differences are unchanged) and the cross term x.y runs as an
int8 x int8 -> int32 matrix product (``torch._int_mm``), about twice the float32 GEMM rate on
this class of CPU. L1 distances of uint8 pixels are integer-valued floats, also exact. With
``algorithm="auto"`` (the default) exact lower bounds from 2x2 pixel means skip the full product for
most training rows, with the same answers (knn_kernels.py); ``"brute"`` computes every distance.

Tie-breaking matches scikit-learn's brute-force ``KNeighborsClassifier`` run on one thread. Its search
keeps a bounded max-heap per query while scanning the training rows in order; when distances tie at
the k-th place, which rows survive depends on that heap's history. The hot loop here just takes the
k+1 smallest exact distances per query; a tie between the k-th and (k+1)-th shows a contested
boundary, and only those rare rows are recomputed in full: ``kneighbors`` then orders by
(distance, index), and prediction replays scikit-learn's heap exactly (``_heap_select``). A tied vote
goes to the lowest class index, as in scikit-learn. (With several threads scikit-learn splits the
training rows between heaps, so its own answer to a boundary tie changes with the thread count.)
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn import exceptions
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_X_y

from ..device import pick_device
from ..errors import ClasslabValueError
from ..progress import bar as progress_bar
from .knn_kernels import INT_MM_MAX_DIM, CoarseBounds, as_int8, int8_scores, padded_train, smallest_scores, square_norms


class NotFittedError(ClasslabValueError, exceptions.NotFittedError):
    """Used before ``fit``: scikit-learn's NotFittedError, and a ClasslabError for the CLI."""


METRICS = ("l2", "l1", "cosine")
ALGORITHMS = ("auto", "brute")
# algorithm="auto" keeps using lower bounds while at most this fraction of the distances is still computed
# in full after pruning (their small products run at a fraction of the large one's rate)
PRUNED_AT_MOST = 1 / 16
PROBE_ROWS = 64


class KNNClassifier(ClassifierMixin, BaseEstimator):
    """A scikit-learn estimator: ``fit(X, y)``, ``predict``, ``predict_proba``, ``score``, ``kneighbors``;
    plus ``predict_for_ks`` to score several k from one neighbour search.

    As in scikit-learn, ``__init__`` only stores its arguments and ``fit`` validates them and the data,
    setting ``classes_`` (labels of any type, e.g. strings; ``predict`` returns them), ``n_features_in_``
    and ``device_``. Images of any shape are flattened to rows."""

    def __init__(self, k: int = 1, metric: str = "l2", device: str | None = None, memory_mb: int = 1024,
                 progress: bool = True, algorithm: str = "auto"):
        self.k, self.metric, self.device, self.memory_mb, self.progress = k, metric, device, memory_mb, progress
        self.algorithm = algorithm

    # -- fitting ----------------------------------------------------------------------------------

    def fit(self, X, y, num_classes: int | None = None) -> "KNNClassifier":
        """``num_classes``: labels are class indices 0..num_classes-1, and probabilities get a column for
        every class, also those absent from this training set (how classlab's runs call it)."""
        if self.metric not in METRICS:
            raise ClasslabValueError(f"unknown metric '{self.metric}'; choose one of {', '.join(METRICS)}")
        if self.algorithm not in ALGORITHMS:
            raise ClasslabValueError(f"unknown algorithm '{self.algorithm}'; choose auto (lower bounds skip most "
                                     "distance products where they can, same answers) or brute")
        check_k(self.k)
        self.device_ = pick_device(self.device)
        try:
            X, y = check_X_y(X, y, dtype="numeric", allow_nd=True)
        except ValueError as e:  # empty, NaN, inf, a length mismatch: scikit-learn's wording, our error type
            raise ClasslabValueError(str(e)) from None
        shape, X = X.shape[1:], self._as_rows(X)
        if num_classes is not None:
            self.classes_ = np.arange(int(num_classes))
            codes = y.astype(np.int64)
            if codes.min() < 0 or codes.max() >= num_classes or not np.array_equal(codes, y):
                raise ClasslabValueError(f"with num_classes={num_classes}, labels must be class indices 0..{num_classes - 1}")
        else:
            check_classification_targets(y)
            self.classes_, codes = np.unique(y, return_inverse=True)
        self.n_features_in_ = X.shape[1]
        self.exact_ = X.dtype == torch.uint8
        self._y = torch.from_numpy(codes.astype(np.int64).ravel()).to(self.device_)
        self._train = self._prepare(X.to(self.device_))
        self._bounds = None
        if self._use_int_mm():
            self._train_t, self._sq = padded_train(self._train)
            if self.algorithm == "auto" and CoarseBounds.worthwhile(*X.shape):
                self._bounds = CoarseBounds(X.to(self.device_), tuple(shape), self._train, self._train_t, self._sq)
        return self

    @property
    def num_classes_(self) -> int:
        return len(self.classes_)

    @property
    def _exact_ties(self) -> bool:
        """Distances are exact integers, so ties are real and can be resolved like scikit-learn."""
        return self.exact_ and self.metric in ("l2", "l1")

    def _as_rows(self, X) -> torch.Tensor:
        """Validated rows: uint8 pixels stay uint8 (exact integer distances), anything else becomes float."""
        if torch.is_tensor(X):
            X = X.cpu().numpy()
        try:
            X = check_array(X, dtype="numeric", allow_nd=True)
        except ValueError as e:
            raise ClasslabValueError(f"{e} (X holds one image or row of numbers per sample)") from None
        X = np.ascontiguousarray(X) if X.flags.writeable else np.array(X)  # torch wants writable memory
        t = torch.from_numpy(X).reshape(len(X), -1)
        if t.dtype != torch.uint8:
            t = t.to(torch.float64 if self.metric != "cosine" else torch.float32)
        return t

    def _use_int_mm(self) -> bool:
        return self.metric == "l2" and self.exact_ and self.n_features_in_ <= INT_MM_MAX_DIM

    def _prepare(self, X: torch.Tensor) -> torch.Tensor:
        """Rows in the representation the distance kernel wants."""
        if self.metric == "l2" and X.dtype == torch.uint8:
            if self.n_features_in_ <= INT_MM_MAX_DIM:
                return as_int8(X)
            return X.to(torch.float64)
        if self.metric == "l1":
            # |a-b| sums of uint8 are integers; float32 holds them exactly while below 2**24.
            exact32 = X.dtype == torch.uint8 and X.shape[1] * 255 < 2**24
            return X.to(torch.float32 if exact32 else torch.float64)
        if self.metric == "cosine":
            X = X.to(torch.float32)
            return X / X.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return X.to(torch.float64)

    # -- neighbour search -------------------------------------------------------------------------

    def _scores(self, q: torch.Tensor, buffer: torch.Tensor | None = None) -> torch.Tensor:
        """Per query row, a score over training rows that orders them like the distance does.
        ``buffer`` (int32, at least (max(rows, 17), padded N)) is reused across blocks: writing the
        product into fresh memory each time costs as much as computing it, in page faults."""
        if self._use_int_mm():
            # |q-y|^2 = |q|^2 + |y|^2 - 2 q.y; |q|^2 is the same along a row, so it is left out.
            # The padding columns stay, for _smallest (callers slice [:, :n]).
            return int8_scores(q, self._train_t, self._sq, buffer)
        if self.metric == "l2":
            d = (q * q).sum(1, keepdim=True) + (self._train * self._train).sum(1) - 2 * q @ self._train.t()
            return d.clamp_min_(0)
        if self.metric == "l1":
            return torch.cdist(q, self._train, p=1)
        return 1 - q @ self._train.t()

    def _to_distance(self, score: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        if self._use_int_mm():
            sq = square_norms(q)[:, None].to(torch.int64)
            return (score.to(torch.int64) + sq).to(torch.float64).sqrt()
        if self.metric == "l2":
            return score.to(torch.float64).sqrt()
        return score.to(torch.float64)

    def _exact_row(self, x) -> np.ndarray:
        """Exact distances (up to a per-row constant) from one query to every training row."""
        with torch.inference_mode():
            q = self._prepare(self._as_rows(x).to(self.device_))
            return self._scores(q)[0, : len(self._train)].to(torch.float64 if not self._exact_ties else torch.int64).cpu().numpy()

    def _check_queries(self, X) -> torch.Tensor:
        Q = self._as_rows(X)
        if Q.shape[1] != self.n_features_in_:
            raise ClasslabValueError(f"X has {Q.shape[1]} features, but KNNClassifier is expecting {self.n_features_in_} "
                                     "features as input (values per image: load both splits with the same "
                                     "--image-size and --channels)")
        if self.exact_ and Q.dtype != torch.uint8:
            raise ClasslabValueError("fit on uint8 pixels but asked to predict on floats; pass uint8 images to both")
        return Q

    def _search(self, Q: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k smallest distances per query (any order among equals), block by block."""
        n = len(self._train)
        block = int(np.clip((self.memory_mb << 20) // (n * 8), 16, 2048))  # bytes per score, with slack
        buffer = None
        if self._use_int_mm():
            buffer = torch.empty((max(block, 17), self._train_t.shape[1]), dtype=torch.int32, device=self.device_)
        dists, idx, bounds = [], [], self._bounds
        bar = progress_bar(total=len(Q), desc="k-NN search", unit="image", enabled=self.progress and len(Q) * n >= 5e7)
        with torch.inference_mode(), bar:
            # with bounds, a small first block tells cheaply whether they prune enough for these images
            probe = min(PROBE_ROWS, block)
            starts = [0, *range(probe, len(Q), block)] if bounds is not None and len(Q) > 2 * probe \
                else list(range(0, len(Q), block))
            for start, end in zip(starts, [*starts[1:], len(Q)]):
                pixels = Q[start:end].to(self.device_)
                q = self._prepare(pixels)
                if bounds is not None:
                    top, arg, scored = bounds.smallest(q, pixels, k, buffer)
                    if scored > PRUNED_AT_MOST:  # these images' bounds prune too little: full products from here on
                        bounds = None
                else:
                    top, arg = self._smallest(self._scores(q, buffer), k)
                dists.append(self._to_distance(top, q).cpu())
                idx.append(arg.cpu())
                bar.update(len(q))
        return torch.cat(dists).numpy(), torch.cat(idx).numpy()

    def _smallest(self, scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The k smallest scores per row and their columns, sorted (any order among equals: kneighbors
        resolves ties at the boundary)."""
        if not self._use_int_mm():
            return torch.topk(scores[:, : len(self._train)], k, dim=1, largest=False, sorted=True)
        return smallest_scores(scores, k, len(self._train))

    def kneighbors(self, X, n_neighbors: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(distances, indices) of the nearest training rows, nearest first; equal distances in
        training order, including where they straddle the k-th place."""
        self._check_fitted()
        k = check_k(n_neighbors or self.k)
        n = len(self._train)
        if k > n:
            raise ClasslabValueError(f"k={k} is larger than the training set ({n} images); use k <= {n}")
        Q = self._check_queries(X)
        if not self._exact_ties:
            return self._search(Q, k)
        dist, idx = self._search(Q, min(k + 1, n))  # one extra neighbour reveals a contested boundary
        order = np.lexsort((idx, dist), axis=1)
        dist, idx = np.take_along_axis(dist, order, 1), np.take_along_axis(idx, order, 1)
        if k < n:
            for r in np.flatnonzero(dist[:, k - 1] == dist[:, k]):
                row = self._exact_row(Q[r : r + 1])
                idx[r, :k] = np.lexsort((np.arange(n), row))[:k]  # the boundary may hide more equals
        return dist[:, :k], idx[:, :k]

    # -- prediction -------------------------------------------------------------------------------

    def predict_for_ks(self, X, ks) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """{k: (predicted class indices into ``classes_``, vote shares)} for every k, from one search with max(ks)."""
        ks = sorted({check_k(k) for k in ks})
        self._check_fitted()
        exact_ties = self._exact_ties and ks[-1] < len(self._train)
        if ks[-1] > len(self._train):
            raise ClasslabValueError(f"k={ks[-1]} is larger than the training set ({len(self._train)} images); "
                                f"use k <= {len(self._train)}")
        dist, idx = self.kneighbors(X, ks[-1] + exact_ties)  # one extra neighbour shows a boundary tie
        y_train = self._y.cpu().numpy()
        out = {}
        for k in ks:
            neighbours = idx[:, :k]
            if exact_ties:
                tied = np.flatnonzero(dist[:, k - 1] == dist[:, k])
                if len(tied):
                    neighbours = neighbours.copy()
                    for r in tied:
                        neighbours[r] = _heap_select(self._exact_row(self._as_rows(X[r : r + 1])), k)
            labels = torch.from_numpy(y_train[neighbours])
            votes = torch.zeros(len(labels), self.num_classes_, dtype=torch.float64)
            votes.scatter_add_(1, labels, torch.ones(len(labels), k, dtype=torch.float64))
            # argmax returns the first maximum: a tied vote goes to the lowest class index.
            out[k] = (votes.argmax(1).numpy(), (votes / k).numpy())
        return out

    def predict_proba(self, X) -> np.ndarray:
        """Vote shares per class, columns in ``classes_`` order."""
        return self.predict_for_ks(X, [self.k])[self.k][1]

    def predict(self, X) -> np.ndarray:
        """The majority label (from ``classes_``; a tied vote goes to the first of them)."""
        self._check_fitted()
        return self.classes_[self.predict_for_ks(X, [self.k])[self.k][0]]

    def _check_fitted(self):
        if not hasattr(self, "_train"):
            raise NotFittedError("this KNNClassifier is not fitted yet; call fit(X, y) first")


def _heap_select(d: np.ndarray, k: int) -> np.ndarray:
    """The k rows scikit-learn's ArgKmin keeps: a max-heap of size k fed d[0], d[1], ... in order,
    where a value enters only if strictly below the root and sifts down as in its ``heap_push``."""
    values, indices = [float("inf")] * k, [-1] * k
    # After the first k rows the root never exceeds max(d[:k]); nothing at or above it can enter.
    bound = float(d[:k].max()) if len(d) > k else float("inf")
    for j in np.union1d(np.arange(min(k, len(d))), np.flatnonzero(d < bound)).tolist():
        val = float(d[j])
        if val >= values[0]:
            continue
        cur = 0
        while True:
            left, right = 2 * cur + 1, 2 * cur + 2
            if left >= k:
                break
            if right >= k or values[left] >= values[right]:
                swap = left if val < values[left] else None
            else:
                swap = right if val < values[right] else None
            if swap is None:
                break
            values[cur], indices[cur] = values[swap], indices[swap]
            cur = swap
        values[cur], indices[cur] = val, j
    return np.array(indices, dtype=np.int64)


def check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ClasslabValueError(f"k must be a positive integer, got {k!r}")
    return int(k)
