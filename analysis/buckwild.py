"""Buckwild!'s rounding term in the convergence bound, the check that a run keeps to it,
and the accuracy lost against full precision.

De Sa, Zhang, Olukotun and Ré, "Taming the Wild", NIPS 2015, §4: with unbiased rounding
the low-precision update is x_{k+1} = x_k − γ_k g_k + η_k with E[η_k | x_k, g_k] = 0, so
the rounding adds variance, not bias.  For stochastic rounding on the grid δ = 2^-model_exp
each coordinate's error has variance f(1 − f)δ² ≤ δ²/4, so over a support of at most Ω
coordinates

    E‖η_k‖² ≤ σ_Q² = Ω δ² / 4.

For an m-strongly convex f (here m = μ, the regulariser's curvature) and ‖∇f_e‖ ≤ M on the
ball the iterates stay in, the usual one-step argument (the cross terms with η vanish in
expectation) gives, for serial Buckwild! (one worker) without saturation,

    a_{k+1} ≤ (1 − 2γ_k m) a_k + γ_k² M² + σ_Q²,      a_k = E‖x_k − x̃*‖²,

where x̃* minimises the objective over the *quantised* data (the data are rounded once).
The σ_Q² term is the rounding-variance term: at a constant step it raises the noise floor
from γM²/(2m) by σ_Q²/(2γm).  :func:`check_bound` compares one run with this expectation
bound through Markov's inequality, P(‖x_K − x̃*‖² > a_K / α) ≤ α, so a correct run fails
the check with probability at most α (the stated false-alarm rate); it also reports
whether anything saturated (which voids the bound).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from workload import buckwild as B
from workload.problems.base import Terms
from workload.problems.linear import make_linear
from workload.schedule import schedule_args, step_at

DEFAULT_ALPHA = 0.01


def rounding_variance(cfg: B.Config, omega: int) -> float:
    """σ_Q² = Ω δ²/4 (model value units²): the bound on E‖η‖² per stochastic-rounded update.

    For ``rounding = "nearest"`` there is no variance bound of this form: the error is a
    deterministic bias of up to δ/2 per coordinate, which the analysis does not cover.
    """
    if cfg.rounding != B.STOCHASTIC:
        raise ValueError("rounding_variance: the bound holds for options.rounding = 'stochastic' only; nearest "
                         "rounding is biased (up to δ/2 per coordinate), so the martingale argument fails")
    delta = 2.0**-cfg.model_exp
    return float(omega) * delta * delta / 4.0


def quantised_problem(problem, cfg: B.Config, seed: int):
    """The linear problem over the dequantised data the run actually sees."""
    t = problem.terms
    vals = B.decode_data(B.encode_data(t.values, cfg, seed), cfg)
    qt = Terms(t.indptr, t.indices, vals, t.y, t.n)
    return make_linear(problem.name, qt, lam=problem.info["lam"], reg=problem.info["reg"])


def bound_curve(a0: float, gammas: np.ndarray, m: float, M: float, sigma2: float) -> tuple[np.ndarray, np.ndarray]:
    """(a_k with rounding, a_k without) for k = 0..K by the one-step recursion (module docstring)."""
    a = np.empty(gammas.size + 1)
    b = np.empty(gammas.size + 1)
    a[0] = b[0] = a0
    for k, g in enumerate(gammas):
        c = max(1.0 - 2.0 * g * m, 0.0)
        a[k + 1] = c * a[k] + g * g * M * M + sigma2
        b[k + 1] = c * b[k] + g * g * M * M
    return a, b


def check_bound(spec, problem, x_run: np.ndarray, *, alpha: float = DEFAULT_ALPHA, radius: float | None = None) -> dict:
    """Does one run's final model keep to the rounding-aware bound (Markov at level α)?

    ``x_run``: the final *integer* model of a one-worker Buckwild! run of ``spec`` on
    ``problem``.  Returns a dict: ``sigma2`` (σ_Q²), ``bound`` (a_K), ``bound_no_rounding``,
    ``rounding_term`` (their difference), ``observed`` ‖x_K − x̃*‖², ``threshold`` a_K/α,
    ``saturated`` (the model touched its range ends), ``ok``.
    """
    if spec.threads != 1:
        raise ValueError(f"check_bound: spec.threads = {spec.threads}; the bound here is the serial one "
                         "(one worker); the asynchronous bound adds the τ-dependent terms")
    cfg = B.validate_options(spec, problem)
    qp = quantised_problem(problem, cfg, spec.seed)
    consts = qp.constants(radius)
    if consts.m is None:
        raise ValueError("check_bound: the objective is not strongly convex (lam = 0); set problem_params.lam > 0")
    xs = qp.solution().x
    x0 = B.decode_model(B.encode_model(problem.initial_point(spec.seed), cfg), cfg)
    code, step0, beta, t0 = schedule_args(spec, qp.N)
    gammas = np.array([step_at(code, step0, beta, t0, e, t) for e in range(spec.epochs) for t in range(qp.N)])
    omega = int(np.max(np.diff(problem.terms.indptr)))
    sigma2 = rounding_variance(cfg, omega)
    a, b = bound_curve(float(np.sum((x0 - xs) ** 2)), gammas, float(consts.m), float(consts.M), sigma2)
    xr = B.decode_model(np.asarray(x_run), cfg)
    observed = float(np.sum((xr - xs) ** 2))
    lo, hi = cfg.model_range()
    saturated = bool(np.any(np.asarray(x_run) <= lo) or np.any(np.asarray(x_run) >= hi))
    thr = a[-1] / alpha
    return {"sigma2": sigma2, "bound": float(a[-1]), "bound_no_rounding": float(b[-1]),
            "rounding_term": float(a[-1] - b[-1]), "observed": observed, "threshold": float(thr),
            "alpha": alpha, "saturated": saturated, "radius": consts.radius, "ok": (observed <= thr) and not saturated}


def accuracy_loss(low: pd.DataFrame, full: pd.DataFrame) -> pd.DataFrame:
    """Per epoch: objective of a low-precision run, of the full-precision run of the same spec,
    and the loss (low − full; > 0 means worse).  Both are HISTORY_SCHEMA tables."""
    df = pd.merge(low[["epoch", "objective"]], full[["epoch", "objective"]], on="epoch", suffixes=("_low", "_full"))
    df["loss"] = df["objective_low"] - df["objective_full"]
    df["relative"] = df["loss"] / df["objective_full"].abs()
    return df


# ----------------------------------------------------------------------------------------
# For the report's buckwild section (analysis.study.section_buckwild)
# ----------------------------------------------------------------------------------------
#: The model's range is chosen to hold the full-precision run's largest |x_j| this many times over.
MODEL_HEADROOM = 2.0
BOUND_CHECK = "‖x_K − x̃⋆‖² <= a_K / α (Markov)"
SATURATION_CHECK = "model within its range (no saturation)"


def model_exp_for(x_full: np.ndarray, bits: int, *, headroom: float = MODEL_HEADROOM) -> int:
    """``options.model_exp`` for a ``bits``-bit model that holds ``headroom`` · max|x_j| of a
    full-precision model ``x_full`` without saturating: the finest grid δ = 2^-model_exp at
    which it fits (:func:`workload.buckwild.auto_data_exp`), within the range
    :func:`workload.buckwild.validate_options` allows ([0, bits + 8]).

    De Sa et al. (NIPS 2015, §4) fix the scale per problem; this picks it from the float64
    run of the same spec, so the low-precision runs lose accuracy to rounding, not to
    saturation (which the report shows separately).
    """
    if bits not in B.BITS:
        raise ValueError(f"model_exp_for: bits = {bits!r}; must be one of {B.BITS}")
    if not (headroom >= 1.0):
        raise ValueError(f"model_exp_for: headroom = {headroom!r}; must be >= 1 (e.g. {MODEL_HEADROOM})")
    x = np.asarray(x_full, dtype=np.float64)
    max_abs = float(np.max(np.abs(x))) if x.size else 0.0
    return int(min(max(B.auto_data_exp(headroom * max_abs, bits), 0), bits + 8))


def saturated_count(x_run: np.ndarray, cfg: B.Config) -> int:
    """Coordinates of an integer model at either end of its range (where adds saturate)."""
    lo, hi = cfg.model_range()
    q = np.asarray(x_run)
    return int(np.count_nonzero((q <= lo) | (q >= hi)))


def bound_check_rows(spec, problem, x_run: np.ndarray, *, alpha: float = DEFAULT_ALPHA) -> list[dict]:
    """:func:`check_bound` as two report rows (:func:`analysis.verdicts.check_row` columns
    plus ``check``, ``sigma2``, ``a_K``, ``a_K_no_rounding``, ``rounding_term``, ``alpha``):

    * :data:`SATURATION_CHECK`: coordinates at the range ends <= 0 (saturation voids the bound);
    * :data:`BOUND_CHECK`: ‖x_K − x̃⋆‖² <= a_K/α, *not applicable* when the model saturated
      or when ``options.rounding = "nearest"`` (biased: the martingale argument of De Sa et
      al. §4 needs unbiased rounding, so no variance bound of this form exists).
    """
    from .verdicts import check_row

    cfg = B.validate_options(spec, problem)
    lo, hi = cfg.model_range()
    n_sat = saturated_count(x_run, cfg)
    nan = float("nan")
    extra = {"sigma2": nan, "a_K": nan, "a_K_no_rounding": nan, "rounding_term": nan, "alpha": float(alpha)}
    sat = {"check": SATURATION_CHECK, **check_row(n_sat, 0, "<=", note=f"integer range [{lo}, {hi}], "
                                                                   f"δ = 2^-{cfg.model_exp}"), **extra}
    if cfg.rounding != B.STOCHASTIC:
        delta = 2.0**-cfg.model_exp
        why = (f"nearest rounding is biased (up to δ/2 = {delta / 2:g} per coordinate per update); the bound's "
               "martingale argument needs unbiased (stochastic) rounding")
        return [sat, {"check": BOUND_CHECK, **check_row(None, None, "<=", not_applicable=why), **extra}]
    r = check_bound(spec, problem, x_run, alpha=alpha)
    why = "the model saturated, which voids the bound" if n_sat else None
    row = {"check": BOUND_CHECK,
           **check_row(r["observed"], r["threshold"], "<=", not_applicable=why,
                       note=f"rounding variance σ_Q² = Ωδ²/4 per update; P(violation | bound true) <= α = {alpha:g}"),
           "sigma2": r["sigma2"], "a_K": r["bound"], "a_K_no_rounding": r["bound_no_rounding"],
           "rounding_term": r["rounding_term"], "alpha": float(alpha)}
    return [sat, row]
