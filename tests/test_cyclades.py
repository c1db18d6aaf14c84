"""Cyclades (Pan et al., NIPS 2016) in both engines: serial equivalence on every run.

* the schedule: components are exactly the connected components of each batch's conflict
  graph (scipy's, as the oracle), each on one core in batch order, the balancer is the
  greedy largest-first rule (a plain Python oracle);
* the property: for any problem, batch size, thread count, seed, order, schedule and
  dtype, realrun's and hwsim's models are bit-identical to serial SGD over the recorded
  permutation (the plain Python oracle ``serial_replay``), which is the spec's one-worker
  order (so also ``serial_oracle`` of the same spec on one thread);
* hwsim: fast ≡ reference, the barrier and component-cost rules in closed form;
* realrun: the trace, the cost split, failures that stop the run.

The default run keeps to one problem kind and two dtypes (each new combination costs JIT
compilations); ``-m slow`` runs every problem kind and dtype.  No timing assertions: the
machine is shared.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.csgraph import connected_components

import hwsim
import realrun
from analysis.strategies import sparse_terms
from hwsim import Machine
from hwsim.cyclades import CycladesError, CycladesSimResult
from hwsim.delays import Constant, Empirical, ShiftedExponential
from realrun.cyclades import CycladesRealResult
from realrun.testing import RAISING_LABEL, count_problem, hammer_problem, raising_update
from workload.cyclades import (DEFAULT_BATCH_SIZE, SerialEquivalenceError, batch_bounds, bit_equal, check_schedule,
                               cyclades_options, epoch_order, epoch_schedule, replay, schedule_stats,
                               serial_permutation, serial_replay, suggest_batch_size, verify)
from workload.problems import make_problem
from workload.schedule import schedule_args, step_at
from workload.serial import serial_oracle
from workload.spec import RunSpec, SpecError
from workload.trace import SAMPLE_SCHEMA, tau_overlap

ORDERS = ("fixed-shuffle", "epoch-shuffle", "with-replacement")
SCHEDULES = ("constant", "backoff", "inv-k")
ALL_KINDS = ("svm", "logistic", "least-squares", "matrix-completion", "multiway-cut")


# --- strategies ---------------------------------------------------------------------------------
@st.composite
def problems(draw, kinds=("svm",)):
    """A small problem of one of ``kinds`` (linear ones from drawn terms, which shrink well;
    matrix completion and multiway cut from their generators at a drawn seed)."""
    kind = draw(st.sampled_from(kinds))
    if kind in ("svm", "logistic", "least-squares"):
        terms = draw(sparse_terms(n_terms=(1, 40), n_coords=(1, 24), support_size=(0, 5), hot=(1, 4),
                                  labels="real" if kind == "least-squares" else "sign"))
        return make_problem(kind, terms, lam=draw(st.sampled_from([0.0, 1e-2, 0.3])),
                            reg=draw(st.sampled_from(["l2", "hogwild"])))
    from workload.data import random_graph, synthetic_ratings

    seed = draw(st.integers(0, 2**16))
    if kind == "matrix-completion":
        users, items = draw(st.integers(2, 8)), draw(st.integers(2, 8))
        data = synthetic_ratings(n_users=users, n_items=items, rank=2,
                                 n_ratings=draw(st.integers(1, users * items)), seed=seed)
        return make_problem(kind, data, rank=2, lam=0.05)
    nodes = draw(st.integers(3, 12))
    data = random_graph(n_nodes=nodes, n_edges=draw(st.integers(1, nodes * (nodes - 1) // 2)), n_labels=3,
                        seed=seed, n_terminals=3)
    return make_problem(kind, data)


@st.composite
def cyclades_specs(draw, problem_name, dtypes=("float64", "fixed"), threads=(1, 3), epochs=(1, 2)):
    return RunSpec(problem=problem_name, scheme="cyclades", threads=draw(st.integers(*threads)),
                   epochs=draw(st.integers(*epochs)), step=draw(st.sampled_from([0.01, 0.1, 0.5])),
                   schedule=draw(st.sampled_from(SCHEDULES)), beta=0.7, order=draw(st.sampled_from(ORDERS)),
                   dtype=draw(st.sampled_from(dtypes)), seed=draw(st.integers(0, 2**32 - 1)),
                   options={"batch_size": draw(st.integers(1, 30))})


@st.composite
def machines_for(draw, threads):
    cores = draw(st.integers(threads, threads + 2))
    delay = draw(st.one_of(st.integers(0, 40).map(Constant),
                           st.tuples(st.integers(0, 20), st.floats(0.02, 1.0)).map(lambda a: ShiftedExponential(*a)),
                           st.lists(st.integers(0, 60), min_size=1, max_size=5).map(Empirical)))
    return Machine(cores=cores, read_cost=draw(st.integers(1, 6)), write_cost=draw(st.integers(1, 6)), delay=delay,
                   coherence_cost=draw(st.sampled_from([0, 5, 40])), line_coords=draw(st.sampled_from([1, 3, 8])))


def _with_costs(spec, barrier, component):
    return spec.replace(options={**spec.options, "barrier_cost": barrier, "component_cost": component})


# --- the schedule ----------------------------------------------------------------------------------
def _graph_components(terms, batch):
    """Oracle: connected components of the batch's conflict graph (scipy), as a label per term."""
    m = batch.size
    rows = np.repeat(np.arange(m), np.diff(terms.indptr)[batch])
    cols = np.concatenate([terms.support(int(e)) for e in batch]) if m else np.zeros(0, np.int64)
    inc = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(m, max(terms.n, 1)))
    _, labels = connected_components(inc @ inc.T, directed=False)
    return labels


def _lpt_oracle(weights_by_root: dict, cores: int) -> dict:
    """Greedy largest-first: heaviest first (ties: earlier root), to the least-loaded core (ties: lowest)."""
    load = [0] * cores
    out = {}
    for root in sorted(weights_by_root, key=lambda r: (-weights_by_root[r], r)):
        c = min(range(cores), key=lambda k: (load[k], k))
        out[root] = c
        load[c] += weights_by_root[root]
    return out


@given(terms=sparse_terms(n_terms=(1, 60), n_coords=(1, 30), support_size=(0, 4), hot=(1, 3)),
       batch_size=st.integers(1, 25), cores=st.integers(1, 5), seed=st.integers(0, 2**16))
@settings(deadline=None)
def test_components_are_the_conflict_graphs_and_balanced_largest_first(terms, batch_size, cores, seed):
    order = np.random.default_rng(seed).integers(0, terms.N, size=terms.N)  # repeats, as with replacement
    s = epoch_schedule(terms, order, batch_size, cores)
    check_schedule(s, terms)
    sizes = np.diff(terms.indptr)
    for b in range(s.batches):
        lo, hi = int(s.bounds[b]), int(s.bounds[b + 1])
        labels = _graph_components(terms, order[lo:hi])
        roots = s.comp[lo:hi]
        # same partition, and a component is named by its first position
        for i in range(hi - lo):
            assert roots[i] == lo + np.flatnonzero(labels == labels[i])[0]
        weights = {int(r): int((sizes[order[lo:hi][roots == r]] + 1).sum()) for r in np.unique(roots)}
        want = _lpt_oracle(weights, cores)
        for c in range(cores):
            lst = s.core_list(b, c)
            assert all(want[int(r)] == c for r in s.comp[lst])
            # the core's components, heaviest first (ties: earlier first), each in batch order
            seen = list(dict.fromkeys(int(r) for r in s.comp[lst]))
            assert seen == sorted(seen, key=lambda r: (-weights[r], r))
            assert list(lst) == [p for r in seen for p in range(lo, hi) if s.comp[p] == r]


def test_dense_batches_are_one_component_and_sparse_ones_spread():
    dense = hammer_problem(n_terms=200, n=4, seed=0).terms  # every pair of terms conflicts
    s = epoch_schedule(dense, np.arange(200), 50, 3)
    stats = schedule_stats(s, dense)
    assert stats["components"].tolist() == [1] * 4 and stats["largest"].tolist() == [50] * 4
    assert np.allclose(stats["imbalance"], 3.0)  # one core does all, the mean is a third
    disjoint = count_problem([[j] for j in range(60)], 60).terms  # no conflicts at all
    s = epoch_schedule(disjoint, np.arange(60), 60, 3)
    stats = schedule_stats(s, disjoint)
    assert stats["components"].tolist() == [60] and stats["imbalance"].tolist() == [1.0]
    assert np.diff(s.core_ptr[0]).tolist() == [20, 20, 20]


def test_batches_are_the_one_worker_order_cut_consecutively():
    spec = RunSpec(scheme="cyclades", threads=3, order="epoch-shuffle", seed=4)
    from workload.order import worker_orders

    assert np.array_equal(epoch_order(spec, 50, 2), np.concatenate(worker_orders(spec, 50, 2, workers=1)))
    assert batch_bounds(10, 4).tolist() == [0, 4, 8, 10]
    assert batch_bounds(0, 4).tolist() == [0]


def test_suggest_batch_size_follows_pan_et_al():
    # 3 terms on a path 0-1-2: degree bound of the middle term is 2 -> (1 - 0.5) * 3 / 2 -> 1
    t = count_problem([[0], [0, 1], [1]], 2).terms
    assert suggest_batch_size(t) == 1
    assert suggest_batch_size(count_problem([[j] for j in range(10)], 10).terms) == 5  # no conflicts: Δ_C -> 1
    assert suggest_batch_size(count_problem([[0], [0, 1], []], 2).terms) == 1  # an empty last row
    with pytest.raises(ValueError, match="eps"):
        suggest_batch_size(t, eps=1.0)


@pytest.mark.parametrize("options,field", [({"batch_size": 0}, "options.batch_size"),
                                           ({"batch_size": 2.5}, "options.batch_size"),
                                           ({"batch_size": True}, "options.batch_size"),
                                           ({"barrier_cost": -1}, "options.barrier_cost"),
                                           ({"component_cost": float("nan")}, "options.component_cost"),
                                           ({"verify": "yes"}, "options.verify")])
def test_bad_options_are_rejected_by_name(options, field):
    spec = RunSpec(scheme="cyclades", options=options)
    with pytest.raises(SpecError, match=field) as info:
        cyclades_options(spec)
    assert repr(next(iter(options.values()))) in str(info.value) and "set " in str(info.value)
    problem = count_problem([[0], [1]], 2)
    with pytest.raises(SpecError, match=field):
        realrun.run(spec, problem=problem)
    with pytest.raises(SpecError, match=field):
        hwsim.simulate(spec, Machine(cores=1), problem=problem)


def test_defaults():
    o = cyclades_options(RunSpec(scheme="cyclades"))
    assert o == (DEFAULT_BATCH_SIZE, 0, 0.0, True)


# --- serial equivalence: the property -------------------------------------------------------------
def _check_equivalent(problem, spec, got):
    """``got`` (either engine) equals serial SGD over its recorded permutation, which is the
    spec's one-worker order with serial steps."""
    perm = serial_permutation(spec, problem.N)
    assert np.array_equal(got.permutation, perm.terms) and np.array_equal(got.epoch_ptr, perm.epoch_ptr)
    assert got.steps.tobytes() == perm.steps.tobytes()
    want = serial_replay(problem, spec, got.permutation, got.steps)
    assert bit_equal(got.x, want)
    assert got.info["serially_equivalent"] is True


@given(data=st.data())
@settings(deadline=None)
def test_property_realrun_and_hwsim_equal_serial_sgd_over_the_permutation(data):
    problem = data.draw(problems(), label="problem")
    spec = data.draw(cyclades_specs(problem.name), label="spec")
    machine = data.draw(machines_for(spec.threads), label="machine")
    real = realrun.run(spec, problem=problem)
    assert isinstance(real, CycladesRealResult) and real.lost_updates == 0
    _check_equivalent(problem, spec, real)
    sim = hwsim.simulate(spec, machine, problem=problem)
    assert isinstance(sim, CycladesSimResult) and sim.lost_updates == 0
    _check_equivalent(problem, spec, sim)
    assert bit_equal(real.x, sim.x)
    # the recorded permutation is the spec's one-thread serial order: serial SGD itself
    assert bit_equal(real.x, serial_oracle(problem, spec.replace(scheme="serial", threads=1)).x)


@pytest.mark.slow
@given(data=st.data())
@settings(deadline=None, max_examples=60)
def test_property_every_problem_kind_and_dtype(data):
    problem = data.draw(problems(kinds=ALL_KINDS), label="problem")
    spec = data.draw(cyclades_specs(problem.name, dtypes=("float64", "float32", "fixed"), threads=(1, 4)),
                     label="spec")
    options = dict(spec.options, prefetch=data.draw(st.sampled_from([0, 4])))
    if problem.name in ("svm", "logistic", "least-squares"):
        options["relabel"] = data.draw(st.booleans())
    spec = spec.replace(options=options)
    machine = data.draw(machines_for(spec.threads), label="machine")
    real = realrun.run(spec, problem=problem, instrument=data.draw(st.booleans()))
    _check_equivalent(problem, spec, real)
    sim = hwsim.simulate(spec, machine, problem=problem, engine=data.draw(st.sampled_from(hwsim.ENGINES)))
    _check_equivalent(problem, spec, sim)


@given(problem=problems(), data=st.data())
@settings(deadline=None, max_examples=15)
def test_any_order_that_keeps_each_component_equals_the_run(problem, data):
    """Components of a batch share no coordinate: replaying core by core (not batch order)
    with each term's own step gives the same model, bit for bit."""
    spec = data.draw(cyclades_specs(problem.name, epochs=(1, 1)))
    s = epoch_schedule(problem.terms, epoch_order(spec, problem.N, 0), spec.options["batch_size"], spec.threads)
    perm = serial_permutation(spec, problem.N)
    core_by_core = s.work  # batch by batch, core by core, component by component
    reversed_cores = np.concatenate([s.core_list(b, c) for b in range(s.batches)
                                     for c in reversed(range(s.cores))]) if s.batches else s.work
    want = serial_replay(problem, spec, perm.terms, perm.steps)
    for positions in (core_by_core, reversed_cores):
        got = serial_replay(problem, spec, perm.terms[positions], perm.steps[positions])
        assert bit_equal(got, want)


@pytest.mark.parametrize("dtype", ["float64", "float32", "fixed"])
def test_jitted_replay_equals_the_python_oracle(dtype):
    from conftest import small_terms

    problem = make_problem("svm", small_terms(n_rows=60, n_features=12, seed=3), lam=0.1, reg="l2")
    spec = RunSpec(problem="svm", scheme="cyclades", dtype=dtype, schedule="inv-k", epochs=2, seed=5)
    perm = serial_permutation(spec, problem.N)
    assert bit_equal(replay(problem, spec, perm.terms, perm.steps),
                     serial_replay(problem, spec, perm.terms, perm.steps))


def test_verify_names_the_first_differing_coordinate():
    problem = count_problem([[0, 1], [1, 2], [3]], 4)
    spec = RunSpec(scheme="cyclades", epochs=1, seed=0, options={"batch_size": 2})
    perm = serial_permutation(spec, problem.N)
    x = replay(problem, spec, perm.terms, perm.steps)
    verify(x, problem, spec, perm, "test")  # equal: no error
    x[2] += 1.0
    with pytest.raises(SerialEquivalenceError, match="1 coordinate.*first 2"):
        verify(x, problem, spec, perm, "test")


# --- hwsim ------------------------------------------------------------------------------------------
@given(problem=problems(), data=st.data())
@settings(deadline=None, max_examples=15)
def test_hwsim_fast_engine_equals_reference_bit_for_bit(problem, data):
    spec = data.draw(cyclades_specs(problem.name))
    spec = _with_costs(spec, data.draw(st.integers(0, 30)), data.draw(st.sampled_from([0, 0.5, 3.0])))
    machine = data.draw(machines_for(spec.threads))
    fast = hwsim.simulate(spec, machine, problem=problem, engine="fast")
    ref = hwsim.simulate(spec, machine, problem=problem, engine="reference")
    assert hwsim.trace_hash(fast) == hwsim.trace_hash(ref)
    assert fast.batches.equals(ref.batches) and fast.info == ref.info
    assert fast.history.equals(ref.history)


def test_hwsim_rules_in_closed_form():
    """Constant delays, no coherence: each batch lasts its busiest core's Σ (m·R + d + m·W),
    every barrier releases ``barrier_cost`` after its last arrival, the component phase
    lasts the busiest core's Σ rint(component_cost · (nnz + size))."""
    rng = np.random.default_rng(0)
    supports = [sorted(rng.choice(30, size=rng.integers(0, 4), replace=False)) for _ in range(90)]
    problem = count_problem(supports, 30)
    R, W, D, BC, CC = 3, 5, 11, 7, 0.75
    machine = Machine(cores=3, read_cost=R, write_cost=W, delay=Constant(D))
    spec = RunSpec(scheme="cyclades", threads=3, epochs=2, seed=2,
                   options={"batch_size": 16, "barrier_cost": BC, "component_cost": CC})
    sim = hwsim.simulate(spec, machine, problem=problem)
    m = np.diff(problem.terms.indptr)
    t = 0
    for epoch in range(2):
        s = epoch_schedule(problem.terms, epoch_order(spec, problem.N, epoch), 16, 3)
        nnz = np.add.reduceat(m[s.order], s.bounds[:-1])
        cost = np.rint(CC * (nnz + np.diff(s.bounds))).astype(int)
        busy = max(cost[c::3].sum() for c in range(3))
        assert sim.info["component_ticks"][epoch] == busy
        t += busy + BC
        rows = sim.batches[sim.batches["epoch"] == epoch]
        for b in range(s.batches):
            span = max(int(((R + W) * m[s.order[s.core_list(b, c)]] + D).sum()) for c in range(3))
            assert rows["t_begin"].iloc[b] == t and rows["t_end"].iloc[b] == t + span
            t += span + BC
        assert sim.history["time"].iloc[epoch + 1] == pytest.approx(t * 1e-9)
    assert sim.ticks == t


def test_hwsim_one_core_without_costs_takes_serials_ticks():
    """One thread, free components and barriers: the same samples, costs and delay draws as
    ``serial`` (in another order), so the same length in ticks (no coherence on one core)."""
    from conftest import small_terms

    problem = make_problem("svm", small_terms(n_rows=80, n_features=20, seed=1), lam=0.1, reg="l2")
    machine = Machine(cores=1, read_cost=2, write_cost=3, delay=ShiftedExponential(shift=5, rate=0.1),
                      coherence_cost=50)
    spec = RunSpec(problem="svm", scheme="cyclades", epochs=2, seed=3, options={"batch_size": 7})
    sim = hwsim.simulate(spec, machine, problem=problem)
    m = np.diff(problem.terms.indptr)
    from hwsim.delays import DelayStream

    stream = DelayStream(machine.delay_of(0), spec.seed, 0)
    draws = np.array([stream.next() for _ in range(2 * problem.N)])
    assert sim.ticks == int(2 * (2 + 3) * m.sum() + draws.sum())
    assert np.array_equal(np.sort(sim.samples["t_end"].to_numpy() - sim.samples["t_start"].to_numpy()),
                          np.sort((2 + 3) * m[sim.samples["term"].to_numpy()] + draws))


@pytest.mark.slow
def test_hwsim_one_core_ticks_equal_the_serial_simulation():
    from conftest import small_terms

    problem = make_problem("svm", small_terms(n_rows=80, n_features=20, seed=1), lam=0.1, reg="l2")
    machine = Machine(cores=1, read_cost=2, write_cost=3, delay=ShiftedExponential(shift=5, rate=0.1))
    spec = RunSpec(problem="svm", scheme="cyclades", epochs=2, seed=3, options={"batch_size": 7})
    assert hwsim.simulate(spec, machine, problem=problem).ticks == \
        hwsim.simulate(spec.replace(scheme="serial"), machine, problem=problem).ticks


def test_hwsim_needs_a_core_per_thread():
    problem = count_problem([[0], [1]], 2)
    with pytest.raises(CycladesError, match="cores"):
        hwsim.simulate(RunSpec(scheme="cyclades", threads=3), Machine(cores=2, quantum=100, switch_cost=1),
                       problem=problem)


def test_hwsim_trace_counters_are_consistent():
    problem = hammer_problem(n_terms=120, n=6, seed=1)
    spec = RunSpec(scheme="cyclades", threads=3, epochs=2, seed=1, options={"batch_size": 10})
    sim = hwsim.simulate(spec, Machine(cores=3, coherence_cost=30, delay=ShiftedExponential(shift=3, rate=0.2)),
                         problem=problem)
    s = sim.samples
    assert list(s.columns) == list(SAMPLE_SCHEMA) and len(s) == 2 * problem.N
    assert (tau_overlap(s) >= 0).all() and (s["t_start"] <= s["t_read_done"]).all()
    assert (s["t_read_done"] <= s["t_write_start"]).all() and (s["t_write_start"] <= s["t_end"]).all()
    for epoch in (0, 1):  # every term of the epoch's order once, with its serial step
        rows = s[s["epoch"] == epoch]
        assert sorted(rows["term"]) == sorted(epoch_order(spec, problem.N, epoch))
    assert not sim.coords["lost"].any()
    # x counts the writes: exact
    assert np.array_equal(sim.x, problem.terms.degrees().astype(np.float64) * 2)


def test_hwsim_no_sample_sees_a_perturbed_coordinate_in_any_labelling():
    """The theory's view of serial equivalence: x̂_k = x_k for every sample, whichever order
    labels the samples (hwsim.checks finds no S_i^k entry), though samples do overlap (τ > 0)."""
    from hwsim import checks

    rng = np.random.default_rng(3)
    problem = count_problem([sorted(rng.choice(60, size=rng.integers(1, 3), replace=False)) for _ in range(150)], 60)
    spec = RunSpec(scheme="cyclades", threads=3, epochs=2, dtype="fixed", seed=2, options={"batch_size": 12})
    sim = hwsim.simulate(spec, Machine(cores=3, coherence_cost=20, delay=ShiftedExponential(shift=4, rate=0.3)),
                         problem=problem)
    assert tau_overlap(sim.samples).max() > 0
    for labelling in ("start", "after-read", "after-write"):
        assert checks.perturbations(sim, labelling).empty
        assert checks.identity(sim, labelling)["holds"].all()


# --- realrun ----------------------------------------------------------------------------------------
def test_realrun_trace_and_cost_split():
    from conftest import small_terms

    problem = make_problem("svm", small_terms(n_rows=200, n_features=40, seed=2), lam=0.01, reg="l2")
    spec = RunSpec(problem="svm", scheme="cyclades", threads=2, epochs=3, schedule="inv-k", seed=9,
                   options={"batch_size": 20})
    got = realrun.run(spec, problem=problem)
    s = got.samples
    assert list(s.columns) == list(SAMPLE_SCHEMA) and len(s) == 3 * problem.N
    assert np.array_equal(s["sample"].to_numpy(), np.arange(3 * problem.N))
    assert (tau_overlap(s) >= 0).all()
    code, step0, beta, t0 = schedule_args(spec, problem.N)
    for epoch in range(3):
        rows = s[s["epoch"] == epoch]
        order = epoch_order(spec, problem.N, epoch)
        sched = epoch_schedule(problem.terms, order, 20, 2)
        for w in range(2):  # each worker ran its lists, batch after batch, in order
            mine = rows[rows["worker"] == w].sort_values("position")
            lists = np.concatenate([sched.core_list(b, w) for b in range(sched.batches)])
            assert np.array_equal(mine["term"].to_numpy(), order[lists])
            assert np.array_equal(mine["position"].to_numpy(), np.arange(lists.size))
            assert mine["step"].tolist() == [step_at(code, step0, beta, t0, epoch, int(p)) for p in lists]
    assert got.component_seconds.shape == got.update_seconds.shape == (3,)
    assert (got.component_seconds > 0).all() and (got.update_seconds > 0).all()
    assert (got.component_seconds + got.update_seconds <= got.epoch_seconds * 1.05).all()
    assert len(got.info["barrier_wait_seconds"]) == 2
    assert got.batches["epoch"].tolist() == [e for e in range(3) for _ in range(10)]
    assert got.history["epoch"].tolist() == [0, 1, 2, 3]


def test_fixed_orders_find_the_schedule_once():
    """fixed-shuffle: every epoch has epoch 0's batches, so both engines find them once."""
    rng = np.random.default_rng(5)
    problem = count_problem([sorted(rng.choice(40, size=2, replace=False)) for _ in range(120)], 40)
    spec = RunSpec(scheme="cyclades", threads=2, epochs=3, order="fixed-shuffle", seed=3,
                   options={"batch_size": 10, "component_cost": 2.0})
    got = realrun.run(spec, problem=problem, instrument=False)
    assert got.info["components_found"][0] > 0 and got.info["components_found"][1:] == [0, 0]
    sim = hwsim.simulate(spec, Machine(cores=2), problem=problem)
    assert sim.info["component_ticks"][0] > 0 and sim.info["component_ticks"][1:] == [0, 0]
    assert bit_equal(got.x, sim.x) and got.info["serially_equivalent"] and sim.info["serially_equivalent"]
    assert got.batches.drop(columns="epoch").groupby("batch").nunique().max().max() == 1  # same each epoch


def test_realrun_uninstrumented_records_no_samples_and_still_verifies():
    problem = hammer_problem(n_terms=300, n=5, seed=2)
    spec = RunSpec(scheme="cyclades", threads=2, epochs=2, seed=1, options={"batch_size": 8})
    got = realrun.run(spec, problem=problem, instrument=False)
    assert got.samples.empty and got.info["serially_equivalent"] is True
    assert np.array_equal(got.x, problem.terms.degrees().astype(np.float64) * 2)


def test_realrun_a_failing_worker_stops_the_run_and_its_error_is_raised():
    """The other worker, spinning at a batch barrier, stops; nothing hangs."""
    n = 6
    supports = [sorted({j % n, (j + 1) % n}) for j in range(400)]
    y = np.ones(len(supports))
    y[250] = RAISING_LABEL
    problem = count_problem(supports, n, update=raising_update, y=y)
    spec = RunSpec(scheme="cyclades", threads=2, epochs=2, seed=0, options={"batch_size": 5})
    with pytest.raises(ValueError, match="poisoned term") as info:
        realrun.run(spec, problem=problem, instrument=False)
    assert any("realrun worker" in note and "scheme 'cyclades'" in note for note in getattr(info.value, "__notes__", []))
