"""Property tests for hwsim: the exact fixed-point identity, and fast ≡ reference.

Strategies are kept general (problems with empty rows, every delay model, per-core delay
tuples, coherence, time slicing, every supported scheme, every order and schedule); their
cost is set by the Hypothesis profile (tests/conftest.py).  Failures Hypothesis found are
pinned below as named regression tests.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import hwsim
from hwsim import checks
from hwsim.delays import Constant, Empirical, Exponential, LogNormal, ShiftedExponential, StragglerMixture
from hwsim.machine import Machine
from hwsim.model import SCHEMES
from workload.problems import Terms, make_problem
from workload.spec import RunSpec

# --- strategies -------------------------------------------------------------------------------

PROBLEMS = ("svm", "logistic", "least-squares")
#: the default (fast) runs draw from two kernels: each (kernel, dtype) pair costs one JIT
#: compilation of the fast engine; the slow thorough test adds logistic
DEFAULT_PROBLEMS = ("svm", "least-squares")


@st.composite
def problems(draw, names=PROBLEMS):
    name = draw(st.sampled_from(names))
    n_rows = draw(st.integers(1, 24))
    n_features = draw(st.integers(1, 10))
    density = draw(st.floats(0.05, 0.8))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    A = sp.random(n_rows, n_features, density=density, random_state=rng, format="csr")  # rows may be empty
    y = np.where(rng.random(n_rows) < 0.5, -1.0, 1.0) if name != "least-squares" else rng.standard_normal(n_rows)
    return make_problem(name, Terms.from_csr(A, y), lam=draw(st.sampled_from([0.0, 1e-2, 0.3])), reg="l2")


def base_delays():
    return st.one_of(
        st.integers(0, 40).map(Constant),
        st.floats(0.5, 40.0).map(Exponential),
        st.tuples(st.integers(0, 20), st.floats(0.02, 1.0)).map(lambda a: ShiftedExponential(*a)),
        st.tuples(st.floats(0.0, 3.0), st.floats(0.0, 1.2), st.integers(0, 5)).map(lambda a: LogNormal(*a)),
        st.lists(st.integers(0, 60), min_size=1, max_size=6).map(Empirical),
    )


@st.composite
def delays(draw, cores):
    def one():
        base = draw(base_delays())
        if draw(st.booleans()):
            return StragglerMixture(base, factor=draw(st.floats(1.0, 10.0)), p=draw(st.floats(0.0, 0.5)),
                                    slow_cores=tuple(draw(st.lists(st.integers(0, cores - 1), max_size=2))))
        return base

    if cores > 1 and draw(st.booleans()):
        return tuple(one() for _ in range(cores))
    return one()


@st.composite
def machines(draw, threads):
    cores = draw(st.integers(1, 5))
    sliced = threads > cores or draw(st.booleans())
    return Machine(cores=cores, read_cost=draw(st.integers(1, 4)), write_cost=draw(st.integers(1, 6)),
                   delay=draw(delays(cores)), coherence_cost=draw(st.sampled_from([0, 0, 1, 7, 30])),
                   atomic_coherence_cost=draw(st.sampled_from([None, None, 0, 3, 30])),
                   store_coherence_cost=draw(st.sampled_from([None, None, 0, 4, 30])),
                   atomic_write_cost=draw(st.sampled_from([None, None, 1, 5])),
                   lock_cost=draw(st.sampled_from([0, 0, 1, 6])),
                   miss_overlap=draw(st.sampled_from([0, 0, 0, 4, 12, 45])),
                   line_coords=draw(st.sampled_from([1, 2, 3, 8])),
                   quantum=draw(st.integers(1, 60)) if sliced else None,
                   switch_cost=draw(st.integers(0, 10)) if sliced else None)


@st.composite
def runs(draw, dtypes=("float64", "float32", "fixed"), schemes=tuple(SCHEMES), names=DEFAULT_PROBLEMS):
    problem = draw(problems(names))
    scheme = draw(st.sampled_from(schemes))
    threads = 1 if scheme == "serial" else draw(st.integers(1, 6))
    spec = RunSpec(problem=problem.name, scheme=scheme, threads=threads, epochs=draw(st.integers(1, 2)),
                   step=draw(st.sampled_from([0.01, 0.1, 0.5])),
                   schedule=draw(st.sampled_from(["constant", "backoff", "inv-k"])),
                   order=draw(st.sampled_from(["fixed-shuffle", "epoch-shuffle", "with-replacement"])),
                   dtype=draw(st.sampled_from(dtypes)), write_mode=draw(st.sampled_from(["atomic", "rmw"])),
                   fixed_point_bits=draw(st.sampled_from([16, 32])), seed=draw(st.integers(0, 2**20)))
    return spec, draw(machines(threads)), problem


# --- properties ---------------------------------------------------------------------------------

def assert_same(a, b):
    assert np.array_equal(a.x, b.x) and a.x.dtype == b.x.dtype
    pd.testing.assert_frame_equal(a.samples, b.samples)
    pd.testing.assert_frame_equal(a.coords, b.coords)
    pd.testing.assert_frame_equal(a.order, b.order)
    pd.testing.assert_frame_equal(a.history, b.history)
    assert (a.ticks, a.lost_updates) == (b.ticks, b.lost_updates)


@settings(deadline=None)
@given(runs(dtypes=("fixed",)))
def test_fixed_point_identity_holds_exactly(run):
    """x̂_k − x_k = Σ_{i≠k} S_i^k u_i with ``==`` (integers) under every labelling, on the
    reference engine; without lost updates every perturbing sample lies within τ."""
    spec, machine, problem = run
    r = hwsim.simulate(spec, machine, problem=problem, engine="reference")
    for lab in ("start", "after-read", "after-write"):
        idn = checks.identity(r, lab)
        assert (idn["residual"] == 0).all() and idn["holds"].all()
        if r.lost_updates == 0:
            assert checks.perturbations(r, lab)["within_tau"].all()


@settings(deadline=None)
@given(runs())
def test_fast_engine_equals_reference(run):
    """Identical sample and coordinate traces, memory order, history and final model."""
    spec, machine, problem = run
    a = hwsim.simulate(spec, machine, problem=problem, engine="reference")
    b = hwsim.simulate(spec, machine, problem=problem, engine="fast")
    assert_same(a, b)


@settings(deadline=None)
@given(runs(schemes=("lock-global", "round-robin", "lock-coord"), dtypes=("float64",)))
def test_lock_schemes_overlap_only_on_disjoint_supports(run):
    """A sample STARTs when it holds its lock or turn (hwsim.model, step 1), so waiting is
    outside its interval: under lock-global and round-robin no two samples overlap (τ_k = 0,
    what realrun measures), under lock-coord overlapping samples have disjoint supports --
    pinned or time-sliced, any delays and costs."""
    spec, machine, problem = run
    r = hwsim.simulate(spec, machine, problem=problem, coord_trace=False)
    s = r.samples.sort_values("sample").reset_index(drop=True)
    overlap = checks.tau(s)["overlap"].to_numpy()
    if spec.scheme != "lock-coord":
        assert (overlap == 0).all()
        return
    t = problem.terms
    support = [set(t.indices[t.indptr[e]:t.indptr[e + 1]].tolist()) for e in s["term"]]
    sae = s["started_at_end"].to_numpy()
    for k in range(len(s)):
        for i in range(k + 1, sae[k]):  # started while k was in flight: i and k overlap
            assert not support[i] & support[k], (k, i)


@pytest.mark.slow
@settings(deadline=None, max_examples=300)
@given(runs(names=PROBLEMS))
def test_fast_engine_equals_reference_thorough(run):
    spec, machine, problem = run
    assert_same(hwsim.simulate(spec, machine, problem=problem, engine="reference"),
                hwsim.simulate(spec, machine, problem=problem, engine="fast"))
