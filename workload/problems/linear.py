"""Sparse linear models: SVM (hinge), logistic regression, least squares / ridge.

Each term is one example (row a_e, label y_e) with loss ℓ(⟨a_e, x⟩, y_e) plus a
regulariser spread over the term's support,

    f_e(x) = ℓ(⟨a_e, x⟩, y_e) + Σ_{j∈e} (c_j / 2) x_j²,

and f(x) = (1/N) Σ_e f_e(x) = (1/N) Σ_e ℓ_e + (μ/2) Σ_{j: d_j>0} x_j² with c_j = μ N / d_j
(d_j = number of terms containing j).  Two regularisation forms set μ:

* ``reg = "hogwild"`` (Niu et al. 2011, §5, eq. for SVM): each term carries
  λ Σ_{j∈e} x_j² / d_j, i.e. c_j = 2λ/d_j and μ = 2λ/N -- the paper's sum objective
  Σ_e ℓ_e + λ‖x‖², divided by N;
* ``reg = "l2"``: the ordinary (1/N) Σ ℓ_e + (λ/2)‖x‖², μ = λ, comparable with standard
  solvers (scikit-learn's C = 1/(λN)).
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import scipy.linalg
import scipy.optimize
import scipy.sparse.linalg as spla
from numba import njit

from .base import Constants, Problem, Solution, Terms

REG_FORMS = ("hogwild", "l2")


@njit(nogil=True, inline="always")
def _dot(vals, xr):
    s = 0.0
    for k in range(vals.size):
        s += vals[k] * xr[k]
    return s


@njit(nogil=True, inline="always")
def _finish(dloss, aux, idx, vals, xr, gamma, g, u):
    for k in range(idx.size):
        gk = dloss * vals[k] + aux[idx[k]] * xr[k]
        g[k] = gk
        u[k] = -gamma * gk


@njit(nogil=True)
def hinge_update(params, aux, idx, vals, y, xr, gamma, g, u):
    """ℓ = max(0, 1 - y s): dℓ/ds = -y where y s < 1, else 0 (the subgradient at the kink is 0)."""
    s = _dot(vals, xr)
    dloss = -y if y * s < 1.0 else 0.0
    _finish(dloss, aux, idx, vals, xr, gamma, g, u)


@njit(nogil=True)
def logistic_update(params, aux, idx, vals, y, xr, gamma, g, u):
    """ℓ = log(1 + exp(-y s)): dℓ/ds = -y / (1 + exp(y s))."""
    s = _dot(vals, xr)
    dloss = -y / (1.0 + math.exp(y * s))
    _finish(dloss, aux, idx, vals, xr, gamma, g, u)


@njit(nogil=True)
def squared_update(params, aux, idx, vals, y, xr, gamma, g, u):
    """ℓ = (s - y)² / 2: dℓ/ds = s - y."""
    s = _dot(vals, xr)
    _finish(s - y, aux, idx, vals, xr, gamma, g, u)


def _loss_mean(kind: str, margins: np.ndarray, y: np.ndarray) -> float:
    if kind == "svm":
        return float(np.mean(np.maximum(0.0, 1.0 - y * margins)))
    if kind == "logistic":
        return float(np.mean(np.logaddexp(0.0, -y * margins)))
    return float(0.5 * np.mean((margins - y) ** 2))


def _lambda_max(A, N: int) -> tuple[float, str]:
    """Largest eigenvalue of AᵀA/N (exact to ARPACK's tolerance, or dense for small n)."""
    n = A.shape[1]
    if n <= 2000:
        AtA = (A.T @ A).toarray() / N
        return float(scipy.linalg.eigvalsh(AtA)[-1]), "exact (dense eigvalsh of AᵀA/N)"
    s = spla.svds(A, k=1, which="LM", return_singular_vectors=False, tol=1e-10, random_state=0)
    return float(s[0] ** 2 / N), "exact to 1e-10 (ARPACK svds of A)"


class LinearProblem(Problem):
    """SVM / logistic / least squares on :class:`Terms` (see module docstring)."""

    def objective(self, x: np.ndarray) -> float:
        t = self.terms
        x = np.asarray(x, dtype=np.float64)
        if not x.any():
            # the usual start x₀ = 0 (every run's first history row): every margin and the
            # regularizer are 0, so the N×n product is skipped
            return _loss_mean(self.name, np.zeros(t.N), t.y)
        margins = self.info["A"] @ x
        reg = 0.5 * float(np.sum(self.info["reg_weight"] * x * x))
        return _loss_mean(self.name, margins, t.y) + reg

    def constants(self, radius: float | None = None) -> Constants:
        t = self.terms
        mu = self.info["mu"]
        A = self.info["A"]
        row_norm = float(np.sqrt(np.max(np.asarray(A.multiply(A).sum(axis=1)).ravel()))) if t.N else 0.0
        cmax = float(np.max(self.aux)) if self.aux.size else 0.0
        if radius is None:
            sol = self.solution()
            radius = 2.0 * float(np.linalg.norm(sol.x)) + 1.0
        ymax = float(np.max(np.abs(t.y))) if t.N else 0.0
        notes = {}
        if self.name == "least-squares":
            lip_loss = row_norm * radius + ymax  # |s - y| ≤ ‖a‖‖x‖ + |y|
        else:
            lip_loss = 1.0 if ymax <= 1.0 else ymax  # |dℓ/ds| ≤ |y|
        M = lip_loss * row_norm + cmax * radius
        notes["M"] = (f"bound: ‖∇f_e(x)‖ ≤ |ℓ'|·max‖a_e‖ + max_j c_j·‖x‖ on ‖x‖ ≤ {radius:.4g}")
        lam_max, how = _lambda_max(A, t.N)
        active = self.info["active"]
        if self.name == "svm":
            L = None
            notes["L"] = "none: the hinge loss is not differentiable"
        elif self.name == "logistic":
            L = lam_max / 4.0 + mu
            notes["L"] = f"bound: λ_max(AᵀA/N)/4 + μ, λ_max {how}"
        else:
            L = lam_max + mu
            notes["L"] = f"exact: λ_max(AᵀA/N) + μ, λ_max {how}"
        m = mu if mu > 0 else None
        notes["m"] = "bound: μ from the regulariser (the loss adds curvature ≥ 0)"
        if self.name == "least-squares" and int(active.sum()) <= 2000:
            As = A[:, np.flatnonzero(active)]
            lam_min = float(scipy.linalg.eigvalsh((As.T @ As).toarray() / t.N)[0])
            m = max(lam_min, 0.0) + mu
            notes["m"] = "exact: λ_min(AᵀA/N) + μ on the coordinates some term touches (dense eigvalsh)"
        return Constants(m=m, L=L, M=M, radius=radius, notes=notes)

    def solution(self) -> Solution | None:
        cached = self.info.get("_solution")
        if cached is not None:
            return cached[0]
        sol = self._solve()
        self.info["_solution"] = (sol,)
        return sol

    def _solve(self) -> Solution:
        t = self.terms
        A = self.info["A"]
        mu = self.info["mu"]
        active = np.flatnonzero(self.info["active"])  # coordinates some term touches
        x = np.zeros(t.n)
        if self.name == "least-squares":
            As = A[:, active]
            H = (As.T @ As) / t.N
            b = As.T @ t.y / t.N
            if active.size <= 4000:
                Hd = H.toarray() + mu * np.eye(active.size)
                x[active] = scipy.linalg.solve(Hd, b, assume_a="pos")
                method, tol = "exact (Cholesky of AᵀA/N + μI)", 0.0
            else:
                op = spla.LinearOperator(H.shape, matvec=lambda v: H @ v + mu * v, dtype=np.float64)
                xs, info = spla.cg(op, b, rtol=1e-13, maxiter=100000)
                if info != 0:
                    raise RuntimeError(f"least-squares x*: CG did not converge (info={info})")
                x[active] = xs
                method, tol = "conjugate gradients on the normal equations, relative residual 1e-13", 1e-13
            return Solution(x=x, f=self.objective(x), method=method, tolerance=tol)
        if self.name == "logistic":
            As = A[:, active]
            y = t.y

            def fg(v):
                s = As @ v
                z = -y * s
                f = np.mean(np.logaddexp(0.0, z)) + 0.5 * mu * v @ v
                sig = 0.5 * (1.0 + np.tanh(0.5 * z))  # 1/(1+exp(-z)), stable
                gr = As.T @ (-y * sig) / t.N + mu * v
                return f, gr

            res = scipy.optimize.minimize(fg, np.zeros(active.size), jac=True, method="L-BFGS-B",
                                          options={"gtol": 1e-10, "ftol": 0.0, "maxiter": 20000})
            x[active] = res.x
            gnorm = float(np.linalg.norm(fg(res.x)[1]))
            return Solution(x=x, f=self.objective(x), method=f"L-BFGS-B (scipy), ‖∇f(x*)‖ = {gnorm:.2e}",
                            tolerance=gnorm)
        # SVM: scikit-learn's LinearSVC solves ½‖w‖² + C Σ hinge, i.e. our objective times 1/μ.
        from sklearn.svm import LinearSVC

        As = A[:, active]
        # liblinear's dual coordinate descent visits coordinates in a random order: seed it, so
        # the optimum (and every table computed from it) is the same on every solve
        clf = LinearSVC(C=1.0 / (mu * t.N), loss="hinge", fit_intercept=False, dual=True, tol=1e-10,
                        max_iter=200000, random_state=0)
        clf.fit(As, t.y)
        x[active] = clf.coef_.ravel()
        return Solution(x=x, f=self.objective(x), method="LinearSVC (liblinear dual CD), tol 1e-10", tolerance=1e-10)


_KERNELS = {"svm": hinge_update, "logistic": logistic_update, "least-squares": squared_update}


def make_linear(name: str, terms: Terms, *, lam: float = 1e-4, reg: str = "hogwild") -> LinearProblem:
    """Build an SVM / logistic / least-squares problem over ``terms`` (module docstring)."""
    if name not in _KERNELS:
        raise ValueError(f"problem = {name!r}: not a linear problem; use one of {', '.join(_KERNELS)}")
    if reg not in REG_FORMS:
        raise ValueError(f"problem_params.reg = {reg!r}: must be one of {', '.join(REG_FORMS)}; "
                         "use 'hogwild' (λ Σ x_j²/d_j per term) or 'l2' (λ/2 ‖x‖²)")
    if not (isinstance(lam, numbers.Real) and not isinstance(lam, bool) and math.isfinite(lam) and lam >= 0):
        raise ValueError(f"problem_params.lam = {lam!r}: must be a finite number >= 0; e.g. lam = 1e-4")
    d = terms.degrees()
    N = terms.N
    mu = 2.0 * lam / N if reg == "hogwild" else float(lam)
    aux = np.zeros(terms.n)
    nz = d > 0
    aux[nz] = mu * N / d[nz]
    reg_weight = np.where(nz, mu, 0.0)  # (1/N) Σ_e Σ_{j∈e} c_j x_j²/2 = Σ_j reg_weight_j x_j²/2
    return LinearProblem(name=name, terms=terms, params=np.array([lam, mu]), aux=aux, update=_KERNELS[name],
                         info={"A": terms.matrix(), "mu": mu, "lam": lam, "reg": reg, "reg_weight": reg_weight,
                                 "active": nz})
