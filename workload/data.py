"""Data: seeded generators, file loaders, and :func:`load_data` for :func:`workload.build.build_problem`.

Three data types, one per problem family (all small frozen dataclasses holding
C-contiguous arrays of fixed dtypes):

* :class:`~workload.problems.base.Terms` -- sparse examples for the linear problems (svm,
  logistic, least squares); made by :func:`synthetic_classification`,
  :func:`synthetic_regression`, :func:`load_svmlight`, :func:`load_matrix_market`;
* :class:`Ratings` -- (user, item, rating) triplets for matrix completion; made by
  :func:`synthetic_ratings`, :func:`load_ratings`;
* :class:`Graph` -- weighted edges with labelled terminal nodes for multiway cut; made by
  :func:`grid_graph`, :func:`random_graph`.

Every generator takes ``seed`` -- a non-negative int or a ``numpy.random.Generator`` -- and
draws from nothing else (no global ``np.random``).  Loaders raise :class:`DataError` for a
malformed file, naming the file, the line, the problem and the fix.
"""
from __future__ import annotations

import bz2
import gzip
import inspect
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import scipy.sparse as sp
from numba import njit

from .problems.base import Terms
from .spec import STREAM_DATA, DataSpec, SpecError, stream

__all__ = [
    "DataError",
    "Ratings",
    "Graph",
    "synthetic_classification",
    "synthetic_regression",
    "synthetic_ratings",
    "grid_graph",
    "random_graph",
    "load_svmlight",
    "load_matrix_market",
    "load_ratings",
    "load_data",
    "clear_cache",
    "pair_block_terms",
]


class DataError(ValueError):
    """A data file (or generated data) is malformed.

    ``path``, ``line`` (1-based, or None when no single line is at fault), ``problem`` and
    ``fix`` are kept as attributes; the message reads ``"<path>, line <k>: <problem>; <fix>"``.
    """

    def __init__(self, path, line: int | None, problem: str, fix: str):
        self.path = str(path)
        self.line = line
        self.problem = problem
        self.fix = fix
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {problem}; {fix}")


# --------------------------------------------------------------------------------------
# Data types
# --------------------------------------------------------------------------------------
def pair_block_terms(first: np.ndarray, second: np.ndarray, offset: int, block: int, y: np.ndarray,
                     n: int) -> Terms:
    """Terms whose support is a block of ``block`` coordinates for ``first[e]`` followed by
    a block for ``second[e]`` placed after ``offset``:

        support(e) = [first[e]·block + k for k < block] + [offset + second[e]·block + k for k < block]

    Used for matrix completion (L_u then R_i, offset = n_users·r) and multiway cut (node u
    then node v > u, offset 0).  The caller guarantees the two blocks are disjoint and in
    ascending order; values are all 1 (the kernels read only ``y``).
    """
    first = np.asarray(first, dtype=np.int64)
    second = np.asarray(second, dtype=np.int64)
    N = first.size
    if n >= 2**31:
        raise ValueError(f"pair_block_terms: {n} coordinates do not fit int32 indices; use a smaller rank / "
                         "fewer labels or nodes")
    k = np.arange(block, dtype=np.int64)
    idx = np.empty((N, 2 * block), dtype=np.int32)
    idx[:, :block] = first[:, None] * block + k
    idx[:, block:] = offset + second[:, None] * block + k
    indptr = np.arange(N + 1, dtype=np.int64) * (2 * block)
    return Terms(indptr, idx.ravel(), np.ones(N * 2 * block), y, n)


@dataclass(frozen=True, eq=False)
class Ratings:
    """Rating triplets: user ``users[e]`` rated item ``items[e]`` with ``ratings[e]``.

    Ids are dense: ``0 <= users < n_users``, ``0 <= items < n_items``; no (user, item)
    pair occurs twice.  Loaders keep the file's original ids in ``user_ids`` /
    ``item_ids`` (``user_ids[u]`` is the original id of dense user ``u``; None for
    generated data).
    """

    users: np.ndarray  # int64 (N,)
    items: np.ndarray  # int64 (N,)
    ratings: np.ndarray  # float64 (N,)
    n_users: int
    n_items: int
    user_ids: np.ndarray | None = None  # int64 (n_users,)
    item_ids: np.ndarray | None = None  # int64 (n_items,)

    def __post_init__(self):
        for name, dt in (("users", np.int64), ("items", np.int64), ("ratings", np.float64)):
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=dt))
        for name in ("user_ids", "item_ids"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.int64))
        object.__setattr__(self, "n_users", int(self.n_users))
        object.__setattr__(self, "n_items", int(self.n_items))
        N = self.ratings.size
        if self.users.shape != (N,) or self.items.shape != (N,):
            raise ValueError(f"Ratings: users, items and ratings must be 1-D of one length; got {self.users.shape}, "
                             f"{self.items.shape}, {self.ratings.shape}")
        if N and (self.users.min() < 0 or self.users.max() >= self.n_users):
            raise ValueError(f"Ratings: user ids must lie in [0, n_users={self.n_users}); remap them densely")
        if N and (self.items.min() < 0 or self.items.max() >= self.n_items):
            raise ValueError(f"Ratings: item ids must lie in [0, n_items={self.n_items}); remap them densely")
        if not np.all(np.isfinite(self.ratings)):
            raise ValueError("Ratings: every rating must be finite; drop or fix the NaN/inf ratings")
        keys = self.users * self.n_items + self.items
        if np.unique(keys).size != N:
            raise ValueError("Ratings: a (user, item) pair occurs more than once; keep one rating per pair")

    @property
    def N(self) -> int:
        return int(self.ratings.size)

    def to_terms(self, rank: int = 1) -> Terms:
        """The matrix-completion supports: L_u's ``rank`` coordinates, then R_i's (y = rating)."""
        return pair_block_terms(self.users, self.items, self.n_users * rank, rank, self.ratings,
                                (self.n_users + self.n_items) * rank)


@dataclass(frozen=True, eq=False)
class Graph:
    """An undirected weighted graph with ``n_labels`` labels; edge ``e`` joins ``u[e] < v[e]``.

    ``w`` > 0 are the edge weights; ``terminal[i]`` is -1 for a free node, or the label a
    terminal node is fixed to.  No self loops and no parallel edges.
    """

    u: np.ndarray  # int64 (E,)
    v: np.ndarray  # int64 (E,)
    w: np.ndarray  # float64 (E,)
    n_nodes: int
    n_labels: int
    terminal: np.ndarray  # int64 (n_nodes,)

    def __post_init__(self):
        for name, dt in (("u", np.int64), ("v", np.int64), ("w", np.float64), ("terminal", np.int64)):
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=dt))
        object.__setattr__(self, "n_nodes", int(self.n_nodes))
        object.__setattr__(self, "n_labels", int(self.n_labels))
        E = self.w.size
        if self.u.shape != (E,) or self.v.shape != (E,):
            raise ValueError("Graph: u, v and w must be 1-D arrays of one length")
        if self.terminal.shape != (self.n_nodes,):
            raise ValueError(f"Graph: terminal must have one entry per node ({self.n_nodes}); "
                             f"got shape {self.terminal.shape}")
        if self.n_labels < 2:
            raise ValueError(f"Graph: n_labels = {self.n_labels}: a cut needs at least 2 labels")
        if E and (self.u.min() < 0 or self.v.max() >= self.n_nodes or np.any(self.u >= self.v)):
            raise ValueError(f"Graph: every edge must satisfy 0 <= u < v < n_nodes={self.n_nodes}; "
                             "order each pair and drop self loops")
        if not np.all(np.isfinite(self.w) & (self.w > 0)):
            raise ValueError("Graph: edge weights must be finite and > 0; drop zero-weight edges")
        if np.any((self.terminal < -1) | (self.terminal >= self.n_labels)):
            raise ValueError(f"Graph: terminal entries must be -1 (free) or a label in [0, {self.n_labels})")
        if np.unique(self.u * self.n_nodes + self.v).size != E:
            raise ValueError("Graph: an edge occurs more than once; merge parallel edges by adding their weights")

    @property
    def E(self) -> int:
        return int(self.w.size)

    def to_terms(self, block: int | None = None) -> Terms:
        """The multiway-cut supports: node u's ``block`` (default n_labels) coordinates, then v's (y = w)."""
        D = self.n_labels if block is None else int(block)
        return pair_block_terms(self.u, self.v, 0, D, self.w, self.n_nodes * D)


# --------------------------------------------------------------------------------------
# Parameter checking
# --------------------------------------------------------------------------------------
def _rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return np.random.default_rng(int(seed))
    raise ValueError(f"seed = {seed!r}: must be a non-negative integer or a numpy.random.Generator; "
                     "pass e.g. seed=0")


def _check(where: str, name: str, value, ok: bool, allowed: str, fix: str):
    if not ok:
        raise ValueError(f"{where}: {name} = {value!r}: {allowed}; {fix}")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _positive_int(where, name, v, lo=1):
    _check(where, name, v, _is_int(v) and v >= lo, f"must be an integer >= {lo}", f"set {name} to e.g. {max(lo, 1) * 10}")


def _real_in(where, name, v, lo, hi, example):
    _check(where, name, v, _is_real(v) and lo <= v <= hi, f"must be a number in [{lo}, {hi}]", f"set {name} to e.g. {example}")


def _zipf_weights(n: int, skew: float) -> np.ndarray:
    """p_j ∝ 1/(j+1)^skew for ranks j = 0..n-1 (normalised)."""
    p = (np.arange(1, n + 1, dtype=np.float64)) ** (-float(skew))
    return p / p.sum()


# --------------------------------------------------------------------------------------
# Sparse classification / regression design
# --------------------------------------------------------------------------------------
@njit(cache=True)
def _draw_supports(rng, cdf, lengths, indptr, perm, out):
    """For each row r, ``lengths[r]`` distinct ranks drawn by successive sampling (weighted
    sampling without replacement, weights = increments of ``cdf``), mapped through ``perm``
    and sorted ascending into ``out[indptr[r]:indptr[r+1]]``.

    Successive sampling is done by rejection, drawing only from ranks >= P where ranks
    0..P-1 are all taken already in this row (rejection from any superset of the untaken
    ranks, with proportional weights, is exact); this keeps heavy-headed (high skew) rows
    fast.
    """
    n = cdf.size
    total = cdf[n - 1]
    # guide table: guide[b] = first rank whose cdf exceeds b/n·total, so that a draw starts
    # its search next to the answer (expected O(1) steps; the same ranks as a binary search)
    guide = np.searchsorted(cdf, np.arange(n) * (total / n), side="right")
    mark = np.full(n, -1, dtype=np.int64)
    for r in range(lengths.size):
        lo = indptr[r]
        k = lengths[r]
        got = 0
        P = 0
        while got < k:
            base = cdf[P - 1] if P > 0 else 0.0
            x = base + rng.random() * (total - base)
            b = int(x * (n / total))
            j = guide[min(b, n - 1)]
            while j < n - 1 and cdf[j] <= x:
                j += 1
            while j > 0 and cdf[j - 1] > x:  # guards the bucket's rounding
                j -= 1
            if j < P:
                j = P
            if mark[j] == r:
                continue
            mark[j] = r
            out[lo + got] = perm[j]
            got += 1
            while P < n and mark[P] == r:
                P += 1
        out[lo:lo + k].sort()


def _row_lengths(rng, where, n_rows, n_features, nnz_mean, row_lengths, length_sigma, max_nnz):
    cap = n_features if max_nnz is None else min(int(max_nnz), n_features)
    if row_lengths == "fixed":
        k = np.full(n_rows, int(round(nnz_mean)), dtype=np.int64)
    elif row_lengths == "poisson":
        k = 1 + rng.poisson(nnz_mean - 1.0, size=n_rows).astype(np.int64)
    elif row_lengths == "lognormal":
        s = float(length_sigma)
        k = np.rint(np.exp(rng.normal(math.log(nnz_mean) - 0.5 * s * s, s, size=n_rows))).astype(np.int64)
    else:
        raise ValueError(f"{where}: row_lengths = {row_lengths!r}: must be one of fixed, poisson, lognormal; "
                         "use 'lognormal' (RCV1-like spread) or 'fixed' (every row exactly nnz_mean)")
    return np.clip(k, 1, cap)


def _sparse_design(where, rng, n_rows, n_features, nnz_mean, skew, row_lengths, length_sigma, max_nnz, permute):
    """(indptr, indices, values, w_star): the shared design of the synthetic linear sets."""
    _positive_int(where, "n_rows", n_rows)
    _positive_int(where, "n_features", n_features)
    _real_in(where, "nnz_mean", nnz_mean, 1.0, float(n_features), min(75, n_features))
    _real_in(where, "skew", skew, 0.0, 3.0, 1.0)
    _real_in(where, "length_sigma", length_sigma, 0.0, 3.0, 0.6)
    if max_nnz is not None:
        _positive_int(where, "max_nnz", max_nnz)
    _check(where, "permute", permute, isinstance(permute, bool), "must be True or False", "set permute = true")
    lengths = _row_lengths(rng, where, n_rows, n_features, float(nnz_mean), row_lengths, length_sigma, max_nnz)
    perm = rng.permutation(n_features).astype(np.int32) if permute else np.arange(n_features, dtype=np.int32)
    p = _zipf_weights(n_features, skew)
    cdf = np.cumsum(p)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = np.empty(int(indptr[-1]), dtype=np.int32)
    _draw_supports(rng, cdf, lengths, indptr, perm, indices)
    # tf-idf-like positive values: (1 + Exp(1)) · idf_j with idf_j = log(1 + 1/(nnz_mean p_j)),
    # then every row scaled to unit Euclidean norm (RCV1's rows are unit-norm tf-idf).
    idf = np.empty(n_features)
    idf[perm] = np.log1p(1.0 / (float(nnz_mean) * p))
    values = rng.exponential(1.0, size=indices.size)
    values += 1.0
    values *= idf[indices]
    norms = np.sqrt(np.add.reduceat(values * values, indptr[:-1]))
    values /= np.repeat(norms, lengths)
    w_star = rng.standard_normal(n_features)
    return indptr, indices, values, w_star


def _margins(indptr, indices, values, w):
    return np.add.reduceat(values * w[indices], indptr[:-1])


def synthetic_classification(n_rows: int = 200_000, n_features: int = 47_236, nnz_mean: float = 75.0,
                             skew: float = 1.0, seed=0, *, row_lengths: str = "lognormal",
                             length_sigma: float = 0.6, max_nnz: int | None = None, permute: bool = True,
                             label_noise: float = 0.05) -> Terms:
    """Sparse ±1 classification shaped like RCV1 (defaults: 47,236 features, ~75 nonzeros/row).

    Rows (terms)
        Row r holds ``k_r`` distinct features.  ``row_lengths`` sets how k_r varies:
        ``"lognormal"`` (default) k_r = round(exp(N(log nnz_mean − σ²/2, σ))) with
        σ = ``length_sigma`` = 0.6 -- mean ≈ nnz_mean, sd ≈ 0.66·nnz_mean, a long right
        tail (RCV1's rows: mean ≈ 75, max ≈ 1,200; here max ≈ 900 at 200,000 rows);
        ``"poisson"`` k_r = 1 + Poisson(nnz_mean − 1); ``"fixed"`` k_r = round(nnz_mean)
        for every row (so Ω = nnz_mean exactly).  k_r is clipped to [1, min(max_nnz,
        n_features)].
    Features
        Feature of frequency rank j is drawn with probability ∝ 1/(j+1)^skew (Zipf;
        ``skew = 0`` uniform), k_r of them without replacement (successive sampling), and
        sorted.  With ``permute`` (default) ranks are mapped to feature ids by a seeded
        permutation, so frequent features are scattered over the index range as in real
        data; otherwise feature 0 is the most frequent.  Larger skew or nnz_mean raise
        Δ (the most frequent feature's row fraction) and ρ.
    Values
        Positive, tf-idf-like: (1 + Exp(1)) · log(1 + 1/(nnz_mean·p_j)), then each row
        scaled to unit Euclidean norm.
    Labels
        y = sign(⟨a, w*⟩) (+1 at 0) for a planted w* ~ N(0, I), each flipped with
        probability ``label_noise``.

    ``seed``: a non-negative int or a ``numpy.random.Generator`` (the only randomness).
    The same seed gives the same design as :func:`synthetic_regression`.
    """
    where = "synthetic_classification"
    _real_in(where, "label_noise", label_noise, 0.0, 0.5, 0.05)
    rng = _rng(seed)
    indptr, indices, values, w_star = _sparse_design(where, rng, n_rows, n_features, nnz_mean, skew, row_lengths,
                                                     length_sigma, max_nnz, permute)
    s = _margins(indptr, indices, values, w_star)
    y = np.where(s >= 0.0, 1.0, -1.0)
    flip = rng.random(n_rows) < label_noise
    y[flip] = -y[flip]
    return Terms(indptr, indices, values, y, n_features)


def synthetic_regression(n_rows: int = 200_000, n_features: int = 47_236, nnz_mean: float = 75.0,
                         skew: float = 1.0, seed=0, *, row_lengths: str = "lognormal", length_sigma: float = 0.6,
                         max_nnz: int | None = None, permute: bool = True, noise: float = 0.1) -> Terms:
    """Sparse least-squares data: the design of :func:`synthetic_classification` (same
    seed, same rows) with y = ⟨a, w*⟩ + noise·N(0, 1), w* ~ N(0, I) planted."""
    where = "synthetic_regression"
    _real_in(where, "noise", noise, 0.0, 1e6, 0.1)
    rng = _rng(seed)
    indptr, indices, values, w_star = _sparse_design(where, rng, n_rows, n_features, nnz_mean, skew, row_lengths,
                                                     length_sigma, max_nnz, permute)
    y = _margins(indptr, indices, values, w_star) + noise * rng.standard_normal(n_rows)
    return Terms(indptr, indices, values, y, n_features)


# --------------------------------------------------------------------------------------
# Ratings and graphs
# --------------------------------------------------------------------------------------
def _distinct_pairs(rng, pa: np.ndarray, pb: np.ndarray, k: int, unordered: bool) -> tuple[np.ndarray, np.ndarray]:
    """k distinct pairs (a, b) by successive sampling with pair weight pa[a]·pb[b].

    ``unordered``: a and b index one set (pa is pb), pairs with a == b are excluded and a
    pair is returned as (min, max).  Drawn in rounds: pairs are drawn with replacement and
    the first occurrence of each new pair is kept in draw order, which is exactly
    successive sampling (sampling without replacement proportional to weight).
    """
    na, nb = pa.size, pb.size
    ca, cb = np.cumsum(pa), np.cumsum(pb)
    kept = np.empty(0, dtype=np.int64)
    for _ in range(10_000):
        need = k - kept.size
        if need <= 0:
            break
        m = int(need * 1.25) + 64
        a = np.minimum(np.searchsorted(ca, rng.random(m) * ca[-1], side="right"), na - 1)
        b = np.minimum(np.searchsorted(cb, rng.random(m) * cb[-1], side="right"), nb - 1)
        if unordered:
            ok = a != b
            a, b = np.minimum(a[ok], b[ok]), np.maximum(a[ok], b[ok])
        keys = np.concatenate([kept, a * nb + b])
        _, first = np.unique(keys, return_index=True)
        kept = keys[np.sort(first)][:k]
    if kept.size < k:  # pragma: no cover - needs an absurdly dense request
        raise RuntimeError("could not draw enough distinct pairs; ask for fewer ratings / edges")
    return kept // nb, kept % nb


def _power_law(rng, n: int, skew: float) -> np.ndarray:
    """Weights ∝ 1/(rank+1)^skew assigned to the n ids through a seeded permutation."""
    w = np.empty(n)
    w[rng.permutation(n)] = _zipf_weights(n, skew)
    return w


def synthetic_ratings(n_users: int = 10_000, n_items: int = 1_000, rank: int = 10, n_ratings: int = 100_000,
                      degree_skew: float = 1.0, seed=0, noise: float = 0.1) -> Ratings:
    """Netflix-like ratings: a planted rank-``rank`` matrix plus noise on power-law pairs.

    Users and items get activity weights ∝ 1/(rank+1)^degree_skew (ranks through seeded
    permutations; ``degree_skew = 0``: uniform), and ``n_ratings`` distinct (user, item)
    pairs are drawn with probability ∝ product of the two weights, without replacement, so
    user and item degrees are power-law.  r_ui = ⟨L*_u, R*_i⟩ + noise·N(0, 1) with
    L*, R* entries N(0, rank^(-1/2)), so the noise-free ratings have unit variance.
    Returned sorted by (user, item).  Some users / items may have no rating.
    """
    where = "synthetic_ratings"
    _positive_int(where, "n_users", n_users)
    _positive_int(where, "n_items", n_items)
    _positive_int(where, "rank", rank)
    _positive_int(where, "n_ratings", n_ratings)
    _check(where, "n_ratings", n_ratings, n_ratings <= n_users * n_items,
           f"must be <= n_users·n_items = {n_users * n_items}", "ask for fewer ratings or more users/items")
    _real_in(where, "degree_skew", degree_skew, 0.0, 3.0, 1.0)
    _real_in(where, "noise", noise, 0.0, 1e6, 0.1)
    rng = _rng(seed)
    pu = _power_law(rng, n_users, degree_skew)
    pi = _power_law(rng, n_items, degree_skew)
    users, items = _distinct_pairs(rng, pu, pi, n_ratings, unordered=False)
    order = np.lexsort((items, users))
    users, items = users[order], items[order]
    sd = float(rank) ** -0.25
    Ls = rng.normal(0.0, sd, size=(n_users, rank))
    Rs = rng.normal(0.0, sd, size=(n_items, rank))
    r = np.einsum("ij,ij->i", Ls[users], Rs[items]) + noise * rng.standard_normal(n_ratings)
    return Ratings(users, items, r, n_users, n_items)


def _terminals(rng, where, n_nodes, n_terminals, terminal_fraction) -> np.ndarray:
    if n_terminals is not None:
        _positive_int(where, "n_terminals", n_terminals, lo=0)
        _check(where, "n_terminals", n_terminals, n_terminals <= n_nodes, f"must be <= n_nodes = {n_nodes}",
               "ask for fewer terminals")
        k = int(n_terminals)
    else:
        _real_in(where, "terminal_fraction", terminal_fraction, 0.0, 1.0, 0.01)
        k = int(round(terminal_fraction * n_nodes))
    return np.sort(rng.choice(n_nodes, size=k, replace=False))


def grid_graph(shape=(32, 32, 16), n_labels: int = 4, seed=0, *, n_terminals: int | None = None,
               terminal_fraction: float = 0.01, contrast: float = 10.0, noise: float = 0.1) -> Graph:
    """A 3-D 6-connected grid (Abdomen-like: a segmentation volume), Hogwild!'s cut workload.

    Node (i, j, k) has id ``(i·ny + j)·nz + k``; each node is joined to its +x, +y, +z
    neighbours.  A planted segmentation labels each node by its nearest of ``n_labels``
    seeded centres (Voronoi regions); its intensity is label/(n_labels−1) + noise·N(0, 1);
    an edge's weight is exp(−contrast·(ΔI)²) > 0, so edges inside a region are strong and
    edges across a boundary weak.  Terminals: ``n_terminals`` nodes (or
    round(``terminal_fraction``·n_nodes), default 1%) chosen uniformly without
    replacement, each fixed to its planted label.
    """
    where = "grid_graph"
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else shape
    _check(where, "shape", shape, isinstance(shape, tuple) and len(shape) == 3 and all(_is_int(s) and s >= 1 for s in shape),
           "must be three positive integers (nx, ny, nz)", "set shape = [32, 32, 16]")
    _positive_int(where, "n_labels", n_labels, lo=2)
    _real_in(where, "contrast", contrast, 0.0, 100.0, 10.0)
    _real_in(where, "noise", noise, 0.0, 10.0, 0.1)
    rng = _rng(seed)
    nx, ny, nz = (int(s) for s in shape)
    n_nodes = nx * ny * nz
    ids = np.arange(n_nodes, dtype=np.int64).reshape(nx, ny, nz)
    us, vs = [], []
    for axis in range(3):
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[axis] = slice(0, -1)
        b[axis] = slice(1, None)
        us.append(ids[tuple(a)].ravel())
        vs.append(ids[tuple(b)].ravel())
    u = np.concatenate(us)
    v = np.concatenate(vs)
    order = np.lexsort((v, u))
    u, v = u[order], v[order]
    coords = np.unravel_index(np.arange(n_nodes), (nx, ny, nz))
    centres = rng.random((n_labels, 3)) * np.array([nx, ny, nz], dtype=np.float64)
    label = np.zeros(n_nodes, dtype=np.int64)
    best = np.full(n_nodes, np.inf)
    for c in range(n_labels):  # nearest centre, one label at a time (memory O(n_nodes))
        d2 = sum((coords[a] - centres[c, a]) ** 2 for a in range(3))
        closer = d2 < best
        label[closer] = c
        best[closer] = d2[closer]
    intensity = label / (n_labels - 1) + noise * rng.standard_normal(n_nodes)
    w = np.exp(-contrast * (intensity[u] - intensity[v]) ** 2)
    terminal = np.full(n_nodes, -1, dtype=np.int64)
    t = _terminals(rng, where, n_nodes, n_terminals, terminal_fraction)
    terminal[t] = label[t]
    return Graph(u, v, w, n_nodes, n_labels, terminal)


def random_graph(n_nodes: int = 10_000, n_edges: int = 50_000, n_labels: int = 4, seed=0, *,
                 n_terminals: int | None = None, terminal_fraction: float = 0.01, degree_skew: float = 0.0,
                 weight_sigma: float = 0.5) -> Graph:
    """A random graph for cuts (DBLife-like when ``degree_skew`` > 0).

    ``n_edges`` distinct edges u < v (no self loops) are drawn without replacement with
    probability ∝ product of the endpoints' weights, node weights ∝ 1/(rank+1)^degree_skew
    through a seeded permutation (``degree_skew = 0``: Erdős–Rényi-like G(n, m)).  Weights
    are log-normal, exp(N(0, weight_sigma²)).  Terminals as in :func:`grid_graph`, each
    fixed to a uniformly drawn label.
    """
    where = "random_graph"
    _positive_int(where, "n_nodes", n_nodes, lo=2)
    _positive_int(where, "n_edges", n_edges)
    max_edges = n_nodes * (n_nodes - 1) // 2
    _check(where, "n_edges", n_edges, n_edges <= max_edges, f"must be <= n_nodes·(n_nodes−1)/2 = {max_edges}",
           "ask for fewer edges or more nodes")
    _positive_int(where, "n_labels", n_labels, lo=2)
    _real_in(where, "degree_skew", degree_skew, 0.0, 3.0, 0.0)
    _real_in(where, "weight_sigma", weight_sigma, 0.0, 10.0, 0.5)
    rng = _rng(seed)
    p = _power_law(rng, n_nodes, degree_skew)
    u, v = _distinct_pairs(rng, p, p, n_edges, unordered=True)
    order = np.lexsort((v, u))
    u, v = u[order], v[order]
    w = np.exp(weight_sigma * rng.standard_normal(n_edges))
    terminal = np.full(n_nodes, -1, dtype=np.int64)
    t = _terminals(rng, where, n_nodes, n_terminals, terminal_fraction)
    terminal[t] = rng.integers(0, n_labels, size=t.size)
    return Graph(u, v, w, n_nodes, n_labels, terminal)


# --------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------
def _open_text(path: Path):
    """Open a plain, .gz or .bz2 file as text (chosen by suffix, like scikit-learn)."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    if path.suffix == ".bz2":
        return io.TextIOWrapper(bz2.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _existing(path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: data file not found; set data.path to an existing file")
    return p


def _parse_float(s: str):
    try:
        return float(s)
    except ValueError:
        return None


def _parse_int(s: str):
    try:
        return int(s)
    except ValueError:
        return None


def _scan_svmlight(path: Path, n_features: int | None) -> None:
    """Find the first malformed line of an svmlight file and raise :class:`DataError` for it.

    Runs only when scikit-learn's loader failed or returned non-finite values, so it may be
    slow (a Python loop); it checks exactly the format scikit-learn reads with
    ``zero_based=False``: ``label [qid:q] index:value ...  [# comment]`` with indices
    1-based and strictly increasing.
    """
    fmt = "each line must read 'label index:value index:value ...' (LIBSVM format)"
    with _open_text(path) as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            toks = line.split()
            lab = _parse_float(toks[0])
            if lab is None:
                raise DataError(path, lineno, f"the label {toks[0]!r} is not a number",
                                "the first token of a line must be its numeric label, e.g. +1 or -1")
            if not math.isfinite(lab):
                raise DataError(path, lineno, f"the label {toks[0]!r} is not finite (NaN/inf)",
                                "give a finite label or drop the line")
            prev = 0
            for tok in toks[1:]:
                if tok.startswith("qid:"):
                    if _parse_int(tok[4:]) is None:
                        raise DataError(path, lineno, f"bad token {tok!r}: the query id is not an integer",
                                        "write it as qid:<integer>")
                    continue
                idx_s, sep, val_s = tok.partition(":")
                idx = _parse_int(idx_s) if sep else None
                val = _parse_float(val_s) if sep else None
                if idx is None or val is None:
                    raise DataError(path, lineno, f"bad token {tok!r}: not index:value", fmt)
                if idx < 1:
                    raise DataError(path, lineno, f"bad token {tok!r}: feature index {idx} < 1",
                                    "LIBSVM feature indices start at 1; add 1 to 0-based indices")
                if n_features is not None and idx > n_features:
                    raise DataError(path, lineno, f"bad token {tok!r}: feature index {idx} > n_features = {n_features}",
                                    "raise n_features or leave it unset to infer it from the file")
                if idx <= prev:
                    raise DataError(path, lineno, f"bad token {tok!r}: feature index {idx} follows index {prev}",
                                    "sort each line's indices ascending and merge duplicates")
                if not math.isfinite(val):
                    raise DataError(path, lineno, f"bad token {tok!r}: the value is not finite (NaN/inf)",
                                    "give a finite value or drop the entry")
                prev = idx


def load_svmlight(path, n_features: int | None = None) -> Terms:
    """Read an svmlight / LIBSVM file (plain, ``.gz`` or ``.bz2``) into :class:`Terms`.

    Indices in the file are 1-based (LIBSVM); coordinate j of the model is file index
    j + 1.  ``n_features`` sets n (a file need not mention the highest index: a9a.t's
    largest is 122 of 123); None infers it from the largest index.  Labels are kept as
    they are (LIBSVM's binary sets use −1/+1).  Reading uses scikit-learn's
    ``load_svmlight_file``; a malformed file (bad token, index < 1, unsorted indices,
    non-numeric or non-finite label or value, an index above ``n_features``, no data
    lines) raises :class:`DataError` naming the file and line, found by a line scan that
    runs only when something is wrong.
    """
    from sklearn.datasets import load_svmlight_file

    path = _existing(path)
    if n_features is not None:
        _positive_int("load_svmlight", "n_features", n_features)
    try:
        X, y = load_svmlight_file(str(path), n_features=n_features, dtype=np.float64, zero_based=False)
    except (OSError, EOFError) as exc:
        raise DataError(path, None, f"cannot be read ({exc})", "check that the file is complete and not corrupted") from exc
    except ValueError as exc:
        _scan_svmlight(path, n_features)
        raise DataError(path, None, f"not a valid svmlight file ({exc})",
                        "check the LIBSVM format: 'label index:value ...'") from exc
    if X.shape[0] == 0:
        raise DataError(path, 1, "the file is empty (no data lines)",
                        "point data.path at a non-empty LIBSVM file")
    if not (np.all(np.isfinite(X.data)) and np.all(np.isfinite(y))):
        _scan_svmlight(path, n_features)
        raise DataError(path, None, "holds a non-finite label or value", "remove NaN/inf entries")
    return Terms.from_csr(X, y, X.shape[1])


def _scan_matrix_market(path: Path) -> None:
    """Locate the first bad line of a coordinate Matrix Market file and raise DataError."""
    with _open_text(path) as f:
        lines = enumerate(f, 1)
        first = next(lines, None)
        if first is None or not first[1].strip():
            raise DataError(path, 1, "the file is empty", "point data.path at a Matrix Market (.mtx) file")
        lineno, header = first
        head = header.lower().split()
        if len(head) < 5 or head[0] != "%%matrixmarket" or head[1] != "matrix":
            raise DataError(path, 1, f"bad header {header.strip()!r}",
                            "the first line must read '%%MatrixMarket matrix coordinate real general'")
        coordinate = head[2] == "coordinate"
        pattern = head[3] == "pattern"
        size = None
        for lineno, raw in lines:
            s = raw.strip()
            if not s or s.startswith("%"):
                continue
            toks = s.split()
            if size is None:
                size = [_parse_int(t) for t in toks]
                if len(size) < 2 or any(v is None or v < 0 for v in size):
                    raise DataError(path, lineno, f"bad size line {s!r}",
                                    "write 'rows columns entries' (coordinate) or 'rows columns' (array)")
                continue
            if coordinate:
                want = 2 if pattern else 3
                if len(toks) < want:
                    raise DataError(path, lineno, f"entry {s!r} has {len(toks)} fields, expected {want}",
                                    "write 'row column value' per line")
                i, j = _parse_int(toks[0]), _parse_int(toks[1])
                if i is None or j is None:
                    raise DataError(path, lineno, f"bad token in {s!r}: row and column must be integers",
                                    "write 1-based integer row and column indices")
                if not (1 <= i <= size[0] and 1 <= j <= size[1]):
                    raise DataError(path, lineno, f"entry ({i}, {j}) lies outside the {size[0]}×{size[1]} matrix",
                                    "Matrix Market indices are 1-based and within the size line")
                vals = toks[2:want]
            else:
                vals = toks[:1]
            for t in vals:
                x = _parse_float(t)
                if x is None:
                    raise DataError(path, lineno, f"bad token {t!r}: not a number", "write numeric values")
                if not math.isfinite(x):
                    raise DataError(path, lineno, f"bad token {t!r}: not finite (NaN/inf)", "give finite values")


def load_matrix_market(path, *, label_column: int | None = None) -> Terms:
    """Read a Matrix Market file (``scipy.io.mmread``; plain, .gz, .bz2) into :class:`Terms`.

    Rows are terms, columns coordinates.  ``y``: with ``label_column = c`` (0-based;
    negative counts from the end) column c is taken out of the matrix and becomes the
    labels (its zeros included), so n = columns − 1; without it (default) y is all zeros
    -- suitable for statistics only, set ``label_column`` for a linear problem.
    Malformed files raise :class:`DataError` naming the line (a line scan locates it).
    """
    import scipy.io

    path = _existing(path)
    try:
        M = scipy.io.mmread(str(path))
    except (OSError, EOFError) as exc:
        raise DataError(path, None, f"cannot be read ({exc})", "check that the file is complete") from exc
    except Exception as exc:  # scipy raises ValueError / RuntimeError variants depending on the backend
        _scan_matrix_market(path)
        raise DataError(path, None, f"not a valid Matrix Market file ({exc})",
                        "check the header, size line and entries") from exc
    A = sp.csr_matrix(M, dtype=np.float64)
    if A.shape[0] == 0:
        raise DataError(path, None, "the matrix has no rows", "give a matrix with at least one row")
    if not np.all(np.isfinite(A.data)):
        _scan_matrix_market(path)
        raise DataError(path, None, "holds a non-finite value", "remove NaN/inf entries")
    if label_column is None:
        return Terms.from_csr(A, np.zeros(A.shape[0]))
    ncol = A.shape[1]
    if not (_is_int(label_column) and -ncol <= label_column < ncol):
        raise DataError(path, None, f"label_column = {label_column!r} is not a column of the {ncol}-column matrix",
                        f"use an integer in [-{ncol}, {ncol})")
    c = int(label_column) % ncol
    y = A[:, c].toarray().ravel()
    keep = np.r_[0:c, c + 1:ncol]
    return Terms.from_csr(A[:, keep], y)


def _sniff_delimiter(path: Path, comment: str) -> str | None:
    with _open_text(path) as f:
        for raw in f:
            s = raw.strip()
            if not s or (comment and s.startswith(comment)):
                continue
            if "\t" in s:
                return "\t"
            if "," in s:
                return ","
            return None
    return None


def _ratings_lines(path: Path, comment: str, header: bool, sep: str | None):
    """(line number, fields) of each data line (comments and blank lines skipped); ``sep``
    None splits on whitespace."""
    skipped_header = not header
    with _open_text(path) as f:
        for lineno, raw in enumerate(f, 1):
            s = (raw.split(comment, 1)[0] if comment else raw).strip()  # as pandas: a comment ends the line
            if not s:
                continue
            if not skipped_header:
                skipped_header = True
                continue
            yield lineno, [t.strip() for t in (s.split(sep) if sep else s.split())]


def _scan_ratings(path: Path, comment: str, header: bool, sep: str | None) -> None:
    """Raise :class:`DataError` at the first malformed line of a triplet file."""
    width = None
    for lineno, toks in _ratings_lines(path, comment, header, sep):
        if width is None:
            width = len(toks)
            if width < 3:
                raise DataError(path, lineno, f"ragged line: {len(toks)} fields, a rating needs 3 (user item rating)",
                                "write 'user item rating' on every line")
        elif len(toks) != width:
            raise DataError(path, lineno, f"ragged line: {len(toks)} fields where the first data line has {width}",
                            "give every line the same fields 'user item rating [...]'")
        for name, t in (("user", toks[0]), ("item", toks[1])):
            if _parse_int(t) is None:
                fix = ("set header=True if the first line names the columns" if lineno <= 2 else
                       "ids must be integers")
                raise DataError(path, lineno, f"bad token {t!r}: the {name} id is not an integer", fix)
        r = _parse_float(toks[2])
        if r is None:
            raise DataError(path, lineno, f"bad token {toks[2]!r}: the rating is not a number", "write numeric ratings")
        if not math.isfinite(r):
            raise DataError(path, lineno, f"bad token {toks[2]!r}: the rating is not finite (NaN/inf)",
                            "give a finite rating or drop the line")
        for t in toks[3:]:
            if not t:
                raise DataError(path, lineno, "empty field", "remove the doubled delimiter")


def load_ratings(path, *, delimiter: str | None = None, header: bool = False, comment: str = "#") -> Ratings:
    """Read rating triplets ``user item rating`` (TSV, CSV or whitespace; plain/.gz/.bz2).

    The delimiter is sniffed from the first data line (tab, else comma, else whitespace)
    unless given.  Every line must have the same number of fields, at least three; fields
    after the third (e.g. MovieLens timestamps) are ignored.  ``header=True`` skips the
    first non-comment line; lines starting with ``comment`` are skipped.  User and item ids
    may be any integers: they are remapped densely in increasing order of the original
    id (dense user u is the u-th smallest original id; originals kept in
    ``Ratings.user_ids`` / ``item_ids``), and the ratings are returned sorted by (user,
    item).  ``comment`` (one character) starts a comment, to the end of the line.  A
    repeated (user, item) pair, a ragged line, a non-integer id, a non-numeric or
    non-finite rating, or an empty file raise :class:`DataError` naming the line.
    """
    import pandas as pd

    path = _existing(path)
    if comment is not None and len(comment) > 1:
        raise ValueError(f"load_ratings: comment = {comment!r}: must be one character (or '' for none); e.g. '#'")
    sep = delimiter if delimiter is not None else _sniff_delimiter(path, comment)
    kw: dict[str, Any] = {"header": None, "comment": comment or None, "skip_blank_lines": True,
                          "skiprows": 0, "dtype": {0: "int64", 1: "int64", 2: "float64"},
                          "compression": "infer", "na_filter": True}
    if sep is None:
        kw["sep"] = r"\s+"
    else:
        kw["sep"] = sep
    first_data = next(_ratings_lines(path, comment, False, sep), None)
    if first_data is None:
        raise DataError(path, 1, "the file is empty (no rating lines)", "point data.path at a 'user item rating' file")
    if header:
        kw["skiprows"] = first_data[0]
    try:
        df = pd.read_csv(path, engine="c", **kw)
    except (OSError, EOFError) as exc:
        raise DataError(path, None, f"cannot be read ({exc})", "check that the file is complete") from exc
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        _scan_ratings(path, comment, header, sep)
        raise DataError(path, None, f"not a valid triplet file ({exc})", "write 'user item rating' per line") from exc
    if df.shape[0] == 0:
        raise DataError(path, 1, "the file is empty (no rating lines)", "point data.path at a 'user item rating' file")
    if df.shape[1] < 3 or df.isna().to_numpy().any() or not np.all(np.isfinite(df[2].to_numpy())):
        _scan_ratings(path, comment, header, sep)
        raise DataError(path, None, "a line is ragged or holds a non-finite rating",
                        "give every line the same fields 'user item rating'")
    raw_u = df[0].to_numpy(np.int64)
    raw_i = df[1].to_numpy(np.int64)
    r = df[2].to_numpy(np.float64)
    user_ids, users = np.unique(raw_u, return_inverse=True)
    item_ids, items = np.unique(raw_i, return_inverse=True)
    keys = users.astype(np.int64) * item_ids.size + items
    order = np.argsort(keys, kind="stable")
    dup = np.flatnonzero(keys[order][1:] == keys[order][:-1])
    if dup.size:
        # With a stable sort, order[dup + 1] are the repeats; report the first one in the file.
        k = int(order[dup + 1].min())
        lineno = next(ln for i, (ln, _) in enumerate(_ratings_lines(path, comment, header, sep)) if i == k)
        raise DataError(path, lineno, f"the pair (user {raw_u[k]}, item {raw_i[k]}) was rated before",
                        "keep one rating per (user, item) pair")
    return Ratings(users[order], items[order], r[order], user_ids.size, item_ids.size, user_ids=user_ids,
                   item_ids=item_ids)


# --------------------------------------------------------------------------------------
# load_data: DataSpec -> data
# --------------------------------------------------------------------------------------
_GENERATORS = {
    "synthetic-classification": (synthetic_classification, Terms),
    "synthetic-regression": (synthetic_regression, Terms),
    "synthetic-ratings": (synthetic_ratings, Ratings),
    "grid-graph": (grid_graph, Graph),
    "random-graph": (random_graph, Graph),
}
_LOADERS = {
    "svmlight": (load_svmlight, Terms),
    "matrix-market": (load_matrix_market, Terms),
    "ratings": (load_ratings, Ratings),
}
_NEEDS = {"svm": Terms, "logistic": Terms, "least-squares": Terms, "matrix-completion": Ratings,
          "multiway-cut": Graph}
_CACHE: dict = {}
_CACHE_SIZE = 4


def clear_cache() -> None:
    """Forget the generated data :func:`load_data` keeps in memory."""
    _CACHE.clear()


def _freeze(v):
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, Mapping):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    return v


def load_data(data_spec: DataSpec, problem: str | None = None, seed: int = 0):
    """The data a :class:`~workload.spec.DataSpec` describes (Terms, Ratings or Graph).

    ``data_spec.source`` picks a generator (``synthetic-classification`` →
    :func:`synthetic_classification`, ``synthetic-regression``, ``synthetic-ratings``,
    ``grid-graph``, ``random-graph``) or a loader (``svmlight`` → :func:`load_svmlight`,
    ``matrix-market``, ``ratings``) and ``data_spec.params`` are its keyword arguments
    (an unknown one is an error naming the allowed ones; lists become tuples).  Generators
    are seeded by ``params["seed"]`` when given, else by the stream ``STREAM_DATA`` of the
    root ``seed``.  ``problem`` (optional) is checked against the data type: linear
    problems take Terms, ``matrix-completion`` Ratings, ``multiway-cut`` a Graph.

    Generated data is cached in-process (the last few specs, keyed on source, params and
    seed) and the same object is returned again: treat it as read-only.
    """
    source = data_spec.source
    table = _GENERATORS if source in _GENERATORS else _LOADERS if source in _LOADERS else None
    if table is None:
        raise SpecError("data.source", source, f"must be one of {', '.join(list(_GENERATORS) + list(_LOADERS))}",
                        "set data.source to a generator or a loader")
    func, kind = table[source]
    if problem is not None:
        need = _NEEDS.get(problem)
        if need is None:
            raise SpecError("problem", problem, f"must be one of {', '.join(_NEEDS)}", "set problem to one of those")
        if need is not kind:
            fits = [s for s, (_, k) in {**_GENERATORS, **_LOADERS}.items() if k is need]
            raise SpecError("data.source", source,
                            f"gives {kind.__name__} but problem {problem!r} needs {need.__name__}",
                            f"use a source that gives {need.__name__}: {', '.join(fits)}")
    sig = inspect.signature(func)
    allowed = [p for p in sig.parameters if p != "path"]
    params = {k: _freeze(v) for k, v in dict(data_spec.params).items()}
    for name in params:
        if name not in allowed:
            raise SpecError(f"data.params.{name}", params[name], f"not a parameter of source {source!r} "
                            f"(allowed: {', '.join(allowed)})", "remove it or fix its spelling")
    if table is _LOADERS:
        if not data_spec.path:
            raise SpecError("data.path", data_spec.path, f"a file is required for source {source!r}",
                            "set data.path to the data file")
        data = func(data_spec.path, **params)
    else:
        if data_spec.path:
            raise SpecError("data.path", data_spec.path, f"source {source!r} generates its data and reads no file",
                            "remove data.path or use a loader source (svmlight, matrix-market, ratings)")
        if "seed" in params:
            key = (source, tuple(sorted(params.items())))
            gen_seed = params.pop("seed")
        else:
            key = (source, tuple(sorted(params.items())), "root", int(seed))
            gen_seed = stream(seed, STREAM_DATA)
        if key in _CACHE:
            return _CACHE[key]
        data = func(**params, seed=gen_seed)
        while len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = data
    if not isinstance(data, kind):  # pragma: no cover - the tables above guarantee it
        raise TypeError(f"{source} returned {type(data).__name__}, expected {kind.__name__}")
    return data
