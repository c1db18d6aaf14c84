"""Memory layout: which coordinates share a cache line.

A coherence miss is a property of a *cache line*, not of a coordinate: two cores that write
different coordinates of one 64-byte line still move the line back and forth.  hwsim puts
coordinate ``j`` on line ``j // line_coords``, so the line structure it simulates is the
coordinate numbering of the problem it is given.

realrun renumbers the linear problems' coordinates by descending degree before it runs
(``options.relabel``, on by default: the hot features then share a few lines instead of
being scattered over the model), so a simulation meant to predict a realrun run must be
given the problem in *that* numbering, or it counts misses on lines the hardware never
sees.  :func:`relabel_by_degree` gives that problem; :func:`degree_order` is the one
definition of the numbering (stable sort on descending degree, ties in original order).

Renumbering changes which coordinates are neighbours, never a term's values: the
renumbered problem's terms have the same entries, listed in ascending *new* coordinate
order (hwsim's supports are sorted), so the per-term dot products add the same products in
another order -- the same problem up to floating-point rounding.  Timing, τ and line
traffic are what a prediction takes from it.
"""
from __future__ import annotations

import numpy as np

from .problems import LINEAR, Terms, make_problem


def degree_order(indices: np.ndarray, n: int) -> np.ndarray:
    """``old_of_new``: coordinates by descending degree (number of terms touching them),
    ties kept in their original order; ``new = argsort(old_of_new)``."""
    deg = np.bincount(np.asarray(indices, dtype=np.int64), minlength=n)
    return np.argsort(-deg, kind="stable").astype(np.int64)


def relabel_by_degree(problem):
    """The linear ``problem`` with coordinates renumbered by :func:`degree_order`
    (module docstring); ``(problem', old_of_new)``, where ``x'[k] = x[old_of_new[k]]``."""
    if problem.name not in LINEAR:
        raise ValueError(f"relabel_by_degree: problem {problem.name!r} is not linear ({', '.join(LINEAR)}); "
                         "realrun renumbers only linear problems, so simulate this one as it is")
    t = problem.terms
    old_of_new = degree_order(t.indices, t.n)
    new_of_old = np.empty(t.n, dtype=np.int64)
    new_of_old[old_of_new] = np.arange(t.n, dtype=np.int64)
    A = t.matrix().tocsr(copy=True)
    A.indices = new_of_old[A.indices].astype(A.indices.dtype)
    A.has_sorted_indices = False
    A.sort_indices()
    info = getattr(problem, "info", {}) or {}
    params = {k: info[k] for k in ("lam", "reg") if k in info}
    return make_problem(problem.name, Terms.from_csr(A, t.y, n=t.n), **params), old_of_new
