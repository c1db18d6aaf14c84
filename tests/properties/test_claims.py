"""The project's own property suite, written with the public API (analysis.testing,
analysis.strategies) exactly as a user would write theirs.

Reference ≡ fast engine and the exact identity over all schemes are also property-tested
in test_hwsim_properties.py; the stateful memory model test is test_simulator_stateful.py.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

import hwsim
from analysis.strategies import machines, problems, run_specs, sparse_terms
from analysis.testing import (ClaimFailed, assert_mean_at_most, assert_perturbation_identity,
                              assert_serially_equivalent, assert_tau_bounded, derived_tau_bound, measured_tau)
from analysis.theory import mania_prescription
from workload.problems import Terms, make_problem
from workload.serial import serial_oracle
from workload.spec import RunSpec


@given(problem=problems(), spec=run_specs(schemes=("hogwild", "hogwild-atomic", "serial"), threads=(1, 1)),
       machine=machines(cores=(1, 1)))
def test_one_core_is_the_serial_oracle(problem, spec, machine):
    assert_serially_equivalent(spec.replace(problem=problem.name), machine, problem=problem)


@given(problem=problems(), spec=run_specs(schemes=("round-robin",), threads=(2, 4)), data=st.data())
def test_round_robin_is_serially_equivalent_on_any_machine(problem, spec, data):
    machine = data.draw(machines(cores=(spec.threads, spec.threads)))
    assert_serially_equivalent(spec.replace(problem=problem.name), machine, problem=problem)


@given(problem=problems(), spec=run_specs(schemes=("hogwild",), threads=(1, 1), dtypes=("float64", "float32",
                                                                                          "fixed")))
def test_one_thread_realrun_is_the_serial_oracle(problem, spec):
    import realrun

    spec = spec.replace(problem=problem.name)
    got = realrun.run(spec, problem=problem)
    assert np.array_equal(got.x, serial_oracle(problem, spec).x)


@given(problem=problems(), spec=run_specs(threads=(2, 4), dtypes=("fixed",)), data=st.data())
def test_perturbation_identity_is_exact_in_fixed_point(problem, spec, data):
    machine = data.draw(machines(cores=(spec.threads, spec.threads)))
    assert_perturbation_identity(spec.replace(problem=problem.name), machine, problem=problem)


@given(problem=problems(), spec=run_specs(threads=(2, 4)), data=st.data())
def test_tau_never_exceeds_the_bound_derived_from_bounded_delays(problem, spec, data):
    machine = data.draw(machines(cores=(spec.threads, spec.threads), bounded=True))
    bound = derived_tau_bound(machine, problem, spec.threads)
    if math.isfinite(bound):
        assert_tau_bounded(spec.replace(problem=problem.name), machine, problem=problem, bound=int(bound))


# --- convergence as Mania et al. (2015), Theorem 3.4 claims it ------------------------------

N_COORDS = 48  # n/16 = 3 ≥ τ = 2: the conflict condition holds by construction
TERMS_PER_COORD = 100
EPSILON = 0.05
SEEDS = range(20)
ALPHA = 0.01  # false-alarm rate of the Monte-Carlo claim


def _separable_least_squares():
    """f(x) = (1/N) Σ_e ½(x_{j(e)} − c_{j(e)})²: every coordinate in exactly N/n terms with
    support 1 and value 1, targets c_j = ±0.1 (so x* = c exactly and m = 1/n exactly).

    Conflicts: terms meet only on their coordinate, so Δ̄_C = N/n − 1 and Mania et al.'s
    condition τ ≤ N/(16(Δ̄_C + 1)) = n/16 = 3.  Gradient bound: each coordinate starts at 0
    and every update moves it towards c_j by a fraction γ(τ + 1) < 1 of the distance, so the
    iterates stay in the box between 0 and c, inside the ball ‖x‖ ≤ ‖c‖ = ‖x*‖ where the
    problem's own M (``constants(radius=‖x*‖)``) holds.
    """
    n, per = N_COORDS, TERMS_PER_COORD
    coord = np.repeat(np.arange(n), per)
    c = np.where(np.arange(n) % 2 == 0, 0.1, -0.1)
    terms = Terms(np.arange(n * per + 1), coord, np.ones(n * per), c[coord], n)
    return make_problem("least-squares", terms, lam=0.0, reg="l2"), c


def test_hogwild_meets_theorem_3_4_accuracy_at_the_prescribed_iteration_count():
    problem, c = _separable_least_squares()
    N = problem.N
    radius = float(np.linalg.norm(c))
    k = problem.constants(radius=radius)
    pres = mania_prescription(N=N, Delta_C=N / N_COORDS - 1, M=k.M, m=k.m, epsilon=EPSILON, a0=float(c @ c))
    machine = hwsim.Machine(cores=2, read_cost=2, write_cost=2, delay=hwsim.Constant(20))
    epochs = math.ceil(pres["k_required"] / N)
    spec = RunSpec(problem="least-squares", scheme="hogwild", write_mode="atomic", threads=2, epochs=epochs,
                   step=pres["gamma"], order="with-replacement")
    # τ inside the theorem's condition on every run (checked, not assumed)
    assert_tau_bounded(spec, machine, problem=problem, bound=int(pres["tau_max"]))

    def dist2_at_T(seed):
        r = hwsim.simulate(spec.replace(seed=seed), machine, problem=problem, coord_trace=False)
        x = r.x.astype(np.float64)
        return float(np.sum((x - c) ** 2))

    claim = assert_mean_at_most(dist2_at_T, SEEDS, eps=EPSILON, alpha=ALPHA, what="E‖x_T − x*‖²")
    assert claim.n == len(SEEDS)


def test_search_finds_a_time_sliced_machine_that_breaks_the_condition():
    """The negative: Hypothesis searches machines with more threads than cores; the smallest
    one whose τ exceeds Mania et al.'s condition is reported as *violated*."""
    from analysis.theory import mania_thm34

    problem, c = _separable_least_squares()
    N = problem.N
    k = problem.constants(radius=float(np.linalg.norm(c)))
    pres = mania_prescription(N=N, Delta_C=N / N_COORDS - 1, M=k.M, m=k.m, epsilon=EPSILON, a0=float(c @ c))

    def tau_of(case):
        threads, quantum = case
        machine = hwsim.Machine(cores=2, read_cost=2, write_cost=2, delay=hwsim.Constant(20), quantum=quantum,
                                switch_cost=5)
        spec = RunSpec(problem="least-squares", scheme="hogwild", threads=threads, epochs=1, step=pres["gamma"])
        return measured_tau(hwsim.simulate(spec, machine, problem=problem, coord_trace=False).samples)

    case = find(st.tuples(st.integers(3, 16), st.integers(50, 5000)), lambda cs: tau_of(cs) > pres["tau_max"],
                settings=settings(max_examples=200, database=None))
    tau = tau_of(case)
    check = mania_thm34({"N": N, "n": N_COORDS, "Delta_C": N / N_COORDS - 1, "M": k.M, "m": k.m,
                         "D0": float(c @ c), "tau": tau}, epsilon=EPSILON).set_index("check")
    assert check.loc["tau_conflict", "verdict"] == "violated"
    assert check.loc["tau_conflict", "ratio"] > 1


def test_a_simulator_that_drops_a_write_is_caught_with_a_small_counterexample(monkeypatch):
    """The suite can fail: patch the reference engine to drop every store to coordinate 0
    and the serial-equivalence property fails, shrunk to the fewest terms the strategy allows."""
    import hwsim.reference as ref

    real = ref.add_value

    def dropping(x, j, d):
        if j != 0:
            real(x, j, d)

    monkeypatch.setattr(ref, "add_value", dropping)
    seen = []

    @settings(max_examples=100, database=None)
    @given(problem=problems(kinds=("least-squares",), terms=sparse_terms(labels="real")),
           spec=run_specs(schemes=("serial",), dtypes=("fixed",), epochs=(1, 1)))
    def prop(problem, spec):
        seen.append(problem.terms)
        assert_serially_equivalent(spec, hwsim.Machine(cores=1, read_cost=1, write_cost=1, delay=hwsim.Constant(1)),
                                   problem=problem, engine="reference")

    with pytest.raises(ClaimFailed, match="not serially equivalent") as exc:
        prop()
    assert "coordinates differ from the serial oracle, first [0]" in str(exc.value)
    shrunk = seen[-1]
    assert shrunk.N == 2 and shrunk.nnz == 2  # the strategy's minimum: 2 terms, one coordinate each
