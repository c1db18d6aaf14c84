"""hwsim engines against the serial oracle, hand-derived schedules and τ, and each other.

Every test that simulates runs both engines where it is cheap (the fast engine must agree
with the reference bit for bit everywhere; the property test covers the general case).
"""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import hwsim
from conftest import small_terms
from hwsim import checks
from hwsim.delays import Constant, Empirical, Exponential, LogNormal, ShiftedExponential, StragglerMixture
from hwsim.machine import Machine
from workload.problems import Terms, make_problem
from workload.serial import serial_oracle
from workload.spec import RunSpec
from workload.trace import COORD_SCHEMA, SAMPLE_SCHEMA, conform

ENGINES = ("reference", "fast")


def fixed_support_terms(n_rows, n_features, m, seed=0):
    """Terms whose rows all have exactly m entries (random columns)."""
    rng = np.random.default_rng(seed)
    cols = np.stack([np.sort(rng.choice(n_features, size=m, replace=False)) for _ in range(n_rows)])
    A = sp.csr_matrix((rng.random(n_rows * m) + 0.1, cols.ravel(), np.arange(0, n_rows * m + 1, m)),
                      shape=(n_rows, n_features))
    return Terms.from_csr(A, np.where(rng.random(n_rows) < 0.5, -1.0, 1.0))


def same(a, b):
    """Bit-identical results of two engines."""
    assert np.array_equal(a.x, b.x) and a.x.dtype == b.x.dtype
    pd.testing.assert_frame_equal(a.samples, b.samples)
    if a.coords is not None or b.coords is not None:
        pd.testing.assert_frame_equal(a.coords, b.coords)
        pd.testing.assert_frame_equal(a.order, b.order)
    pd.testing.assert_frame_equal(a.history, b.history)
    assert (a.ticks, a.lost_updates) == (b.ticks, b.lost_updates)


def run_both(spec, machine, problem, **kw):
    a = hwsim.simulate(spec, machine, problem=problem, engine="reference", **kw)
    b = hwsim.simulate(spec, machine, problem=problem, engine="fast", **kw)
    same(a, b)
    return b


@pytest.fixture(scope="module")
def svm():
    return make_problem("svm", small_terms(n_rows=80, n_features=24, seed=1), lam=1e-2, reg="l2")


@pytest.fixture(scope="module")
def lsq():
    return make_problem("least-squares", small_terms(n_rows=60, n_features=16, density=0.25, seed=2, labels="real"),
                        lam=1e-2, reg="l2")


DELAYS = [Constant(0), Constant(40), Exponential(25.0), ShiftedExponential(10, 0.05), LogNormal(2.5, 0.7),
          Empirical([1, 3, 300]), StragglerMixture(Exponential(10.0), factor=20, p=0.1)]


@pytest.mark.parametrize("delay", DELAYS, ids=lambda d: d.to_dict()["kind"])
@pytest.mark.parametrize("dtype", ["float64", "fixed", "float32"])
def test_one_core_any_delay_equals_serial_oracle_bit_for_bit(svm, delay, dtype):
    """One thread (on one or more cores, any delay, coherence on): the serial oracle exactly."""
    spec = RunSpec(problem="svm", scheme="serial", threads=1, epochs=2, step=0.1, schedule="inv-k", dtype=dtype, seed=5)
    oracle = serial_oracle(svm, spec)
    for cores in (1, 3):
        m = Machine(cores=cores, read_cost=3, write_cost=2, coherence_cost=50, delay=delay)
        for engine in ENGINES:
            r = hwsim.simulate(spec, m, problem=svm, engine=engine)
            assert np.array_equal(r.x, oracle.x), (engine, cores)
            assert np.array_equal(r.history["objective"], oracle.history["objective"])
            assert r.lost_updates == 0


@pytest.mark.parametrize("machine", [
    Machine(cores=3, read_cost=2, write_cost=3, coherence_cost=20, delay=Exponential(30.0)),
    Machine(cores=2, read_cost=2, write_cost=3, coherence_cost=20, delay=Exponential(30.0), quantum=40, switch_cost=5),
], ids=["pinned", "time-sliced"])
@pytest.mark.parametrize("order", ["fixed-shuffle", "epoch-shuffle", "with-replacement"])
def test_round_robin_equals_the_serial_oracle(svm, machine, order):
    spec = RunSpec(problem="svm", scheme="round-robin", threads=3, epochs=2, step=0.1, schedule="backoff",
                   order=order, dtype="float64", seed=2)
    r = run_both(spec, machine, svm)
    assert np.array_equal(r.x, serial_oracle(svm, spec).x)


@pytest.mark.parametrize("scheme", ["lock-global", "round-robin"])
@pytest.mark.parametrize("dtype", ["fixed", "float64"])
def test_serialising_schemes_read_the_serial_iterate(lsq, scheme, dtype):
    """lock-global (and round-robin): a sample STARTs when it holds the lock (turn), so
    waiting is outside its interval (hwsim.model, step 1) and no two samples overlap:
    τ_k = 0 under every labelling, and x̂_k = x_k exactly -- no perturbation at all."""
    spec = RunSpec(problem="least-squares", scheme=scheme, threads=4, epochs=2, step=0.05, dtype=dtype, seed=3)
    r = run_both(spec, Machine(cores=4, read_cost=2, write_cost=3, coherence_cost=30, delay=Exponential(20.0)), lsq)
    for lab in ("start", "after-read", "after-write"):
        idn = checks.identity(r, lab)
        assert (idn["lhs"] == 0).all() and idn["holds"].all()
        assert checks.perturbations(r, lab).empty
    t = checks.tau(r.samples)
    assert (t[["overlap", "overlap_counters", "tau_start", "tau_after_read", "tau_after_write"]] == 0).all().all()
    s = r.samples
    assert np.array_equal(s["start_seq"], s["end_seq"]) and np.array_equal(s["start_seq"], s["read_seq"])


LOCKING_MACHINES = [
    Machine(cores=8, read_cost=2, write_cost=3, coherence_cost=30, delay=Exponential(20.0)),
    Machine(cores=2, read_cost=2, write_cost=3, coherence_cost=30, delay=Exponential(20.0), quantum=25, switch_cost=3),
]


@pytest.mark.parametrize("machine", LOCKING_MACHINES, ids=["pinned", "time-sliced"])
@pytest.mark.parametrize("scheme", ["lock-global", "round-robin"])
@pytest.mark.parametrize("threads", [2, 3, 5, 8])
def test_lock_global_and_round_robin_never_overlap(svm, machine, scheme, threads):
    """τ_k = 0 for every sample at any thread count (realrun measures the same: its tickets
    are taken inside the lock / turn), and every sample starts after the previous one ended."""
    spec = RunSpec(problem="svm", scheme=scheme, threads=threads, epochs=2, dtype="float64", seed=threads)
    r = run_both(spec, machine, svm, coord_trace=False)
    s = r.samples.sort_values("sample")
    assert (checks.tau(s)["overlap"] == 0).all()
    assert checks.tau_summary(s)["tau"].eq(0).all()
    assert (s["t_start"].to_numpy()[1:] >= s["t_end"].to_numpy()[:-1]).all()
    assert (s["finished_at_start"] == s["sample"]).all() and (s["started_at_end"] == s["sample"] + 1).all()


def _terms_with_supports(supports, n):
    indptr = np.concatenate([[0], np.cumsum([len(sp_) for sp_ in supports])])
    indices = np.concatenate([np.asarray(sp_, dtype=np.int32) for sp_ in supports])
    values = np.linspace(0.5, 1.5, indices.size)
    return Terms(indptr.astype(np.int64), indices, values, np.linspace(-1.0, 1.0, len(supports)), n)


@pytest.mark.parametrize("threads", [2, 4])
def test_lock_coord_overlaps_only_disjoint_supports(threads):
    """lock-coord: samples on disjoint supports run concurrently (τ > 0); samples on one
    identical support serialise on its locks and never overlap (τ = 0).  Whatever the
    supports, two overlapping samples never share a coordinate."""
    per = 12
    disjoint = _terms_with_supports([[2 * (i % threads), 2 * (i % threads) + 1] for i in range(threads * per)],
                                    2 * threads)
    same = _terms_with_supports([[0, 3, 5]] * (threads * per), 6)
    machine = Machine(cores=threads, read_cost=2, write_cost=3, coherence_cost=10, delay=Exponential(15.0))
    for terms, want_overlap in ((disjoint, True), (same, False)):
        problem = make_problem("least-squares", terms, lam=1e-2, reg="l2")
        spec = RunSpec(problem="least-squares", scheme="lock-coord", threads=threads, epochs=2, order="fixed-shuffle",
                       dtype="fixed", seed=1)
        r = run_both(spec, machine, problem)
        t = checks.tau(r.samples)
        assert (t["overlap"] == t["overlap_counters"]).all()
        if want_overlap:
            assert t["overlap"].max() > 0
        else:
            assert (t["overlap"] == 0).all() and checks.tau_summary(r.samples)["tau"].eq(0).all()
        s = r.samples.sort_values("sample").reset_index(drop=True)
        start, sae = s["sample"].to_numpy(), s["started_at_end"].to_numpy()
        supp = [set(terms.indices[terms.indptr[e]:terms.indptr[e + 1]]) for e in s["term"]]
        for k in range(len(s)):
            for i in range(k + 1, sae[k]):  # i started after k, before k ended: they overlap
                assert not (supp[i] & supp[k]), (k, i)
        assert start.size == threads * per * 2


@pytest.mark.parametrize("p", [1, 2, 3, 4, 8])
def test_constant_delays_tau_matches_hand_derivation(p):
    """Constant delays, p pinned cores started together, every support of size m, no coherence.

    Every sample takes L = m·(read_cost + write_cost) + D ticks, so core c runs its i-th
    sample of an epoch on [E + iL, E + (i+1)L] (E = the epoch's start) -- all cores in lock
    step.  At tick E + iL the events run in core order, and core c's END of sample i-1 and
    START of sample i are one event.  Hence sample (i, c) overlaps (in event order):

    * the p-1 other samples of round i;
    * (i-1, c') for c' > c: (i-1, c') ends at (E+iL, c'), after (i, c) started at (E+iL, c);
    * (i+1, c') for c' < c: it starts at (E+(i+1)L, c') before (i, c) ends at (E+(i+1)L, c);

    overlap = (p-1) + [i > 0](p-1-c) + [i < R-1]·c with R rounds per epoch (the barrier
    separates epochs: every sample of epoch e ends before any of epoch e+1 starts), so
    τ_overlap = 2(p-1) when R >= 2.  Labels: in all three orders sample (i, c) is the
    (i·p + c)-th of its epoch (its start, read-done and end events are at equal ticks across
    cores, ordered by core), and the farthest overlapping labels are (i-1, c+1), (i+1, c-1)
    and (i, 0)/(i, p-1): τ^start = τ^after-read = τ^after-write = p - 1.
    """
    m, R_rounds, D, rc, wc = 3, 4, 17, 2, 5
    L = m * (rc + wc) + D
    problem = make_problem("svm", fixed_support_terms(p * R_rounds, 12, m, seed=p), lam=1e-2, reg="l2")
    spec = RunSpec(problem="svm", scheme="hogwild", threads=p, epochs=2, dtype="fixed", seed=1)
    r = run_both(spec, Machine(cores=p, read_cost=rc, write_cost=wc, delay=Constant(D)), problem)
    s = r.samples
    i = s["position"].to_numpy()
    c = s["worker"].to_numpy()
    E = s["epoch"].to_numpy() * R_rounds * L
    assert np.array_equal(s["t_start"], E + i * L)
    assert np.array_equal(s["t_end"], E + (i + 1) * L)
    t = checks.tau(s)
    want = (p - 1) + (i > 0) * (p - 1 - c) + (i < R_rounds - 1) * c
    assert np.array_equal(t["overlap"], want)
    assert np.array_equal(t["overlap"], t["overlap_counters"])
    summary = checks.tau_summary(s).set_index("labelling")["tau"]
    assert summary["overlap"] == 2 * (p - 1)
    for lab in ("start", "after-read", "after-write"):
        assert summary[lab] == p - 1


@pytest.mark.parametrize("p", [2, 3, 5])
@pytest.mark.parametrize("a, b", [(10, 200), (0, 60), (50, 55)])
def test_bounded_delays_tau_within_derived_bound(p, a, b):
    """Delays in [a, b], supports of size in [m_lo, m_hi], pinned cores.

    A sample lasts ℓ ∈ [ℓmin, ℓmax] with ℓmin = m_lo(R+W) + a and ℓmax = m_hi(R+W+2H) + b
    (each access may miss once).  Another core runs back-to-back samples of length >= ℓmin
    (barriers only add gaps), so at most ⌊ℓmax/ℓmin⌋ + 2 of them meet a closed interval of
    length <= ℓmax (the ones inside are separated by ℓmin, plus one at each end).  Hence
    overlap_k <= B := (p-1)(⌊ℓmax/ℓmin⌋ + 2).  Then τ^start <= B and τ^after-write <= B
    (every sample labelled between two overlapping samples overlaps the later / earlier of
    them, and so counts towards its overlap), and τ^after-read <= 2B (such a sample
    overlaps one of the two).
    """
    rc, wc, H = 2, 3, 7
    rng = np.random.default_rng(p * 1000 + a)
    terms = small_terms(n_rows=60 * p, n_features=30, density=0.15, seed=p)
    sizes = terms.support_sizes()
    problem = make_problem("svm", terms, lam=1e-2, reg="l2")
    delay = Empirical(np.concatenate([[a, b], rng.integers(a, b + 1, 50)]))
    lmin = sizes.min() * (rc + wc) + a
    lmax = sizes.max() * (rc + wc + 2 * H) + b
    B = (p - 1) * (lmax // lmin + 2)
    for seed in range(3):
        spec = RunSpec(problem="svm", scheme="hogwild", threads=p, epochs=2, dtype="fixed", seed=seed)
        r = hwsim.simulate(spec, Machine(cores=p, read_cost=rc, write_cost=wc, coherence_cost=H, delay=delay),
                           problem=problem, coord_trace=False)
        summary = checks.tau_summary(r.samples).set_index("labelling")["tau"]
        assert summary["overlap"] <= B
        assert summary["start"] <= summary["overlap"] and summary["after-write"] <= summary["overlap"]
        assert summary["after-read"] <= 2 * summary["overlap"]


def _rows_on_one_line(dense):
    """Least squares (no regulariser) over the rows of ``dense``, labels 1: the hand-derived
    schedules below."""
    return make_problem("least-squares", Terms.from_csr(sp.csr_matrix(dense), np.ones(len(dense))), lam=0.0,
                        reg="l2")


def test_coherence_miss_and_tie_break_by_hand():
    """Two cores, every term on coordinate 0 (one cache line), R = W = 1, H = 10, delays
    0 on core 0 and 3 on core 1.  By the rules of hwsim.model:

    tick 0  c0 START k0, c1 START k1; both reads hit (every core starts valid)     -> 1
    tick 1  c0 read done, delay 0 -> (1, c0) write issue (hit) -> 2; c1 read done -> 4
    tick 2  c0 store (line valid on {c0} only), END k0, START k2, read hit        -> 3
    tick 3  c0 read done, write issue (hit)                                       -> 4
    tick 4  (4, c0) store, END k2, barrier; (4, c1) write issue: c1 is not valid,
            a miss: 1 + 10                                                        -> 15
    tick 15 c1 store, END k1, START k3 (hit)  -> 16 read done, delay 3 -> 19 write -> 20
    """
    problem = _rows_on_one_line(np.ones((4, 1)))
    spec = RunSpec(problem="least-squares", scheme="hogwild", threads=2, epochs=1, order="fixed-shuffle", seed=0,
                   write_mode="atomic")
    m = Machine(cores=2, read_cost=1, write_cost=1, coherence_cost=10, delay=(Constant(0), Constant(3)))
    r = run_both(spec, m, problem)
    s = r.samples
    assert s["worker"].tolist() == [0, 1, 0, 1]
    assert s["t_start"].tolist() == [0, 0, 2, 15]
    assert s["t_read_done"].tolist() == [1, 1, 3, 16]
    assert s["t_write_start"].tolist() == [1, 4, 3, 19]
    assert s["t_end"].tolist() == [2, 15, 4, 20]
    assert s["end_seq"].tolist() == [0, 2, 1, 3]
    assert r.ticks == 20


@pytest.mark.parametrize("scheme, write_mode, H, A, S, end_k1, ticks", [
    ("hogwild", "atomic", 10, 25, None, 30, 35),  # an atomic-instruction store's miss costs A
    ("hogwild-atomic", "rmw", 10, 25, None, 30, 35),  # hogwild-atomic always stores atomically
    ("hogwild", "atomic", 0, 25, None, 30, 35),  # copy sets are kept when only A is on
    ("hogwild", "rmw", 10, 25, None, 15, 20),  # a plain store's miss costs H, as in the case above
    ("hogwild", "atomic", 10, None, None, 15, 20),  # A unset: H
    ("hogwild", "rmw", 10, 25, 0, 5, 10),  # a plain store's miss costs S = 0: k3 starts at 5
    ("hogwild", "rmw", 10, None, 3, 8, 13),  # ... S = 3
    ("hogwild", "rmw", 0, None, 7, 12, 17),  # copy sets are kept when only S is on
    ("hogwild", "atomic", 10, None, 0, 15, 20),  # S is not an atomic-instruction store's cost
])
def test_store_miss_costs_by_hand(scheme, write_mode, H, A, S, end_k1, ticks):
    """The case of test_coherence_miss_and_tie_break_by_hand with ``atomic_coherence_cost``
    A and ``store_coherence_cost`` S: the one miss (c1's store at tick 4) costs 1 + A for an
    atomic-instruction store and 1 + S for a plain one (S unset: H); k3 then starts at its
    end: read 1, delay 3, store (a hit) 1."""
    problem = _rows_on_one_line(np.ones((4, 1)))
    spec = RunSpec(problem="least-squares", scheme=scheme, threads=2, epochs=1, order="fixed-shuffle", seed=0,
                   write_mode=write_mode)
    m = Machine(cores=2, read_cost=1, write_cost=1, coherence_cost=H, atomic_coherence_cost=A,
                store_coherence_cost=S, delay=(Constant(0), Constant(3)))
    r = run_both(spec, m, problem)
    assert r.samples["t_end"].tolist() == [2, end_k1, 4, ticks]
    assert r.ticks == ticks


@pytest.mark.parametrize("scheme, write_mode, A, AW, t_end, ticks", [
    ("hogwild", "atomic", None, 3, [4, 17, 8, 24], 24),  # every store takes AW = 3 before its miss
    ("hogwild-atomic", "rmw", 25, 3, [4, 32, 8, 39], 39),  # ... and an atomic miss of 25
    ("hogwild", "rmw", None, 3, [2, 15, 4, 20], 20),  # plain stores take write_cost: the first case
])
def test_atomic_write_cost_by_hand(scheme, write_mode, A, AW, t_end, ticks):
    """The case of test_coherence_miss_and_tie_break_by_hand with ``atomic_write_cost`` AW =
    3: c0's k0 store lands at 1 + 3 = 4, k2 reads 4 -> 5 and lands at 8; c1's k1 store,
    issued at 4, misses (H = 10, or A) and lands at 4 + 3 + 10 = 17 (32); k3 reads a line
    c1 owns -> 18 (33), delay 3, its store (a hit) lands 3 later."""
    problem = _rows_on_one_line(np.ones((4, 1)))
    spec = RunSpec(problem="least-squares", scheme=scheme, threads=2, epochs=1, order="fixed-shuffle", seed=0,
                   write_mode=write_mode)
    m = Machine(cores=2, read_cost=1, write_cost=1, coherence_cost=10, atomic_coherence_cost=A, atomic_write_cost=AW,
                delay=(Constant(0), Constant(3)))
    r = run_both(spec, m, problem)
    assert r.samples["t_end"].tolist() == t_end
    assert r.ticks == ticks


@pytest.mark.parametrize("scheme, two_coords, L, t_start, t_end", [
    ("lock-coord", False, 0, [0, 2, 7, 9], [2, 7, 9, 14]),  # free locks
    ("lock-coord", False, 2, [0, 4, 11, 15], [4, 11, 15, 22]),  # one lock: read 0 costs 1 + 2
    ("lock-global", False, 2, [0, 4, 11, 15], [4, 11, 15, 22]),  # the same with the one global lock
    ("lock-coord", True, 2, [0, 8, 19, 27], [8, 19, 27, 38]),  # two locks: read 0 costs 1 + 2·2
    ("lock-global", True, 2, [0, 6, 15, 21], [6, 15, 21, 30]),  # still one lock: 1 + 2
    ("hogwild", False, 2, [0, 0, 2, 5], [2, 5, 4, 10]),  # no locks taken: no lock cost
])
def test_lock_cost_by_hand(scheme, two_coords, L, t_start, t_end):
    """Two cores, R = W = 1, no coherence cost, delays 0 (core 0) and 3 (core 1), four terms on
    coordinate 0 (or on 0 and 8).  Under a lock scheme core 0 takes the lock(s) at tick 0,
    core 1 queues; each sample's first read costs 1 + L per lock it took; END hands the
    lock over.  One lock, L = 2: k0 reads 0 -> 3, stores 3 -> 4; k1 starts at 4, reads -> 7,
    delay 3 -> 10, stores -> 11; k2 11 -> 15; k3 15 -> 22.  Two coordinates under
    lock-coord: read 0 costs 1 + 4, read 1 costs 1, two stores: k0 0 -> 8, k1 8 -> 19 (delay
    3), k2 19 -> 27, k3 27 -> 38."""
    row = [1.0] + [0.0] * 7 + [1.0] if two_coords else [1.0]
    problem = _rows_on_one_line(np.array([row] * 4))
    spec = RunSpec(problem="least-squares", scheme=scheme, threads=2, epochs=1, order="fixed-shuffle", seed=0,
                   write_mode="atomic")
    m = Machine(cores=2, read_cost=1, write_cost=1, lock_cost=L, delay=(Constant(0), Constant(3)))
    s = run_both(spec, m, problem).samples
    assert s["t_start"].tolist() == t_start
    assert s["t_end"].tolist() == t_end


@pytest.mark.parametrize("A, B, end_k1, ticks", [
    (None, 0, 15, 20),  # no budget: the miss costs H = 10, as above
    (None, 4, 11, 16),  # 4 of the 10 ticks hidden
    (None, 10, 5, 10),  # all hidden: k3 starts at 5 (read 1, delay 3, store 1)
    (None, 25, 5, 10),  # a budget larger than the misses hides them, no more
    (25, 10, 20, 25),  # an atomic-instruction store's miss A = 25: 10 of it hidden
])
def test_hidden_miss_budget_by_hand(A, B, end_k1, ticks):
    """The case of test_coherence_miss_and_tie_break_by_hand with ``miss_overlap`` B: k1
    (core 1) starts at tick 0 with budget B; its read hits; its store, issued at 4,
    misses (H = 10, or A for an atomic-instruction store with A set) and pays
    max(0, miss - B); k3 starts at k1's end with a fresh budget and only hits."""
    problem = _rows_on_one_line(np.ones((4, 1)))
    spec = RunSpec(problem="least-squares", scheme="hogwild", threads=2, epochs=1, order="fixed-shuffle", seed=0,
                   write_mode="atomic")
    m = Machine(cores=2, read_cost=1, write_cost=1, coherence_cost=10, atomic_coherence_cost=A, miss_overlap=B,
                delay=(Constant(0), Constant(3)))
    r = run_both(spec, m, problem)
    assert r.samples["t_end"].tolist() == [2, end_k1, 4, ticks]
    assert r.ticks == ticks


def test_hidden_misses_are_taken_in_program_order_by_hand():
    """One term on coordinates 0 and 8 (two lines), two cores, R = W = 1, H = 10, B = 15,
    delays 0 (core 0) and 5 (core 1).  k0 (c0) and k1 (c1) start at 0 and read both lines
    (hits: every core starts valid) -> 2.  c0: delay 0, stores 0 and 8 (hits) land at 3 and
    4; END k0, START k2 at 4, reads hit -> 6, stores land at 7 and 8, barrier.  c1: delay 5
    -> write start at 7, after c0's store to 0 (core 0 first at tick 7): its store to 0
    misses (10, all hidden: budget 5 left) -> lands 8, after c0's store to 8: its store to
    8 misses (10: 5 hidden, 5 charged) -> 1 + 5 -> lands 14; END k1 at
    14; k3 starts at 14 with a fresh budget, hits only: reads -> 16, delay 5 -> 21,
    stores -> 23."""
    problem = _rows_on_one_line(np.array([[1.0, 0, 0, 0, 0, 0, 0, 0, 1.0]] * 4))
    spec = RunSpec(problem="least-squares", scheme="hogwild", threads=2, epochs=1, order="fixed-shuffle", seed=0,
                   write_mode="atomic")
    m = Machine(cores=2, read_cost=1, write_cost=1, coherence_cost=10, miss_overlap=15,
                delay=(Constant(0), Constant(5)))
    r = run_both(spec, m, problem)
    s = r.samples
    assert s["worker"].tolist() == [0, 1, 0, 1]
    assert s["t_start"].tolist() == [0, 0, 4, 14]
    assert s["t_write_start"].tolist() == [2, 7, 6, 21]
    assert s["t_end"].tolist() == [4, 14, 8, 23]
    assert r.ticks == 23


def test_time_slicing_by_hand():
    """Two threads on one core, quantum 2, switch 2, R = W = 1, delay 5, one term each.

    t0 is dispatched at 0 (quantum [2, 4)), START at 2, read done at 3; its delay would end
    at 8 > 4: expiry at 4 (4 ticks left), t1 dispatched (quantum [6, 8)), START 6, read
    done 7, expiry at 8 (4 left); then t0 and t1 alternate on expiries at 12, 16 (each
    turn: switch 2 + work 2), t0's delay ends at 20 (write start, write needs 1 > 0 left:
    expiry at 20), t1's at 24 (expiry), t0's store lands at 27 (END), t1 takes the core
    and lands at 30.
    """
    A = sp.csr_matrix(np.ones((2, 1)))
    problem = make_problem("least-squares", Terms.from_csr(A, np.ones(2)), lam=0.0, reg="l2")
    spec = RunSpec(problem="least-squares", scheme="hogwild", threads=2, epochs=1, order="fixed-shuffle", seed=0)
    m = Machine(cores=1, read_cost=1, write_cost=1, delay=Constant(5), quantum=2, switch_cost=2)
    r = run_both(spec, m, problem)
    s = r.samples
    assert s["t_start"].tolist() == [2, 6]
    assert s["t_read_done"].tolist() == [3, 7]
    assert s["t_write_start"].tolist() == [20, 24]
    assert s["t_end"].tolist() == [27, 30]
    assert r.ticks == 30


@pytest.mark.parametrize("engine", ENGINES)
def test_same_spec_and_machine_give_the_same_trace_hash(svm, engine):
    spec = RunSpec(problem="svm", scheme="hogwild", threads=4, epochs=2, dtype="float64", seed=9)
    m = Machine(cores=3, read_cost=2, write_cost=4, coherence_cost=25, delay=Exponential(30.0), quantum=60,
                switch_cost=4)
    h1 = hwsim.trace_hash(hwsim.simulate(spec, m, problem=svm, engine=engine))
    h2 = hwsim.trace_hash(hwsim.simulate(spec, m, problem=svm, engine=engine))
    assert h1 == h2
    other = hwsim.trace_hash(hwsim.simulate(spec.replace(seed=10), m, problem=svm, engine=engine))
    assert other != h1


def test_rmw_loses_updates_atomic_does_not(lsq):
    m = Machine(cores=4, read_cost=1, write_cost=6, delay=Constant(2))
    base = RunSpec(problem="least-squares", scheme="hogwild", threads=4, epochs=2, dtype="fixed", seed=4)
    rmw = run_both(base.replace(write_mode="rmw"), m, lsq)
    atomic = run_both(base.replace(write_mode="atomic"), m, lsq)
    assert rmw.lost_updates > 0 and atomic.lost_updates == 0
    assert rmw.coords["lost"].sum() == rmw.lost_updates
    lost = checks.lost_updates(rmw)
    assert len(lost) == rmw.lost_updates
    assert (lost["overwritten_by"] >= 0).all()
    # same schedule: timing never depends on values or on the write mode
    assert rmw.samples.drop(columns="step").equals(atomic.samples.drop(columns="step"))


def test_lost_runs_pool_grows_and_stays_exact(lsq, monkeypatch):
    """The fast engine keeps each coordinate's lost stores as runs in a node pool that the
    driver doubles on demand (hwsim.fast.RUN_POOL, _overwrite): started tiny, it grows
    several times and the run, the lost marks and the count equal the reference engine's,
    with the trace kept and without it."""
    import hwsim.fast as fast

    grown = []
    real = fast._run_pool
    monkeypatch.setattr(fast, "RUN_POOL", 1)
    monkeypatch.setattr(fast, "_run_pool", lambda size: grown.append(size) or real(size))
    m = Machine(cores=4, read_cost=1, write_cost=6, delay=Constant(2))
    spec = RunSpec(problem="least-squares", scheme="hogwild", threads=4, epochs=3, dtype="fixed", seed=4,
                   write_mode="rmw")
    r = run_both(spec, m, lsq)
    assert len(grown) > 2 and r.lost_updates > 0 and r.coords["lost"].sum() == r.lost_updates
    off = hwsim.simulate(spec, m, problem=lsq, engine="fast", coord_trace=False)
    assert off.lost_updates == r.lost_updates and np.array_equal(off.x, r.x)


def test_trace_schemas_history_and_counters(svm):
    spec = RunSpec(problem="svm", scheme="hogwild", threads=3, epochs=3, dtype="float64", seed=1)
    r = run_both(spec, Machine(cores=3, delay=Exponential(40.0), coherence_cost=10), svm)
    conform(r.samples, SAMPLE_SCHEMA)
    conform(r.coords, COORD_SCHEMA)
    assert len(r.samples) == 3 * svm.N and len(r.coords) == 3 * svm.terms.nnz
    assert r.history["epoch"].tolist() == [0, 1, 2, 3]
    assert r.history["samples"].tolist() == [0, svm.N, 2 * svm.N, 3 * svm.N]
    assert r.history["time"].iloc[-1] == pytest.approx(r.ticks * 1e-9)
    s = r.samples
    assert (s["t_start"] <= s["t_read_done"]).all() and (s["t_read_done"] <= s["t_write_start"]).all()
    assert (s["t_write_start"] <= s["t_end"]).all()
    for col in ("start_seq", "read_seq", "end_seq"):
        assert sorted(s[col]) == list(range(len(s)))
    assert r.coords["read_tick"].between(0, r.ticks).all() and (r.coords["write_tick"] > r.coords["read_tick"]).all()
    off = hwsim.simulate(spec, Machine(cores=3, delay=Exponential(40.0), coherence_cost=10), problem=svm,
                         coord_trace=False)
    assert off.coords is None and off.samples.equals(r.samples) and np.array_equal(off.x, r.x)


@pytest.mark.parametrize("scheme", ["lock-coord", "lock-global", "hogwild-atomic"])
def test_lock_schemes_time_sliced_agree_and_never_lose(svm, scheme):
    spec = RunSpec(problem="svm", scheme=scheme, threads=5, epochs=1, dtype="fixed", seed=6)
    r = run_both(spec, Machine(cores=2, read_cost=2, write_cost=3, delay=Exponential(20.0), coherence_cost=5,
                               quantum=30, switch_cost=3), svm)
    assert r.lost_updates == 0
    assert checks.identity(r, "start")["holds"].all()
