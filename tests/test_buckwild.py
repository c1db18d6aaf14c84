"""Buckwild! (issue 8): unbiased rounding, bit-for-bit engines against the integer oracle
(both write modes), saturation, option validation, the rounding-aware bound, realrun's
per-sample trace.  The multi-worker rmw / atomic replay against the one-operation-at-a-time
oracle is in tests/properties/test_buckwild_properties.py.

Named thresholds: the unbiasedness test has family-wise false-alarm rate ALPHA = 1e-3
(Bonferroni over the tested values, two-sided z-test against the null variance f(1 − f)/n
of unbiased Bernoulli rounding).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st

import hwsim
import realrun
from analysis.buckwild import accuracy_loss, check_bound, rounding_variance
from realrun.buckwild import serial_fast
from workload import buckwild as B
from workload.build import build_problem
from workload.order import worker_orders
from workload.spec import DataSpec, RunSpec, SpecError

ALPHA = 1e-3  # family-wise false-alarm rate of the unbiasedness test
N_DRAWS = 20_000  # draws per tested value
N_VALUES = 200  # tested values


def small_spec(**kw):
    base = dict(problem="svm", scheme="buckwild", threads=1, epochs=2, step=0.5, seed=3,
                data=DataSpec(source="synthetic-classification", params=dict(n_rows=300, n_features=200, nnz_mean=10)),
                options=dict(model_bits=8, data_bits=8))
    base.update(kw)
    return RunSpec(**base)


def bias_z(values: np.ndarray, rounding: int, key: int) -> np.ndarray:
    """z = (mean of N_DRAWS roundings − v) / sqrt(f(1 − f)/N_DRAWS) for each v."""
    z = np.empty(values.size)
    for i, v in enumerate(values):
        q = B.quantise_array(np.full(N_DRAWS, v), np.uint64(key), i * N_DRAWS, rounding)
        f = v - math.floor(v)
        z[i] = (q.mean() - v) / math.sqrt(f * (1.0 - f) / N_DRAWS)
    return z


def test_stochastic_rounding_is_unbiased_and_nearest_is_detected_as_biased():
    rng = np.random.default_rng(12345)
    # Fractional parts across (0.01, 0.99), including small ones where nearest rounding drops
    # the update entirely; integer parts of both signs.
    frac = rng.uniform(0.01, 0.99, N_VALUES)
    values = rng.integers(-50, 50, N_VALUES) + frac
    z_crit = scipy.stats.norm.ppf(1.0 - ALPHA / (2 * N_VALUES))
    key = B.worker_key(7, 0)
    z_sto = bias_z(values, B.STOCHASTIC, key)
    assert np.all(np.abs(z_sto) < z_crit), f"biased at v = {values[np.abs(z_sto) >= z_crit]}"
    # The same test flags nearest rounding wherever its bias min(f, 1 − f) is not tiny
    # (|bias| ≥ 0.05 gives z ≥ 0.05/sqrt(0.25/20000) ≈ 14 ≫ z_crit ≈ 4.8).
    z_near = bias_z(values, B.NEAREST, key)
    far = np.minimum(frac, 1.0 - frac) >= 0.05
    assert far.sum() > N_VALUES // 2
    assert np.all(np.abs(z_near[far]) >= z_crit)


@given(v=st.floats(-1e6, 1e6, allow_nan=False), key=st.integers(0, 2**64 - 1), ctr=st.integers(0, 2**40),
       rounding=st.sampled_from([B.STOCHASTIC, B.NEAREST]))
def test_jitted_quantiser_equals_python_oracle(v, key, ctr, rounding):
    q = int(B.quantise_array(np.array([v]), np.uint64(key), ctr, rounding)[0])
    assert q == B.py_quantise(v, key, ctr, rounding)
    assert math.floor(v) <= q <= math.ceil(v)


@pytest.mark.parametrize("problem", ["svm", "logistic", "least-squares"])
@pytest.mark.parametrize("options", [
    dict(model_bits=8, data_bits=8),
    dict(model_bits=16, data_bits=16, rounding="nearest"),
    dict(model_bits=32, data_bits=8, gradient_bits=8, model_exp=20),
])
def test_one_worker_realrun_equals_integer_oracle_bit_for_bit(problem, options):
    spec = small_spec(problem=problem, options=options, schedule="backoff")
    pr = build_problem(spec)
    oracle = B.oracle_run(pr, spec)
    fast = serial_fast(spec, pr)
    for o, f in zip(oracle, fast):
        assert np.array_equal(np.array(o, dtype=np.int64), f.astype(np.int64))
    r = realrun.run(spec, problem=pr)
    assert r.x.dtype == B.INT_DTYPES[options["model_bits"]]
    assert np.array_equal(np.array(oracle[-1], dtype=np.int64), r.x.astype(np.int64))


@pytest.mark.parametrize("mode", ["degree", "aux"])
def test_regulariser_paths_equal_oracle(mode, monkeypatch):
    import realrun.buckwild as RB

    spec = small_spec(problem="least-squares", problem_params=dict(lam=1e-2))
    pr = build_problem(spec)
    assert RB._regulariser(pr, pr.aux)[0] == RB.REG_DEGREE
    if mode == "aux":
        monkeypatch.setattr(RB, "_regulariser", lambda problem, aux: (RB.REG_AUX, np.zeros(1, np.uint8), 0.0))
    assert np.array_equal(np.array(B.oracle_run(pr, spec)[-1], dtype=np.int64), RB.serial_fast(spec, pr)[-1])


@pytest.mark.parametrize("write_mode", ["rmw", "atomic"])
@pytest.mark.parametrize("problem,engine", [
    ("svm", "fast"), ("svm", "reference"), ("logistic", "reference"),
    # hwsim's fast engine compiles once per problem kernel (~20 s on a busy machine)
    pytest.param("logistic", "fast", marks=pytest.mark.slow),
])
def test_one_worker_hwsim_equals_oracle_and_realrun(engine, problem, write_mode):
    spec = small_spec(problem=problem, write_mode=write_mode)
    pr = build_problem(spec)
    machine = hwsim.Machine(cores=2, read_cost=3, write_cost=5, delay=hwsim.Exponential(200.0))
    sim = hwsim.simulate(spec, machine, problem=pr, engine=engine)
    oracle = B.oracle_run(pr, spec)
    real = realrun.run(spec, problem=pr)
    assert np.array_equal(np.array(oracle[-1], dtype=np.int64), sim.x.astype(np.int64))
    assert np.array_equal(real.x, sim.x)
    assert np.allclose(sim.history.objective.to_numpy(), real.history.objective.to_numpy(), rtol=0, atol=0)
    assert sim.lost_updates == 0 and real.lost_updates == 0


def test_hwsim_engines_agree_with_four_workers():
    spec = small_spec(threads=4)
    pr = build_problem(spec)
    machine = hwsim.Machine(cores=4, read_cost=3, write_cost=5, delay=hwsim.Exponential(200.0), coherence_cost=20)
    a = hwsim.simulate(spec, machine, problem=pr, engine="fast")
    b = hwsim.simulate(spec, machine, problem=pr, engine="reference")
    assert np.array_equal(a.x, b.x)
    assert a.coords.equals(b.coords)
    # Concurrency really happens, so this is not the serial run in disguise.
    assert (a.samples.start_seq - a.samples.finished_at_start).max() > 0


def test_saturation_clamps_instead_of_wrapping_and_matches_oracle():
    spec = small_spec(step=50.0, options=dict(model_bits=8, data_bits=8, model_exp=6))
    pr = build_problem(spec)
    oracle = B.oracle_run(pr, spec)
    r = realrun.run(spec, problem=pr)
    assert np.array_equal(np.array(oracle[-1], dtype=np.int64), r.x.astype(np.int64))
    assert r.x.min() == -128 or r.x.max() == 127  # the range was hit (and held)


def test_nearest_rounding_loses_small_updates_that_stochastic_keeps():
    # Steps below half an ulp: nearest rounding rounds every update to 0, the model never
    # moves; unbiased rounding moves it in expectation (the paper's motivation, §4).
    spec = small_spec(problem="least-squares", step=1e-3, options=dict(model_bits=8, data_bits=8, rounding="nearest"))
    pr = build_problem(spec)
    x0 = B.encode_model(pr.initial_point(spec.seed), B.validate_options(spec, pr))
    near = realrun.run(spec, problem=pr)
    sto = realrun.run(spec.replace(options=dict(model_bits=8, data_bits=8)), problem=pr)
    assert np.array_equal(near.x, x0)
    assert not np.array_equal(sto.x, x0)


def test_two_threads_run_and_descend():
    spec = small_spec(threads=2, epochs=3)
    r = realrun.run(spec)
    obj = r.history.objective.to_numpy()
    assert np.all(np.isfinite(obj)) and obj[-1] < obj[0]


@pytest.mark.parametrize("name,value", [("model_bits", 12), ("data_bits", True), ("gradient_bits", "8"),
                                        ("rounding", "up"), ("model_exp", -1), ("data_exp", "max")])
def test_options_errors_name_option_value_and_fix(name, value):
    spec = small_spec(options={name: value})
    with pytest.raises(SpecError) as err:
        B.validate_options(spec, build_problem(spec))
    msg = str(err.value)
    assert f"options.{name}" in msg and repr(value) in msg and "set" in msg or "remove" in msg


def test_non_linear_problem_is_refused():
    spec = small_spec(problem="matrix-completion", data=DataSpec(source="synthetic-ratings"))
    with pytest.raises(SpecError, match="linear problems"):
        B.validate_options(spec)


def test_rounding_bound_holds_and_accuracy_loss_is_small():
    spec = small_spec(problem="least-squares", problem_params=dict(lam=1e-2, reg="l2"), step=0.05, epochs=3,
                      options=dict(model_bits=16, data_bits=16))
    pr = build_problem(spec)
    r = realrun.run(spec, problem=pr)
    res = check_bound(spec, pr, r.x)
    cfg = B.validate_options(spec, pr)
    assert res["sigma2"] == rounding_variance(cfg, int(np.max(np.diff(pr.terms.indptr))))
    assert res["rounding_term"] > 0 and res["ok"]
    full = realrun.run(spec.replace(scheme="serial", options={}), problem=pr)
    loss = accuracy_loss(r.history, full.history)
    # int16 with unbiased rounding: final objective within 1% of float64 (named threshold).
    assert abs(loss["relative"].iloc[-1]) < 0.01
    with pytest.raises(ValueError, match="stochastic"):
        rounding_variance(cfg._replace(rounding=B.NEAREST), 10)


# --- realrun's per-sample trace (the shared schema and decoder of realrun.engine) ----------

def test_realrun_trace_matches_schema_orders_and_counts():
    spec = small_spec(threads=2, epochs=2)
    pr = build_problem(spec)
    r = realrun.run(spec, problem=pr)
    s = r.samples
    hog = realrun.run(spec.replace(scheme="hogwild", options={}), problem=pr)
    assert list(s.columns) == list(hog.samples.columns) and (s.dtypes == hog.samples.dtypes).all()
    assert len(s) == spec.epochs * pr.N and r.instrument
    assert np.array_equal(s["sample"].to_numpy(), np.arange(len(s)))  # every sample, in start order
    for (w, epoch), g in s.groupby(["worker", "epoch"]):
        order = worker_orders(spec, pr.N, epoch)[w]
        g = g.sort_values("position")
        assert np.array_equal(g["position"].to_numpy(), np.arange(order.size))
        assert np.array_equal(g["term"].to_numpy(), order)
        t = g[["t_start", "t_read_done", "t_write_start", "t_end"]].to_numpy()
        assert (t >= 0).all() and (np.diff(t, axis=1) >= 0).all()
        # Lock-free samples of one worker abut: one clock reading ends one and starts the next.
        assert np.array_equal(t[1:, 0], t[:-1, 3])
    tau = r.tau()
    assert tau.min() >= 0 and tau.max() <= len(s)
    assert (s["end_seq"] >= s["finished_at_start"]).all()
    assert r.samples_per_s > 0 and r.info["ns_per_tick"] > 0


def test_one_thread_trace_has_no_overlap_and_instrumentation_changes_no_value():
    spec = small_spec(epochs=2)
    pr = build_problem(spec)
    on = realrun.run(spec, problem=pr)
    off = realrun.run(spec, problem=pr, instrument=False)
    assert np.array_equal(on.x, off.x)
    assert (on.tau() == 0).all() and len(on.samples) == 2 * pr.N
    assert off.samples.empty and not off.instrument


@pytest.mark.parametrize("every,clock", [(3, 2), (1, 4), (5, 1)])
def test_trace_every_and_clock_every(every, clock):
    spec = small_spec(threads=2, options=dict(model_bits=8, data_bits=8, trace_every=every, clock_every=clock))
    pr = build_problem(spec)
    r = realrun.run(spec, problem=pr)
    s = r.samples
    pos = s["position"].to_numpy()
    assert (pos % every == 0).all()
    assert len(s) == sum(-(-o.size // every) for e in range(spec.epochs)
                         for o in worker_orders(spec, pr.N, e))
    timed = (pos % clock == 0)
    for c in ("t_start", "t_read_done", "t_write_start", "t_end"):
        assert (s[c].to_numpy()[timed] >= 0).all() and (s[c].to_numpy()[~timed] == -1).all()
    assert (r.tau() >= 0).all()
    assert r.info["trace_every"] == every and r.info["clock_every"] == clock


def test_atomic_writes_lose_nothing_with_two_threads():
    spec = small_spec(threads=2, epochs=2, write_mode="atomic")
    r = realrun.run(spec)
    assert r.lost_updates == 0 and r.info["write_mode"] == "atomic" and r.info["cas_failures"] >= 0
    assert realrun.run(spec.replace(write_mode="rmw")).lost_updates is None  # not measured


@pytest.mark.parametrize("name,value", [("relabel", True), ("count_lost", True), ("trace_every", 0),
                                        ("clock_every", "2"), ("prefetch", -1)])
def test_realrun_options_errors_name_option_value_and_fix(name, value):
    spec = small_spec(options=dict(model_bits=8, data_bits=8, **{name: value}))
    with pytest.raises(SpecError) as err:
        realrun.run(spec)
    msg = str(err.value)
    assert f"options.{name}" in msg and repr(value) in msg and ("set" in msg or "remove" in msg)


def test_prefetch_distance_changes_no_value():
    spec = small_spec(epochs=2)
    pr = build_problem(spec)
    a = realrun.run(spec, problem=pr, instrument=False)
    b = realrun.run(spec.replace(options=dict(model_bits=8, data_bits=8, prefetch=0)), problem=pr, instrument=False)
    assert np.array_equal(a.x, b.x) and b.info["prefetch"] == 0
