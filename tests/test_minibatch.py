"""minibatch-sync: the serial minibatch oracle, hwsim and realrun against it bit for bit, the
timing rules by hand, and the straggler study against the order-statistics closed form.

No wall-clock assertions: the machine is shared.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import hwsim
from analysis.strategies import sparse_terms
from analysis.stragglers import (ROUNDING_TICKS, closed_form, fig_iteration_time, fig_time_to_accuracy,
                                 iteration_durations, iteration_time_table, ks_distance, mean_ci, speedup_table,
                                 time_to_accuracy)
from conftest import small_terms
from hwsim import Constant, Exponential, Machine, ShiftedExponential, StragglerMixture
from hwsim.sync import harmonic, straggler_study, worker_of_position
from workload.minibatch import (ITERATION_SCHEMA, minibatch_oracle, minibatch_sgd, share_bounds, step_bounds)
from workload.problems import Terms, make_problem
from workload.serial import serial_oracle
from workload.spec import RunSpec, SpecError
from workload.trace import SAMPLE_SCHEMA, tau_overlap

DTYPES = ("float64", "float32", "fixed")


@pytest.fixture(scope="module")
def svm():
    return make_problem("svm", small_terms(n_rows=60, n_features=20), lam=0.1, reg="l2")


def mb(threads=1, batch_size=7, **kw):
    options = {"batch_size": batch_size}
    if "combine" in kw:
        options["combine"] = kw.pop("combine")
    base = dict(problem="svm", scheme="minibatch-sync", threads=threads, epochs=2, step=0.1, seed=5)
    base.update(kw)
    return RunSpec(options=options, **base)


def same_bits(a, b):
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


# --- options ------------------------------------------------------------------------------
@pytest.mark.parametrize("options,field", [({}, "options.batch_size"), ({"batch_size": 0}, "options.batch_size"),
                                           ({"batch_size": 61}, "options.batch_size"),
                                           ({"batch_size": 2.0}, "options.batch_size"),
                                           ({"batch_size": True}, "options.batch_size"),
                                           ({"batch_size": 4, "combine": "avg"}, "options.combine")])
def test_bad_options_are_rejected_by_name_in_every_engine(svm, options, field):
    spec = RunSpec(problem="svm", scheme="minibatch-sync", threads=2, options=options)
    for call in (lambda: minibatch_oracle(svm, spec), lambda: hwsim.simulate(spec, Machine(cores=2), problem=svm),
                 lambda: __import__("realrun").run(spec, problem=svm)):
        with pytest.raises(SpecError, match=field):
            call()


def test_step_and_share_bounds():
    assert step_bounds(10, 4).tolist() == [0, 4, 8, 10]
    assert step_bounds(8, 8).tolist() == [0, 8]
    assert share_bounds(8, 13, 3).tolist() == [8, 10, 12, 13]
    assert share_bounds(0, 2, 4).tolist() == [0, 1, 2, 2, 2]  # more workers than terms: empty shares
    w = worker_of_position(10, 4, 3)
    for s0, s1 in zip(step_bounds(10, 4)[:-1], step_bounds(10, 4)[1:]):
        sb = share_bounds(s0, s1, 3)
        for k in range(3):
            assert (w[sb[k]:sb[k + 1]] == k).all()


# --- the oracle ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ["epoch-shuffle", "with-replacement"])
def test_batch_of_one_is_serial_sgd_bit_for_bit(svm, dtype, order):
    """B = 1, mean: each step is one serial step, same γ (t = the term's position)."""
    spec = mb(batch_size=1, dtype=dtype, order=order, schedule="inv-k", epochs=3)
    want = serial_oracle(svm, spec.replace(scheme="serial", threads=1))
    assert same_bits(minibatch_oracle(svm, spec).x, want.x)
    assert same_bits(minibatch_sgd(svm, spec).x, want.x)


def test_full_batch_is_a_gradient_descent_step():
    """B = N, mean: one step x1 = x0 − γ ∇f(x0) (up to float64 rounding of the sums)."""
    problem = make_problem("least-squares", small_terms(n_rows=40, n_features=12, labels="real", seed=3), lam=0.1,
                           reg="l2")
    spec = RunSpec(problem="least-squares", scheme="minibatch-sync", epochs=1, step=0.3,
                   options={"batch_size": problem.N})
    x0 = problem.initial_point(spec.seed)
    x1 = minibatch_oracle(problem, spec).x
    np.testing.assert_allclose(x1, x0 - 0.3 * problem.full_gradient(x0), rtol=1e-12, atol=1e-15)
    s = minibatch_oracle(problem, spec.replace(options={"batch_size": problem.N, "combine": "sum"})).x
    np.testing.assert_allclose(s, x0 - 0.3 * problem.N * problem.full_gradient(x0), rtol=1e-12, atol=1e-14)


@given(terms=sparse_terms(n_terms=(1, 30), n_coords=(1, 12), support_size=(0, 4)),
       batch=st.integers(1, 30), dtype=st.sampled_from(DTYPES), combine=st.sampled_from(["mean", "sum"]),
       order=st.sampled_from(["fixed-shuffle", "epoch-shuffle", "with-replacement"]),
       schedule=st.sampled_from(["constant", "backoff", "inv-k"]), seed=st.integers(0, 2**16))
def test_jitted_pass_equals_oracle(terms, batch, dtype, combine, order, schedule, seed):
    problem = make_problem("svm", terms, lam=0.05, reg="l2")
    spec = RunSpec(problem="svm", scheme="minibatch-sync", epochs=2, step=0.2, dtype=dtype, order=order,
                   schedule=schedule, beta=0.7, seed=seed,
                   options={"batch_size": min(batch, problem.N), "combine": combine})
    a, b = minibatch_oracle(problem, spec), minibatch_sgd(problem, spec)
    assert same_bits(a.x, b.x)
    assert np.array_equal(a.history["objective"], b.history["objective"])


# --- hwsim ----------------------------------------------------------------------------------
MACHINES = {
    "plain": Machine(cores=4, read_cost=1, write_cost=1, delay=Constant(5)),
    "straggly": Machine(cores=4, read_cost=2, write_cost=3, coherence_cost=9, line_coords=4,
                        delay=StragglerMixture(ShiftedExponential(10, 0.1), factor=8.0, p=0.1, slow_cores=(2,))),
}


@pytest.mark.parametrize("threads", [1, 2, 4])
@pytest.mark.parametrize("dtype", ["float64", "fixed"])
@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_hwsim_equals_oracle_and_fast_equals_reference(svm, threads, dtype, machine):
    spec = mb(threads=threads, batch_size=7, dtype=dtype, schedule="inv-k")
    m = MACHINES[machine]
    want = minibatch_oracle(svm, spec)
    fast = hwsim.simulate(spec, m, problem=svm)
    ref = hwsim.simulate(spec, m, problem=svm, engine="reference")
    assert same_bits(fast.x, want.x) and same_bits(ref.x, want.x)
    assert hwsim.trace_hash(fast) == hwsim.trace_hash(ref)
    assert fast.iterations.equals(ref.iterations)
    assert np.array_equal(fast.history["objective"], want.history["objective"])


@given(terms=sparse_terms(n_terms=(1, 20), n_coords=(1, 10), support_size=(0, 3)), threads=st.integers(1, 5),
       batch=st.integers(1, 20), dtype=st.sampled_from(DTYPES), combine=st.sampled_from(["mean", "sum"]),
       coherence=st.sampled_from([0, 7]), line=st.sampled_from([1, 2, 8]), seed=st.integers(0, 2**16),
       delay=st.sampled_from([Constant(0), Constant(4), Exponential(6.0), ShiftedExponential(3, 0.2)]))
def test_hwsim_property(terms, threads, batch, dtype, combine, coherence, line, seed, delay):
    """Any thread count: hwsim ≡ oracle bit for bit; fast ≡ reference (trace, ticks, iterations)."""
    problem = make_problem("svm", terms, lam=0.05, reg="l2")
    spec = RunSpec(problem="svm", scheme="minibatch-sync", threads=threads, epochs=2, step=0.2, dtype=dtype,
                   seed=seed, options={"batch_size": min(batch, problem.N), "combine": combine})
    m = Machine(cores=5, read_cost=1, write_cost=2, coherence_cost=coherence, line_coords=line, delay=delay)
    fast = hwsim.simulate(spec, m, problem=problem)
    ref = hwsim.simulate(spec, m, problem=problem, engine="reference")
    assert same_bits(fast.x, minibatch_oracle(problem, spec).x)
    assert hwsim.trace_hash(fast) == hwsim.trace_hash(ref)
    assert fast.iterations.equals(ref.iterations)
    it = fast.iterations
    assert (it["t_begin"] <= it["t_first_arrival"]).all() and (it["t_first_arrival"] <= it["t_last_arrival"]).all()
    assert (it["t_last_arrival"] <= it["t_end"]).all()
    assert (it["t_end"].to_numpy()[:-1] == it["t_begin"].to_numpy()[1:]).all()


def test_hwsim_refuses_more_threads_than_cores(svm):
    from hwsim import MachineError

    with pytest.raises(MachineError, match="time slicing"):
        hwsim.simulate(mb(threads=3), Machine(cores=2), problem=svm)
    with pytest.raises(NotImplementedError, match="time slicing is not modelled"):
        hwsim.simulate(mb(threads=3), Machine(cores=2, quantum=1000, switch_cost=10), problem=svm)


def _one_coord_problem(n_terms):
    terms = Terms(np.arange(n_terms + 1), np.zeros(n_terms, dtype=np.int32), np.ones(n_terms), np.ones(n_terms), 1)
    return make_problem("least-squares", terms, lam=0.0, reg="l2")


@pytest.mark.parametrize("engine", hwsim.ENGINES)
def test_timing_rules_by_hand(engine):
    """Four terms on coordinate 0, two threads, B = 2: R = 1, W = 2, H = 5, d = 10.

    Step 0: both read (hit: every core starts with every line), 1 + 10 + 2 = 13; a tie, so
    core 1 (the last in (tick, core) order) combines: 2 buffer reads + 1 miss on the shared
    buffer line = 7 → 20, store coordinate 0 (core 1 read it: hit) → 22.  Step 1: core 0
    misses (core 1 stored), 22 + 6 + 10 + 2 = 40; core 1 hits, 22 + 13 = 35; core 0
    combines: 2 + 5 → 47, store (core 0 touched the line after core 1's store: hit) → 49.
    """
    problem = _one_coord_problem(4)
    spec = RunSpec(problem="least-squares", scheme="minibatch-sync", threads=2, epochs=1, step=0.1,
                   options={"batch_size": 2})
    m = Machine(cores=2, read_cost=1, write_cost=2, coherence_cost=5, line_coords=8, delay=Constant(10))
    r = hwsim.simulate(spec, m, problem=problem, engine=engine)
    it = r.iterations
    assert it["t_begin"].tolist() == [0, 22]
    assert it["t_first_arrival"].tolist() == [13, 35]
    assert it["t_last_arrival"].tolist() == [13, 40]
    assert it["combiner"].tolist() == [1, 0]
    assert it["t_end"].tolist() == [22, 49]
    assert r.ticks == 49 and r.history["time"].iloc[-1] == pytest.approx(49e-9)
    s = r.samples
    assert s["t_read_done"].tolist() == [1, 1, 28, 23]  # rows in start order: (0,w0) (0,w1) (22,w0) (22,w1)
    assert s["worker"].tolist() == [0, 1, 0, 1]
    assert r.coords["write_tick"].tolist() == [22, 22, 49, 49]


def test_sample_trace_counters(svm):
    spec = mb(threads=3, batch_size=9, epochs=2)
    m = Machine(cores=3, read_cost=1, write_cost=1, delay=Exponential(20.0))
    s = hwsim.simulate(spec, m, problem=svm).samples
    assert list(s.columns) == list(SAMPLE_SCHEMA)
    assert (s["sample"] == np.arange(len(s))).all() and (s["start_seq"] == s["sample"]).all()
    assert sorted(s["end_seq"]) == list(range(len(s))) and sorted(s["read_seq"]) == list(range(len(s)))
    # start order is (t_start, core) order
    key = s["t_start"].to_numpy() * 8 + s["worker"].to_numpy()
    assert (np.diff(key) >= 0).all()
    tau = tau_overlap(s)
    assert tau.max() <= 9 - 1  # the barrier: only samples of the same step (batch 9) overlap
    # the step column: one γ per step; each worker's positions count its samples in the epoch
    for (e, w), g in s.groupby(["epoch", "worker"]):
        assert sorted(g["position"]) == list(range(len(g)))


def test_straggler_study_draws_what_simulate_draws():
    """B = p, one term per worker per step, support 3: each step's compute phase is
    3·(R + W) + max_w d_w, with d_w core w's next draw -- straggler_study's iteration."""
    p, n_terms, R, W = 4, 48, 2, 3
    terms = Terms(np.arange(0, 3 * n_terms + 1, 3), np.tile(np.arange(3, dtype=np.int32), n_terms),
                  np.ones(3 * n_terms), np.ones(n_terms), 3)
    problem = make_problem("least-squares", terms, lam=0.0, reg="l2")
    delay = StragglerMixture(ShiftedExponential(50, 0.05), factor=4.0, p=0.2)
    spec = RunSpec(problem="least-squares", scheme="minibatch-sync", threads=p, epochs=2, seed=11,
                   options={"batch_size": p})
    it = hwsim.simulate(spec, Machine(cores=p, read_cost=R, write_cost=W, delay=delay), problem=problem,
                        coord_trace=False).iterations
    study = straggler_study(delay, p, len(it), 11, fixed_ticks=3 * (R + W))
    assert np.array_equal((it["t_last_arrival"] - it["t_begin"]).to_numpy(), study.ticks)
    assert np.array_equal(it["combiner"].to_numpy(), study.straggler)


def test_straggler_study_chunks_and_ties():
    """Chunking changes nothing, and ties go to the highest worker (the last in core order)."""
    d = Exponential(30.0)
    a = straggler_study(d, 37, 50, 3, chunk=5)
    b = straggler_study(d, 37, 50, 3)
    assert np.array_equal(a.ticks, b.ticks) and np.array_equal(a.straggler, b.straggler)
    c = straggler_study(Constant(7), 6, 4, 0, samples_per_step=3, fixed_ticks=2, combine_ticks=1)
    assert c.ticks.tolist() == [24] * 4 and c.straggler.tolist() == [5] * 4
    with pytest.raises(ValueError, match="n_workers"):
        straggler_study(d, 0, 10, 0)
    with pytest.raises(TypeError, match="delay"):
        straggler_study(30.0, 2, 10, 0)


# --- the claim ----------------------------------------------------------------------
#: Units: 1 unit = 1000 ticks, so X = 1 + Exp(λ = 0.5) units is shift 1000 ticks, mean 2000.
UNIT = 1000
LEVEL = 0.999  # two-sided normal CI of the mean (z = 3.29)
ITERATIONS = 2000  # independent iterations per n: the CI half-width is ~1% of the mean at n = 10,000
KS_ALPHA = 0.001  # Kolmogorov–Smirnov level for the distribution of the maximum


def test_mean_iteration_time_matches_order_statistics():
    """E[max of n (1 + Exp(0.5))] = 1 + 2·H_n units, for n = 10 ... 10,000 simulated workers.

    CI: mean ± z·s/√K, K = 2000 independent iterations, level 99.9%; the closed form must
    lie inside it, widened by ROUNDING_TICKS (delays are rounded to whole ticks).  The test
    has power: replacing H_n by ln n (dropping Euler's γ ≈ 0.577, 1154 ticks) falls outside
    every interval.  The whole distribution too: KS distance below the α = 0.001 critical
    value √(−ln(α/2)/2)/√K.
    """
    delay = ShiftedExponential(shift=1 * UNIT, rate=0.5 / UNIT)
    table = iteration_time_table(delay, (10, 100, 1000, 10_000), ITERATIONS, seed=2024, level=LEVEL)
    ks_crit = math.sqrt(-math.log(KS_ALPHA / 2) / 2) / math.sqrt(ITERATIONS)
    for row in table.itertuples():
        want = UNIT * (1 + 2 * harmonic(row.n))
        assert row.predicted == pytest.approx(want, rel=1e-12)
        assert row.ci_lo - ROUNDING_TICKS <= want <= row.ci_hi + ROUNDING_TICKS, row
        assert row.agrees
        wrong = UNIT * (1 + 2 * math.log(row.n))
        assert not (row.ci_lo <= wrong <= row.ci_hi)
        assert row.ks_D < ks_crit, row
        assert row.slowdown > 1  # waiting for the slowest costs more than a worker's mean step


def test_mean_ci_and_closed_forms():
    v = np.array([1.0, 2.0, 3.0, 4.0])
    m, lo, hi = mean_ci(v, 0.95)
    assert m == 2.5 and hi - m == pytest.approx(1.959964 * np.std(v, ddof=1) / 2, rel=1e-6)
    assert closed_form(Exponential(10.0), 3) == pytest.approx(10 * (1 + 1 / 2 + 1 / 3))
    assert closed_form(Constant(7), 100, fixed_ticks=2, combine_ticks=1) == 10
    assert math.isnan(closed_form(StragglerMixture(Constant(5), 2.0, p=0.5), 4))
    assert harmonic(1) == 1.0 and harmonic(4) == pytest.approx(25 / 12)
    # an exact sample of the maximum's quantiles has a tiny KS distance
    d = ShiftedExponential(100, 0.01)
    q = (np.arange(1000) + 0.5) / 1000
    t = 100 - np.log1p(-q ** (1 / 50)) / 0.01 - 0.5
    assert ks_distance(t, d, 50) < 2e-3


# --- analysis -------------------------------------------------------------------------------
def test_time_to_accuracy_reads_the_first_checkpoint_under_target():
    import pandas as pd

    h = pd.DataFrame({"scheme": ["a"] * 4 + ["b"] * 4, "cores": [2] * 8, "epoch": [0, 1, 2, 3] * 2,
                      "samples": [0, 10, 20, 30] * 2, "objective": [1.0, 0.5, 0.2, 0.1, 1.0, 0.9, 0.8, 0.7],
                      "time": [0.0, 1.0, 2.0, 3.0, 0.0, 0.5, 1.0, 1.5]})
    t = time_to_accuracy(h, f_ref=0.0, epsilon=0.25)
    a, b = t[t.scheme == "a"].iloc[0], t[t.scheme == "b"].iloc[0]
    assert a.time == 2.0 and a.epochs == 2 and a.samples == 20 and a.reached
    assert math.isnan(b.time) and not b.reached
    with pytest.raises(ValueError, match="epsilon"):
        time_to_accuracy(h, f_ref=0.0, epsilon=1.5)


def test_sync_vs_async_and_figures(svm):
    from analysis.stragglers import sync_vs_async

    spec = RunSpec(problem="svm", epochs=4, step=0.2, schedule="backoff", beta=0.8, seed=1)
    m = Machine(cores=4, read_cost=1, write_cost=1, delay=ShiftedExponential(100, 0.01))
    h = sync_vs_async(spec, m, [1, 4], problem=svm, engine="reference")
    assert set(h["scheme"]) == {"hogwild", "minibatch-sync"} and set(h["cores"]) == {1, 4}
    # equal terms: the same gradient evaluations at every checkpoint
    for _, g in h.groupby(["scheme", "cores"]):
        assert g["samples"].tolist() == [k * svm.N for k in range(spec.epochs + 1)]
    # one core: sync with B = 1 and combine = sum is serial SGD, as is hogwild on one thread
    one = h[h.cores == 1].pivot(index="epoch", columns="scheme", values="objective")
    assert np.array_equal(one["hogwild"], one["minibatch-sync"])
    tta = time_to_accuracy(h, f_ref=float(h["objective"].min()), epsilon=0.5)
    sp = speedup_table(tta)
    assert list(sp["cores"]) == [1, 4]
    fig = fig_time_to_accuracy(h, tta)
    assert len(fig.axes) == 2 and len(fig.axes[1].get_lines()) == 2
    table = iteration_time_table(ShiftedExponential(10, 0.1), (1, 3, 30), 50, seed=0)
    fig = fig_iteration_time(table, delay=ShiftedExponential(10, 0.1))
    ax = fig.axes[0]
    curve = ax.get_lines()[0]
    xs, ys = curve.get_data()
    assert np.allclose(ys, [10 + harmonic(int(k)) / 0.1 for k in xs])


def test_iteration_durations_from_both_engines(svm):
    spec = mb(threads=2, batch_size=10, epochs=1)
    sim = hwsim.simulate(spec, Machine(cores=2, delay=Exponential(10.0)), problem=svm).iterations
    assert list(sim.columns) == list(ITERATION_SCHEMA)
    d = iteration_durations(sim)
    assert (d["step_time"] == d["compute"] + d["combine"]).all() and (d["spread"] >= 0).all()


# --- realrun --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_realrun_one_thread_equals_oracle_bit_for_bit(svm, dtype):
    from realrun import run

    for batch, combine, order, schedule in ((1, "mean", "epoch-shuffle", "inv-k"), (7, "mean", "with-replacement",
                                                                                    "backoff"),
                                            (60, "sum", "fixed-shuffle", "constant")):
        spec = mb(threads=1, batch_size=batch, combine=combine, dtype=dtype, order=order, schedule=schedule)
        got = run(spec, problem=svm)
        want = minibatch_oracle(svm, spec)
        assert same_bits(got.x, want.x), (batch, combine, order)
        assert np.array_equal(got.history["objective"], want.history["objective"])
        assert got.lost_updates == 0 and not got.interrupted


@pytest.mark.parametrize("threads", [2, 3])
def test_realrun_threads_equal_oracle_and_record_every_step(svm, threads):
    """The combine follows batch order, so p threads give the oracle's bits too (3 threads on
    a 2-core machine also exercise the spinning barrier's yield)."""
    from realrun import run

    for dtype in ("float64", "fixed"):
        spec = mb(threads=threads, batch_size=8, dtype=dtype, epochs=2)
        got = run(spec, problem=svm)
        assert same_bits(got.x, minibatch_oracle(svm, spec).x)
    it = got.info["iterations"]
    assert list(it.columns) == list(ITERATION_SCHEMA)
    assert len(it) == spec.epochs * (step_bounds(svm.N, 8).size - 1)
    assert it["combiner"].between(0, threads - 1).all()
    assert (it["t_first_arrival"] <= it["t_last_arrival"]).all() and (it["t_last_arrival"] <= it["t_end"]).all()
    s = got.samples
    assert len(s) == spec.epochs * svm.N and list(s.columns) == list(SAMPLE_SCHEMA)
    for epoch in range(spec.epochs):
        from workload.minibatch import epoch_order

        e = s[s.epoch == epoch]
        assert sorted(e["term"]) == sorted(epoch_order(spec, svm.N, epoch))


def test_realrun_failure_in_progress_stops_the_workers(svm):
    from realrun import run

    def boom(epoch, row):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        run(mb(threads=2, batch_size=6, epochs=3), problem=svm, progress=boom)
