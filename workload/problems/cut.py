"""Multiway graph cut, LP relaxation: Hogwild!'s Abdomen / DBLife problem (Niu et al. 2011, §5).

Each of the n_nodes nodes carries a point x_i on the probability simplex Δ_D (D labels),
stored as coordinates i·D … i·D + D − 1.  Term e is an edge (u, v), u < v, with weight
w_e > 0; its support is u's D coordinates followed by v's, and

    f_e(x) = w_e ‖x_u − x_v‖₁,     f(x) = (1/E) Σ_e f_e(x),

minimised over x_i ∈ Δ_D with terminal nodes fixed to the vertex of their label
(Niu et al. 2011, §5 "Graph Cuts", the relaxation of Calinescu, Karloff & Rabani).

The update is projected SGD: g is the subgradient (w·sign(x_u − x_v) on u's block, its
negation on v's, sign(0) = 0), and u = P(xr − γ g) − xr, where P projects each free
node's block onto Δ_D by the sort-based Euclidean projection of Duchi, Shalev-Shwartz,
Singer & Chandra 2008 (ICML, "Efficient projections onto the l1-ball", Fig. 1) and sets a
terminal node's block to its vertex.  ``aux`` encodes the terminals per coordinate:
−1 on free nodes' coordinates, the vertex entry (1 at the label, 0 elsewhere) on a
terminal node's coordinates.  ``terms.y[e]`` holds w_e (values are unused ones).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import njit

from .base import Constants, Problem, Solution


@njit(nogil=True, inline="always")
def _project_block(xr, g, gamma, off, D, u):
    """u[off:off+D] = P_Δ(xr − γ g)[block] − xr[block] (Duchi et al. 2008, Fig. 1).

    u's block is first used as scratch for the sorted (descending) point, by insertion
    sort (D is small), so the kernel allocates nothing.
    """
    for k in range(D):
        v = xr[off + k] - gamma * g[off + k]
        m = k
        while m > 0 and u[off + m - 1] < v:
            u[off + m] = u[off + m - 1]
            m -= 1
        u[off + m] = v
    css = 0.0
    theta = 0.0
    for k in range(D):
        css += u[off + k]
        t = (css - 1.0) / (k + 1)
        if u[off + k] - t > 0.0:
            theta = t
    for k in range(D):
        v = xr[off + k] - gamma * g[off + k]
        p = v - theta
        if p < 0.0:
            p = 0.0
        u[off + k] = p - xr[off + k]


@njit(nogil=True)
def cut_update(params, aux, idx, vals, y, xr, gamma, g, u):
    """Projected subgradient step on f_e = y‖x_u − x_v‖₁ (module docstring)."""
    D = idx.size // 2
    for k in range(D):
        diff = xr[k] - xr[D + k]
        s = 0.0
        if diff > 0.0:
            s = y
        elif diff < 0.0:
            s = -y
        g[k] = s
        g[D + k] = -s
    for b in range(2):
        off = b * D
        if aux[idx[off]] >= 0.0:  # terminal node: held at its vertex
            for k in range(D):
                u[off + k] = aux[idx[off + k]] - xr[off + k]
        else:
            _project_block(xr, g, gamma, off, D, u)


class MultiwayCutProblem(Problem):
    """LP relaxation of multiway cut (see module docstring)."""

    def objective(self, x: np.ndarray) -> float:
        gr = self.info["graph"]
        if gr.E == 0:
            return 0.0
        X = np.asarray(x, dtype=np.float64).reshape(gr.n_nodes, gr.n_labels)
        return float(np.mean(gr.w * np.abs(X[gr.u] - X[gr.v]).sum(axis=1)))

    def initial_point(self, seed: int) -> np.ndarray:
        """Uniform 1/D on free nodes, the label's vertex on terminals (deterministic; seed unused)."""
        gr = self.info["graph"]
        X = np.full((gr.n_nodes, gr.n_labels), 1.0 / gr.n_labels)
        t = np.flatnonzero(gr.terminal >= 0)
        X[t] = 0.0
        X[t, gr.terminal[t]] = 1.0
        return X.ravel()

    def constants(self, radius: float | None = None) -> Constants:
        """m = None (piecewise linear), L = None (nonsmooth), M = max_e w_e·√(2D): the
        subgradient has 2D entries of magnitude w_e or 0, so the bound holds for every x and
        is attained wherever no two compared entries are equal (exact)."""
        gr = self.info["graph"]
        wmax = float(gr.w.max()) if gr.E else 0.0
        M = wmax * float(np.sqrt(2 * gr.n_labels))
        notes = {
            "m": "none: f is piecewise linear (not strongly convex)",
            "L": "none: f is nonsmooth (ℓ1 norm)",
            "M": "exact: max_e w_e √(2D), for every x (attained where all signs are nonzero)",
        }
        return Constants(m=None, L=None, M=M, radius=float("inf") if radius is None else float(radius), notes=notes)

    def solution(self) -> Solution | None:
        """One minimiser of the LP (HiGHS via ``scipy.optimize.linprog``) when it has at most
        ``max_lp_vars`` variables (problem param, default 200,000), else None.  The LP may
        have many minimisers: compare objectives, not distances, with this x*."""
        cached = self.info.get("_solution")
        if cached is not None:
            return cached[0]
        sol = self._solve()
        self.info["_solution"] = (sol,)
        return sol

    def _solve(self) -> Solution | None:
        from scipy.optimize import linprog

        gr = self.info["graph"]
        n, D, E = gr.n_nodes, gr.n_labels, gr.E
        nx, nt = n * D, E * D
        if nx + nt > self.info["max_lp_vars"]:
            return None
        # variables [x (n·D), t (E·D)]; minimise (1/E) Σ_e w_e Σ_k t_ek
        c = np.concatenate([np.zeros(nx), np.repeat(gr.w, D) / max(E, 1)])
        k = np.tile(np.arange(D), E)
        eu = np.repeat(gr.u, D) * D + k
        ev = np.repeat(gr.v, D) * D + k
        rows = np.arange(nt)
        ones = np.ones(nt)
        # ±(x_u,k − x_v,k) − t_ek ≤ 0
        A1 = sp.csr_matrix((np.concatenate([ones, -ones, -ones]), (np.concatenate([rows, rows, rows]),
                            np.concatenate([eu, ev, nx + rows]))), shape=(nt, nx + nt))
        A2 = sp.csr_matrix((np.concatenate([-ones, ones, -ones]), (np.concatenate([rows, rows, rows]),
                            np.concatenate([eu, ev, nx + rows]))), shape=(nt, nx + nt))
        A_ub = sp.vstack([A1, A2]).tocsr()
        A_eq = sp.csr_matrix((np.ones(nx), (np.repeat(np.arange(n), D), np.arange(nx))), shape=(n, nx + nt))
        lo = np.zeros(nx + nt)
        hi = np.full(nx + nt, np.inf)
        hi[:nx] = 1.0
        x0 = self.initial_point(0)
        t = np.flatnonzero(gr.terminal >= 0)
        fixed = (t[:, None] * D + np.arange(D)).ravel()
        lo[fixed] = x0[fixed]
        hi[fixed] = x0[fixed]
        res = linprog(c, A_ub=A_ub, b_ub=np.zeros(2 * nt), A_eq=A_eq, b_eq=np.ones(n),
                      bounds=np.stack([lo, hi], axis=1), method="highs")
        if res.status != 0:
            raise RuntimeError(f"multiway-cut x*: the LP solver failed ({res.message})")
        x = np.clip(res.x[:nx], 0.0, 1.0)
        return Solution(x=x, f=self.objective(x), method="LP relaxation solved by HiGHS (scipy linprog)",
                        tolerance=1e-7)


def make_multiway_cut(graph, *, max_lp_vars: int = 200_000) -> MultiwayCutProblem:
    """Multiway cut over a :class:`~workload.data.Graph` (module docstring).

    ``max_lp_vars``: the largest LP (n·D + E·D variables) :meth:`~MultiwayCutProblem.solution`
    solves; larger problems report no x*.  ``params`` = [D].
    """
    from ..data import Graph

    if not isinstance(graph, Graph):
        raise TypeError(f"multiway-cut needs a Graph, got {type(graph).__name__}; use data.source = "
                        "'grid-graph' or 'random-graph'")
    if not (isinstance(max_lp_vars, (int, np.integer)) and not isinstance(max_lp_vars, bool) and max_lp_vars >= 0):
        raise ValueError(f"problem_params.max_lp_vars = {max_lp_vars!r}: must be an integer >= 0; e.g. 200000")
    D = graph.n_labels
    terms = graph.to_terms(D)
    aux = np.full((graph.n_nodes, D), -1.0)
    t = np.flatnonzero(graph.terminal >= 0)
    aux[t] = 0.0
    aux[t, graph.terminal[t]] = 1.0
    return MultiwayCutProblem(name="multiway-cut", terms=terms, params=np.array([float(D)]), aux=aux.ravel(),
                              update=cut_update, info={"graph": graph, "max_lp_vars": int(max_lp_vars)})
