"""The problem protocol: f(x) = (1/N) Σ_e f_e(x_e), a mean of sparse terms.

Every problem hands both engines the same three things:

* ``terms``: a :class:`Terms` CSR structure -- term ``e`` reads and writes the coordinates
  ``indices[indptr[e]:indptr[e+1]]`` (its *support*, strictly increasing: checked when the
  ``Terms`` is built), with per-entry values ``values[...]`` and a scalar label ``y[e]``;
* ``params`` (float64 array) and ``aux`` (float64, one entry per coordinate): constants the
  update kernel reads;
* ``update``: one ``@njit(nogil=True)`` function

      update(params, aux, idx, vals, y, xr, gamma, g, u) -> None

  that, given the values ``xr`` read at the support ``idx``, writes the term's gradient
  ``g = ∇f_e(x)|_support`` and the update ``u`` the engine adds to the model
  (``u = -gamma * g``, or for constrained problems ``P(xr - gamma g) - xr``).

This function is *the* implementation of the arithmetic: the serial oracle, hwsim and
realrun all call it, so simulated and measured runs differ only in interleaving and timing.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True, eq=False)
class Terms:
    """Sparse terms in CSR form; the arrays are C-contiguous with fixed dtypes."""

    indptr: np.ndarray  # int64 (N+1,)
    indices: np.ndarray  # int32 (nnz,), strictly increasing within each term (checked)
    values: np.ndarray  # float64 (nnz,)
    y: np.ndarray  # float64 (N,)
    n: int  # number of coordinates

    def __post_init__(self):
        object.__setattr__(self, "indptr", np.ascontiguousarray(self.indptr, dtype=np.int64))
        object.__setattr__(self, "indices", np.ascontiguousarray(self.indices, dtype=np.int32))
        object.__setattr__(self, "values", np.ascontiguousarray(self.values, dtype=np.float64))
        object.__setattr__(self, "y", np.ascontiguousarray(self.y, dtype=np.float64))
        object.__setattr__(self, "n", int(self.n))
        if self.indptr.ndim != 1 or self.indptr.size != self.y.size + 1:
            raise ValueError(f"Terms: indptr has {self.indptr.size} entries but y has {self.y.size} terms; "
                             "indptr must have N+1 entries")
        if self.indptr[0] != 0 or self.indptr[-1] != self.indices.size or self.indices.size != self.values.size:
            raise ValueError("Terms: indptr must start at 0 and end at nnz, and indices/values must have nnz entries")
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= self.n):
            raise ValueError(f"Terms: coordinate indices must lie in [0, n={self.n})")
        if np.any(np.diff(self.indptr) < 0):
            e = int(np.flatnonzero(np.diff(self.indptr) < 0)[0])
            raise ValueError(f"Terms: indptr decreases at term {e} ({self.indptr[e]} -> {self.indptr[e + 1]}); "
                             "indptr must be non-decreasing (CSR row pointers)")
        self._check_supports()

    def _check_supports(self):
        """Each term's coordinates strictly increasing (sorted, no repeats): checked once here.

        The engines rely on it: per-coordinate locks are taken in support order (deadlock
        freedom needs one global order), a repeated coordinate would be read twice and
        written twice per update, and the sparsity statistics count each coordinate once.
        """
        ind = self.indices
        if ind.size < 2:
            return
        bad = np.flatnonzero(ind[1:] <= ind[:-1]) + 1  # entries not above their predecessor
        if bad.size == 0:
            return
        starts = np.zeros(ind.size + 1, dtype=bool)
        starts[self.indptr] = True  # a term's first entry has no predecessor in its term
        bad = bad[~starts[bad]]
        if bad.size == 0:
            return
        q = int(bad[0])
        e = int(np.searchsorted(self.indptr, q, side="right") - 1)
        lo, hi = int(self.indptr[e]), int(self.indptr[e + 1])
        what = "repeats" if ind[q] == ind[q - 1] else "is not sorted"
        shown = ind[lo:hi] if hi - lo <= 12 else f"{ind[lo:lo + 12]}..."
        raise ValueError(f"Terms: term {e}'s support {what}: coordinate {int(ind[q])} follows {int(ind[q - 1])} "
                         f"(entries {q - 1 - lo} and {q - lo} of {shown}); {bad.size} such entr"
                         f"{'y' if bad.size == 1 else 'ies'} in all.  Each term's coordinates must be strictly "
                         "increasing: build with Terms.from_csr(A, y), or call A.sum_duplicates() (merges "
                         "repeats, adding their values) and A.sort_indices() on the CSR matrix first")

    @property
    def N(self) -> int:
        return int(self.y.size)

    @property
    def nnz(self) -> int:
        return int(self.indices.size)

    def support(self, e: int) -> np.ndarray:
        return self.indices[self.indptr[e]:self.indptr[e + 1]]

    def support_sizes(self) -> np.ndarray:
        return np.diff(self.indptr)

    def degrees(self) -> np.ndarray:
        """d_j: the number of terms whose support contains coordinate j (int64, (n,))."""
        return np.bincount(self.indices, minlength=self.n).astype(np.int64)

    def matrix(self) -> sp.csr_matrix:
        """The terms' values as an N × n CSR matrix."""
        return sp.csr_matrix((self.values, self.indices, self.indptr), shape=(self.N, self.n))

    @classmethod
    def from_csr(cls, A: sp.spmatrix, y, n: int | None = None) -> "Terms":
        """From a SciPy sparse matrix (rows = terms); duplicates summed, indices sorted."""
        A = sp.csr_matrix(A)
        A.sum_duplicates()
        A.sort_indices()
        return cls(A.indptr, A.indices, A.data, np.asarray(y, dtype=np.float64), A.shape[1] if n is None else n)


class Constants(NamedTuple):
    """Constants the theory needs, each with how it was obtained.

    m: strong convexity modulus of f (None: not strongly convex / nonconvex);
    L: Lipschitz constant of ∇f (None: f is nonsmooth);
    M: bound on ‖∇f_e(x)‖ for every term e and every x with ‖x‖ ≤ radius;
    radius: the ball on which M holds (inf: everywhere);
    notes: per constant, "exact" or "bound" and the method.
    """

    m: float | None
    L: float | None
    M: float
    radius: float
    notes: dict


class Solution(NamedTuple):
    """A minimiser x* and how it was obtained (``exact`` or a solver and its tolerance)."""

    x: np.ndarray
    f: float
    method: str
    tolerance: float


@dataclass(frozen=True, eq=False)
class Problem:
    """A sum-of-sparse-terms objective ready for both engines (see module docstring)."""

    name: str
    terms: Terms
    params: np.ndarray
    aux: np.ndarray
    update: Any  # numba dispatcher
    info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.terms.n

    @property
    def N(self) -> int:
        return self.terms.N

    # The methods below are overridden by each problem.
    def objective(self, x: np.ndarray) -> float:
        """f(x) = (1/N) Σ_e f_e(x), vectorised."""
        raise NotImplementedError

    def initial_point(self, seed: int) -> np.ndarray:
        """x_0 (float64); zero unless the problem needs a random start (seeded)."""
        return np.zeros(self.n)

    def constants(self, radius: float | None = None) -> Constants:
        raise NotImplementedError

    def solution(self) -> Solution | None:
        """x* where computable, else None."""
        return None

    # Shared helpers --------------------------------------------------------------------
    def term_gradient(self, x: np.ndarray, e: int) -> np.ndarray:
        """∇f_e(x) restricted to the support of e (float64), through the update kernel."""
        t = self.terms
        lo, hi = t.indptr[e], t.indptr[e + 1]
        idx = t.indices[lo:hi]
        g = np.zeros(hi - lo)
        u = np.zeros(hi - lo)
        self.update(self.params, self.aux, idx, t.values[lo:hi], t.y[e], np.ascontiguousarray(x[idx], dtype=np.float64),
                    0.0, g, u)
        return g

    def full_gradient(self, x: np.ndarray) -> np.ndarray:
        """∇f(x) = (1/N) Σ_e ∇f_e(x), assembled from the per-term kernel."""
        return _full_gradient(self.update, self.params, self.aux, self.terms.indptr, self.terms.indices,
                              self.terms.values, self.terms.y, np.ascontiguousarray(x, dtype=np.float64))


_inline_cache: dict = {}
_inline_lock = threading.Lock()


def inlined(update):
    """The problem's ``update`` compiled to be inlined into a jitted caller's loop.

    Numba calls a dispatcher passed as an argument (or closed over) out of line, and an
    out-of-line call with array arguments pays NRT reference-count updates per call --
    atomic increments on the arrays' headers (shared arrays' headers bounce between
    cores when threads call it) -- and blocks optimisation across the call.  So the
    drivers (``workload.serial.sgd_pass``, realrun's kernels) use the very same Python
    function, compiled with ``inline="always"`` and otherwise the dispatcher's own
    options: the same source, the same arithmetic (the bit-for-bit tests against
    ``workload.serial.serial_oracle``, which calls ``problem.update`` itself, hold this).
    Anything that is not a Numba dispatcher is returned as given.  One compiled function
    per update, cached.
    """
    from numba import njit
    from numba.core.registry import CPUDispatcher

    if not isinstance(update, CPUDispatcher):
        return update
    with _inline_lock:
        fn = _inline_cache.get(update)
        if fn is None:
            opts = {k: v for k, v in update.targetoptions.items() if k not in ("inline", "cache", "nopython")}
            opts["nogil"] = True
            fn = njit(inline="always", **opts)(update.py_func)
            _inline_cache[update] = fn
    return fn


def _make_full_gradient():
    from numba import njit

    @njit(cache=False)
    def full_gradient(update, params, aux, indptr, indices, values, y, x):
        n_terms = y.size
        out = np.zeros(x.size)
        maxlen = 0
        for e in range(n_terms):
            maxlen = max(maxlen, indptr[e + 1] - indptr[e])
        xr = np.empty(maxlen)
        g = np.empty(maxlen)
        u = np.empty(maxlen)
        for e in range(n_terms):
            lo = indptr[e]
            k = indptr[e + 1] - lo
            idx = indices[lo:lo + k]
            for j in range(k):
                xr[j] = x[idx[j]]
            update(params, aux, idx, values[lo:lo + k], y[e], xr[:k], 0.0, g[:k], u[:k])
            for j in range(k):
                out[idx[j]] += g[j]
        return out / n_terms

    return full_gradient


_full_gradient = _make_full_gradient()


def fd_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central finite-difference gradient of ``f`` at ``x`` (for tests)."""
    g = np.zeros_like(x, dtype=np.float64)
    for j in range(x.size):
        xp = x.copy()
        xm = x.copy()
        xp[j] += h
        xm[j] -= h
        g[j] = (f(xp) - f(xm)) / (2 * h)
    return g
