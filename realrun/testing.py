"""Problems for testing the engines: a counting problem (x_j counts the writes to j) and one
whose update raises -- exact checks of lost updates, locks and failure handling.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import njit

from workload.problems import Problem, Terms

RAISING_LABEL = 13.0  # the label on which raising_update raises


@njit(nogil=True)
def count_update(params, aux, idx, vals, y, xr, gamma, g, u):
    """Adds exactly 1 to every coordinate of the support: x_j counts the writes to j."""
    for k in range(idx.size):
        g[k] = -1.0
        u[k] = 1.0


@njit(nogil=True)
def raising_update(params, aux, idx, vals, y, xr, gamma, g, u):
    """Like count_update, but raises on a term labelled RAISING_LABEL."""
    if y == RAISING_LABEL:
        raise ValueError("raising_update: met the poisoned term")
    for k in range(idx.size):
        g[k] = -1.0
        u[k] = 1.0


class CountProblem(Problem):
    """f(x) = -Σ x (its 'gradient' is -1 per coordinate); objective = the sum of x."""

    def objective(self, x):
        return float(np.sum(np.asarray(x, dtype=np.float64)))


def count_problem(supports: list, n: int, update=count_update, y=None) -> CountProblem:
    """A CountProblem whose term e has support ``supports[e]`` (sorted, distinct)."""
    rows = np.repeat(np.arange(len(supports)), [len(s) for s in supports])
    cols = np.concatenate([np.asarray(s, dtype=np.int64) for s in supports]) if supports else np.zeros(0, np.int64)
    A = sp.csr_matrix((np.ones(cols.size), (rows, cols)), shape=(len(supports), n))
    terms = Terms.from_csr(A, np.ones(len(supports)) if y is None else y, n=n)
    return CountProblem(name="count", terms=terms, params=np.zeros(1), aux=np.zeros(n), update=update)


def expected_counts(problem: Problem, epochs: int) -> np.ndarray:
    """What x must hold after ``epochs`` passes (shuffle orders visit every term once per epoch)."""
    return problem.terms.degrees().astype(np.float64) * epochs


def hammer_problem(n_terms: int = 4000, n: int = 4, seed: int = 0) -> CountProblem:
    """Many terms over very few coordinates: every pair of terms conflicts."""
    rng = np.random.default_rng(seed)
    supports = []
    for _ in range(n_terms):
        k = int(rng.integers(1, n + 1))
        supports.append(np.sort(rng.choice(n, size=k, replace=False)))
    return count_problem(supports, n)
