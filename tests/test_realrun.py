"""realrun on real threads: the serial oracle bit for bit, no lost updates where none may
happen, exact instrumentation, failures that stop the run, Ctrl-C that keeps the measured
epochs.  (Atomics: test_realrun_atomics.py; Hypothesis properties: test_realrun_properties.py.)

No timing assertions here: the machine is shared and timings are noisy.
"""
import os
import signal
import time

import numpy as np
import pytest

from conftest import small_terms
from realrun import SCHEMES, coord_cost, pingpong, run
from realrun.kernels import SCHEME_CODES
from realrun.testing import RAISING_LABEL, count_problem, expected_counts, hammer_problem, raising_update
from workload.order import worker_orders
from workload.problems import make_problem
from workload.schedule import schedule_args, step_at
from workload.serial import serial_oracle
from workload.spec import RunSpec, SpecError
from workload.trace import SAMPLE_SCHEMA, tau_overlap


@pytest.fixture(scope="module")
def svm():
    return make_problem("svm", small_terms(n_rows=150, n_features=40), lam=1e-2, reg="l2")


# --- the serial oracle, bit for bit -----------------------------------------------------
@pytest.mark.parametrize("scheme", list(SCHEME_CODES))
@pytest.mark.parametrize("dtype", ["float64", "float32", "fixed"])
def test_one_thread_equals_serial_oracle_bit_for_bit(svm, scheme, dtype):
    """With one thread every scheme is serial SGD: same orders, steps and write rule."""
    for schedule, order in (("constant", "epoch-shuffle"), ("backoff", "fixed-shuffle"), ("inv-k", "with-replacement")):
        spec = RunSpec(problem="svm", scheme=scheme, threads=1, epochs=3, step=0.05, schedule=schedule, beta=0.8,
                       order=order, dtype=dtype, seed=7)
        got = run(spec, problem=svm)
        want = serial_oracle(svm, spec)
        assert got.x.dtype == want.x.dtype
        assert np.array_equal(got.x, want.x), (schedule, order)
        assert np.array_equal(got.history["objective"], want.history["objective"])
        assert got.lost_updates == 0 and not got.interrupted


@pytest.mark.parametrize("name", ["logistic", "least-squares"])
def test_other_linear_problems_equal_the_oracle(name):
    terms = small_terms(labels="sign" if name == "logistic" else "real", seed=2)
    problem = make_problem(name, terms, lam=1e-2, reg="hogwild")
    spec = RunSpec(problem=name, scheme="hogwild", epochs=2, step=0.05, seed=1)
    assert np.array_equal(run(spec, problem=problem).x, serial_oracle(problem, spec).x)


@pytest.mark.parametrize("name", ["matrix-completion", "multiway-cut"])
def test_the_other_problems_equal_the_oracle(name):
    """Every workload problem runs through the same kernels (no renumbering for these)."""
    from workload.data import random_graph, synthetic_ratings

    if name == "matrix-completion":
        problem = make_problem(name, synthetic_ratings(n_users=30, n_items=20, rank=3, n_ratings=200, seed=1), rank=3)
    else:
        problem = make_problem(name, random_graph(n_nodes=40, n_edges=120, n_labels=3, seed=1))
    for scheme, threads in (("hogwild", 1), ("round-robin", 2)):
        spec = RunSpec(problem=name, scheme=scheme, threads=threads, epochs=2, step=0.05, seed=3)
        got = run(spec, problem=problem)
        assert not got.info["relabel"]
        assert np.array_equal(got.x, serial_oracle(problem, spec).x), scheme


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("dtype", ["float64", "fixed"])
def test_round_robin_equals_oracle_interleaving(svm, threads, dtype):
    """The token makes p threads apply updates in the oracle's round-robin order."""
    for order in ("epoch-shuffle", "with-replacement"):
        spec = RunSpec(problem="svm", scheme="round-robin", threads=threads, epochs=2, step=0.05, schedule="inv-k",
                       order=order, dtype=dtype, seed=3)
        got = run(spec, problem=svm)
        assert np.array_equal(got.x, serial_oracle(svm, spec).x), order


def test_more_workers_than_terms():
    """Workers with empty orders idle through the epoch; round-robin still matches the oracle."""
    problem = make_problem("svm", small_terms(n_rows=3, n_features=5, density=0.5), lam=1e-2)
    for scheme in ("round-robin", "hogwild", "lock-coord"):
        spec = RunSpec(problem="svm", scheme=scheme, threads=5, epochs=2, seed=2)
        got = run(spec, problem=problem)
        assert len(got.samples) == 6
        if scheme == "round-robin":
            assert np.array_equal(got.x, serial_oracle(problem, spec).x)


def test_fast_path_equals_plain_path(svm):
    """Prefetching, renumbering coordinates and instrumentation change no value: the plain
    loop (no prefetch, data's numbering) is the fast path's slow oracle."""
    for scheme, threads in (("hogwild", 1), ("round-robin", 3), ("lock-coord", 1)):
        spec = RunSpec(problem="svm", scheme=scheme, threads=threads, epochs=2, step=0.05, seed=5)
        plain = run(spec.replace(options={"prefetch": 0, "relabel": False}), problem=svm, instrument=False)
        assert not plain.info["relabel"]
        for pf, relabel, inst in ((16, True, True), (16, False, False), (0, True, False)):
            fast = run(spec.replace(options={"prefetch": pf, "relabel": relabel}), problem=svm, instrument=inst)
            assert fast.info["relabel"] == relabel
            assert np.array_equal(fast.x, plain.x), (scheme, pf, relabel, inst)
            assert np.array_equal(fast.history["objective"], plain.history["objective"])


def test_wide_models_take_the_32_bit_coordinate_path():
    """n > 65536: coordinates no longer fit 16 bits; same values, same result."""
    problem = make_problem("svm", small_terms(n_rows=100, n_features=70_000, density=0.0005, seed=4), lam=1e-2)
    spec = RunSpec(problem="svm", scheme="hogwild", epochs=2, step=0.05, seed=4)
    for relabel in (True, False):
        got = run(spec.replace(options={"relabel": relabel}), problem=problem)
        assert np.array_equal(got.x, serial_oracle(problem, spec).x)


def test_hogwild_write_mode_atomic_is_exact_with_one_thread(svm):
    spec = RunSpec(problem="svm", scheme="hogwild", write_mode="atomic", epochs=2, step=0.05, seed=4)
    got = run(spec, problem=svm)
    assert got.info["kernel_scheme"] == "hogwild-atomic"
    assert np.array_equal(got.x, serial_oracle(svm, spec).x)


# --- lost updates -------------------------------------------------------------------------
EXCLUSIVE = [("hogwild-atomic", {}), ("lock-global", {}), ("lock-coord", {}), ("round-robin", {}),
             ("hogwild", {"write_mode": "atomic"})]


@pytest.mark.parametrize("scheme,extra", EXCLUSIVE)
@pytest.mark.parametrize("dtype", ["float64", "fixed"])
def test_atomic_and_locked_schemes_lose_no_update_under_contention(scheme, extra, dtype):
    """4 threads on 4 coordinates, every term conflicting: every single +1 must land."""
    problem = hammer_problem(n_terms=3000, n=4)
    spec = RunSpec(problem="svm", scheme=scheme, threads=4, epochs=3, dtype=dtype, seed=1, **extra)
    got = run(spec, problem=problem, instrument=False)
    x = got.x.astype(np.float64) / (2.0**spec.fixed_point_bits if dtype == "fixed" else 1.0)
    assert np.array_equal(x, expected_counts(problem, spec.epochs))
    assert got.lost_updates == 0


def test_plain_hogwild_lost_updates_are_counted_not_assumed_zero():
    """The probe counts clobbered writes; any deficit in the counts implies a clobber."""
    problem = hammer_problem(n_terms=3000, n=4)
    spec = RunSpec(problem="svm", scheme="hogwild", threads=2, epochs=4, seed=2, options={"count_lost": True})
    got = run(spec, problem=problem, instrument=False)
    deficit = expected_counts(problem, spec.epochs) - got.x
    assert np.all(deficit >= 0)  # a value only ever comes from some write: never above the count
    assert got.lost_updates is not None and got.lost_updates >= 0
    if deficit.sum() > 0:
        assert got.lost_updates > 0
    # Without the probe, lost updates on 2 threads are unknown: None, never a silent 0.
    assert run(spec.replace(options={}), problem=problem, instrument=False).lost_updates is None


@pytest.mark.slow
def test_plain_hogwild_does_lose_updates_under_contention():
    """The hammer really is contended: plain stores lose updates (shows the test above bites)."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    problem = hammer_problem(n_terms=20000, n=2)
    spec = RunSpec(problem="svm", scheme="hogwild", threads=2, epochs=10, seed=2, options={"count_lost": True})
    for _ in range(3):  # a quiet scheduler may serialise the threads for a whole run; rarely thrice
        got = run(spec, problem=problem, instrument=False)
        if got.lost_updates > 0:
            break
    assert got.lost_updates > 0
    assert (expected_counts(problem, spec.epochs) - got.x).sum() > 0


# --- instrumentation ----------------------------------------------------------------------
def test_trace_is_consistent_and_exact(svm):
    spec = RunSpec(problem="svm", scheme="hogwild", threads=2, epochs=3, step=0.05, schedule="inv-k", seed=9)
    got = run(spec, problem=svm)
    s = got.samples
    N = svm.N
    assert list(s.columns) == list(SAMPLE_SCHEMA) and len(s) == N * spec.epochs
    total = N * spec.epochs
    # Counters: start and end labels are permutations of 0..total-1, per epoch blocks.
    assert np.array_equal(np.sort(s["start_seq"]), np.arange(total))
    assert np.array_equal(np.sort(s["end_seq"]), np.arange(total))
    assert np.array_equal(s["sample"], s["start_seq"])
    assert (s["finished_at_start"] <= s["start_seq"]).all()
    assert (s["started_at_end"] >= s["start_seq"] + 1).all()
    assert (s["end_seq"] >= s["finished_at_start"]).all()
    tau = got.tau()
    assert np.array_equal(tau, tau_overlap(s)) and (tau >= 0).all() and tau.max() <= 2 * (spec.threads - 1)
    # Clocks: in order within a sample, and samples of one worker in order.
    t = s[["t_start", "t_read_done", "t_write_start", "t_end"]].to_numpy()
    assert (t >= 0).all() and (np.diff(t, axis=1) >= 0).all()
    for _, g in s.groupby(["worker", "epoch"]):
        g = g.sort_values("position")
        assert (np.diff(g["t_start"]) >= 0).all() and (np.diff(g["start_seq"]) > 0).all()
    assert (s["read_seq"] == -1).all()
    # Terms and steps are the spec's: worker_orders and step_at.
    code, step0, beta, t0 = schedule_args(spec, N)
    for (w, e), g in s.groupby(["worker", "epoch"]):
        order = worker_orders(spec, N, e)[w]
        assert np.array_equal(g.sort_values("position")["term"], order)
        ts = g["position"].to_numpy() * spec.threads + w
        assert np.array_equal(g["step"], [step_at(code, step0, beta, t0, e, int(t)) for t in ts])


def test_one_thread_trace_has_no_overlap_and_the_history_is_timed(svm):
    spec = RunSpec(problem="svm", scheme="hogwild", epochs=2, seed=1)
    got = run(spec, problem=svm)
    assert (got.tau() == 0).all()
    assert np.array_equal(got.samples["start_seq"], got.samples["end_seq"])
    h = got.history
    assert h["epoch"].tolist() == [0, 1, 2] and h["samples"].tolist() == [0, svm.N, 2 * svm.N]
    assert np.allclose(h["time"].to_numpy()[1:], np.cumsum(got.epoch_seconds))
    assert got.samples_per_s > 0 and got.jit_seconds >= 0 and len(got.cores) == 1


def _overlapping_pairs(s):
    """Pairs (k, l) of samples whose intervals overlap, from the counters alone: l started
    before k ended and l had not finished when k started."""
    start = s["start_seq"].to_numpy()
    end = s["end_seq"].to_numpy()
    sae = s["started_at_end"].to_numpy()
    fas = s["finished_at_start"].to_numpy()
    ov = (start[None, :] < sae[:, None]) & (end[None, :] >= fas[:, None])
    np.fill_diagonal(ov, False)
    return np.argwhere(ov)


@pytest.mark.parametrize("scheme,threads", [("lock-global", 3), ("round-robin", 3), ("lock-coord", 3),
                                            ("hogwild", 2)])
def test_trace_shows_each_schemes_exclusion(scheme, threads):
    """Measured intervals: none overlap under lock-global / round-robin; under lock-coord
    only samples with disjoint supports; τ from the counters equals the pairwise count."""
    problem = count_problem([sorted({j % 7, (3 * j) % 7}) for j in range(120)], 7)
    spec = RunSpec(problem="svm", scheme=scheme, threads=threads, epochs=2, seed=3)
    got = run(spec, problem=problem)
    s = got.samples
    pairs = _overlapping_pairs(s)
    assert np.array_equal(np.bincount(pairs[:, 0], minlength=len(s)), got.tau())
    if scheme in ("lock-global", "round-robin"):
        assert (got.tau() == 0).all()
    if scheme == "lock-coord":
        terms = s["term"].to_numpy()
        for k, l in pairs:
            assert not set(problem.terms.support(terms[k])) & set(problem.terms.support(terms[l]))


def test_trace_every_records_a_documented_sample_of_positions(svm):
    spec = RunSpec(problem="svm", scheme="hogwild", threads=2, epochs=2, seed=1, options={"trace_every": 7})
    got = run(spec, problem=svm)
    s = got.samples
    assert (s["position"] % 7 == 0).all()
    sizes = [o.size for o in worker_orders(spec, svm.N, 0)]
    assert len(s) == spec.epochs * sum((n + 6) // 7 for n in sizes)
    assert (got.tau() >= 0).all()


@pytest.mark.parametrize("scheme", ["hogwild", "lock-global"])
def test_clock_every_times_a_documented_sample_and_counts_every_one(svm, scheme):
    spec = RunSpec(problem="svm", scheme=scheme, threads=2, epochs=2, seed=1, options={"clock_every": 3})
    got = run(spec, problem=svm)
    s = got.samples
    assert len(s) == spec.epochs * svm.N  # every sample recorded, counters for all
    timed = (s["position"] % 3 == 0).to_numpy()
    cols = ["t_start", "t_read_done", "t_write_start", "t_end"]
    assert (s.loc[timed, cols] >= 0).all().all() and (s.loc[~timed, cols] == -1).all().all()
    assert np.array_equal(np.sort(s["start_seq"]), np.arange(len(s)))


def test_uninstrumented_run_records_nothing(svm):
    got = run(RunSpec(problem="svm", epochs=1), problem=svm, instrument=False)
    assert got.samples.empty and list(got.samples.columns) == list(SAMPLE_SCHEMA) and not got.instrument


# --- failures, Ctrl-C, bad input ----------------------------------------------------------------
@pytest.mark.parametrize("scheme,threads", [("round-robin", 2), ("lock-global", 3), ("hogwild", 2)])
def test_a_failing_worker_stops_the_run_and_its_error_is_raised(scheme, threads):
    """The other workers (spinning on the dead worker's token or lock) stop; nothing hangs."""
    n = 6
    supports = [sorted({j % n, (j + 1) % n}) for j in range(400)]
    y = np.ones(len(supports))
    y[250] = RAISING_LABEL
    problem = count_problem(supports, n, update=raising_update, y=y)
    spec = RunSpec(problem="svm", scheme=scheme, threads=threads, epochs=3, seed=0)
    with pytest.raises(ValueError, match="poisoned term") as info:
        run(spec, problem=problem)
    assert any("realrun worker" in note for note in getattr(info.value, "__notes__", []))


def _interrupt_after(epochs_done, how):
    def progress(epoch, row):
        if epoch + 1 == epochs_done:
            if how == "signal":
                os.kill(os.getpid(), signal.SIGINT)
            else:
                raise KeyboardInterrupt
    return progress


@pytest.mark.parametrize("how", ["raise", "signal"])
def test_ctrl_c_keeps_the_measured_epochs(svm, how):
    spec = RunSpec(problem="svm", scheme="hogwild", threads=2, epochs=50, seed=1)
    handler = signal.getsignal(signal.SIGINT)
    got = run(spec, problem=svm, progress=_interrupt_after(2, how))
    assert got.interrupted, f"not interrupted; the SIGINT handler before the run was {handler!r}"
    done = len(got.epoch_seconds)
    assert 2 <= done < spec.epochs
    assert got.history["epoch"].tolist() == list(range(done + 1))
    assert len(got.samples) == done * svm.N
    # x is the model after the last completed epoch (its objective is the last history row).
    assert svm.objective(got.x) == got.history["objective"].iloc[-1]


def test_ctrl_c_stops_the_run_even_when_its_keyboardinterrupt_is_lost(svm):
    """A KeyboardInterrupt raised where something drops it (a finalizer, a callback that
    swallows exceptions) must not let the run go on: the latch saw the SIGINT."""
    def progress(epoch, row):
        if epoch == 1:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # the handler runs here and its exception is dropped below
            except KeyboardInterrupt:
                pass
    before = signal.getsignal(signal.SIGINT)
    got = run(RunSpec(problem="svm", scheme="hogwild", threads=2, epochs=50, seed=1), problem=svm,
              progress=progress)
    assert got.interrupted
    assert len(got.epoch_seconds) == 2
    assert signal.getsignal(signal.SIGINT) is before  # the run's handler is gone again



@pytest.mark.parametrize("options,field", [({"prefetch": -1}, "options.prefetch"),
                                           ({"trace_every": 0}, "options.trace_every"),
                                           ({"count_lost": "yes"}, "options.count_lost"),
                                           ({"relabel": 1}, "options.relabel")])
def test_bad_options_are_rejected_by_name(svm, options, field):
    with pytest.raises(SpecError, match=field):
        run(RunSpec(problem="svm", options=options), problem=svm)


def test_relabel_is_refused_for_problems_that_are_not_linear():
    problem = count_problem([[0, 1], [2, 3]], 4)
    with pytest.raises(SpecError, match="options.relabel"):
        run(RunSpec(problem="svm", options={"relabel": True}), problem=problem)
    assert not run(RunSpec(problem="svm"), problem=problem).info["relabel"]


def test_lock_coord_rejects_unsorted_supports():
    problem = count_problem([[0, 1], [2, 3]], 4)
    problem.terms.indices[:2] = [1, 0]  # break the Terms promise on purpose
    with pytest.raises(ValueError, match="strictly increasing"):
        run(RunSpec(problem="svm", scheme="lock-coord", threads=2), problem=problem)


def test_pinning_uses_distinct_cores_when_they_suffice(svm):
    cpus = sorted(os.sched_getaffinity(0))
    got = run(RunSpec(problem="svm", threads=min(2, len(cpus)), epochs=1), problem=svm, instrument=False)
    assert got.info["pinned"]
    assert [c for (c,) in got.cores] == cpus[:got.threads]
    over = run(RunSpec(problem="svm", threads=len(cpus) + 1, epochs=1), problem=svm, instrument=False)
    assert not over.info["pinned"] and all(set(c) == set(cpus) for c in over.cores)


# --- calibration microbenchmarks -------------------------------------------------------------
def test_visit_and_sharing_diagnostics_run_the_same_arithmetic(svm):
    from realrun.calibrate import sharing_rates, visit_rates

    vr = visit_rates(svm, repeats=1)
    assert list(vr["order"]) == ["resident", "storage", "random", "random-plain"] and (vr["samples_per_s"] > 0).all()
    sr = sharing_rates(svm, threads=2, repeats=1)
    assert list(sr["model"]) == ["shared", "private"] and (sr["samples_per_s"] > 0).all()
    assert (sharing_rates(svm, threads=1, repeats=1, prefetch=0)["samples_per_s"] > 0).all()
    with pytest.raises(ValueError, match="prefetch = -1"):
        sharing_rates(svm, prefetch=-1)


def test_pingpong_and_coord_cost_measure_positive_times():
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    p = pingpong(rounds=20_000, batch=500)
    assert np.isfinite(p.transfer_ns) and p.transfer_ns > 0 and p.round_trip_ns.size == 40
    c = coord_cost(n=1000, support=20, reps=2000)
    assert c.read_ns > 0 and c.write_ns > 0


# --- row order: supports read and written by ascending coordinate ---------------------------
def test_layout_row_order_is_each_supports_argsort(svm):
    from realrun.engine import Layout

    lay = Layout.of(svm, True)
    ro = lay.row_order()
    assert ro.dtype == np.uint8 and ro is lay.row_order()  # built once, narrowest type
    for e in range(svm.N):
        lo, hi = lay.indptr[e], lay.indptr[e + 1]
        assert np.array_equal(ro[lo:hi], np.argsort(lay.indices[lo:hi]))
        assert (np.diff(lay.indices[lo:hi][ro[lo:hi]].astype(np.int64)) > 0).all()


@pytest.mark.parametrize("scheme", list(SCHEME_CODES))
def test_row_order_changes_no_value(svm, scheme):
    """Reading and writing each support in ascending coordinate order is the same
    arithmetic: with it on, one thread still equals the oracle bit for bit."""
    spec = RunSpec(problem="svm", scheme=scheme, threads=1, epochs=2, step=0.05, seed=4,
                   options={"row_order": True})
    got = run(spec, problem=svm)
    assert got.info["row_ordered"]
    assert np.array_equal(got.x, serial_oracle(svm, spec).x)


def test_row_order_is_on_for_several_threads_and_keeps_round_robin_exact(svm):
    """Round-robin with 3 threads (a fixed interleaving) equals the oracle with the row
    order on (the default for threads > 1) and off."""
    rr = RunSpec(problem="svm", scheme="round-robin", threads=3, epochs=2, step=0.05, seed=4)
    assert run(rr, problem=svm, instrument=False).info["row_ordered"]
    assert not run(rr.replace(threads=1), problem=svm, instrument=False).info["row_ordered"]
    for flag in (True, False):
        got = run(rr.replace(options={"row_order": flag}), problem=svm, instrument=False)
        assert got.info["row_ordered"] == flag
        assert np.array_equal(got.x, serial_oracle(svm, rr).x), flag
    with pytest.raises(SpecError, match="options.row_order"):
        run(rr.replace(options={"row_order": "yes"}), problem=svm)


def test_sorted_rows_are_the_by_degree_problems_arithmetic(svm):
    """options.sort_rows stores each row by ascending kernel coordinate: the arithmetic of
    workload.layout.relabel_by_degree's problem (what hwsim simulates for realrun's
    layout), bit for bit -- one thread, and round-robin's fixed interleaving at 3."""
    from realrun.engine import Layout
    from workload.layout import relabel_by_degree

    lay = Layout.of(svm, True)
    ind, val = lay.sorted_rows()
    assert lay.sorted_rows()[0] is ind  # built once
    plain = Layout.of(svm, False)  # no renumbering, supports sorted: the data's own arrays
    assert plain.sorted_rows()[0] is plain.indices and plain.sorted_rows()[1] is plain.values
    ro = lay.row_order()
    for e in range(svm.N):
        lo, hi = lay.indptr[e], lay.indptr[e + 1]
        assert np.array_equal(ind[lo:hi], lay.indices[lo:hi][ro[lo:hi]])
        assert np.array_equal(val[lo:hi], lay.values[lo:hi][ro[lo:hi]])
    by_degree, old_of_new = relabel_by_degree(svm)
    for scheme, threads in (("hogwild", 1), ("round-robin", 3)):
        spec = RunSpec(problem="svm", scheme=scheme, threads=threads, epochs=2, step=0.05, seed=4,
                       options={"sort_rows": True})
        got = run(spec, problem=svm, instrument=False)
        assert got.info["sort_rows"] and not got.info["row_ordered"]
        want = np.empty_like(got.x)
        want[old_of_new] = serial_oracle(by_degree, spec).x
        assert np.array_equal(got.x, want), scheme


def test_sorted_rows_default_only_where_no_serial_order_is_promised(svm):
    base = RunSpec(problem="svm", scheme="hogwild", threads=2, epochs=1, step=0.05, seed=4)
    assert run(base, problem=svm, instrument=False).info["sort_rows"]
    assert run(base.replace(scheme="hogwild-atomic"), problem=svm, instrument=False).info["sort_rows"]
    assert not run(base.replace(threads=1), problem=svm, instrument=False).info["sort_rows"]
    for scheme in ("round-robin", "lock-coord", "lock-global"):
        assert not run(base.replace(scheme=scheme), problem=svm, instrument=False).info["sort_rows"], scheme
    off = run(base.replace(options={"sort_rows": False}), problem=svm, instrument=False)
    assert not off.info["sort_rows"] and off.info["row_ordered"]
    with pytest.raises(SpecError, match="options.sort_rows"):
        run(base.replace(options={"sort_rows": 1}), problem=svm)
