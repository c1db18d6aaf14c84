"""Calibration recovers the parameters of synthetic traces generated from known timings."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from analysis import calibrate as cal
from analysis.synthetic import trace_from_phases

N_SAMPLES = 20_000
# Statistical tolerances, fixed before the fits were run: the MLE rate of an exponential
# from n draws has relative standard error 1/sqrt(n) = 0.7% at n = 20,000; we allow 5 of them.
RATE_RTOL = 5 / math.sqrt(N_SAMPLES)
KS_GOOD = 0.02  # the right model's KS statistic (sampling noise ~ 1/sqrt(n) = 0.007)
KS_BAD = 0.05  # a wrong family is at least this far off for these parameters


def _terms(n_terms=2000, n=500, seed=0):
    """Terms with support sizes spread over 1..120 (so the slope on size is identifiable)."""
    from workload.problems import Terms

    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 121, n_terms)
    rows = np.repeat(np.arange(n_terms), sizes)
    cols = np.concatenate([rng.choice(n, s, replace=False) for s in sizes])
    A = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n_terms, n))
    return Terms.from_csr(A, np.sign(rng.standard_normal(n_terms)) + (rng.random(n_terms) == 2))


def _trace(terms, *, rc, wc, compute, phases=True, gap=None, workers=1, seed=1):
    rng = np.random.default_rng(seed)
    term = rng.integers(0, terms.N, N_SAMPLES)
    s = terms.support_sizes()[term]
    worker = np.repeat(np.arange(workers), N_SAMPLES // workers)
    t = trace_from_phases(worker, term, s * rc, compute, s * wc, gap=gap)
    if not phases:
        t["t_read_done"] = -1
        t["t_write_start"] = -1
    return t


def test_recovers_costs_and_shifted_exponential_delay():
    """read 3 ns/coord, write 5 ns/coord, compute = rint(40 + Exp(mean 60)): the fit returns
    read_cost 3, write_cost 5, shift 40, rate 1/60, and the shifted exponential fits best."""
    terms = _terms()
    rng = np.random.default_rng(2)
    compute = np.rint(40 + rng.exponential(60.0, N_SAMPLES)).astype(np.int64)
    f = cal.fit(_trace(terms, rc=3, wc=5, compute=compute), terms=terms)
    assert (f.read_cost, f.write_cost) == (3, 5) and f.phases
    assert f.read_slope == pytest.approx(3.0, abs=1e-9) and f.write_slope == pytest.approx(5.0, abs=1e-9)
    d = f.delays.set_index("model")
    assert d.loc["shifted-exponential", "loc"] == pytest.approx(40.0, abs=1.0)
    assert d.loc["shifted-exponential", "rate"] == pytest.approx(1 / 60.0, rel=RATE_RTOL)
    assert d.loc["shifted-exponential", "ks"] < KS_GOOD
    assert d.loc["lognormal", "ks"] > KS_BAD
    assert d.loc["empirical", "ks"] <= 1.0 / cal.EMPIRICAL_POINTS + 1e-12 + 1.0 / N_SAMPLES * 50
    assert d.loc["empirical", "mean"] == pytest.approx(compute.mean(), abs=0.5)
    assert f.fitted_on_threads == (1,)


def test_recovers_lognormal_delay_without_phases():
    """No phase timestamps: the cycle's slope (3 + 5 = 8) is split evenly (4 + 4); the delay
    is the log-normal exp(N(4.5, 0.4²)) and the log-normal fits best."""
    terms = _terms()
    rng = np.random.default_rng(3)
    compute = np.rint(rng.lognormal(4.5, 0.4, N_SAMPLES)).astype(np.int64)
    f = cal.fit(_trace(terms, rc=3, wc=5, compute=compute, phases=False), terms=terms)
    assert not f.phases and (f.read_cost, f.write_cost) == (4, 4)
    d = f.delays.set_index("model")
    assert d.loc["lognormal", "mu"] == pytest.approx(4.5, abs=0.02)
    assert d.loc["lognormal", "sigma"] == pytest.approx(0.4, rel=0.03)
    assert d.loc["lognormal", "ks"] < KS_GOOD
    assert d.loc["shifted-exponential", "ks"] > KS_BAD


def test_gaps_between_samples_go_into_the_delay():
    """A 7 ns loop overhead between samples is part of the per-sample cycle: the delay's
    mean rises by 7 and the costs do not change."""
    terms = _terms()
    compute = np.full(N_SAMPLES, 30, np.int64)
    f = cal.fit(_trace(terms, rc=2, wc=2, compute=compute, gap=np.full(N_SAMPLES, 7)), terms=terms)
    assert (f.read_cost, f.write_cost) == (2, 2)
    assert f.delays.set_index("model").loc["empirical", "mean"] == pytest.approx(37.0, abs=0.01)


def test_fractional_costs_keep_the_mean_cycle():
    """A true cost of 1.4 ns/coordinate becomes 1 tick; the remainder moves into the delay so
    the predicted mean cycle s̄·(rc + wc) + mean delay equals the measured one."""
    terms = _terms()
    rng = np.random.default_rng(4)
    term = rng.integers(0, terms.N, N_SAMPLES)
    s = terms.support_sizes()[term]
    read = np.rint(1.4 * s).astype(np.int64)
    t = trace_from_phases(np.zeros(N_SAMPLES), term, read, np.full(N_SAMPLES, 20), read)
    f = cal.fit(t, terms=terms)
    assert (f.read_cost, f.write_cost) == (1, 1)
    mean_delay = f.delays.set_index("model").loc["empirical", "mean"]
    assert f.mean_support * 2 + mean_delay == pytest.approx(f.mean_cycle_ns, rel=1e-3)


def test_empirical_points_keep_mean_and_cdf():
    rng = np.random.default_rng(5)
    v = np.rint(rng.pareto(2.5, 50_000) * 100)  # heavy tail, whole ticks
    pts = cal.empirical_points(v, 256)
    assert pts.size == 256
    assert pts.mean() == pytest.approx(v.mean(), abs=0.5)
    assert cal._ks_discrete(v, pts) <= 1 / 256 + 1 / v.size


def test_untimed_trace_is_refused():
    terms = _terms(50)
    t = _trace(terms, rc=1, wc=1, compute=np.ones(N_SAMPLES, np.int64))
    t["t_start"] = -1
    with pytest.raises(ValueError, match="no timed samples"):
        cal.fit(t, terms=terms)


def test_coherence_from_pingpong_shapes():
    assert cal.coherence_ns(70.0) == 70.0
    assert cal.coherence_ns({"transfer_ns": 55}) == 55.0
    assert cal.coherence_ns(pd.DataFrame({"ns": [10.0, 50.0, 60.0]})) == 50.0
    with pytest.raises(ValueError, match="coherence_cost"):
        cal.coherence_ns(object())


def test_calibrate_builds_a_machine_and_records_provenance():
    pytest.importorskip("hwsim.machine")
    terms = _terms()
    rng = np.random.default_rng(6)
    compute = np.rint(40 + rng.exponential(60.0, N_SAMPLES)).astype(np.int64)
    t = _trace(terms, rc=3, wc=5, compute=compute)
    for kind in cal.DELAY_MODELS:
        c = cal.calibrate(t, terms=terms, coherence_cost=80.0, delay=kind)
        m = c.machine
        assert (m.cores, m.read_cost, m.write_cost, m.coherence_cost) == (1, 3, 5, 80)
        assert m.delay.mean() == pytest.approx(compute.mean(), rel=0.03)
        assert c.provenance["fitted_on_threads"] == [1]
        assert c.provenance["trace_sha256"] == cal.trace_sha256(t)
        assert set(c.table["item"]) >= {"read_cost", "write_cost", "delay", "coherence_cost"}
        assert c.table.loc[c.table["chosen"], "model"].tolist() == [kind]
        # TOML round trip
        import tomllib

        doc = tomllib.loads(c.to_toml())
        assert cal.machine_class().from_dict(doc["machine"]) == m
        assert doc["provenance"]["fitted_on_threads"] == [1]
    q = cal.delay_quantiles(c.fit.residuals, c.fit.delays)
    assert list(q.columns) == ["level", "measured", "empirical", "shifted-exponential", "lognormal"]


def test_sparse_trace_every_kth_sample():
    """Only every 4th sample recorded (realrun's options.trace_every = 4): the cycle is the
    duration plus the mean gap implied by the recorded span, so the 7 ns overhead is found."""
    terms = _terms()
    compute = np.full(N_SAMPLES, 30, np.int64)
    t = _trace(terms, rc=2, wc=2, compute=compute, gap=np.full(N_SAMPLES, 7))
    t = t[t["position"] % 4 == 0].reset_index(drop=True)
    f = cal.fit(t, terms=terms)
    assert (f.read_cost, f.write_cost) == (2, 2)
    assert f.delays.set_index("model").loc["empirical", "mean"] == pytest.approx(37.0, abs=0.5)


def test_save_and_load_calibration(tmp_path):
    pytest.importorskip("hwsim.machine")
    terms = _terms()
    compute = np.full(N_SAMPLES, 50, np.int64)
    c = cal.calibrate(_trace(terms, rc=2, wc=3, compute=compute), terms=terms, pingpong={"transfer_ns": 41.6})
    path = tmp_path / "machine.toml"
    c.save(path)
    back = cal.load_calibration(path)
    assert back.machine == c.machine and back.machine.coherence_cost == 42
    assert back.provenance["fitted_on_threads"] == [1] and back.provenance["coherence_source"] == "realrun.pingpong"


def test_split_coherence_costs_reach_the_machine_table_and_toml(tmp_path):
    """A plain (in-flight) cost and an atomic-instruction store cost: both on the machine,
    both in the fit table with their source, both through save / load; a bad atomic cost
    is refused by name."""
    pytest.importorskip("hwsim.machine")
    terms = _terms()
    compute = np.full(N_SAMPLES, 50, np.int64)
    t = _trace(terms, rc=2, wc=3, compute=compute)
    c = cal.calibrate(t, terms=terms, coherence_cost=7.4, coherence_source="k-lines at 17 lines",
                      atomic_coherence_cost=33.4)
    assert (c.machine.coherence_cost, c.machine.atomic_coherence_cost, c.machine.atomic_miss_cost) == (7, 33, 33)
    rows = c.table.set_index("item")
    assert rows.loc["coherence_cost", "method"] == "k-lines at 17 lines"
    assert rows.loc["atomic_coherence_cost", "value"] == 33.4
    assert c.provenance["atomic_coherence_ns"] == 33.4
    c.save(tmp_path / "m.toml")
    assert cal.load_calibration(tmp_path / "m.toml").machine == c.machine
    plain = cal.calibrate(t, terms=terms, coherence_cost=7.4)
    assert plain.machine.atomic_coherence_cost is None and "atomic_coherence_cost" not in set(plain.table["item"])
    with pytest.raises(ValueError, match="atomic_coherence_cost"):
        cal.calibrate(t, terms=terms, coherence_cost=7.4, atomic_coherence_cost=-1.0)
    st = cal.calibrate(t, terms=terms, coherence_cost=7.4, store_coherence_cost=0.4, store_coherence_source="why")
    assert (st.machine.store_coherence_cost, st.machine.store_miss_cost, st.machine.coherence_cost) == (0, 0, 7)
    assert st.table.set_index("item").loc["store_coherence_cost", "method"] == "why"
    assert st.provenance["store_coherence_source"] == "why"
    st.save(tmp_path / "s.toml")
    assert cal.load_calibration(tmp_path / "s.toml").machine == st.machine
    for bad in (-1.0, math.inf, "0"):
        with pytest.raises(ValueError, match="store_coherence_cost"):
            cal.calibrate(t, terms=terms, coherence_cost=7.4, store_coherence_cost=bad)


def test_implied_coherence_recovers_the_cost_behind_a_simulated_speedup():
    """Known by construction: the 'measurement' is hwsim's own 2-core speedup on a machine
    with H = 9; starting from a machine calibrated with H = 60, the bisection finds an H
    whose simulated speedup is the measured one (9, or a neighbour that simulates alike)."""
    hwsim = pytest.importorskip("hwsim")
    from analysis.predict import predict_detail
    from workload.problems import make_problem
    from workload.spec import RunSpec

    problem = make_problem("svm", _terms(n_terms=600, n=200), lam=1e-2)
    spec = RunSpec(problem="svm", scheme="hogwild", threads=1, epochs=1, step=0.01, seed=3)
    truth = hwsim.Machine(cores=1, read_cost=2, write_cost=3, coherence_cost=9, line_coords=8,
                          delay=hwsim.ShiftedExponential(shift=50, rate=1 / 40))

    def speedup(m):
        d = predict_detail(spec, m, cores=(1, 2), problem=problem, max_samples=None)
        return float(d.summary.set_index("threads").loc[2, "speedup"])

    measured = speedup(truth)
    got = cal.implied_coherence(spec, truth.replace(coherence_cost=60), measured, problem=problem, max_samples=None)
    assert got["calibrated"] == 60 and got["threads"] == 2 and got["note"] == ""
    assert got["atomic_fixed"] is None and got["store_fixed"] is None
    assert abs(got["implied"] - 9) <= 2
    # plain stores with a cost of their own keep it while H varies for the reads
    off = truth.replace(store_coherence_cost=0)
    got0 = cal.implied_coherence(spec, off.replace(coherence_cost=60), speedup(off), problem=problem, max_samples=None)
    assert got0["store_fixed"] == 0 and abs(got0["implied"] - 9) <= 2
    assert speedup(truth.replace(coherence_cost=got["implied"])) == pytest.approx(measured, rel=0.01)
    assert got["speedup_at_zero"] >= measured >= got["speedup_at_max"]
    # out of range either way: no H, and a note that says which way
    fast = cal.implied_coherence(spec, truth, got["speedup_at_zero"] * 1.5, problem=problem, max_samples=None)
    assert fast["implied"] is None and "faster than hwsim with free coherence" in fast["note"]
    slow = cal.implied_coherence(spec, truth, 1e-3, problem=problem, max_samples=None, h_max=50)
    assert slow["implied"] is None and "h_max = 50" in slow["note"]
    with pytest.raises(ValueError, match="measured_speedup"):
        cal.implied_coherence(spec, truth, float("nan"), problem=problem)
    with pytest.raises(ValueError, match="threads"):
        cal.implied_coherence(spec, truth, 1.2, threads=1, problem=problem)


# --- the coherence split's inputs: probes, pooling, drift, fallback --------------------------------
def _overlap(halves, ks=(1, 2, 4, 8, 16, 32)):
    from realrun import coherence as co

    halves = np.asarray(halves, np.float64)
    return co._line(pd.DataFrame({"k": list(ks), "half_round_ns": halves, "per_line_ns": halves / np.asarray(ks),
                                  "batches": 100}), (0, 1))


def _split_inputs():
    from workload.problems import make_problem
    from workload.spec import RunSpec

    terms = _terms()
    problem = make_problem("svm", terms, lam=1e-2)
    t = _trace(terms, rc=2, wc=3, compute=np.full(N_SAMPLES, 50, np.int64))
    return t, problem, RunSpec(problem="svm", scheme="hogwild", threads=1)


def test_calibrate_split_uses_the_given_overlap_and_measures_nothing(monkeypatch):
    """With ``overlap`` given (the study's pooled probes), the in-flight cost is a/k + b of
    that line at half the simulated misses per sample; no microbenchmark runs."""
    pytest.importorskip("hwsim.machine")
    import realrun.coherence

    monkeypatch.setattr(realrun.coherence, "overlap_fit", lambda *a, **k: pytest.fail("measured a k-lines fit"))
    t, problem, spec = _split_inputs()
    ovl = _overlap(20.0 + 6.0 * np.array([1, 2, 4, 8, 16, 32]))  # a = 20, b = 6 exactly
    c, how = cal.calibrate_split(t, problem=problem, pingpong=33.0, spec=spec, overlap=ovl, hidden=False)
    assert c.machine.miss_overlap == 0 and "hidden" not in how
    lines = max(cal.misses_per_sample(spec, c.machine, problem) / 2.0, 1.0)
    assert c.machine.coherence_cost == round(20.0 / lines + 6.0)
    assert c.machine.atomic_coherence_cost == 33 and c.provenance["coherence_pingpong_ns"] == 33.0
    assert "lines in flight" in how and "33 ns for atomic-instruction stores" in how


def test_calibrate_split_falls_back_to_the_pingpong_when_the_k_lines_benchmark_fails(monkeypatch):
    pytest.importorskip("hwsim.machine")

    def broken(*a, **k):
        raise RuntimeError("overlap_fit: needs two CPUs, this process may run on [0] only")

    monkeypatch.setattr(cal, "in_flight_cost", broken)
    t, problem, spec = _split_inputs()
    c, how = cal.calibrate_split(t, problem=problem, pingpong={"transfer_ns": 33.4}, spec=spec, hidden=False)
    assert c.machine.coherence_cost == 33 and c.machine.atomic_coherence_cost is None
    assert c.machine.store_coherence_cost == 0 and c.machine.store_miss_cost == 0
    assert "33.4 ns for reads and atomic-instruction stores" in how and "needs two CPUs" in how
    c, how = cal.calibrate_split(t, problem=problem, pingpong={"transfer_ns": 33.4}, spec=spec, hidden=False,
                                 write_misses="charged")
    assert c.machine.store_coherence_cost is None and c.machine.store_miss_cost == 33
    assert "for reads and plain stores and atomic-instruction stores" in how


def test_calibrate_split_takes_write_misses_off_the_critical_path_or_charges_them():
    """Default ``write_misses = "off-path"``: plain stores miss for 0 ns (a table row and the
    provenance say why), reads keep the in-flight cost, atomic stores the ping-pong;
    ``"charged"``: plain stores pay the reads' cost; anything else is refused by name."""
    pytest.importorskip("hwsim.machine")
    t, problem, spec = _split_inputs()
    ovl = _overlap(20.0 + 6.0 * np.array([1, 2, 4, 8, 16, 32]))
    c, how = cal.calibrate_split(t, problem=problem, pingpong=33.0, spec=spec, overlap=ovl, hidden=False)
    m = c.machine
    assert (m.store_coherence_cost, m.store_miss_cost, m.atomic_miss_cost) == (0, 0, 33) and m.coherence_cost > 0
    rows = c.table.set_index("item")
    assert rows.loc["store_coherence_cost", "value"] == 0.0
    assert rows.loc["store_coherence_cost", "method"] == cal.WRITE_MISSES_OFF_PATH
    assert rows.loc["coherence_cost", "note"] == "reads"
    assert c.provenance["store_coherence_ns"] == 0.0 and "off the critical path" in how
    assert "for reads (k-lines" in how
    charged, how = cal.calibrate_split(t, problem=problem, pingpong=33.0, spec=spec, overlap=ovl, hidden=False,
                                       write_misses="charged")
    assert charged.machine.store_coherence_cost is None and charged.machine.store_miss_cost == m.coherence_cost
    assert "store_coherence_cost" not in set(charged.table["item"]) and "for reads and plain stores" in how
    with pytest.raises(ValueError, match="write_misses = 'free'"):
        cal.calibrate_split(t, problem=problem, pingpong=33.0, spec=spec, overlap=ovl, write_misses="free")


def test_calibrate_split_hides_misses_under_the_measured_stall_or_says_why_not(monkeypatch):
    """``hidden`` (default): the machine's miss_overlap is measure_memory_stall's figure, also
    on the k-lines fallback; when that microbenchmark fails, none, and the sentence says so."""
    pytest.importorskip("hwsim.machine")
    t, problem, spec = _split_inputs()
    ovl = _overlap(20.0 + 6.0 * np.array([1, 2, 4, 8, 16, 32]))
    seen = {}

    def stall(f, prob, *, prefetch=None, repeats=5):
        seen["prefetch"] = prefetch
        return {"ns": 412.4, "resident_samples_per_s": 8e6, "resident_support": 9.0, "source": "stub"}

    monkeypatch.setattr(cal, "measure_memory_stall", stall)
    c, how = cal.calibrate_split(t, problem=problem, pingpong=33.0, spec=spec.replace(options={"prefetch": 0}),
                                 overlap=ovl)
    assert c.machine.miss_overlap == 412 and seen["prefetch"] == 0
    assert c.provenance["miss_overlap_ns"] == 412.4 and "412 ns per sample" in how
    assert c.table.set_index("item").loc["miss_overlap", "value"] == 412.4
    monkeypatch.setattr(cal, "in_flight_cost", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("one CPU")))
    c, how = cal.calibrate_split(t, problem=problem, pingpong=33.0, spec=spec)
    assert c.machine.miss_overlap == 412 and c.machine.atomic_coherence_cost is None and "realrun.pingpong" in how

    def broken(*a, **k):
        raise RuntimeError("visit_rates: no realrun here")

    monkeypatch.setattr(cal, "measure_memory_stall", broken)
    c, how = cal.calibrate_split(t, problem=problem, pingpong=33.0, spec=spec, overlap=ovl)
    assert c.machine.miss_overlap == 0 and "no hidden misses" in how and "no realrun here" in how


def test_atomic_write_cost_from_a_one_thread_atomic_run(tmp_path):
    """The plain run's stores take 1 ns per coordinate, the atomic run's 4.6 (read 1, compute
    50, the same terms): the atomic store cost is write_cost 1 plus the 3.6 ns per coordinate
    the atomic run's mean cycle is longer, 4.6; the machine takes it rounded (5), the fit
    table and the provenance say where it came from, and it survives save / load.  A 2-thread
    trace and a run of plain stores are refused by name."""
    pytest.importorskip("hwsim.machine")
    terms = _terms()
    compute = np.full(N_SAMPLES, 50, np.int64)
    rng = np.random.default_rng(1)
    term = rng.integers(0, terms.N, N_SAMPLES)
    s = terms.support_sizes()[term]
    atomic = trace_from_phases(np.zeros(N_SAMPLES, np.int64), term, s * 1, compute, np.rint(s * 4.6).astype(np.int64))
    plain = _trace(terms, rc=1, wc=1, compute=compute)
    f0 = cal.fit(plain, terms=terms)
    ns, src = cal.atomic_write_ns(atomic, f0, terms=terms)
    assert ns == pytest.approx(4.6, abs=0.05) and "1-thread run with atomic-instruction stores" in src
    c = cal.calibrate(plain, terms=terms, atomic_write_cost=ns, atomic_write_source=src, fitted=f0)
    m = c.machine
    assert (m.write_cost, m.atomic_write_cost, m.atomic_store_cost) == (1, 5, 5)
    row = c.table.set_index("item").loc["atomic_write_cost"]
    assert row["value"] == pytest.approx(ns) and row["method"] == src
    assert c.provenance["atomic_write_ns"] == pytest.approx(ns)
    c.save(tmp_path / "a.toml")
    assert cal.load_calibration(tmp_path / "a.toml").machine == m
    assert cal.calibrate(plain, terms=terms).machine.atomic_write_cost is None
    for bad in (0.0, -2.0, math.nan):
        with pytest.raises(ValueError, match="atomic_write_cost"):
            cal.calibrate(plain, terms=terms, atomic_write_cost=bad)
    with pytest.raises(ValueError, match="1-thread run"):
        cal.atomic_write_ns(_trace(terms, rc=1, wc=5, compute=compute, workers=2), f0, terms=terms)

    class Run:  # a realrun result of plain stores
        samples, epoch_seconds = atomic, None
        spec = __import__("workload.spec", fromlist=["RunSpec"]).RunSpec(scheme="hogwild", threads=1)

    with pytest.raises(ValueError, match="atomic instructions"):
        cal.atomic_write_ns(Run(), f0, terms=terms)
    with pytest.raises(ValueError, match="atomic instructions"):  # a bare trace with its run's spec
        cal.atomic_write_ns(atomic, f0, spec=Run.spec, terms=terms)


def test_lock_cost_from_a_one_thread_lock_coord_run(tmp_path):
    """The plain run's samples take 2 ns per coordinate (read 1 + write 1), the lock-coord
    run's 7 (2 more per coordinate in the read phase, 3 in the gap before each start, which
    falls in the previous sample's cycle): a lock costs the 5 ns difference of the mean
    cycles per mean coordinate; the machine, table, provenance and TOML carry it.  Other
    schemes and thread counts are refused by name; a run faster than the plain one gives 0."""
    pytest.importorskip("hwsim.machine")
    terms = _terms()
    compute = np.full(N_SAMPLES, 50, np.int64)
    plain = _trace(terms, rc=1, wc=1, compute=compute)
    f0 = cal.fit(plain, terms=terms)
    rng = np.random.default_rng(1)
    term = rng.integers(0, terms.N, N_SAMPLES)
    s = terms.support_sizes()[term]
    locked = trace_from_phases(np.zeros(N_SAMPLES, np.int64), term, s * 3, compute, s * 1, gap=s * 3)
    ns, src = cal.lock_ns(locked, f0, terms=terms)
    assert ns == pytest.approx(5.0, abs=0.05) and "lock-coord" in src
    c = cal.calibrate(plain, terms=terms, lock_cost=ns, lock_source=src, fitted=f0)
    assert c.machine.lock_cost == 5 and c.table.set_index("item").loc["lock_cost", "method"] == src
    assert c.provenance["lock_ns"] == pytest.approx(ns)
    c.save(tmp_path / "l.toml")
    assert cal.load_calibration(tmp_path / "l.toml").machine == c.machine
    assert cal.calibrate(plain, terms=terms).machine.lock_cost == 0
    assert cal.lock_ns(plain, cal.fit(locked, terms=terms), terms=terms)[0] == 0.0
    with pytest.raises(ValueError, match="lock_cost"):
        cal.calibrate(plain, terms=terms, lock_cost=-1.0)
    with pytest.raises(ValueError, match="1-thread run"):
        cal.lock_ns(_trace(terms, rc=3, wc=1, compute=compute, workers=2), f0, terms=terms)

    class Run:
        samples, epoch_seconds = locked, None
        spec = __import__("workload.spec", fromlist=["RunSpec"]).RunSpec(scheme="lock-global", threads=1)

    with pytest.raises(ValueError, match="lock-coord"):
        cal.lock_ns(Run(), f0, terms=terms)
    with pytest.raises(ValueError, match="lock-coord"):  # a bare trace with its run's spec (the CLI's case)
        cal.lock_ns(locked, f0, spec=Run.spec, terms=terms)


def test_memory_stall_by_hand():
    """Mean cycle 600 ns at mean support 75; the kernel on resident rows runs 8M samples/s
    over samples of support 80 (1.5625 ns per coordinate): stall 600 - 75·1.5625 = 482.8125
    ns; a cycle shorter than the resident time is clipped to 0."""
    f = cal.Fit(read_cost=1, write_cost=1, read_slope=1.0, write_slope=1.0, phases=True, residuals=np.zeros(1),
                delays=pd.DataFrame(), costs=pd.DataFrame(), epoch_overhead_ns=0.0, mean_cycle_ns=600.0,
                mean_support=75.0, n_samples=1, fitted_on_threads=(1,), trace_sha256="")
    assert cal.memory_stall_ns(f, 8e6, 80.0) == pytest.approx(600.0 - 75 * 1.5625)
    assert cal.memory_stall_ns(f, 1e6, 80.0) == 0.0
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="resident_samples_per_s"):
            cal.memory_stall_ns(f, bad, 80.0)
    with pytest.raises(ValueError, match="resident_support"):
        cal.memory_stall_ns(f, 8e6, 0)


def test_measure_memory_stall_runs_the_resident_rows_kernel():
    pytest.importorskip("realrun")
    t, problem, spec = _split_inputs()
    f = cal.fit(t, problem=problem)
    got = cal.measure_memory_stall(f, problem, repeats=1)
    assert got["ns"] >= 0 and got["resident_samples_per_s"] > 0
    visited = np.resize(np.arange(256), problem.N)  # the first 256 rows over and over, N samples
    assert got["resident_support"] == pytest.approx(np.diff(problem.terms.indptr)[visited].mean())
    assert "cache-resident" in got["source"]


def test_calibrate_rejects_a_bad_miss_overlap():
    terms = _terms()
    t = _trace(terms, rc=2, wc=3, compute=np.full(N_SAMPLES, 50, np.int64))
    pytest.importorskip("hwsim.machine")
    assert cal.calibrate(t, terms=terms, miss_overlap=99.6).machine.miss_overlap == 100
    for bad in (-1.0, math.inf, "50"):
        with pytest.raises(ValueError, match="miss_overlap"):
            cal.calibrate(t, terms=terms, miss_overlap=bad)


def test_probe_states_by_hand():
    """Ping-pongs 24, 24, 200, 205, 24, 25 around five repeats: repeats 0 (24-24), 2
    (200-205) and 4 (24-25) are steady, 1 and 3 saw the host move; 0 and 4 share the near
    state 0, repeat 2 is the far state 1."""
    st = cal.probe_states(pd.DataFrame({"pingpong_ns": [24.0, 24.0, 200.0, 205.0, 24.0, 25.0]}))
    assert st["steady"].tolist() == [True, False, True, False, True]
    assert st["state"].tolist() == [0, -1, 1, -1, 0]
    assert st["pingpong_lo"].tolist() == [24, 24, 200, 24, 24] and st["pingpong_hi"].tolist() == [24, 200, 205, 205, 25]
    with pytest.raises(ValueError, match="need one before"):
        cal.probe_states(pd.DataFrame({"pingpong_ns": [24.0]}))


def test_pooled_probes_and_the_drift_check_by_hand():
    """Ping-pongs of 30, 33, 36 ns: median 33, spread 6/33 = 0.18 <= 0.25 holds; a host that
    moved from 14.5 to 34 ns (spread 19.5/24.25 = 0.80) violates it; one probe cannot tell."""
    probes = [{"when": f"p{i}", "pingpong": {"transfer_ns": pp}, "overlap": _overlap(np.array(h) * 1.0)}
              for i, (pp, h) in enumerate([(30.0, [30, 40, 55, 65, 130, 215]), (36.0, [34, 44, 60, 70, 135, 225]),
                                           (33.0, [32, 42, 58, 68, 133, 220])])]
    pp, ovl = cal.pooled_probes(probes)
    assert pp == 33.0 and ovl.table["half_round_ns"].tolist() == [32, 42, 58, 68, 133, 220]
    table = cal.probe_table(probes)
    assert table["pingpong_ns"].tolist() == [30.0, 36.0, 33.0] and table["when"].tolist() == ["p0", "p1", "p2"]
    d = cal.coherence_drift(table).set_index("figure")
    assert d.loc["pingpong_ns", "observed"] == pytest.approx(6 / 33) and d.loc["pingpong_ns", "verdict"] == "holds"
    assert (d.loc["pingpong_ns", "median"], d.loc["pingpong_ns", "min"], d.loc["pingpong_ns", "max"]) == (33, 30, 36)
    moved = cal.coherence_drift(pd.DataFrame({"pingpong_ns": [14.5, 34.0], "kline_marginal_ns": [6.0, 6.1]}))
    moved = moved.set_index("figure")
    assert moved.loc["pingpong_ns", "observed"] == pytest.approx(19.5 / 24.25)
    assert moved.loc["pingpong_ns", "verdict"] == "violated" and moved.loc["kline_marginal_ns", "verdict"] == "holds"
    one = cal.coherence_drift(table.iloc[:1])
    assert (one["verdict"] == "not applicable").all()
    with pytest.raises(ValueError, match="no probes"):
        cal.pooled_probes([])


def test_calibrate_with_a_given_fit_equals_fitting_again():
    """``fitted=`` (a calibration's fit of the same trace) skips refitting, nothing else:
    the machine and the fit table are those of a fresh calibration."""
    pytest.importorskip("hwsim.machine")
    t, problem, _ = _split_inputs()
    fresh = cal.calibrate(t, problem=problem, coherence_cost=7.0, miss_overlap=40.0)
    reused = cal.calibrate(t, problem=problem, coherence_cost=7.0, miss_overlap=40.0,
                           fitted=cal.calibrate(t, problem=problem).fit)
    assert reused.machine.to_dict() == fresh.machine.to_dict()
    pd.testing.assert_frame_equal(reused.table, fresh.table)
