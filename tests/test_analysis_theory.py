"""Theory checks on cases whose answers are known by hand.

Each check is tested twice: on a case where the condition holds by construction and one
where it fails by construction, with the expected numbers derived in the docstrings.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from analysis import theory
from analysis.verdicts import HOLDS, NOT_APPLICABLE, VIOLATED, check_row


def _row(df, check):
    r = df[df["check"] == check]
    assert len(r) == 1, (check, df["check"].tolist())
    return r.iloc[0]


# --- verdict rows -------------------------------------------------------------------------

def test_check_row_margin_and_ratio():
    r = check_row(3.0, 2.0, "<=")
    assert r["verdict"] == VIOLATED and r["ratio"] == 1.5 and r["margin"] == -1.0
    r = check_row(1.0, 2.0, "<=")
    assert r["verdict"] == HOLDS and r["ratio"] == 0.5 and r["margin"] == 1.0
    r = check_row(5.0, 4.0, ">=")
    assert r["verdict"] == HOLDS and r["margin"] == 1.0
    r = check_row(math.inf, 10.0, "<=")  # an unbounded τ violates any finite bound
    assert r["verdict"] == VIOLATED and r["ratio"] == math.inf
    r = check_row(math.nan, 1.0)
    assert r["verdict"] == NOT_APPLICABLE
    with pytest.raises(ValueError, match="relation"):
        check_row(1.0, 1.0, "<")


# --- Niu et al. 2011 -----------------------------------------------------------------------

HAND = dict(Omega=4.0, rho=0.1, Delta=0.01, tau=2.0, L=2.0, M=3.0, c=1.0, epsilon=0.1, D0=5.0, theta=0.5)


def test_niu_prescription_by_hand():
    """γ = ϑεc / (2LM²Ω(1 + 6ρτ + 4τ²ΩΔ^½)) = 0.05 / (144 · (1 + 1.2 + 6.4)) = 0.05 / 1238.4;
    k = 2LM²Ω(1 + 6τρ + 6τ²ΩΔ^½) log(LD_0/ε) / (c²ϑε) = 144 · 11.8 · log(100) / 0.05."""
    gamma, k = theory.niu_prescription(**HAND)
    assert gamma == pytest.approx(0.05 / 1238.4, rel=1e-12)
    assert k == pytest.approx(144 * 11.8 * math.log(100.0) / 0.05, rel=1e-12)


def test_niu_prescription_serial_reduces_to_sgd():
    """τ = 0: the asynchrony factors vanish: γ = ϑεc/(2LM²Ω)."""
    gamma, k = theory.niu_prescription(**{**HAND, "tau": 0.0})
    assert gamma == pytest.approx(0.5 * 0.1 / (2 * 2 * 9 * 4))
    assert k == pytest.approx(2 * 2 * 9 * 4 * math.log(100.0) / 0.05)


def _inputs(**kw):
    base = dict(N=1000, n=100, Omega=4.0, rho=0.1, Delta=0.01, Delta_C=9.0, tau=2.0, tau_observed=2.0, L=2.0,
                M=3.0, m=1.0, D0=5.0, f_star=0.25)
    base.update(kw)
    return base


def _history(samples, objective, dist2=None):
    samples = np.asarray(samples)
    return pd.DataFrame({"epoch": np.arange(samples.size), "samples": samples, "objective": objective,
                         "dist2_opt": dist2 if dist2 is not None else np.nan, "time": 0.0})


def test_niu_accuracy_holds_and_fails_on_synthetic_histories():
    inp = _inputs()
    gamma, k = theory.niu_prescription(Omega=4.0, rho=0.1, Delta=0.01, tau=2.0, L=2.0, M=3.0, c=1.0, epsilon=0.1,
                                       D0=5.0)
    # reaches f* + ε/2 at the first checkpoint past k: holds with margin ε/2
    h = _history([0, k / 2, k + 1, 2 * k], [3.0, 1.0, 0.25 + 0.05, 0.25 + 0.01])
    df = theory.niu_prop41(inp, epsilon=0.1, history=h, step=gamma)
    acc = _row(df, "accuracy")
    assert acc["verdict"] == HOLDS and acc["margin"] == pytest.approx(0.05) and acc["samples_at"] == k + 1
    assert _row(df, "step")["verdict"] == HOLDS
    # still 2ε above f* at k: violated by a factor 2
    h = _history([0, k + 1], [3.0, 0.25 + 0.2])
    acc = _row(theory.niu_prop41(inp, epsilon=0.1, history=h, step=gamma), "accuracy")
    assert acc["verdict"] == VIOLATED and acc["ratio"] == pytest.approx(2.0)
    # too short a run: not applicable, and it says why
    h = _history([0, k / 2], [3.0, 0.26])
    acc = _row(theory.niu_prop41(inp, epsilon=0.1, history=h, step=gamma), "accuracy")
    assert acc["verdict"] == NOT_APPLICABLE and "before the required k" in acc["note"]
    # a run with another step: the guarantee does not apply to it
    h = _history([0, k + 1], [3.0, 0.26])
    df = theory.niu_prop41(inp, epsilon=0.1, history=h, step=10 * gamma)
    assert _row(df, "accuracy")["verdict"] == NOT_APPLICABLE
    assert _row(df, "step")["verdict"] == VIOLATED and _row(df, "step")["ratio"] == pytest.approx(10.0)


def test_niu_repeated_runs_are_averaged():
    gamma, k = theory.niu_prescription(Omega=4.0, rho=0.1, Delta=0.01, tau=2.0, L=2.0, M=3.0, c=1.0, epsilon=0.1,
                                       D0=5.0)
    h = pd.concat([_history([0, k], [3.0, 0.25 + 0.15]).assign(run=0),
                   _history([0, k], [3.0, 0.25 + 0.01]).assign(run=1)])
    acc = _row(theory.niu_prop41(_inputs(), epsilon=0.1, history=h, step=gamma), "accuracy")
    assert acc["observed"] == pytest.approx(0.08) and acc["verdict"] == HOLDS


def test_niu_sparsity_premise_dense_feature_fails():
    """a8a-like: one feature in every row (Δ = 1, ρ = 1), Ω = 14, τ = 1:
    6τρ + 6τ²ΩΔ^½ = 6 + 84 = 90, violating the premise (≤ 1) by a factor 90."""
    df = theory.niu_prop41(_inputs(Omega=14.0, rho=1.0, Delta=1.0, tau=1.0, tau_observed=1.0), epsilon=0.1)
    r = _row(df, "sparsity")
    assert r["verdict"] == VIOLATED and r["ratio"] == pytest.approx(90.0) and r["margin"] == pytest.approx(-89.0)


def test_niu_sparsity_premise_sparse_holds():
    """RCV1-like sparsity: Ω = 75, ρ = 0.01, Δ = 1e-6, τ = 1: 0.06 + 6·75·1e-3 = 0.51 ≤ 1."""
    r = _row(theory.niu_prop41(_inputs(Omega=75.0, rho=0.01, Delta=1e-6, tau=1.0), epsilon=0.1), "sparsity")
    assert r["verdict"] == HOLDS and r["observed"] == pytest.approx(0.51)


def test_niu_not_applicable_without_smoothness_or_strong_convexity():
    df = theory.niu_prop41(_inputs(L=None), epsilon=0.1, history=_history([0, 1e9], [1, 0.25]), step=1e-6)
    assert _row(df, "accuracy")["verdict"] == NOT_APPLICABLE
    assert "Lipschitz" in _row(df, "accuracy")["note"]
    assert math.isnan(df["gamma"].iloc[0])
    df = theory.niu_prop41(_inputs(m=None), epsilon=0.1)
    assert "strongly convex" in _row(df, "step")["note"] or _row(df, "step")["verdict"] == NOT_APPLICABLE


def test_niu_delay_assumption_time_slicing():
    """Observed overlap 5000 (a thread descheduled for a quantum) against an assumed τ = 4."""
    r = _row(theory.niu_prop41(_inputs(tau=4.0, tau_observed=5000.0), epsilon=0.1), "delay")
    assert r["verdict"] == VIOLATED and r["ratio"] == pytest.approx(1250.0)


def test_validation_messages():
    with pytest.raises(ValueError, match="epsilon"):
        theory.niu_prop41(_inputs(), epsilon=0.0)
    with pytest.raises(ValueError, match="theta"):
        theory.niu_prop41(_inputs(), epsilon=0.1, theta=1.0)


# --- Mania et al. 2015 ---------------------------------------------------------------------

def test_mania_prescription_by_hand():
    """N = 1000, Δ̄_C = 9: p = 10/1000, τ ≤ 1/(16p) = 6.25; M = 2, m = 0.5, ε = 0.1:
    τ ≤ M²/(9εm²) = 4/0.225; γ = εm/(2M²) = 0.00625; k = 2M² log(4a_0/ε)/(εm²) = 320 log(40 a_0);
    lecture τ ≤ N/(2Δ̄_C) = 1000/18."""
    p = theory.mania_prescription(N=1000, Delta_C=9.0, M=2.0, m=0.5, epsilon=0.1, a0=2.5)
    assert p["p_conflict"] == pytest.approx(0.01)
    assert p["tau_max_conflict"] == pytest.approx(6.25)
    assert p["tau_max_noise"] == pytest.approx(4 / 0.225)
    assert p["tau_max"] == pytest.approx(6.25)
    assert p["gamma"] == pytest.approx(0.00625)
    assert p["k_required"] == pytest.approx(320 * math.log(100.0))
    assert p["tau_max_lecture"] == pytest.approx(1000 / 18)


def test_mania_conditions_hold_and_fail():
    inp = dict(N=1000, Delta_C=9.0, M=2.0, m=0.5, D0=2.5)
    df = theory.mania_thm34({**inp, "tau": 3.0}, epsilon=0.1)
    for c in ("tau_conflict", "tau_noise", "tau_lecture"):
        assert _row(df, c)["verdict"] == HOLDS, c
    df = theory.mania_thm34({**inp, "tau": 100.0}, epsilon=0.1)
    assert _row(df, "tau_conflict")["ratio"] == pytest.approx(16.0)
    assert _row(df, "tau_noise")["ratio"] == pytest.approx(100 / (4 / 0.225))
    assert _row(df, "tau_lecture")["ratio"] == pytest.approx(1.8)
    assert (df.loc[df["check"].str.startswith("tau"), "verdict"] == VIOLATED).all()
    # unbounded τ (time slicing with no bound): violated, by an infinite factor
    df = theory.mania_thm34({**inp, "tau": math.inf}, epsilon=0.1)
    assert _row(df, "tau_conflict")["verdict"] == VIOLATED


def test_mania_dense_conflicts_fail():
    """a8a-like conflict graph: nearly every pair of rows conflicts, Δ̄_C ≈ N − 1, so
    τ ≤ N/(16 N) < 1: even τ = 1 (two threads) violates it, by a factor 16."""
    N = 22696
    df = theory.mania_thm34({"N": N, "Delta_C": N - 1.0, "M": 2.0, "m": 0.5, "D0": 1.0, "tau": 1.0}, epsilon=0.1)
    r = _row(df, "tau_conflict")
    assert r["verdict"] == VIOLATED and r["ratio"] == pytest.approx(16.0)


# --- noise terms ---------------------------------------------------------------------------

def test_noise_terms_by_hand():
    """Two overlapping samples from x_0 = 0 (τ = 1): sample 1 read before sample 0 wrote, so
    x̂_1 − x_1 = γ g_0, so ‖x̂_1 − x_1‖² = γ²‖g_0‖² ≤ γ²M² and ⟨x̂_1 − x_1, g_1⟩ = γ⟨g_0, g_1⟩.
    With g_0 = (1, 0), g_1 = (1, 1), γ = 0.1, M = 2: noise_sq = 0.01 (worst-case bound 0.04, ratio
    1/4), inner = 0.1 (bound γτM² = 0.4, ratio 1/4)."""
    gamma, M = 0.1, 2.0
    g0, g1 = np.array([1.0, 0.0]), np.array([1.0, 1.0])
    d = gamma * g0
    noise = pd.DataFrame({"sample": [0, 1], "noise_sq": [0.0, d @ d], "noise_inner": [0.0, d @ g1],
                          "tau": [1, 1], "step": gamma})
    inp = dict(N=2, Delta_C=1.0, M=M, m=1.0)
    df = theory.noise_terms(noise, inp)
    assert _row(df, "R0_worst")["observed"] == pytest.approx(0.25) and _row(df, "R0_worst")["verdict"] == HOLDS
    assert _row(df, "R1_worst")["observed"] == pytest.approx(0.25) and _row(df, "R1_worst")["verdict"] == HOLDS
    # a perturbation larger than τ_k updates could make (e.g. a lost update): violated
    bad = noise.assign(noise_sq=[0.0, 0.09])
    r = _row(theory.noise_terms(bad, inp), "R0_worst")
    assert r["verdict"] == VIOLATED and r["ratio"] == pytest.approx(0.09 / 0.04)


def test_noise_terms_zero_overlap_must_be_zero():
    """τ_k = 0 (no overlap): x̂_k = x_k exactly; any nonzero noise is a violation (infinite ratio)."""
    noise = pd.DataFrame({"sample": [0, 1], "noise_sq": [0.0, 1e-30], "noise_inner": [0.0, 0.0], "tau": [0, 0],
                          "step": 0.1})
    r = _row(theory.noise_terms(noise, dict(N=10, Delta_C=1.0, M=1.0)), "R0_worst")
    assert r["verdict"] == VIOLATED and r["ratio"] == math.inf


def test_noise_terms_lecture_condition():
    """γ·mean⟨x̂ − x, g⟩ ≤ γ²M²: with γ = 0.1, M = 1 the bound is 0.01; mean inner 0.05 gives 0.005."""
    noise = pd.DataFrame({"sample": [0, 1], "noise_sq": [0.0, 0.0], "noise_inner": [0.0, 0.1], "tau": [1, 1],
                          "step": 0.1})
    r = _row(theory.noise_terms(noise, dict(N=10, Delta_C=1.0, M=1.0)), "R1_lecture")
    assert r["verdict"] == HOLDS and r["observed"] == pytest.approx(0.005) and r["bound"] == pytest.approx(0.01)
    with pytest.raises(ValueError, match="noise_inner"):
        theory.noise_terms(noise.drop(columns="noise_inner"), dict(N=10, Delta_C=1.0, M=1.0))


# --- end to end on a problem where the theorems must hold -----------------------------------

def _diagonal_least_squares():
    """N = 400 terms over n = 4 coordinates, term e touches only coordinate e mod 4 (value 1).

    By hand: Ω = 1; every term meets the 100 terms on its coordinate, so ρ = Δ = 100/400 = 1/4
    and Δ̄_C = 99. With reg = "l2", λ = 0.5: AᵀA/N = I/4, so L = m = 1/4 + 1/2 = 3/4.
    """
    from workload.problems import Terms, make_problem

    N, n = 400, 4
    rng = np.random.default_rng(7)
    rows = np.arange(N)
    A = sp.csr_matrix((np.ones(N), (rows, rows % n)), shape=(N, n))
    y = 1.0 + 0.5 * rng.standard_normal(N)
    prob = make_problem("least-squares", Terms.from_csr(A, y), lam=0.5, reg="l2")
    stats = {"Omega": 1.0, "rho": 0.25, "Delta": 0.25, "Delta_C": 99.0}
    return prob, stats


def test_theorems_hold_on_serial_sgd_with_prescribed_steps():
    """Serial SGD (τ = 0) with the prescribed γ, run past the prescribed k: both accuracy
    claims hold (the propositions are theorems; τ = 0 is plain SGD)."""
    from workload.serial import serial_sgd
    from workload.spec import RunSpec

    prob, stats = _diagonal_least_squares()
    inp = theory.theory_inputs(prob, stats=stats, tau=0.0)
    assert inp["L"].iloc[0] == pytest.approx(0.75) and inp["m"].iloc[0] == pytest.approx(0.75)
    eps = 0.05
    niu = theory.niu_prop41(inp, epsilon=eps)
    gamma, k = niu["gamma"].iloc[0], niu["k_required"].iloc[0]
    spec = RunSpec(problem="least-squares", scheme="serial", step=float(gamma), epochs=int(math.ceil(k / prob.N)) + 1,
                   order="with-replacement", seed=3)
    res = serial_sgd(prob, spec, with_opt=True)
    niu = theory.niu_prop41(inp, epsilon=eps, history=res.history, step=float(gamma))
    assert _row(niu, "accuracy")["verdict"] == HOLDS
    assert _row(niu, "sparsity")["verdict"] == HOLDS  # τ = 0: no penalty

    man = theory.mania_thm34(inp, epsilon=eps)
    gamma, k = man["gamma"].iloc[0], man["k_required"].iloc[0]
    spec = spec.replace(step=float(gamma), epochs=int(math.ceil(k / prob.N)) + 1)
    res = serial_sgd(prob, spec, with_opt=True)
    man = theory.mania_thm34(inp, epsilon=eps, history=res.history, step=float(gamma))
    assert _row(man, "accuracy")["verdict"] == HOLDS
    assert (man.loc[man["check"].str.startswith("tau"), "verdict"] == HOLDS).all()
    table = theory.check_all(inp, epsilon=eps)
    assert set(table["theorem"]) >= {theory.NIU, theory.MANIA, theory.LECTURE}
    assert set(theory.summary(table).columns) >= {HOLDS, VIOLATED, NOT_APPLICABLE}


def test_theory_inputs_uses_workload_stats():
    """The diagonal problem's statistics computed by workload.stats match the hand values."""
    prob, stats = _diagonal_least_squares()
    inp = theory.theory_inputs(prob, tau=0.0)
    for k, v in stats.items():
        assert inp[k].iloc[0] == pytest.approx(v), k


def test_a8a_violates_the_sparsity_assumptions(shared_data):
    """a8a: a feature in 95.4% of the rows (Δ ≈ 1). With two threads (τ = 1) Niu et al.'s
    premise fails by a factor > 50 (6τρ + 6τ²ΩΔ^½ with Ω = 14, Δ^½ ≈ 0.98), and Mania et
    al.'s τ ≤ N/(16(Δ̄_C + 1)) < 1 fails."""
    import os

    from workload.data import load_svmlight

    terms = load_svmlight(os.path.join(shared_data, "a8a.gz"))
    st = theory.sparsity_stats(terms)
    assert st["Delta"] == pytest.approx(0.954, abs=1e-3)
    inp = {"N": terms.N, "n": terms.n, **st, "tau": 1.0, "M": 2.0, "m": 1e-3, "D0": 1.0}
    niu = theory.niu_prop41(inp, epsilon=0.01)
    r = _row(niu, "sparsity")
    assert r["verdict"] == VIOLATED and r["ratio"] > 50
    man = theory.mania_thm34(inp, epsilon=0.01)
    assert _row(man, "tau_conflict")["verdict"] == VIOLATED
    assert _row(man, "tau_lecture")["verdict"] == VIOLATED


def test_noise_terms_of_a_simulated_run_obey_the_worst_case_bounds():
    """hwsim, fixed point, atomic writes (no lost updates): every sample's perturbation is a
    sum over the samples overlapping it, so the per-sample worst-case bounds hold by
    construction (with M a valid gradient bound on the iterates: a small step keeps them in
    the ball of radius 2‖x⋆‖ + 1)."""
    hwsim = pytest.importorskip("hwsim")
    checks = pytest.importorskip("hwsim.checks")
    from workload.build import build_problem
    from workload.spec import DataSpec, RunSpec

    spec = RunSpec(problem="least-squares", problem_params={"lam": 0.5, "reg": "l2"}, scheme="hogwild",
                   write_mode="atomic", dtype="fixed", threads=3, epochs=1, step=0.01, seed=2,
                   data=DataSpec(source="synthetic-regression", params=dict(n_rows=150, n_features=40, nnz_mean=4,
                                                                               seed=1)))
    prob = build_problem(spec)
    m = hwsim.Machine(cores=3, read_cost=2, write_cost=2, delay=hwsim.Exponential(40.0), coherence_cost=5)
    res = hwsim.simulate(spec, m, problem=prob, engine="reference")
    assert res.lost_updates == 0
    noise = checks.noise(res, problem=prob)
    inp = theory.theory_inputs(prob, samples=res.samples)
    df = theory.noise_terms(noise, inp, samples=res.samples, step=spec.step, lost_updates=res.lost_updates)
    assert _row(df, "R0_worst")["verdict"] == HOLDS
    assert _row(df, "R1_worst")["verdict"] == HOLDS
    assert inp["tau_observed"].iloc[0] >= 1  # the threads did overlap


def test_check_run_from_a_spec_and_a_tau_histogram():
    """The study's entry: a problem, its spec, a τ histogram and precomputed statistics.
    τ = max of the histogram's support (3); the backoff schedule makes the step checks not
    applicable."""
    from workload.spec import RunSpec

    prob, stats = _diagonal_least_squares()
    spec = RunSpec(problem="least-squares", schedule="backoff", threads=2)
    hist = pd.DataFrame({"tau": [0, 1, 3, 7], "count": [5, 10, 1, 0]})
    sp_row = pd.DataFrame([{"omega": 1, "rho": 0.25, "delta": 0.25, "conflict_degree": 99.0}])
    df = theory.check_run(prob, spec, tau=hist, sparsity=sp_row)
    assert (df["tau_observed"] == 3.0).all() and (df["epsilon"] == theory.DEFAULT_EPSILON).all()
    assert (df.loc[df["check"] == "step", "verdict"] == NOT_APPLICABLE).all()
    assert "backoff" in df.loc[df["check"] == "step", "note"].iloc[0]
    r = df[(df["theorem"] == theory.MANIA) & (df["check"] == "tau_conflict")].iloc[0]
    assert r["bound"] == pytest.approx(400 / (16 * 100)) and r["verdict"] == VIOLATED


def test_time_slicing_makes_tau_exceed_the_bounds():
    """4 threads time-sliced on 2 cores (quantum 5,000 ticks ≫ a sample's ~100): a preempted
    sample stays in flight for a whole quantum while the running threads process dozens, so
    the observed τ is far above the p − 1 = 3 of pinned threads, and τ ≤ N/(16(Δ̄_C + 1))
    is violated -- by the factor the row reports."""
    hwsim = pytest.importorskip("hwsim")
    from workload.build import build_problem
    from workload.spec import DataSpec, RunSpec

    spec = RunSpec(problem="least-squares", problem_params={"lam": 0.5, "reg": "l2"}, scheme="hogwild",
                   write_mode="atomic", threads=4, epochs=1, step=0.01, seed=2,
                   data=DataSpec(source="synthetic-regression", params=dict(n_rows=600, n_features=2000, nnz_mean=3,
                                                                               seed=1)))
    prob = build_problem(spec)
    m = hwsim.Machine(cores=2, read_cost=5, write_cost=5, delay=hwsim.Constant(60), quantum=5_000, switch_cost=200)
    res = hwsim.simulate(spec, m, problem=prob, engine="reference", coord_trace=False)
    inp = theory.theory_inputs(prob, samples=res.samples)
    tau = inp["tau_observed"].iloc[0]
    assert tau >= 20
    r = _row(theory.mania_thm34(inp, epsilon=0.01), "tau_conflict")
    assert r["verdict"] == VIOLATED and r["ratio"] == pytest.approx(tau / r["bound"])
