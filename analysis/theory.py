"""Theory checks: each theorem's assumptions and bound, held against a run, with a verdict.

Every check returns a DataFrame with one row per claim. Each row carries the inputs it
used (``N, n, Omega, rho, Delta, Delta_C, tau, tau_observed, L, M, m, D0, f_star``), what
the theorem prescribes (``gamma``, ``k_required``), and the standard check columns of
:mod:`analysis.verdicts` (``observed, bound, relation, ratio, margin, verdict, note``):
*holds*, *violated* (``ratio`` and ``margin`` say by how much) or *not applicable* (with
the reason: a constant the theorem needs does not exist for this problem, the run is too
short, it did not use the prescribed step, ...).

Notation. DESIGN.md's: n coordinates, N terms, f(x) = (1/N) Σ_e f_e(x). ``M`` bounds
‖∇f_e(x)‖ (workload's ``Constants.M``), ``m`` (Niu et al.'s ``c``) is the strong
convexity modulus of f and ``L`` the Lipschitz constant of ∇f. With Niu et al.'s
f = Σ_e f_e and G_e = |E|·∇f_e, the same f gives the same L, c and M, so the constants
carry over unchanged. Where Mania et al. write n (their number of terms), we write N.

Iterations. Both analyses count iterations of a serial sequence of updates; we count one
processed sample as one iteration (``samples`` in the history). Niu et al. analyse a
variant that updates a single random coordinate v ∈ e with step γ|e|, whose expectation
over v is one full-support update with step γ, so one sample of our engines corresponds to
one iteration of the analysed process in expectation (an interpretation: the paper counts
"component updates" of its variant).

Delay. ``tau`` is the bound plugged into the formulas; ``tau_observed`` the largest
overlap τ_k = max_k (other samples whose processing interval overlapped sample k's) seen
in a trace (:func:`workload.trace.tau_overlap`). It bounds the lag j − k(j) of Niu et al.
and is the τ of Mania et al. (their Section 3: "the number of samples that overlap in time
with a single sample"). By default ``tau = tau_observed``.

Notes
-----
**Niu, Recht, Ré, Wright 2011**, "Hogwild!: A Lock-Free Approach to Parallelizing
Stochastic Gradient Descent", arXiv:1106.5730, Proposition 4.1. Assumptions: each f_e
convex, ∇f L-Lipschitz, f strongly convex with modulus c, ‖G_e(x)‖ ≤ M, lag ≤ τ. With

    γ = ϑ ε c / (2 L M² Ω (1 + 6ρτ + 4τ²ΩΔ^{1/2})),   ϑ ∈ (0, 1),

and D_0 = ‖x_0 − x⋆‖², after

    k ≥ 2 L M² Ω (1 + 6τρ + 6τ²ΩΔ^{1/2}) log(L D_0 / ε) / (c² ϑ ε)

updates, E[f(x_k) − f⋆] ≤ ε. (The paper has 4τ²ΩΔ^{1/2} in γ and 6τ²ΩΔ^{1/2} in k; both
are implemented as printed.) The paper reads its result as near-linear speedup when the
extra factor is small; we make that premise a check with a named threshold:
6τρ + 6τ²ΩΔ^{1/2} ≤ :data:`NIU_PENALTY_MAX` (asynchrony at most doubles the iteration
count over serial SGD). On a8a, where one feature occurs in almost every row (Δ ≈ 1), it
fails by a large factor.

**Mania, Pan, Papailiopoulos, Recht, Ramchandran, Jordan 2015**, "Perturbed Iterate
Analysis for Asynchronous Stochastic Optimization", arXiv:1507.06970, Theorem 3.4: if
τ = O(min{n/Δ̄_C, M²/(εm²)}) then Hogwild! with γ = εm/(2M²) reaches
E‖x_k − x⋆‖² ≤ ε after k = O(1)·M² log(a_0/ε)/(εm²) iterations (their n is the number
of terms, our N; Δ̄_C the average degree of the conflict graph). The paper hides the
constants; the explicit ones used here are derived along its proof:

* the recursion (their Section 2) a_{k+1} ≤ (1 − γm) a_k + γ²M² + 2γm R0_k + 2γ R1_k,
  with R0_k = E‖x̂_k − x_k‖² and R1_k = E⟨x̂_k − x_k, g(x̂_k, e_k)⟩;
* with p = (Δ̄_C + 1)/N the probability that two independent uniform terms' supports meet
  (the +1 is a term meeting itself), and at most 2τ samples in the window |i − k| ≤ τ:
  R1_k ≤ 2γτM²p and R0_k ≤ γ²M²(2τ + 4τ²p);
* if τ ≤ N/(16(Δ̄_C + 1)) (so 2γR1 ≤ γ²M²/4) and τ ≤ M²/(9εm²) (so 2γm R0 ≤ γ²M²/4 at
  γ = εm/(2M²)), then a_{k+1} ≤ (1 − γm) a_k + (3/2)γ²M², hence
  a_k ≤ e^{−γmk} a_0 + 3ε/4 ≤ ε for k ≥ 2M² log(4a_0/ε)/(εm²).

So the explicit form checked is τ ≤ min{N/(16(Δ̄_C+1)), M²/(9εm²)}, γ = εm/(2M²),
k ≥ 2M² log(4 a_0/ε)/(εm²). Separately, the lecture-notes condition τ ≤ N/(2Δ̄_C) is the
one under which the paper's bound on the inner-product noise term, R1 ≤ 2γτM²Δ̄_C/N (the
conflict probability taken as Δ̄_C/N, as in the paper), keeps γ·R1 ≤ γ²M².

**Measured noise terms** (:func:`noise_terms`): per sample, from hwsim's exact trace,
‖x̂_k − x_k‖² and ⟨x̂_k − x_k, g_k⟩. Since x̂_k − x_k = Σ_{i overlapping k} γ_i S_i^k g_i
with at most τ_k terms, each of norm ≤ M, every sample obeys the worst-case bounds
‖x̂_k − x_k‖² ≤ (γ τ_k M)² and |⟨x̂_k − x_k, g_k⟩| ≤ γ τ_k M², as long as no update was lost
and the iterates stay where M bounds the gradients. Their means are held against the
expected bounds above (which assume sampling with replacement).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .verdicts import HOLDS, NOT_APPLICABLE, VIOLATED, check_row

NIU = "Niu et al. 2011, Prop. 4.1"
MANIA = "Mania et al. 2015, Thm. 3.4"
LECTURE = "lecture: tau <= N/(2 Delta_C)"
NOISE = "perturbed-iterate noise terms"

#: Near-linear-speedup premise of Niu et al.: 6τρ + 6τ²ΩΔ^{1/2} may at most double the
#: serial iteration count.
NIU_PENALTY_MAX = 1.0
#: A run "used the prescribed step" when |γ_run − γ| ≤ STEP_RTOL·γ.
STEP_RTOL = 1e-9
#: Explicit constants of our form of Mania et al. Thm. 3.4 (module docstring).
MANIA_CONFLICT_DIV = 16.0  # τ ≤ N / (16 (Δ̄_C + 1))
MANIA_NOISE_DIV = 9.0  # τ ≤ M² / (9 ε m²)
MANIA_LOG_FACTOR = 4.0  # k ≥ 2M² log(4 a_0/ε) / (ε m²)
#: The lecture's sufficient condition τ ≤ N / (LECTURE_DIV · Δ̄_C).
LECTURE_DIV = 2.0

INPUT_COLUMNS = ("N", "n", "Omega", "rho", "Delta", "Delta_C", "tau", "tau_observed", "L", "M", "m", "D0",
                 "f_star")
#: Columns hwsim's noise-term table must have (sample id, the two per-sample terms).
NOISE_COLUMNS = ("sample", "noise_sq", "noise_inner")


# --- inputs -------------------------------------------------------------------------------

def _num(v) -> float:
    if v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _inputs(inputs: Mapping[str, Any] | pd.DataFrame | pd.Series) -> dict[str, float]:
    """Coerce the inputs (a mapping, a Series or a one-row DataFrame) to floats (NaN = unknown)."""
    if isinstance(inputs, pd.DataFrame):
        if len(inputs) != 1:
            raise ValueError(f"inputs: a DataFrame of inputs must have exactly one row, got {len(inputs)}; "
                             "pass one row (e.g. df.iloc[[0]]) or a dict")
        inputs = inputs.iloc[0].to_dict()
    elif isinstance(inputs, pd.Series):
        inputs = inputs.to_dict()
    d = {k: _num(inputs.get(k)) for k in INPUT_COLUMNS}
    if math.isnan(d["tau"]):
        d["tau"] = d["tau_observed"]
    return d


def theory_inputs(problem, *, samples: pd.DataFrame | None = None, stats: Mapping[str, float] | None = None,
                  tau: float | None = None, seed: int = 0, radius: float | None = None) -> pd.DataFrame:
    """The one-row inputs table for the checks, from a problem and (optionally) a trace.

    ``stats``: a mapping with ``Omega, rho, Delta, Delta_C``; when None they are computed
    with :mod:`workload.stats`. ``samples``: a trace in SAMPLE_SCHEMA, whose largest τ_k is
    ``tau_observed``. ``tau`` overrides the delay bound used in the formulas. ``seed``
    gives x_0 (``problem.initial_point``) for D_0 = ‖x_0 − x⋆‖².
    """
    from workload.trace import tau_overlap

    if stats is None:
        stats = sparsity_stats(problem.terms)
    cons = problem.constants(radius)
    sol = problem.solution()
    row = {"N": problem.N, "n": problem.n}
    for k in ("Omega", "rho", "Delta", "Delta_C"):
        row[k] = _num(stats.get(k))
    row["tau_observed"] = float(np.max(tau_overlap(samples))) if samples is not None and len(samples) else math.nan
    row["tau"] = _num(tau) if tau is not None else row["tau_observed"]
    row.update(L=_num(cons.L), M=_num(cons.M), m=_num(cons.m), radius=_num(cons.radius))
    if sol is not None:
        x0 = problem.initial_point(seed)
        row["D0"] = float(np.sum((x0 - sol.x) ** 2))
        row["f_star"] = float(sol.f)
    else:
        row["D0"] = row["f_star"] = math.nan
    return pd.DataFrame([row])


def sparsity_stats(terms, **kwargs) -> dict[str, float]:
    """Ω, ρ, Δ, Δ̄_C of ``terms`` from :func:`workload.stats.sparsity_stats` (exact, or its
    seeded estimator for large problems: then ρ is the best lower bound and Δ̄_C the sample
    estimate, and ``exact`` says so). Its Δ̄_C has no self loops, as assumed above."""
    from workload.stats import sparsity_stats as _stats

    s = _stats(terms, **kwargs)
    return {"Omega": float(s.omega), "rho": float(s.rho), "Delta": float(s.delta), "Delta_C": float(s.conflict_degree),
            "exact": bool(s.rho_exact and s.conflict_degree_exact)}


# --- history helpers ------------------------------------------------------------------------

def _mean_history(history: pd.DataFrame) -> pd.DataFrame:
    """Average repeated runs (a ``run`` or ``seed`` column) checkpoint by checkpoint."""
    for key in ("run", "seed"):
        if key in history.columns:
            return history.groupby("epoch", as_index=False).agg(
                samples=("samples", "max"), objective=("objective", "mean"), dist2_opt=("dist2_opt", "mean"),
                runs=(key, "nunique"))
    h = history.copy()
    h["runs"] = 1
    return h


def _at_iterations(history: pd.DataFrame | None, k: float, column: str, offset: float = 0.0):
    """(value of ``column`` − offset at the first checkpoint with samples ≥ k, samples there, reason)."""
    if history is None:
        return math.nan, math.nan, "no run history given"
    if not math.isfinite(k):
        return math.nan, math.nan, "the iteration count is not finite"
    h = _mean_history(history).sort_values("samples")
    reached = h[h["samples"] >= k]
    if reached.empty:
        last = int(h["samples"].max()) if len(h) else 0
        return math.nan, math.nan, f"the run stopped at {last} samples, before the required k = {math.ceil(k)}"
    r = reached.iloc[0]
    v = float(r[column]) - offset
    if math.isnan(v):
        return math.nan, float(r["samples"]), f"{column} is not recorded (x⋆ unknown?)"
    return v, float(r["samples"]), None


def _step_reason(step, gamma) -> str | None:
    if step is None or (isinstance(step, float) and math.isnan(step)):
        return None
    if not math.isfinite(gamma):
        return "the prescribed step is undefined"
    if abs(float(step) - gamma) > STEP_RTOL * gamma:
        return (f"the run used γ = {float(step):.6g}, not the prescribed γ = {gamma:.6g}; the guarantee is for "
                "that step only")
    return None


def _frame(rows: list[dict], common: dict) -> pd.DataFrame:
    df = pd.DataFrame([{**common, **r} for r in rows])
    first = ["theorem", "check", "quantity", "observed", "bound", "relation", "ratio", "margin", "verdict", "note"]
    return df[first + [c for c in df.columns if c not in first]]


def _validate_eps(epsilon, theta=None):
    if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon = {epsilon!r}: must be a finite number > 0; give the target accuracy, e.g. 1e-2")
    if theta is not None and not (isinstance(theta, (int, float)) and 0 < theta < 1):
        raise ValueError(f"theta = {theta!r}: must lie in (0, 1) (Niu et al.'s ϑ); e.g. theta = 0.5")


# --- Niu et al. 2011 -----------------------------------------------------------------------

def niu_prescription(*, Omega, rho, Delta, tau, L, M, c, epsilon, D0, theta=0.5) -> tuple[float, float]:
    """(γ, k) of Niu et al. 2011, Proposition 4.1 (module docstring). NaN where undefined."""
    _validate_eps(epsilon, theta)
    vals = [Omega, rho, Delta, tau, L, M, c, D0]
    if any(_num(v) != _num(v) for v in vals) or _num(c) <= 0 or _num(L) <= 0:
        return math.nan, math.nan
    sq = math.sqrt(Delta)
    gamma = theta * epsilon * c / (2.0 * L * M**2 * Omega * (1.0 + 6.0 * rho * tau + 4.0 * tau**2 * Omega * sq))
    ratio = L * D0 / epsilon
    log_term = math.log(ratio) if ratio > 1.0 else 0.0  # already within ε of x⋆ in this bound: k = 0
    k = (2.0 * L * M**2 * Omega * (1.0 + 6.0 * tau * rho + 6.0 * tau**2 * Omega * sq) * log_term
         / (c**2 * theta * epsilon))
    return gamma, max(k, 0.0)


def niu_penalty(*, Omega, rho, Delta, tau) -> float:
    """6τρ + 6τ²ΩΔ^{1/2}: the factor asynchrony adds to Niu et al.'s iteration count (minus 1)."""
    return 6.0 * tau * rho + 6.0 * tau**2 * Omega * math.sqrt(Delta)


def niu_prop41(inputs, *, epsilon: float, theta: float = 0.5, history: pd.DataFrame | None = None,
               step: float | None = None) -> pd.DataFrame:
    """Niu et al. 2011, Proposition 4.1, against a run (module docstring).

    Rows: ``delay`` (observed τ ≤ the τ used), ``sparsity`` (the near-linear-speedup
    premise 6τρ + 6τ²ΩΔ^{1/2} ≤ NIU_PENALTY_MAX), ``step`` (the run's γ ≤ the prescribed
    γ), ``accuracy`` (f(x_k) − f⋆ ≤ ε at the first checkpoint with at least k samples;
    repeated runs in ``history`` (a ``run`` column) are averaged, estimating the expectation).
    Columns: the inputs, ``epsilon``, ``theta``, ``gamma``, ``k_required``, and the check columns.
    """
    _validate_eps(epsilon, theta)
    d = _inputs(inputs)
    c = d["m"]
    reasons = []
    if math.isnan(d["L"]):
        reasons.append("∇f is not Lipschitz (L undefined: non-smooth loss)")
    if math.isnan(c) or c <= 0:
        reasons.append("f is not strongly convex (c undefined)")
    if math.isnan(d["D0"]):
        reasons.append("D_0 unknown (x⋆ not available)")
    gamma, k = niu_prescription(Omega=d["Omega"], rho=d["rho"], Delta=d["Delta"], tau=d["tau"], L=d["L"], M=d["M"],
                                c=c, epsilon=epsilon, D0=d["D0"], theta=theta)
    na = "; ".join(reasons) or None
    common = {"theorem": NIU, **d, "epsilon": epsilon, "theta": theta, "gamma": gamma, "k_required": k}
    rows = []
    rows.append({"check": "delay", "quantity": "observed max tau_k <= tau used",
                 **check_row(d["tau_observed"], d["tau"], "<=",
                             note="τ bounds the lag j − k(j) in the proposition")})
    pen = niu_penalty(Omega=d["Omega"], rho=d["rho"], Delta=d["Delta"], tau=d["tau"])
    rows.append({"check": "sparsity", "quantity": "6 tau rho + 6 tau^2 Omega Delta^(1/2) <= NIU_PENALTY_MAX",
                 **check_row(pen, NIU_PENALTY_MAX, "<=",
                             note="near-linear speedup premise: asynchrony at most doubles the iteration count")})
    if step is None:
        rows.append({"check": "step", "quantity": "run step <= prescribed gamma",
                     **check_row(None, gamma, "<=", not_applicable="no run step given")})
    else:
        rows.append({"check": "step", "quantity": "run step <= prescribed gamma",
                     **check_row(float(step), gamma, "<=", not_applicable=na)})
    gap, at, why = _at_iterations(history, k, "objective", offset=d["f_star"])
    why = na or _step_reason(step, gamma) or why
    if history is not None and step is None and why is None:
        why = "the run's step is not given, so the guarantee cannot be attributed to it"
    rows.append({"check": "accuracy", "quantity": "f(x_k) - f* <= epsilon at k >= k_required",
                 **check_row(gap, epsilon, "<=", not_applicable=why,
                             note=f"checkpoint at {at:.0f} samples" if at == at else ""),
                 "samples_at": at})
    return _frame(rows, common)


# --- Mania et al. 2015 -------------------------------------------------------------------

def mania_prescription(*, N, Delta_C, M, m, epsilon, a0) -> dict[str, float]:
    """Explicit-constant form of Mania et al. 2015, Thm. 3.4 (module docstring)."""
    _validate_eps(epsilon)
    p = (Delta_C + 1.0) / N
    out = {"p_conflict": p,
           "tau_max_conflict": 1.0 / (MANIA_CONFLICT_DIV * p),
           "tau_max_lecture": N / (LECTURE_DIV * Delta_C) if Delta_C > 0 else math.inf}
    if math.isnan(m) or m <= 0 or math.isnan(M):
        out.update(gamma=math.nan, tau_max_noise=math.nan, k_required=math.nan)
    else:
        out["gamma"] = epsilon * m / (2.0 * M**2)
        out["tau_max_noise"] = M**2 / (MANIA_NOISE_DIV * epsilon * m**2)
        r = MANIA_LOG_FACTOR * a0 / epsilon
        out["k_required"] = (2.0 * M**2 * (math.log(r) if r > 1.0 else 0.0) / (epsilon * m**2)
                             if a0 == a0 else math.nan)
    out["tau_max"] = min(out["tau_max_conflict"], out["tau_max_noise"]) if out["tau_max_noise"] == out[
        "tau_max_noise"] else math.nan
    return out


def mania_thm34(inputs, *, epsilon: float, history: pd.DataFrame | None = None,
                step: float | None = None) -> pd.DataFrame:
    """Mania et al. 2015, Theorem 3.4 with explicit constants, and the lecture's condition.

    Rows: ``tau_conflict`` (τ ≤ N/(16(Δ̄_C+1))), ``tau_noise`` (τ ≤ M²/(9εm²)),
    ``tau_lecture`` (τ ≤ N/(2Δ̄_C): the noise term γR1 stays below γ²M²), ``step`` (run γ ≤
    εm/(2M²)), ``accuracy`` (‖x_k − x⋆‖² ≤ ε at the first checkpoint with ≥ k samples).
    Columns: the inputs, ``epsilon``, ``gamma``, ``k_required``, ``p_conflict``,
    ``tau_max_conflict``, ``tau_max_noise``, ``tau_max_lecture``, and the check columns.
    """
    _validate_eps(epsilon)
    d = _inputs(inputs)
    pres = mania_prescription(N=d["N"], Delta_C=d["Delta_C"], M=d["M"], m=d["m"], epsilon=epsilon, a0=d["D0"])
    common = {"theorem": MANIA, **d, "epsilon": epsilon, **pres}
    not_sc = None if (d["m"] == d["m"] and d["m"] > 0) else "f is not strongly convex (m undefined)"
    tau = d["tau"]
    rows = [
        {"check": "tau_conflict", "quantity": "tau <= N / (16 (Delta_C + 1))",
         **check_row(tau, pres["tau_max_conflict"], "<=", note="keeps 2γR1 ≤ γ²M²/4")},
        {"check": "tau_noise", "quantity": "tau <= M^2 / (9 epsilon m^2)",
         **check_row(tau, pres["tau_max_noise"], "<=", not_applicable=not_sc, note="keeps 2γm R0 ≤ γ²M²/4")},
        {"theorem": LECTURE, "check": "tau_lecture", "quantity": "tau <= N / (2 Delta_C)",
         **check_row(tau, pres["tau_max_lecture"], "<=", note="keeps the noise term γR1 below γ²M²")},
    ]
    if step is None:
        rows.append({"check": "step", "quantity": "run step <= epsilon m / (2 M^2)",
                     **check_row(None, pres["gamma"], "<=", not_applicable="no run step given")})
    else:
        rows.append({"check": "step", "quantity": "run step <= epsilon m / (2 M^2)",
                     **check_row(float(step), pres["gamma"], "<=", not_applicable=not_sc)})
    dist, at, why = _at_iterations(history, pres["k_required"], "dist2_opt")
    why = not_sc or _step_reason(step, pres["gamma"]) or why
    if history is not None and step is None and why is None:
        why = "the run's step is not given, so the guarantee cannot be attributed to it"
    rows.append({"check": "accuracy", "quantity": "||x_k - x*||^2 <= epsilon at k >= k_required",
                 **check_row(dist, epsilon, "<=", not_applicable=why,
                             note=f"checkpoint at {at:.0f} samples" if at == at else ""),
                 "samples_at": at})
    return _frame(rows, common)


# --- measured noise terms ------------------------------------------------------------------

def noise_terms(noise: pd.DataFrame, inputs, *, samples: pd.DataFrame | None = None,
                step: float | None = None, lost_updates: int = 0) -> pd.DataFrame:
    """The measured perturbed-iterate noise terms against their bounds (module docstring).

    ``noise``: one row per sample with :data:`NOISE_COLUMNS` -- ``noise_sq`` = ‖x̂_k − x_k‖²,
    ``noise_inner`` = ⟨x̂_k − x_k, g_k⟩ -- or :func:`hwsim.checks.noise`'s table (``sample,
    dist2, inner`` with inner = ⟨x_k − x̂_k, g_k⟩, converted here) -- and optionally ``tau``
    (τ_k) and ``step`` (γ_k); else τ_k comes from ``samples`` (joined on ``sample``) and γ
    from ``step``. ``lost_updates``: the run's count; the per-sample bounds assume none.

    Rows: ``R0_worst`` (max_k ‖x̂_k − x_k‖² / (γτ_kM)² ≤ 1), ``R1_worst`` (max_k
    |⟨x̂_k − x_k, g_k⟩| / (γτ_kM²) ≤ 1), ``R0_mean`` (mean ≤ γ²M²(2τ + 4τ²p)), ``R1_mean``
    (mean ≤ 2γτM²p), ``R1_lecture`` (γ·mean⟨x̂_k − x_k, g_k⟩ ≤ γ²M²).
    """
    if "noise_sq" not in noise.columns and {"dist2", "inner"} <= set(noise.columns):
        # hwsim.checks.noise: dist2 = ‖x̂_k − x_k‖², inner = ⟨x_k − x̂_k, g_k⟩ (the other sign)
        noise = noise.assign(noise_sq=noise["dist2"], noise_inner=-noise["inner"])
    missing = [c for c in NOISE_COLUMNS if c not in noise.columns]
    if missing:
        raise ValueError(f"noise: missing columns {missing}; expected {list(NOISE_COLUMNS)} "
                         "(hwsim.checks' noise-term table), optionally 'tau' and 'step'")
    d = _inputs(inputs)
    df = noise.copy()
    if "tau" not in df.columns:
        if samples is None:
            raise ValueError("noise: no 'tau' column and no samples trace; pass samples= to join τ_k on 'sample'")
        from workload.trace import tau_overlap

        t = pd.DataFrame({"sample": samples["sample"].to_numpy(), "tau": tau_overlap(samples)})
        df = df.merge(t, on="sample", how="left")
    if "step" not in df.columns:
        if step is None:
            raise ValueError("noise: no 'step' column; pass step= (the run's γ)")
        df["step"] = float(step)
    g = df["step"].to_numpy(float)
    tk = df["tau"].to_numpy(float)
    M = d["M"]
    sq = df["noise_sq"].to_numpy(float)
    inner = df["noise_inner"].to_numpy(float)
    tau = float(np.max(tk)) if tk.size else math.nan
    gmax = float(np.max(g)) if g.size else math.nan
    p = (d["Delta_C"] + 1.0) / d["N"]
    lost_note = (f"{lost_updates} lost updates: x̂ − x is not a sum over overlapping samples, the bounds need "
                 "not hold"
                 if lost_updates else "")

    def worst(values, scale):
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(scale > 0, values / scale, np.where(values > 0, np.inf, 0.0))
        return float(np.max(r)) if r.size else math.nan

    common = {"theorem": NOISE, **d, "tau": tau, "step_max": gmax, "p_conflict": p, "samples_checked": len(df),
              "lost_updates": int(lost_updates)}
    rows = [
        {"check": "R0_worst", "quantity": "max_k ||xhat_k - x_k||^2 / (gamma_k tau_k M)^2 <= 1",
         **check_row(worst(sq, (g * tk * M) ** 2), 1.0, "<=", note=lost_note)},
        {"check": "R1_worst", "quantity": "max_k |<xhat_k - x_k, g_k>| / (gamma_k tau_k M^2) <= 1",
         **check_row(worst(np.abs(inner), g * tk * M**2), 1.0, "<=", note=lost_note)},
        {"check": "R0_mean", "quantity": "mean ||xhat_k - x_k||^2 <= gamma^2 M^2 (2 tau + 4 tau^2 p)",
         **check_row(float(np.mean(sq)) if sq.size else None, gmax**2 * M**2 * (2 * tau + 4 * tau**2 * p), "<=",
                     note="expected bound; assumes sampling with replacement")},
        {"check": "R1_mean", "quantity": "mean <xhat_k - x_k, g_k> <= 2 gamma tau M^2 p",
         **check_row(float(np.mean(inner)) if inner.size else None, 2 * gmax * tau * M**2 * p, "<=",
                     note="expected bound; assumes sampling with replacement")},
        {"theorem": LECTURE, "check": "R1_lecture", "quantity": "gamma * mean <xhat_k - x_k, g_k> <= gamma^2 M^2",
         **check_row(gmax * float(np.mean(inner)) if inner.size else None, gmax**2 * M**2, "<=")},
    ]
    return _frame(rows, common)


def check_all(inputs, *, epsilon: float, theta: float = 0.5, history: pd.DataFrame | None = None,
              step: float | None = None, noise: pd.DataFrame | None = None, samples: pd.DataFrame | None = None,
              lost_updates: int = 0) -> pd.DataFrame:
    """Every check above in one table (noise terms only when ``noise`` is given)."""
    parts = [niu_prop41(inputs, epsilon=epsilon, theta=theta, history=history, step=step),
             mania_thm34(inputs, epsilon=epsilon, history=history, step=step)]
    if noise is not None:
        parts.append(noise_terms(noise, inputs, samples=samples, step=step, lost_updates=lost_updates))
    return pd.concat(parts, ignore_index=True)


#: The target accuracy :func:`check_run` uses when none is given (f(x) − f⋆ for Niu et al.,
#: ‖x − x⋆‖² for Mania et al.); every row states the ε it used.
DEFAULT_EPSILON = 1e-2


def _tau_max(tau) -> float | None:
    if tau is None:
        return None
    if isinstance(tau, pd.DataFrame):
        if tau.empty:
            return None
        if "count" in tau.columns:
            tau = tau[tau["count"] > 0]
        return float(tau["tau"].max())
    if isinstance(tau, (int, float, np.integer, np.floating)):
        return float(tau)
    a = np.asarray(tau)
    return float(a.max()) if a.size else None


def _stats_from(sparsity) -> dict | None:
    """Ω, ρ, Δ, Δ̄_C from a workload.stats.SparsityStats, a mapping, or a table row
    (columns ``omega, rho, delta, conflict_degree`` or ``Omega, rho, Delta, Delta_C``)."""
    if sparsity is None:
        return None
    if isinstance(sparsity, pd.DataFrame):
        if sparsity.empty:
            return None
        sparsity = sparsity.iloc[0].to_dict()
    elif hasattr(sparsity, "_asdict"):
        sparsity = sparsity._asdict()
    get = lambda *names: next((sparsity[k] for k in names if k in sparsity), None)  # noqa: E731
    return {"Omega": get("Omega", "omega"), "rho": get("rho"), "Delta": get("Delta", "delta"),
            "Delta_C": get("Delta_C", "conflict_degree")}


def check_run(problem, spec, *, epsilon: float = DEFAULT_EPSILON, theta: float = 0.5, samples=None, history=None,
              sparsity=None, tau=None, noise=None, lost_updates: int = 0) -> pd.DataFrame:
    """Every check for one run of ``spec`` on ``problem``: builds the inputs
    (:func:`theory_inputs`) and calls :func:`check_all`.

    ``samples``: the run's trace (τ observed); ``tau``: instead, τ values or a τ histogram
    (``tau, count``) -- its maximum is the observed τ; ``sparsity``: precomputed statistics
    (a SparsityStats, a mapping or a one-row table; else computed); ``history``: the run's
    objective per epoch; ``noise``: hwsim.checks.noise's table. The run's step is the spec's
    when its schedule is constant (the theorems are for a constant step), else not given.
    """
    stats = _stats_from(sparsity)
    inputs = theory_inputs(problem, samples=samples, stats=stats, seed=spec.seed)
    if samples is None and tau is not None:
        t = _tau_max(tau)
        inputs["tau_observed"] = t if t is not None else math.nan
        inputs["tau"] = inputs["tau_observed"]
    step = float(spec.step) if spec.schedule == "constant" else None
    out = check_all(inputs, epsilon=epsilon, theta=theta, history=history, step=step, noise=noise, samples=samples,
                    lost_updates=lost_updates)
    if step is None:
        out["note"] = out["note"].where(out["check"] != "step",
                                        f"the run used the {spec.schedule!r} schedule; the theorems are for a "
                                        "constant step")
    return out


def summary(checks: pd.DataFrame) -> pd.DataFrame:
    """Counts of verdicts per theorem."""
    return (checks.groupby(["theorem", "verdict"]).size().unstack(fill_value=0)
            .reindex(columns=[HOLDS, VIOLATED, NOT_APPLICABLE], fill_value=0).reset_index())
