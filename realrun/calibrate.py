"""Microbenchmarks that hwsim's machine model is calibrated with.

* :func:`pingpong` -- the core-to-core cache-line transfer time (hwsim's
  ``coherence_cost``): two threads pinned to two cores hand one cache line back and forth;
  one hand-over is one transfer of the line from the writer's cache to the reader's.
* :func:`coord_cost` -- the time per coordinate read and per coordinate write of an SGD
  sample on this core (hwsim's ``read_cost`` / ``write_cost``): a loop shaped like the
  kernels' read and write phases over random supports of a model of ``n`` coordinates.

Timings come from the time-stamp counter, calibrated against ``CLOCK_MONOTONIC``
(:func:`realrun.atomics.calibrate_tsc`); each figure is the median over batches.
"""
from __future__ import annotations

import os
import threading
from typing import NamedTuple

import numpy as np
from numba import njit

from .atomics import calibrate_tsc, load_acquire, spin_pause, store_release, tsc


class PingPong(NamedTuple):
    transfer_ns: float  # median one-way cache-line hand-over (half a round trip), ns
    round_trip_ns: np.ndarray  # per-batch mean round trip, ns
    cores: tuple  # the two CPUs used


class CoordCost(NamedTuple):
    read_ns: float  # median time per coordinate read (gather into a buffer), ns
    write_ns: float  # median time per coordinate read-modify-write, ns
    n: int
    support: int


@njit(nogil=True)
def _pong_side(line, parity, rounds, stamps, batch):
    """Wait for the line's value to reach our parity, then pass it on; ``parity`` 0 starts."""
    for i in range(rounds):
        want = 2 * i + parity
        while load_acquire(line, 0) != want:
            spin_pause()
        store_release(line, 0, want + 1)
        if parity == 0 and i % batch == 0:
            stamps[i // batch] = tsc()
    if parity == 0 and rounds > 0:
        stamps[rounds // batch] = tsc()
    return 0


def pingpong(*, rounds: int = 200_000, batch: int = 1000, cores: tuple[int, int] | None = None) -> PingPong:
    """Median core-to-core cache-line transfer time in ns between two pinned threads.

    rounds
        round trips (each moves the line twice: there and back).
    batch
        round trips per timing batch; the result is the median batch mean, halved.
    cores
        the two CPUs (default: the first two of this process's affinity).
    """
    for name, v, lo in (("rounds", rounds, 2), ("batch", batch, 1)):
        if not isinstance(v, int) or v < lo:
            raise ValueError(f"pingpong: {name} = {v!r}: must be an integer >= {lo}")
    if rounds < 2 * batch:
        raise ValueError(f"pingpong: rounds = {rounds} must be at least 2 * batch = {2 * batch} (two batches)")
    from .coherence import run_pair, two_cpus

    cores = two_cpus(cores, "pingpong")
    ns_per_tick = calibrate_tsc()[0]
    line = np.zeros(16, dtype=np.int64)  # 128 bytes: the counter sits alone on its line
    n_batches = rounds // batch
    stamps = np.zeros(n_batches + 1, dtype=np.int64)
    _pong_side(line, 0, 0, stamps, batch)  # compile outside the measurement
    line[0] = 0
    run_pair(cores, lambda parity: _pong_side(line, parity, n_batches * batch, stamps, batch))
    rt = np.diff(stamps) * ns_per_tick / batch
    return PingPong(transfer_ns=float(np.median(rt) / 2.0), round_trip_ns=rt, cores=tuple(cores))


@njit(nogil=True)
def _coord_loop(x, supports, k, reps, out):
    """Per rep: the read phase (gather k coordinates) then the write phase (x_j += 1e-300·r)."""
    xr = np.empty(k)
    n_sup = supports.shape[0]
    acc = 0.0
    for r in range(reps):
        s = supports[r % n_sup]
        t0 = tsc()
        for j in range(k):
            xr[j] = x[s[j]]
        t1 = tsc()
        for j in range(k):
            acc += xr[j]
        d = acc * 1e-300
        t2 = tsc()
        for j in range(k):
            x[s[j]] = x[s[j]] + d
        t3 = tsc()
        out[r, 0] = t1 - t0
        out[r, 1] = t3 - t2
    return acc


def coord_cost(*, n: int = 47_236, support: int = 75, reps: int = 20_000, seed: int = 0) -> CoordCost:
    """Median ns per coordinate read and per coordinate write on this core.

    Random sorted supports of ``support`` coordinates out of ``n`` (float64 model), as the
    kernels read and write them; the timed loops exclude the compute between them.
    """
    for name, v in (("n", n), ("support", support), ("reps", reps)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"coord_cost: {name} = {v!r}: must be an integer >= 1")
    if support > n:
        raise ValueError(f"coord_cost: support = {support} must be <= n = {n}")
    rng = np.random.default_rng(seed)
    supports = np.sort(np.array([rng.choice(n, support, replace=False) for _ in range(256)]), axis=1)
    x = rng.standard_normal(n)
    out = np.zeros((reps, 2), dtype=np.int64)
    _coord_loop(x, supports, support, 2, out)  # compile
    ns_per_tick = calibrate_tsc()[0]
    _coord_loop(x, supports, support, reps, out)
    med = np.median(out[reps // 10:], axis=0) * ns_per_tick / support
    return CoordCost(read_ns=float(med[0]), write_ns=float(med[1]), n=n, support=support)


def visit_rates(problem, *, repeats: int = 5, resident_rows: int = 256, relabel: bool | None = None,
                prefetch: int | None = None, seed: int = 0, orders=None):
    """One thread's plain-hogwild kernel rate (samples/s) over four visit orders of the data.

    ``resident``: the first ``resident_rows`` terms over and over (their rows stay in cache:
    the per-core ceiling of the update itself); ``storage``: every term in storage order
    (the hardware prefetcher streams the rows); ``random``: a random permutation with the
    kernels' software prefetch; ``random-plain``: the same permutation without prefetch
    and in the data's own coordinate numbering (latency-bound).  Each order has as many
    samples as the data has terms; no reshuffle, no instrumentation, no objective.
    ``orders``: the names to time (default all four).  Returns a DataFrame (order,
    samples_per_s median over ``repeats``, min, max, support_mean: the mean support size of
    the samples the order visits), timings of the orders interleaved.
    """
    import time

    import pandas as pd

    from . import kernels as K
    from .engine import DEFAULT_PREFETCH, Layout

    relabel = problem.name in ("svm", "logistic", "least-squares") if relabel is None else relabel
    pf = DEFAULT_PREFETCH if prefetch is None else int(prefetch)
    fast = Layout.of(problem, relabel)
    N = problem.N
    rng = np.random.default_rng(seed)
    perm = rng.permutation(N).astype(np.int64)
    all_orders = {
        "resident": np.tile(np.arange(min(resident_rows, N), dtype=np.int64), -(-N // min(resident_rows, N)))[:N],
        "storage": np.arange(N, dtype=np.int64),
        "random": perm,
        "random-plain": perm,
    }
    if orders is not None:
        unknown = [o for o in orders if o not in all_orders]
        if unknown or not orders:
            raise ValueError(f"visit_rates: orders = {orders!r}: name some of {', '.join(all_orders)}")
        all_orders = {o: all_orders[o] for o in orders}
    kern = K.make_worker(problem.update, "hogwild", instrument=False, prefetch_distance=pf, count_lost=False)
    if "random-plain" in all_orders:  # the data's own numbering, no prefetch
        plain = Layout.of(problem, False)
        kern0 = K.make_worker(problem.update, "hogwild", instrument=False, prefetch_distance=0, count_lost=False)
    sync = np.zeros(K.SYNC_LEN, dtype=np.int64)
    locks = np.zeros(1, dtype=np.int32)
    rec = np.zeros((0, K.REC_COLS), dtype=np.int64)
    stats = np.zeros(K.ST_LEN, dtype=np.int64)

    def once(name, order):
        lay, k = (plain, kern0) if name == "random-plain" else (fast, kern)
        x = np.zeros(problem.n)
        t0 = time.perf_counter()
        k(lay.params, lay.aux, lay.indptr, lay.indices, lay.values, lay.y, order, 0, 1, x, 0, 0.01, 1.0, 1.0, 0, 1.0,
          lay.maxlen, sync, locks, rec, 1, 1, stats)
        return order.size / (time.perf_counter() - t0)

    for name, order in all_orders.items():
        once(name, order[:8])  # compile
    rates = {name: [] for name in all_orders}
    for _ in range(repeats):
        for name, order in all_orders.items():
            rates[name].append(once(name, order))
    sizes = np.diff(problem.terms.indptr)
    return pd.DataFrame([{"order": k, "samples_per_s": float(np.median(v)), "min": float(np.min(v)),
                          "max": float(np.max(v)), "support_mean": float(sizes[all_orders[k]].mean())}
                         for k, v in rates.items()])


def sharing_rates(problem, *, threads: int = 2, repeats: int = 3, relabel: bool | None = None, seed: int = 0,
                  prefetch: int | None = None):
    """What sharing the model costs: ``threads`` pinned workers run the plain-hogwild
    kernel (as ``realrun.run`` builds it for that many threads: rows stored by ascending
    coordinate when threads > 1, ``options.sort_rows``) over disjoint parts of a random order, once on one
    shared model (Hogwild!) and once each on a private copy (no cache line is shared; not
    a scheme, a diagnostic).

    The gap between the two is the price of the hot coordinates' cache lines moving
    between cores; the private runs against one thread's say what the memory system alone
    does to ``threads`` cores.  ``prefetch``: the kernel's prefetch distance (default
    realrun's, ``options.prefetch``).  Returns a DataFrame (model, samples_per_s median over
    ``repeats``, min, max); wall-clock over all workers, runs interleaved.
    """
    import time

    import pandas as pd

    from workload.order import split_sizes

    from . import kernels as K
    from .engine import DEFAULT_PREFETCH, Layout

    cpus = sorted(os.sched_getaffinity(0))
    if threads < 1:
        raise ValueError(f"sharing_rates: threads = {threads!r}: must be >= 1")
    prefetch = DEFAULT_PREFETCH if prefetch is None else prefetch
    if not isinstance(prefetch, (int, np.integer)) or isinstance(prefetch, bool) or prefetch < 0:
        raise ValueError(f"sharing_rates: prefetch = {prefetch!r}: must be an integer >= 0 (0: no prefetch)")
    relabel = problem.name in ("svm", "logistic", "least-squares") if relabel is None else relabel
    lay = Layout.of(problem, relabel)
    # as realrun.run: with several threads, rows stored by ascending coordinate (sort_rows)
    indices, values = lay.sorted_rows() if threads > 1 else (lay.indices, lay.values)
    kern = K.make_worker(problem.update, "hogwild", instrument=False, prefetch_distance=int(prefetch),
                         count_lost=False, row_ordered=False)
    rng = np.random.default_rng(seed)
    sizes = split_sizes(problem.N, threads)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    sync = np.zeros(K.SYNC_LEN, dtype=np.int64)
    locks = np.zeros(1, dtype=np.int32)
    rec = np.zeros((0, K.REC_COLS), dtype=np.int64)

    def call(order, w, x):
        kern(lay.params, lay.aux, lay.indptr, indices, values, lay.y, order, w, threads, x, 0, 0.01, 1.0,
             1.0, 0, 1.0, lay.maxlen, sync, locks, rec, 1, 1, np.zeros(K.ST_LEN, dtype=np.int64))

    call(np.arange(min(8, problem.N), dtype=np.int64), 0, np.zeros(problem.n))  # compile

    def once(shared):
        perm = rng.permutation(problem.N).astype(np.int64)
        xs = [np.zeros(problem.n)] * threads if shared else [np.zeros(problem.n) for _ in range(threads)]
        bar = threading.Barrier(threads)

        def body(w):
            if threads <= len(cpus):
                os.sched_setaffinity(0, {cpus[w]})
            bar.wait()
            call(perm[bounds[w]:bounds[w + 1]], w, xs[w])

        ths = [threading.Thread(target=body, args=(w,), daemon=True) for w in range(threads)]
        t0 = time.perf_counter()
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        return problem.N / (time.perf_counter() - t0)

    rates = {"shared": [], "private": []}
    for _ in range(repeats):
        for name in rates:
            rates[name].append(once(name == "shared"))
    return pd.DataFrame([{"model": k, "samples_per_s": float(np.median(v)), "min": float(np.min(v)),
                          "max": float(np.max(v))} for k, v in rates.items()])
