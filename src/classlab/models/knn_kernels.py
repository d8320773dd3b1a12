"""The int8 kernels of exact k-NN on uint8 pixels (knn.py): padding, exact squared norms, the k smallest
padded scores, and lower bounds that spare most of the distance products.

Scores are |y|^2 - 2 q.y of pixels shifted to int8 (x - 128: differences, so distances, unchanged), an
int8 x int8 -> int32 product (``torch._int_mm``). A query's squared distance is its score plus |q|^2.

Lower bounds (``CoarseBounds``): split each row's values into groups of four (2x2 pixel blocks of each
channel where the images' shape is known, else four consecutive values). Within a group, the sum of
squared differences is at least 4 times the squared difference of the group means (Cauchy-Schwarz), so

    |a - b| >= 2 |mean(a) - mean(b)| >= 2 (|round(mean(a)) - round(mean(b))| - |e_a| - |e_b|),

where e is a row's rounding error. The rounded means are uint8 again, so one int8 product a quarter the
size of the full one bounds every distance from below. Per block of queries: the few rows with the best
coarse scores get exact distances, whose k-th smallest bounds the query's k-th distance from above (U);
only rows whose lower bound is at most U can be among the k nearest, and only they (on CIFAR-10 about 50
of 50,000 per query) get exact distances. Exact in value: no row within U is ever skipped.
"""

from __future__ import annotations

import torch

# Scores |y|^2 - 2 q.y of int8 rows stay within int32 up to this many values per image (120x120x3).
INT_MM_MAX_DIM = (2**31 - 1) // (3 * 128 * 128)
# Training rows are dealt into this many interleaved groups for the k smallest scores (smallest_scores).
SELECT_GROUPS = 32
# The score of a padding row: above any real one, which is at most 3 * 128**2 * dim < 2**31 - 1.
PAD_SCORE = 2**31 - 1
GROUP = 4  # values per lower-bound group: 2x2 pixels (group_means divides by shifting 2 bits)
QUERY_ROWS = 32  # queries whose candidate rows are scored together in one small product


def pad_to(t: torch.Tensor, dim: int, multiple: int, minimum: int = 0) -> torch.Tensor:
    size = t.shape[dim]
    target = max(minimum, -(-size // multiple) * multiple)
    if target == size:
        return t
    pad = [0, 0] * (t.ndim - 1 - dim) + [0, target - size]
    return torch.nn.functional.pad(t, pad)


def square_norms(rows: torch.Tensor) -> torch.Tensor:
    """|row|^2 of int8 rows, exactly, as int32, ten times faster than integer arithmetic: float32 dot
    products of 512-value pieces stay at most 512 x 128**2 = 2**23, exact, and are summed in float64."""
    out = torch.empty(len(rows), dtype=torch.float64, device=rows.device)
    for start in range(0, len(rows), 1024):  # pieces that stay in cache
        pieces = pad_to(rows[start : start + 1024].float(), 1, 512).view(min(1024, len(rows) - start), -1, 512)
        out[start : start + 1024] = torch.linalg.vecdot(pieces, pieces).sum(1, dtype=torch.float64)
    return out.to(torch.int32)


def as_int8(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 rows as int8 x - 128 (the top bit flipped), padded to a multiple of 8 values (_int_mm)."""
    return pad_to(pixels.view(torch.int8).bitwise_xor(-128), 1, 8)


def padded_train(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows transposed for _int_mm, their squared norms), padded to whole groups of a multiple of 8 rows
    (_int_mm wants N % 8 == 0 on CUDA); a padding row scores PAD_SCORE, so it never ranks above a real one."""
    padded = SELECT_GROUPS * -(-len(rows) // (8 * SELECT_GROUPS)) * 8
    sq = torch.full((padded,), PAD_SCORE, dtype=torch.int32, device=rows.device)
    sq[: len(rows)] = square_norms(rows)
    return pad_to(rows, 0, padded).t(), sq


def int8_scores(q: torch.Tensor, train_t: torch.Tensor, sq: torch.Tensor, out: torch.Tensor | None = None):
    """|y|^2 - 2 q.y for every (query, padded training row): one product and one fused pass, in place."""
    rows = len(q)
    qp = pad_to(q, 0, 1, minimum=17)  # CUDA's int8 kernel wants more than 16 rows
    dot = torch._int_mm(qp, train_t) if out is None else torch._int_mm(qp, train_t, out=out[: len(qp)])
    return torch.sub(sq, dot, alpha=2, out=dot)[:rows]


def smallest_scores(scores: torch.Tensor, k: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k smallest of each row's first ``n`` padded int8 scores and their columns, sorted, without a
    full top-k over every column (which cost as much as a third of the product): the columns are dealt
    into SELECT_GROUPS interleaved groups, one vectorised pass takes each group's minimum, and only the k
    groups with the smallest minima are searched. Exact in value: if a true top-k score lay in a group
    left out, each of the k groups kept would hold a score at most that large. Which of several equal
    scores is returned is arbitrary, as with topk."""
    groups = scores.shape[1] // SELECT_GROUPS
    if groups < 4 * k or scores.shape[1] % SELECT_GROUPS:
        return torch.topk(scores[:, :n], k, dim=1, largest=False, sorted=True)
    rows = len(scores)
    minima = scores.view(rows, SELECT_GROUPS, groups).amin(1)  # group g = columns g, g + groups, ...
    best = torch.topk(minima, k, dim=1, largest=False, sorted=False).indices
    offsets = torch.arange(0, SELECT_GROUPS * groups, groups, device=scores.device)
    columns = (best[:, :, None] + offsets).reshape(rows, -1)
    top, pos = torch.topk(scores.gather(1, columns), k, dim=1, largest=False, sorted=True)
    return top, columns.gather(1, pos)


def group_means(pixels: torch.Tensor, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(rounded means of each group of GROUP values as uint8 rows, each row's rounding error |e| as float64).
    Groups are 2x2 pixel blocks of each channel for images of even height and width (``shape``: one image's
    (H, W) or (H, W, C)), else GROUP consecutive values (zeros pad the last group in every row alike).
    In chunks of rows that stay in cache, with int16 sums of strided slices: 18x a strided ``sum``."""
    parts = [_group_means(pixels[i : i + 1024], shape) for i in range(0, len(pixels), 1024)]
    return torch.cat([m for m, _ in parts]), torch.cat([e for _, e in parts])


def _group_means(pixels: torch.Tensor, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    n = len(pixels)
    if len(shape) in (2, 3) and shape[0] % 2 == 0 and shape[1] % 2 == 0:
        h, w, c = shape[0], shape[1], shape[2] if len(shape) == 3 else 1
        blocks = pixels.reshape(n, h // 2, 2, w // 2, 2 * c).to(torch.int16)  # (.., column pair x channel)
        rows = blocks[:, :, 0] + blocks[:, :, 1]
        sums = (rows[..., :c] + rows[..., c:]).reshape(n, -1)
    else:
        sums = pad_to(pixels, 1, GROUP).view(n, -1, GROUP).sum(2, dtype=torch.int16)
    rounded = (sums + GROUP // 2) >> 2  # / GROUP, half up; at most 255
    off = sums - GROUP * rounded  # GROUP times the rounding error, in -2..1
    error = (off * off).sum(1, dtype=torch.int32).double().sqrt() / GROUP
    return rounded.to(torch.uint8), error


class CoarseBounds:
    """Lower bounds on distances to every training row from its 2x2 means (see the module docstring).
    ``pixels``: the training rows as uint8, one image of ``shape`` each; ``train``: the same as int8 rows
    (values padded to a multiple of 8); ``train_t`` and ``sq``: as ``padded_train`` returns them."""

    def __init__(self, pixels: torch.Tensor, shape: tuple[int, ...], train: torch.Tensor, train_t: torch.Tensor,
                 sq: torch.Tensor):
        self.shape, self.train, self.train_t, self.sq, self.n = shape, train, train_t, sq, len(pixels)
        means, error = group_means(pixels, shape)
        self.coarse_t, self.coarse_sq = padded_train(as_int8(means))
        self.error_max = float(error.max())

    @staticmethod
    def worthwhile(n: int, dim: int) -> bool:
        """Bounds pay off where full products are large and many rows can be skipped."""
        return n >= 4096 and dim >= 64

    def union_scores(self, q: torch.Tensor, union: torch.Tensor) -> torch.Tensor:
        """|y|^2 - 2 q.y of every query row for the training rows ``union``, in one small product."""
        # rows copied as int64 words (their length is a multiple of 8 bytes): 18x faster than int8 indexing;
        # index 0 pads the union to one of a few sizes an octave (oneDNN builds a kernel for each new shape
        # of product, about 2.5 ms each: more than the product itself when every union's size differs)
        step = max(64, 1 << max(0, len(union).bit_length() - 3))
        rows = torch.index_select(self.train.view(torch.int64), 0, pad_to(union, 0, step)).view(torch.int8)
        dot = torch._int_mm(pad_to(q, 0, 1, minimum=17), rows.t())[: len(q), : len(union)]
        return self.sq[union] - 2 * dot

    def exact_scores(self, q: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        """|y|^2 - 2 q.y for each query row's own training columns (rows, c), through their union."""
        union, where = torch.unique(columns, return_inverse=True)
        return self.union_scores(q, union).gather(1, where)

    def smallest(self, q: torch.Tensor, pixels: torch.Tensor, k: int, buffer: torch.Tensor | None = None):
        """(the k smallest exact scores per query, their training columns), sorted, as ``smallest_scores``
        of the full product would give them, and the fraction of (query, row) pairs scored exactly.
        ``q``: the queries as int8 rows; ``pixels``: the same as uint8."""
        means, error = group_means(pixels, self.shape)
        qc = as_int8(means)
        coarse = int8_scores(qc, self.coarse_t, self.coarse_sq, buffer)
        # an upper bound on each query's k-th squared distance: exact distances of its best coarse rows
        guess = smallest_scores(coarse, min(4 * k, self.n), self.n)[1]
        near = torch.cat([self.exact_scores(q[i : i + QUERY_ROWS], guess[i : i + QUERY_ROWS])
                          for i in range(0, len(q), QUERY_ROWS)])
        q_sq = square_norms(q).double()
        upper = near.topk(k, dim=1, largest=False).values[:, -1].double() + q_sq
        # coarse score limit: |round-mean distance| <= sqrt(U / GROUP) + |e_q| + max |e_y|, with slack
        # for float64 rounding (a larger limit only adds candidates)
        reach = (upper / GROUP).sqrt() + error + self.error_max
        limit = (reach.square() - square_norms(qc).double()) * (1 + 1e-9) + 1
        limit = limit.clamp(max=PAD_SCORE - 1).floor().to(torch.int32)
        tops, cols, scored = [], [], 0
        for i in range(0, len(q), QUERY_ROWS):
            part = coarse[i : i + QUERY_ROWS]
            # a column is a candidate if any query's score is within its limit (a uint8 max over the rows:
            # 60x faster than bool any(0), which reduces across rows slowly)
            hit = (part <= limit[i : i + QUERY_ROWS, None]).view(torch.uint8).amax(0)
            union = torch.nonzero(hit).flatten()
            if len(union) < k or len(union) * 4 > self.n:  # bounds too loose here (near-identical images)
                top, col = smallest_scores(int8_scores(q[i : i + QUERY_ROWS], self.train_t, self.sq), k, self.n)
                scored += len(top) * self.n
            else:
                top, pos = torch.topk(self.union_scores(q[i : i + QUERY_ROWS], union), k, dim=1, largest=False)
                col = union[pos]
                scored += len(top) * len(union)
            tops.append(top)
            cols.append(col)
        return torch.cat(tops), torch.cat(cols), scored / (len(q) * self.n)
