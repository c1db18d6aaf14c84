"""Sparsity statistics of a sum of sparse terms: Ω, Δ, ρ (Niu et al. 2011) and Δ̄_C (Mania et al. 2015).

For terms e with supports (hyperedges) supp(e) ⊆ {0..n-1}, N terms, d_j the number of
terms whose support holds coordinate j:

* Ω = max_e |supp(e)|  -- the largest support (Niu et al. 2011, §2, "Ω := max_e |e|");
* Δ = max_j d_j / N  -- the largest fraction of terms holding one coordinate (§2, eq. for
  Δ: "max_{1≤v≤n} |{e ∈ E : v ∈ e}| / |E|");
* ρ = max_e |{e' : supp(e') ∩ supp(e) ≠ ∅}| / N  -- the largest fraction of terms meeting
  a given term (§2, "ρ := max_{e∈E} |{ê ∈ E : ê ∩ e ≠ ∅}| / |E|").  As in the paper's set
  definition, e itself is counted (it meets itself whenever its support is nonempty), so
  ρ ≥ 1/N; duplicate terms count separately;
* Δ̄_C = (1/N) Σ_e deg_C(e), the average degree of the conflict graph, whose vertices are
  the terms and whose edges join two distinct terms with meeting supports (Mania et al.
  2015, "Perturbed iterate analysis for asynchronous stochastic optimization"; the graph
  Cyclades partitions, Pan et al. 2016); no self loops, so
  deg_C(e) = |{e' : e' meets e}| − [supp(e) ≠ ∅].

Everything is computed from one quantity, the *conflict count*
c_e = |{e' : supp(e') ∩ supp(e) ≠ ∅}| (self included), by one jitted kernel
(:func:`conflict_counts`): for each term it marks the terms on its coordinates' term
lists -- through a per-term stamp array for coordinates with few terms, and by OR-ing a
precomputed bitset of the terms holding a coordinate for frequent ("heavy")
coordinates -- and counts the marks with popcount.  The cost is about
Σ_e min(Σ_{j∈e} d_j, (1 + #heavy_j∈e)·N/64) word operations, so dense conflict graphs such
as a8a's (a feature in 95% of rows) take a fraction of a second.

Exact mode evaluates c_e for all terms.  For sizes where that is too costly (RCV1-shaped:
~200k terms, features in nearly every row) :func:`sparsity_stats` estimates:

* Δ̄_C: c_e is computed *exactly* for s terms sampled uniformly without replacement
  (seeded); the estimate is the sample mean of deg_C and the interval the normal
  approximation mean ± z·sd/√s·√(1 − s/N) (finite-population correction) at the given
  confidence;
* ρ: exact bounds, not a statistical interval.  Lower: the largest c_e/N over the sampled
  terms and the ``rho_candidates`` terms with the largest cheap upper bound
  b_e = Σ_{j∈e} d_j − |e| + 1 ≥ c_e (each meeting term holds some j ∈ e; e itself is
  counted |e| times).  Upper: max(largest exact c_e over the candidates, largest b_e
  over the other terms)/N, capped at 1.  When the two meet ρ is exact.

Ω and Δ are always exact (one pass over the indices).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd
from numba import njit, types
from numba.extending import intrinsic

from .problems.base import Terms

__all__ = [
    "SparsityStats",
    "as_terms",
    "omega",
    "delta",
    "conflict_counts",
    "conflict_degrees",
    "exact_cost",
    "sparsity_stats",
]


class SparsityStats(NamedTuple):
    """Sparsity statistics (module docstring); which are exact is said per quantity.

    rho / conflict_degree hold the exact value when ``rho_exact`` / ``conflict_degree_exact``,
    else the best lower bound (rho) or the sample estimate (conflict_degree), with
    ``rho_low ≤ ρ ≤ rho_high`` (exact bounds) and [conflict_degree_low,
    conflict_degree_high] a ``confidence`` interval for Δ̄_C.
    """

    n_terms: int  # N
    n_coords: int  # n
    omega: int  # Ω, exact
    delta: float  # Δ, exact
    rho: float
    rho_low: float
    rho_high: float
    rho_exact: bool
    conflict_degree: float  # Δ̄_C
    conflict_degree_low: float
    conflict_degree_high: float
    conflict_degree_exact: bool
    samples: int  # terms sampled for the estimate (0 when exact)
    confidence: float  # level of the Δ̄_C interval (nan when exact)
    method: str

    def to_frame(self) -> pd.DataFrame:
        """A tidy table: quantity, value, low, high, exact, method."""
        rows = [
            ("N", self.n_terms, self.n_terms, self.n_terms, True, "count"),
            ("n", self.n_coords, self.n_coords, self.n_coords, True, "count"),
            ("Omega", self.omega, self.omega, self.omega, True, "max support size"),
            ("Delta", self.delta, self.delta, self.delta, True, "max_j d_j / N"),
            ("rho", self.rho, self.rho_low, self.rho_high, self.rho_exact,
             "exact" if self.rho_exact else "exact bounds (sampled + candidate terms)"),
            ("conflict_degree", self.conflict_degree, self.conflict_degree_low, self.conflict_degree_high,
             self.conflict_degree_exact,
             "exact" if self.conflict_degree_exact else
             f"sample mean of {self.samples} terms, {self.confidence:.0%} normal CI"),
        ]
        return pd.DataFrame(rows, columns=["quantity", "value", "low", "high", "exact", "method"]).astype(
            {"value": "float64", "low": "float64", "high": "float64", "exact": "bool"})


def as_terms(data, *, block: int | None = None) -> Terms:
    """The supports of ``data`` as :class:`Terms`.

    Terms → itself; a Problem → its ``terms``; :class:`~workload.data.Ratings` → the
    matrix-completion supports with ``block`` (default 1) coordinates per factor row (the
    conflict structure does not depend on the rank, Ω does: Ω = 2·block);
    :class:`~workload.data.Graph` → the multiway-cut supports with ``block`` (default
    n_labels) coordinates per node.
    """
    from .data import Graph, Ratings

    if isinstance(data, Terms):
        return data
    if isinstance(getattr(data, "terms", None), Terms):
        return data.terms
    if isinstance(data, Ratings):
        return data.to_terms(1 if block is None else int(block))
    if isinstance(data, Graph):
        return data.to_terms(block)
    raise TypeError(f"as_terms: cannot take the supports of a {type(data).__name__}; "
                    "pass Terms, a Problem, Ratings or a Graph")


def omega(terms: Terms) -> int:
    """Ω = max_e |supp(e)| (Niu et al. 2011, §2); 0 for no terms."""
    sizes = terms.support_sizes()
    return int(sizes.max()) if sizes.size else 0


def delta(terms: Terms) -> float:
    """Δ = max_j d_j / N (Niu et al. 2011, §2)."""
    if terms.N == 0 or terms.n == 0:
        return 0.0
    return float(terms.degrees().max() / terms.N)


@intrinsic
def _popcount(typingctx, x):
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@njit(cache=True)
def _transpose(indptr, indices, n):
    """Term lists per coordinate (CSC of the pattern): tptr (n+1,), tlist (nnz,), ascending."""
    N = indptr.size - 1
    tptr = np.zeros(n + 1, dtype=np.int64)
    for p in range(indices.size):
        tptr[indices[p] + 1] += 1
    for j in range(n):
        tptr[j + 1] += tptr[j]
    fill = tptr[:-1].copy()
    tlist = np.empty(indices.size, dtype=np.int64)
    for e in range(N):
        for p in range(indptr[e], indptr[e + 1]):
            j = indices[p]
            tlist[fill[j]] = e
            fill[j] += 1
    return tptr, tlist


@njit(cache=True)
def _heavy_bitsets(tptr, tlist, heavy, n_words):
    """bits[s] = bitset of the terms holding coordinate heavy[s]."""
    bits = np.zeros((heavy.size, n_words), dtype=np.uint64)
    for s in range(heavy.size):
        j = heavy[s]
        for q in range(tptr[j], tptr[j + 1]):
            e = tlist[q]
            bits[s, e >> 6] |= np.uint64(1) << np.uint64(e & 63)
    return bits


@njit(nogil=True, cache=True)
def _counts_kernel(indptr, indices, tptr, tlist, slot, bits, which, out):
    """out[q] = c_e for e = which[q]: the number of terms (e included) meeting term e."""
    N = indptr.size - 1
    n_words = bits.shape[1]
    row = np.zeros(n_words, dtype=np.uint64)
    stamp = np.full(N, -1, dtype=np.int64)
    for q in range(which.size):
        e = which[q]
        lo, hi = indptr[e], indptr[e + 1]
        has_heavy = False
        for p in range(lo, hi):
            if slot[indices[p]] >= 0:
                has_heavy = True
                break
        if not has_heavy:  # stamp marker loop over the coordinates' term lists
            c = 0
            for p in range(lo, hi):
                j = indices[p]
                for t in range(tptr[j], tptr[j + 1]):
                    e2 = tlist[t]
                    if stamp[e2] != q:
                        stamp[e2] = q
                        c += 1
            out[q] = c
            continue
        for w in range(n_words):
            row[w] = 0
        for p in range(lo, hi):
            j = indices[p]
            s = slot[j]
            if s >= 0:
                for w in range(n_words):
                    row[w] |= bits[s, w]
            else:
                for t in range(tptr[j], tptr[j + 1]):
                    e2 = tlist[t]
                    row[e2 >> 6] |= np.uint64(1) << np.uint64(e2 & 63)
        c = 0
        for w in range(n_words):
            c += _popcount(row[w])
        out[q] = c


class _Index(NamedTuple):
    tptr: np.ndarray
    tlist: np.ndarray
    slot: np.ndarray  # int64 (n,): row of bits for heavy coordinates, -1 otherwise
    bits: np.ndarray  # uint64 (n_heavy, ceil(N/64))
    degrees: np.ndarray


def _index(terms: Terms, heavy_degree: float | None, max_bitset_bytes: float) -> _Index:
    N, n = terms.N, terms.n
    n_words = max(1, (N + 63) // 64)
    tptr, tlist = _transpose(terms.indptr, terms.indices, n)
    d = np.diff(tptr)
    threshold = n_words if heavy_degree is None else heavy_degree
    heavy = np.flatnonzero(d > threshold)
    cap = int(max_bitset_bytes // (8 * n_words))
    if heavy.size > cap:  # keep the most frequent coordinates within the memory budget
        heavy = np.sort(heavy[np.argsort(-d[heavy], kind="stable")[:cap]])
    slot = np.full(n, -1, dtype=np.int64)
    slot[heavy] = np.arange(heavy.size)
    bits = _heavy_bitsets(tptr, tlist, heavy.astype(np.int64), n_words)
    return _Index(tptr, tlist, slot, bits, d)


def conflict_counts(data, which=None, *, heavy_degree: float | None = None,
                    max_bitset_bytes: float = 256e6, block: int | None = None) -> np.ndarray:
    """c_e = |{e' : supp(e') ∩ supp(e) ≠ ∅}| (e itself included when its support is
    nonempty) for the terms ``which`` (default all), int64.

    ``heavy_degree``: coordinates held by more terms than this use bitsets (default
    ceil(N/64), where OR-ing a bitset costs as much as walking the term list); 0 forces
    bitsets everywhere, ≥ N none.  ``max_bitset_bytes`` bounds their memory.
    """
    terms = as_terms(data, block=block)
    which = np.arange(terms.N, dtype=np.int64) if which is None else np.ascontiguousarray(which, dtype=np.int64)
    if which.size and (which.min() < 0 or which.max() >= terms.N):
        raise ValueError(f"conflict_counts: which must hold term ids in [0, {terms.N})")
    ix = _index(terms, heavy_degree, max_bitset_bytes)
    out = np.empty(which.size, dtype=np.int64)
    _counts_kernel(terms.indptr, terms.indices, ix.tptr, ix.tlist, ix.slot, ix.bits, which, out)
    return out


def conflict_degrees(data, which=None, **kwargs) -> np.ndarray:
    """deg_C(e): the conflict-graph degree (no self loop) of the terms ``which`` (default all)."""
    terms = as_terms(data, block=kwargs.pop("block", None))
    c = conflict_counts(terms, which, **kwargs)
    sizes = terms.support_sizes()
    sel = sizes if which is None else sizes[np.asarray(which, dtype=np.int64)]
    return c - (sel > 0)


def exact_cost(terms: Terms, heavy_degree: float | None = None) -> float:
    """Approximate word operations of the exact computation (the auto-mode criterion):
    Σ_e [Σ_{j∈e} d_j if e has no heavy coordinate, else N/64·(1 + #heavy) + Σ_{light j∈e} d_j]."""
    N = terms.N
    if N == 0:
        return 0.0
    n_words = max(1, (N + 63) // 64)
    d = terms.degrees().astype(np.float64)
    threshold = n_words if heavy_degree is None else heavy_degree
    heavy = d > threshold
    h = heavy[terms.indices]
    light_work = np.where(h, 0.0, d[terms.indices])
    starts = terms.indptr[:-1]
    nonempty = terms.support_sizes() > 0
    per_heavy = np.zeros(N)
    per_light = np.zeros(N)
    if terms.nnz:
        per_heavy[nonempty] = np.add.reduceat(h.astype(np.float64), starts[nonempty])
        per_light[nonempty] = np.add.reduceat(light_work, starts[nonempty])
    return float(np.sum(np.where(per_heavy > 0, n_words * (1.0 + per_heavy), 0.0) + per_light))


def _z(confidence: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2.0))


def sparsity_stats(data, *, exact: bool | None = None, samples: int = 2000, confidence: float = 0.95,
                   seed=0, rho_candidates: int = 64, max_exact_cost: float = 2e9, block: int | None = None,
                   heavy_degree: float | None = None) -> SparsityStats:
    """Ω, Δ, ρ and Δ̄_C of ``data`` (Terms, a Problem, Ratings or a Graph; see :func:`as_terms`).

    ``exact``: True computes every conflict count; False estimates (module docstring);
    None (default) is exact when :func:`exact_cost` ≤ ``max_exact_cost`` word operations
    (≈ a second or two) or ``samples`` ≥ N.  The estimator samples ``samples`` terms
    uniformly without replacement from ``seed`` (int or Generator) and reports a
    ``confidence`` normal interval for Δ̄_C and exact bounds for ρ.
    """
    terms = as_terms(data, block=block)
    N, n = terms.N, terms.n
    if not (isinstance(samples, (int, np.integer)) and samples >= 2):
        raise ValueError(f"sparsity_stats: samples = {samples!r}: must be an integer >= 2; e.g. samples = 2000")
    if not (0.0 < confidence < 1.0):
        raise ValueError(f"sparsity_stats: confidence = {confidence!r}: must lie in (0, 1); e.g. 0.95")
    om, de = omega(terms), delta(terms)
    if N == 0:
        return SparsityStats(0, n, 0, 0.0, 0.0, 0.0, 0.0, True, 0.0, 0.0, 0.0, True, 0, math.nan, "exact (no terms)")
    if exact is None:
        exact = samples >= N or exact_cost(terms, heavy_degree) <= max_exact_cost
    sizes = terms.support_sizes()
    if exact:
        c = conflict_counts(terms, heavy_degree=heavy_degree)
        rho = float(c.max() / N)
        deg = float(np.mean(c - (sizes > 0)))
        return SparsityStats(N, n, om, de, rho, rho, rho, True, deg, deg, deg, True, 0, math.nan,
                             "exact (conflict counts of all terms)")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    s = min(int(samples), N)
    sample = np.sort(rng.choice(N, size=s, replace=False)).astype(np.int64)
    d = terms.degrees()
    bound = np.zeros(N, dtype=np.int64)
    nonempty = sizes > 0
    if terms.nnz:
        bound[nonempty] = np.add.reduceat(d[terms.indices], terms.indptr[:-1][nonempty]) - sizes[nonempty] + 1
    bound = np.minimum(bound, N)
    k = min(int(rho_candidates), N)
    by_bound = np.argsort(-bound, kind="stable")
    cand = by_bound[:k].astype(np.int64)
    which = np.concatenate([sample, cand])
    c = conflict_counts(terms, which, heavy_degree=heavy_degree)
    c_sample, c_cand = c[:s], c[s:]
    rho_low = float(max(c.max(), 0) / N)
    others_bound = float(bound[by_bound[k]]) if k < N else 0.0
    rho_high = min(1.0, max(float(c_cand.max()) if k else 0.0, others_bound) / N)
    rho_high = max(rho_high, rho_low)
    deg = c_sample - (sizes[sample] > 0)
    mean = float(deg.mean())
    sd = float(deg.std(ddof=1)) if s > 1 else 0.0
    half = _z(confidence) * sd / math.sqrt(s) * math.sqrt(max(0.0, 1.0 - s / N))
    lo, hi = max(0.0, mean - half), min(float(N - 1), mean + half)
    return SparsityStats(N, n, om, de, rho_low, rho_low, rho_high, rho_low == rho_high, mean, lo, hi, False, s,
                         float(confidence),
                         f"estimated: Δ̄_C from {s} sampled terms (seeded, without replacement), ρ bounded by "
                         f"the sample and the {k} terms with the largest Σ_j d_j")
