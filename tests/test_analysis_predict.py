"""predict on the reference engine, and the closed loop: hwsim as the "hardware".

A machine with known costs and delays produces a 1-core trace; calibration must recover it
and predict the 2-core run of the same machine (out of sample) within compare's thresholds.
The reference engine is used (no JIT compile), on small problems.
"""
from __future__ import annotations

import numpy as np
import pytest

hwsim = pytest.importorskip("hwsim")
if not hasattr(hwsim, "simulate"):  # pragma: no cover - while hwsim is assembled
    pytest.skip("hwsim.simulate not available yet", allow_module_level=True)

from analysis import calibrate as cal  # noqa: E402
from analysis import compare as cmp  # noqa: E402
from analysis import predict as pred  # noqa: E402
from workload.spec import DataSpec, RunSpec  # noqa: E402

ENGINE = "reference"


def _spec(rows=400, threads=1, epochs=2, **kw):
    data = DataSpec(source="synthetic-classification",
                    params=dict(n_rows=rows, n_features=300, nnz_mean=12, seed=5))
    return RunSpec(problem="svm", data=data, threads=threads, epochs=epochs, step=0.05, seed=11, **kw)


@pytest.fixture(scope="module")
def problem():
    from workload.build import build_problem

    return build_problem(_spec())


TRUE = dict(read_cost=3, write_cost=4, coherence_cost=40)


def _true_machine(cores=1):
    return hwsim.Machine(cores=cores, delay=hwsim.ShiftedExponential(shift=60.0, rate=1 / 80.0), **TRUE)


def test_calibration_recovers_a_simulated_machine(problem):
    """The 1-core trace of a known machine gives back its costs exactly and its delay's
    parameters (shift 60, rate 1/80) to sampling precision."""
    res = hwsim.simulate(_spec(), _true_machine(), problem=problem, engine=ENGINE, coord_trace=False)
    c = cal.calibrate(res.samples, problem=problem, coherence_cost=TRUE["coherence_cost"],
                      delay="shifted-exponential")
    m = c.machine
    assert (m.read_cost, m.write_cost, m.coherence_cost) == (3, 4, 40)
    assert m.delay.shift == pytest.approx(60.0, abs=2.0)
    assert m.delay.rate == pytest.approx(1 / 80.0, rel=0.15)  # 800 samples: relative s.e. 3.5%


def test_closed_loop_predicts_two_cores(problem):
    """Calibrate on the simulated 1-core run, predict 2 cores, 'measure' 2 cores on the true
    machine: the speedup agrees within SPEEDUP_REL_ERR_MAX and τ's KS within TAU_KS_MAX."""
    spec = _spec()
    one = hwsim.simulate(spec, _true_machine(), problem=problem, engine=ENGINE, coord_trace=False)
    two = hwsim.simulate(spec.replace(threads=2), _true_machine(2), problem=problem, engine=ENGINE,
                         coord_trace=False)
    c = cal.calibrate(one.samples, problem=problem, coherence_cost=TRUE["coherence_cost"])
    p = pred.predict_detail(spec, c, cores=(1, 2), problem=problem, engine=ENGINE)
    s = p.summary.set_index("threads")
    assert (p.summary["kind"] == "predicted").all() and (p.summary["calibrated_on_threads"] == "1").all()
    assert s.loc[1, "speedup"] == 1.0

    def rate(r):
        return len(r.samples) / (r.ticks * 1e-9)

    import pandas as pd

    from analysis.overlap import tau_histogram
    from workload.trace import tau_overlap

    meas = pd.DataFrame({"threads": [1, 2], "samples_per_s": [rate(one), rate(two)],
                         "lost_per_sample": [0.0, two.lost_updates / len(two.samples)]})
    mtau = tau_histogram(tau_overlap(two.samples)).assign(threads=2)
    mh = pd.concat([one.history.assign(threads=1), two.history.assign(threads=2)])
    df = cmp.compare(meas, p, measured_tau=mtau, measured_history=mh)
    row = df[(df["threads"] == 2) & (df["figure"] == "speedup")].iloc[0]
    assert row["verdict"] == "agrees", row.to_dict()
    assert df[(df["threads"] == 2) & (df["figure"] == "tau_ks")].iloc[0]["verdict"] == "agrees"
    assert df[(df["threads"] == 1) & (df["figure"] == "samples_per_s")].iloc[0]["honest"] == False  # noqa: E712


def test_subsample_mode(problem):
    """More samples than max_samples: one epoch on a row subset, no convergence reported."""
    spec = _spec()
    m = _true_machine()
    p = pred.predict_detail(spec, m, cores=(1, 2), problem=problem, engine=ENGINE, max_samples=200)
    s = p.summary
    assert (s["mode"] == "subsample").all() and (s["simulated_samples"] == 200).all()
    assert s["final_objective"].isna().all() and p.history.empty
    assert (s["calibrated_on_threads"] == "").all()
    sub = pred.subsample_problem(problem, 200, spec.seed)
    assert sub.n == problem.n and sub.N == 200
    with pytest.raises(ValueError, match="serial"):
        pred.predict(spec.replace(scheme="serial"), m, cores=(1, 2), problem=problem, engine=ENGINE)


def test_epoch_overhead_lowers_throughput(problem):
    """An epoch overhead of E ns adds E/N ns per sample to the predicted time."""
    spec = _spec(epochs=1)
    m = _true_machine()
    a = pred.predict(spec, m, cores=(1,), problem=problem, engine=ENGINE)
    b = pred.predict(spec, m, cores=(1,), problem=problem, engine=ENGINE, epoch_overhead_ns=400 * 100.0)
    t_a, t_b = 1 / a["samples_per_s"].item(), 1 / b["samples_per_s"].item()
    assert t_b - t_a == pytest.approx(100e-9, rel=1e-9)


def test_misses_per_sample_on_the_contention_workload():
    """Every row holds the same K lines: a sample's K reads and K writes can each miss at most
    once, so 0 ≤ misses ≤ 2K, and with two cores alternating on the same lines most reads
    do (more than K/2 per sample here); on 1 core there is no other core to store: none."""
    K = 6
    prob = cal.contention_problem(K, rows=200)
    spec = RunSpec(problem="svm", threads=1, epochs=1, step=0.01, seed=1)
    m = hwsim.Machine(cores=1, read_cost=2, write_cost=2, delay=hwsim.Exponential(30.0))
    got = cal.misses_per_sample(spec, m, prob, threads=2, engine=ENGINE)
    assert K / 2 < got <= 2 * K
    assert cal.misses_per_sample(spec, m, prob, threads=1, engine=ENGINE) == 0.0


@pytest.mark.parametrize("scheme", ["minibatch-sync", "cyclades"])
def test_own_sample_rules_drop_the_per_sample_fields_and_say_so(problem, scheme, caplog):
    """minibatch-sync and cyclades do not model hidden misses or a plain-store miss cost
    (hwsim.PER_SAMPLE_ONLY; hwsim.simulate refuses them): predict simulates them with both
    off, says so, and predicts exactly what the machine without them predicts."""
    spec = _spec(epochs=1, scheme=scheme, options={"batch_size": 16} if scheme == "minibatch-sync" else {})
    plain = _true_machine()
    calibrated = plain.replace(miss_overlap=50, store_coherence_cost=0)
    with caplog.at_level("WARNING", logger="analysis.predict"):
        got = pred.predict(spec, calibrated, cores=(1, 2), problem=problem, engine=ENGINE)
    assert "miss_overlap, store_coherence_cost" in caplog.text and scheme in caplog.text
    want = pred.predict(spec, plain, cores=(1, 2), problem=problem, engine=ENGINE)
    assert got["samples_per_s"].tolist() == want["samples_per_s"].tolist()
    assert (got["miss_overlap"] == 0).all() and (got["store_miss_cost"] == TRUE["coherence_cost"]).all()
