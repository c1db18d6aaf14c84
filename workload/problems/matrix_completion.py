"""Low-rank matrix completion: Hogwild!'s Netflix / KDD Cup / Jumbo problem (Niu et al. 2011, §5).

The model is x = [L (n_users × r, row-major), R (n_items × r, row-major)] flattened, so
L_u occupies coordinates u·r … u·r + r − 1 and R_i occupies n_users·r + i·r … .  Term e is
one rating (u, i, r_ui); its support is L_u's r coordinates followed by R_i's (ascending,
since R comes after L), and

    f_e(x) = ½ (⟨L_u, R_i⟩ − r_ui)² + Σ_{j∈e} (c_j / 2) x_j²,

f(x) = (1/N) Σ_e f_e(x) = (1/N) Σ_e ½(⟨L_u, R_i⟩ − r_ui)² + (μ/2) Σ_{j: d_j>0} x_j², with
c_j = μ N / d_j (d_j = d_u ratings of user u for L_u's coordinates, d_i for R_i's), the
convention of :mod:`workload.problems.linear`.  Two regularisation forms set μ:

* ``reg = "hogwild"``: the paper's min Σ_{(u,i)} (L_u R_iᵀ − Z_ui)² + (λ/2)(‖L‖_F² + ‖R‖_F²)
  with its per-term split (λ/2)(‖L_u‖²/d_u + ‖R_i‖²/d_i) (§5, "Matrix Completion"),
  here with the loss halved and divided by N: c_j = λ/d_j, μ = λ/N;
* ``reg = "l2"``: (1/N) Σ ½(…)² + (λ/2)‖x‖², μ = λ.

The problem is nonconvex (bilinear), x = 0 is a saddle point, so the initial point is a
small seeded random point; m and x* are None and L, M are bounds on a ball only.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..spec import STREAM_INIT, stream
from .base import Constants, Problem

REG_FORMS = ("hogwild", "l2")


@njit(nogil=True)
def mc_update(params, aux, idx, vals, y, xr, gamma, g, u):
    """Gradient of ½(⟨a, b⟩ − y)² + Σ c_j x_j²/2 at xr = [a (r values), b (r values)]:
    ∂/∂a = (⟨a,b⟩ − y) b + c⊙a, ∂/∂b = (⟨a,b⟩ − y) a + c⊙b; u = −γ g."""
    r = idx.size // 2
    s = 0.0
    for k in range(r):
        s += xr[k] * xr[r + k]
    d = s - y
    for k in range(r):
        ga = d * xr[r + k] + aux[idx[k]] * xr[k]
        gb = d * xr[k] + aux[idx[r + k]] * xr[r + k]
        g[k] = ga
        g[r + k] = gb
        u[k] = -gamma * ga
        u[r + k] = -gamma * gb


class MatrixCompletionProblem(Problem):
    """Rank-r factorisation of observed ratings (see module docstring)."""

    def factors(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(L, R) views of x: (n_users, r) and (n_items, r)."""
        r, nu, ni = self.info["rank"], self.info["n_users"], self.info["n_items"]
        x = np.asarray(x, dtype=np.float64)
        return x[:nu * r].reshape(nu, r), x[nu * r:].reshape(ni, r)

    def objective(self, x: np.ndarray) -> float:
        x = np.asarray(x, dtype=np.float64)
        L, R = self.factors(x)
        rt = self.info["ratings"]
        s = np.einsum("ij,ij->i", L[rt.users], R[rt.items])
        loss = 0.5 * float(np.mean((s - rt.ratings) ** 2)) if rt.N else 0.0
        return loss + 0.5 * float(np.sum(self.info["reg_weight"] * x * x))

    def initial_point(self, seed: int) -> np.ndarray:
        """x_0 ~ N(0, init_scale²) entrywise from stream ``STREAM_INIT`` of ``seed`` (0 is a saddle)."""
        return stream(seed, STREAM_INIT).normal(0.0, self.info["init_scale"], size=self.n)

    def default_radius(self) -> float:
        """2·√((n_users + n_items)·max|r|): twice the norm of a balanced exact factorisation
        (‖L_u‖² = ‖R_i‖² = |r_ui| ≤ max|r|), at least 2‖x_0(seed 0)‖ -- a heuristic ball."""
        rt = self.info["ratings"]
        rmax = float(np.max(np.abs(rt.ratings))) if rt.N else 0.0
        r0 = 2.0 * float(np.linalg.norm(self.initial_point(0)))
        return max(2.0 * math.sqrt((self.info["n_users"] + self.info["n_items"]) * max(rmax, 1e-12)), r0)

    def constants(self, radius: float | None = None) -> Constants:
        """Local bounds on the ball ‖x‖ ≤ radius (default :meth:`default_radius`).

        With ρ = radius, r_max = max|r_ui|, c_max = max_j c_j, Δ = max_j d_j / N:

        * M (bound): ‖∇f_e(x)‖ ≤ |⟨a,b⟩ − y|·‖(a,b)‖ + c_max‖(a,b)‖ ≤ (ρ²/2 + r_max)ρ + c_max ρ,
          using ‖a‖‖b‖ ≤ (‖a‖² + ‖b‖²)/2 ≤ ρ²/2;
        * L (bound): the Hessian of a term's loss is v vᵀ + (⟨a,b⟩ − y)·[[0, I], [I, 0]] with
          v = (b, a), of norm ≤ 3ρ²/2 + r_max; summing (1/N)Σ_e over terms that overlap
          at most d_j at a coordinate gives ‖∇²f‖ ≤ Δ·(3ρ²/2 + r_max) + μ on the ball;
        * m: None (nonconvex).
        """
        rt = self.info["ratings"]
        radius = self.default_radius() if radius is None else float(radius)
        rmax = float(np.max(np.abs(rt.ratings))) if rt.N else 0.0
        cmax = float(np.max(self.aux)) if self.aux.size else 0.0
        d = self.terms.degrees()
        Delta = float(d.max() / self.N) if self.N else 0.0
        mu = self.info["mu"]
        M = (radius * radius / 2.0 + rmax) * radius + cmax * radius
        L = Delta * (1.5 * radius * radius + rmax) + mu
        notes = {
            "m": "none: the bilinear loss is nonconvex (x = 0 is a saddle point)",
            "L": f"bound on ‖x‖ ≤ {radius:.4g}: Δ·(3ρ²/2 + max|r|) + μ from the term Hessians",
            "M": f"bound on ‖x‖ ≤ {radius:.4g}: (ρ²/2 + max|r|)ρ + max_j c_j·ρ",
        }
        return Constants(m=None, L=L, M=M, radius=radius, notes=notes)


def make_matrix_completion(ratings, *, rank: int = 10, lam: float = 0.1, reg: str = "hogwild",
                           init_scale: float = 0.1) -> MatrixCompletionProblem:
    """Matrix completion over :class:`~workload.data.Ratings` (module docstring).

    ``rank`` r of the factors; ``lam`` λ ≥ 0 and ``reg`` ("hogwild" or "l2") the
    regulariser; ``init_scale`` the standard deviation of the random initial point.
    ``params`` = [r, λ, μ]; ``aux[j]`` = c_j (0 for coordinates no rating touches).
    """
    from ..data import Ratings

    if not isinstance(ratings, Ratings):
        raise TypeError(f"matrix-completion needs Ratings data, got {type(ratings).__name__}; use data.source = "
                        "'synthetic-ratings' or 'ratings'")
    if not (isinstance(rank, (int, np.integer)) and not isinstance(rank, bool) and rank >= 1):
        raise ValueError(f"problem_params.rank = {rank!r}: must be an integer >= 1; e.g. rank = 10")
    if reg not in REG_FORMS:
        raise ValueError(f"problem_params.reg = {reg!r}: must be one of {', '.join(REG_FORMS)}; "
                         "use 'hogwild' (λ/2 (‖L_u‖²/d_u + ‖R_i‖²/d_i) per rating) or 'l2' (λ/2 ‖x‖²)")
    if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam >= 0):
        raise ValueError(f"problem_params.lam = {lam!r}: must be a finite number >= 0; e.g. lam = 0.1")
    if not (isinstance(init_scale, (int, float)) and math.isfinite(init_scale) and init_scale > 0):
        raise ValueError(f"problem_params.init_scale = {init_scale!r}: must be a finite number > 0; e.g. 0.1")
    rank = int(rank)
    terms = ratings.to_terms(rank)
    N = terms.N
    d = terms.degrees()
    mu = float(lam) / N if reg == "hogwild" else float(lam)
    if N == 0:
        mu = 0.0
    aux = np.zeros(terms.n)
    nz = d > 0
    aux[nz] = mu * N / d[nz]
    reg_weight = np.where(nz, mu, 0.0)
    info = {"ratings": ratings, "rank": rank, "n_users": ratings.n_users, "n_items": ratings.n_items, "lam": lam,
            "mu": mu, "reg": reg, "reg_weight": reg_weight, "init_scale": float(init_scale)}
    return MatrixCompletionProblem(name="matrix-completion", terms=terms, params=np.array([float(rank), lam, mu]),
                                   aux=aux, update=mc_update, info=info)
