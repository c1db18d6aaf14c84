"""realrun.run: the spec's workload on the machine's real cores, measured.

``run`` checks the spec and coerces the data once, compiles the kernel (timed and reported
apart), starts ``spec.threads`` Python threads -- each pinned to its own core when there
are no more threads than cores -- and then, per epoch:

1. the main thread starts the epoch's clock, draws the epoch's visit orders with
   :func:`workload.order.worker_orders` (the single source of every engine's order, a
   jitted Fisher--Yates shuffle: the reshuffle's cost is inside the timed region; it
   writes into a buffer allocated and touched before the first epoch) and releases the
   workers at a barrier;
2. each worker runs its nogil kernel (:mod:`realrun.kernels`) over its order against the
   one shared model array;
3. the main thread stops the clock when the last worker reaches the end barrier; the
   objective is evaluated after that, outside the timed region.

A worker that raises stops the run: it sets the shared stop flag (spinning workers check
it), breaks both barriers, and ``run`` re-raises the worker's own exception, traceback
kept, with a note naming the worker and epoch.  Ctrl-C (KeyboardInterrupt in the main
thread) stops the workers the same way and returns what was measured: the completed epochs'
history, times and samples, and the model as it was after the last completed epoch,
with ``interrupted=True``.  An :class:`InterruptLatch` remembers the SIGINT, so the run
stops at the next epoch boundary even if the KeyboardInterrupt itself was dropped.

Spec options read here (``spec.options``; others are ignored), validated in ``run_options``:

``prefetch`` (int >= 0, default 16)
    software-prefetch distance in samples (0: none; see :mod:`realrun.kernels`);
``relabel`` (bool; default: on for the linear problems)
    renumber coordinates by descending degree so hot coordinates share cache lines (see
    ``Layout``); values, order of arithmetic and results are unchanged bit for bit;
``trace_every`` (int >= 1, default 1)
    record every k-th sample of each worker (positions divisible by k) in ``samples``;
    the counters and τ stay exact for every recorded sample, because every sample, recorded
    or not, moves the counters.  The trace costs 48 bytes of memory per recorded sample,
    allocated (and touched) before the first epoch;
``clock_every`` (int >= 1, default 1)
    read the clock (four time stamps) for recorded samples at positions divisible by k;
    the others' ``t_*`` columns are -1.  Counters are read for every sample regardless;
``row_order`` (bool; default: on when threads > 1)
    read and write each support in ascending (kernel) coordinate order rather than in
    storage order (:func:`realrun.kernels.make_worker`, ``row_ordered``): the same values,
    bit for bit, but each cache line of the shared model is touched in one run of
    consecutive accesses per sample, so the hot lines move between cores fewer times;
    costs one small index per nonzero (``Layout.row_order``), read only when on;
``sort_rows`` (bool; default: on for ``hogwild`` and ``hogwild-atomic`` when threads > 1)
    keep a second copy of the data with each row's entries stored in ascending (kernel)
    coordinate order (``Layout.sorted_rows``), and run on it: every cache line of the model
    is touched in one run per sample, as with ``row_order``, without the per-entry
    indirection (measured +8% samples/s at 2 threads on the RCV1-shaped default,
    ``benchmarks/bench_realrun.py``).  The update's sums then run in that order, so the
    arithmetic is that of :func:`workload.layout.relabel_by_degree`'s problem (what hwsim
    simulates for realrun's layout, ``analysis.predict``), not of the data's own order: the
    model is no longer bit-identical to the serial oracle on the problem as given, which is
    why it is off at one thread and for the schemes that promise serial equivalence;
``count_lost`` (bool, default False)
    ``hogwild``: write through the lost-update probe (:func:`realrun.atomics.exchange_add`)
    and report the count in ``lost_updates`` (slower: each write is a locked exchange).

The clock: per-sample times are time-stamp-counter readings taken inside the kernel and
converted to ns since the run's first epoch began with a slope fitted against
``CLOCK_MONOTONIC`` just before the run (:func:`realrun.atomics.calibrate_tsc`).
"""
from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numba import njit

from workload.fixed import scale_of, to_state
from workload.order import split_sizes, worker_orders
from workload.problems import LINEAR
from workload.problems.base import Problem
from workload.schedule import schedule_args, step_at
from workload.serial import history_row
from workload.spec import RunSpec, SpecError
from workload.trace import HISTORY_SCHEMA, SAMPLE_SCHEMA, conform, empty, tau_overlap

from . import kernels as K
from .atomics import calibrate_tsc, tsc_now

log = logging.getLogger(__name__)

_layouts: "weakref.WeakKeyDictionary[Problem, dict]" = weakref.WeakKeyDictionary()
_layout_lock = threading.Lock()

DEFAULT_PREFETCH = 16
# Every scheme realrun.run accepts: the per-sample kernels of realrun.kernels, plus the
# schemes other modules run (dispatched at the top of ``run``).
IMPLEMENTED = tuple(K.SCHEME_CODES) + ("minibatch-sync", "cyclades", "buckwild", "decentralized")
DEFAULT_CLOCK_EVERY = 1
TRACE_WARN_BYTES = 2**30


class WorkerFailed(RuntimeError):
    """A worker thread died without an exception object (should not happen)."""


@dataclass(frozen=True, kw_only=True, eq=False)
class RealResult:
    """What a measured run produced.

    x
        the final model in its stored dtype (after the last *completed* epoch).
    samples
        SAMPLE_SCHEMA, one row per recorded sample (every sample unless
        ``options["trace_every"]`` > 1), sorted by ``sample`` (= ``start_seq``); times in ns
        since the run started (the first epoch's clock start); ``read_seq`` is -1 (not
        measured); empty when ``instrument`` is False.
    history
        HISTORY_SCHEMA; ``time`` is cumulative measured seconds (reshuffle + SGD; the
        objective evaluation excluded).
    epoch_seconds
        measured seconds of each completed epoch.
    samples_per_s
        samples processed in completed epochs / their measured seconds.
    jit_seconds
        compilation time of the kernel (0 when it was already compiled in this process).
    lost_updates
        ``0`` where lost updates cannot happen by construction (one thread; atomic,
        locked and round-robin writes), the probe's count for ``hogwild`` with
        ``options["count_lost"]``, else ``None`` (not measured).
    threads, cores
        worker threads, and each worker's CPU affinity as it was read back after pinning.
    instrument, interrupted, spec
        the instrumentation setting; whether Ctrl-C ended the run; the spec.
    info
        extras: the options in force (``prefetch``, ``relabel``, ``trace_every``,
        ``clock_every``, ``row_ordered``), ``pinned``, ``kernel_scheme`` (``hogwild`` with
        ``write_mode = "atomic"`` runs the ``hogwild-atomic`` kernel), ``cas_failures``
        (hogwild-atomic compare-and-swap retries: contention seen), ``lock_spins`` (pauses
        spent waiting for a lock or the token), ``ns_per_tick`` (the calibrated time-stamp
        counter), ``layout_seconds`` (coercing / renumbering the data, untimed), and
        ``oncpu_samples_per_s``: samples over the *CPU* time of each epoch's reshuffle plus
        its slowest worker -- a diagnostic for shared machines, where other processes take
        turns on the cores and wall-clock rates drop for reasons that are not the run's.
    """

    x: np.ndarray
    samples: pd.DataFrame
    history: pd.DataFrame
    epoch_seconds: np.ndarray
    samples_per_s: float
    jit_seconds: float
    lost_updates: int | None
    threads: int
    cores: tuple
    instrument: bool
    interrupted: bool
    spec: RunSpec
    info: dict = field(default_factory=dict)

    def tau(self) -> np.ndarray:
        """τ_k of every recorded sample (start labelling; ``workload.trace.tau_overlap``)."""
        return tau_overlap(self.samples)


def run_options(spec: RunSpec, problem: Problem) -> tuple[int, int, int, bool, bool]:
    """Validate the options realrun reads (the one place they are checked)."""
    o = spec.options
    pf = o.get("prefetch", DEFAULT_PREFETCH)
    if isinstance(pf, bool) or not isinstance(pf, (int, np.integer)) or not (0 <= pf <= 4096):
        raise SpecError("options.prefetch", pf, "must be an integer in [0, 4096] (samples ahead; 0 = off)",
                        f"set options.prefetch = {DEFAULT_PREFETCH} or 0")
    every = o.get("trace_every", 1)
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise SpecError("options.trace_every", every, "must be an integer >= 1",
                        "set options.trace_every = 1 to record every sample")
    clock = o.get("clock_every", DEFAULT_CLOCK_EVERY)
    if isinstance(clock, bool) or not isinstance(clock, (int, np.integer)) or clock < 1:
        raise SpecError("options.clock_every", clock, "must be an integer >= 1",
                        "set options.clock_every = 1 to time every sample")
    lost = o.get("count_lost", False)
    if not isinstance(lost, (bool, np.bool_)):
        raise SpecError("options.count_lost", lost, "must be true or false", "set options.count_lost = false")
    linear = problem.name in LINEAR
    relabel = o.get("relabel", None)
    if relabel is not None and not isinstance(relabel, (bool, np.bool_)):
        raise SpecError("options.relabel", relabel, "must be true or false (or absent: on for linear problems)",
                        "set options.relabel = false to keep the data's coordinate numbering")
    if relabel and not linear:
        raise SpecError("options.relabel", relabel, f"renumbering is only safe for the linear problems "
                        f"({', '.join(LINEAR)}), not {problem.name!r}", "remove options.relabel")
    return int(pf), int(every), int(clock), bool(lost), linear if relabel is None else bool(relabel)


class Layout:
    """The problem's arrays as the kernels take them, coerced once (outside any timed region).

    ``relabel``: renumber coordinates by descending degree (most frequent first) so that
    hot coordinates share cache lines.  Each term keeps its entries in their original order
    and ``aux`` is permuted alike, so the update sees the same values in the same order and
    the arithmetic is unchanged bit for bit; ``x`` is renumbered back for every objective
    evaluation and for the result.  Lock-coord still takes its locks in ascending
    *original* order, a global order, so it stays deadlock-free.  Only for the linear
    problems, whose update uses coordinates only to index ``aux``.
    """

    def __init__(self, problem: Problem, relabel: bool):
        t0 = time.perf_counter()
        t = problem.terms
        self.N = t.N
        self.n = t.n
        self.indptr = np.ascontiguousarray(t.indptr, dtype=np.int64)
        indices = np.ascontiguousarray(t.indices, dtype=np.int32)
        self.values = np.ascontiguousarray(t.values, dtype=np.float64)
        self.y = np.ascontiguousarray(t.y, dtype=np.float64)
        self.params = np.ascontiguousarray(problem.params, dtype=np.float64)
        aux = np.ascontiguousarray(problem.aux, dtype=np.float64)
        self.maxlen = int(K.max_support(self.indptr))
        bad = int(K.supports_strictly_increasing(self.indptr, indices))
        self.sorted_supports = bad < 0
        self.bad_term = bad
        self.relabel = bool(relabel)
        # Coordinates are non-negative and below n: the kernels take them unsigned (no
        # negative-index fix-up) and as narrow as n allows (uint16 for n <= 65536: less
        # memory traffic per row); only the integer type changes, never a value.
        itype = np.uint16 if t.n <= 2**16 else np.uint32
        if self.relabel:
            if aux.size != t.n:
                raise ValueError(f"realrun relabel: problem.aux has {aux.size} entries, not one per coordinate "
                                 f"({t.n}); set options.relabel = false")
            deg = np.bincount(indices, minlength=t.n)
            self.old_of_new = np.argsort(-deg, kind="stable")
            self.new_of_old = np.empty(t.n, dtype=np.int64)
            self.new_of_old[self.old_of_new] = np.arange(t.n)
            self.indices = self.new_of_old.astype(itype)[indices]
            self.aux = np.ascontiguousarray(aux[self.old_of_new])
        else:
            self.indices = indices.view(np.uint32) if itype is np.uint32 else indices.astype(itype)
            self.aux = aux
        self.seconds = time.perf_counter() - t0

    def row_order(self) -> np.ndarray:
        """Per entry of ``indices``: the positions of its term's entries by ascending
        (kernel) coordinate -- ``row_order[lo:hi]`` is the argsort of ``indices[lo:hi]``
        -- as uint8 / uint16 / uint32, the narrowest that holds the longest support.  The
        kernels built with ``row_ordered`` read and write each support in this order
        (:func:`realrun.kernels.make_worker`).  Built on first use (outside any timed
        region) and kept with the layout."""
        with _layout_lock:
            ro = getattr(self, "_row_order", None)
            if ro is None:
                dt = np.uint8 if self.maxlen <= 2**8 else np.uint16 if self.maxlen <= 2**16 else np.uint32
                ro = np.empty(self.indices.size, dtype=dt)
                _argsort_rows(self.indptr, self.indices, ro)
                self._row_order = ro
        return ro

    def sorted_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, values)`` with each term's entries in ascending (kernel) coordinate
        order: ``indices[lo:hi][row_order[lo:hi]]`` and the values alike (``options.sort_rows``).
        Built on first use (outside any timed region) and kept with the layout; the data's own
        arrays when they are in that order already (no renumbering, sorted supports)."""
        if not self.relabel and self.sorted_supports:
            return self.indices, self.values
        ro = self.row_order()
        with _layout_lock:
            rows = getattr(self, "_sorted_rows", None)
            if rows is None:
                pos = np.repeat(self.indptr[:-1], np.diff(self.indptr)) + ro
                rows = self._sorted_rows = (np.ascontiguousarray(self.indices[pos]),
                                            np.ascontiguousarray(self.values[pos]))
        return rows

    @classmethod
    def of(cls, problem: Problem, relabel: bool) -> "Layout":
        """The layout of ``problem``, built once per problem object and kept while it lives
        (a problem's arrays are read-only by convention, as ``workload.data`` says)."""
        with _layout_lock:
            per = _layouts.setdefault(problem, {})
            lay = per.get(bool(relabel))
            if lay is None:
                lay = per[bool(relabel)] = cls(problem, relabel)
        return lay

    def to_kernel(self, x: np.ndarray) -> np.ndarray:
        """A model in problem coordinates -> the kernels' numbering (a new array)."""
        return np.ascontiguousarray(x[self.old_of_new]) if self.relabel else x

    def from_kernel(self, xk: np.ndarray) -> np.ndarray:
        """The kernels' model -> problem coordinates (a new array)."""
        return np.ascontiguousarray(xk[self.new_of_old]) if self.relabel else xk.copy()


@njit(nogil=True, cache=True)
def _argsort_rows(indptr, indices, out):
    for e in range(indptr.size - 1):
        lo = indptr[e]
        hi = indptr[e + 1]
        a = np.argsort(indices[lo:hi])
        for q in range(hi - lo):
            out[lo + q] = a[q]


@njit(nogil=True)
def _steps(code, step0, beta, t0, epoch, ts):
    out = np.empty(ts.size)
    for i in range(ts.size):
        out[i] = step_at(code, step0, beta, t0, epoch, ts[i])
    return out


def _row_order_option(spec: RunSpec) -> bool:
    """``options.row_order`` (true / false; default: on when threads > 1), validated."""
    ro = spec.options.get("row_order", None)
    if ro is not None and not isinstance(ro, (bool, np.bool_)):
        raise SpecError("options.row_order", ro, "must be true or false (or absent: on when threads > 1)",
                        "remove options.row_order")
    return spec.threads > 1 if ro is None else bool(ro)


#: schemes whose multi-thread runs promise no serial order, so their rows may be re-sorted
#: (``options.sort_rows``'s default)
SORTABLE = ("hogwild", "hogwild-atomic")


def _sort_rows_option(spec: RunSpec) -> bool:
    """``options.sort_rows`` (true / false; default: on for SORTABLE schemes when threads > 1), validated."""
    sr = spec.options.get("sort_rows", None)
    if sr is not None and not isinstance(sr, (bool, np.bool_)):
        raise SpecError("options.sort_rows", sr,
                        f"must be true or false (or absent: on for {' and '.join(SORTABLE)} when threads > 1)",
                        "remove options.sort_rows")
    return spec.threads > 1 and spec.scheme in SORTABLE if sr is None else bool(sr)


def _check_spec(spec: RunSpec, problem: Problem):
    if spec.scheme not in K.SCHEME_CODES:
        raise NotImplementedError(f"realrun: scheme {spec.scheme!r} is not implemented; implemented: "
                                  f"{', '.join(IMPLEMENTED)}")
    if problem.N >= 2**31:
        raise ValueError(f"realrun: {problem.N} terms per epoch; the packed instrumentation counter holds "
                         "at most 2**31 - 1 samples per epoch")


def run(spec: RunSpec, *, problem: Problem | None = None, instrument: bool = True, pin: bool = True,
        with_opt: bool = False, progress=None) -> RealResult:
    """Run ``spec`` on real threads and measure it (module docstring).

    problem
        the problem to run (default: ``workload.build.build_problem(spec)``).
    instrument
        record per-sample counters and timestamps (``samples``); costs a little speed.
    pin
        pin worker w to the w-th CPU of this process's affinity when threads <= CPUs.
    with_opt
        fill ``history.dist2_opt`` with ‖x − x*‖² (solves for x* first: can be slow).
    progress
        optional ``callable(epoch, history_row)`` called in the main thread after each
        epoch (outside the timed region).
    """
    if not isinstance(spec, RunSpec):
        raise TypeError(f"realrun.run: spec must be a workload.spec.RunSpec, got {type(spec).__name__}")
    if spec.scheme == "minibatch-sync":  # barrier per step: realrun.minibatch
        from .minibatch import run_minibatch

        return run_minibatch(spec, problem=problem, instrument=instrument, pin=pin, with_opt=with_opt,
                             progress=progress)
    if spec.scheme == "decentralized":  # nodes with model averaging: realrun.mpi (mpiexec when nodes > 1)
        from .mpi import run_decentralized

        return run_decentralized(spec, problem=problem, instrument=instrument, pin=pin, with_opt=with_opt,
                                 progress=progress)
    if spec.scheme == "buckwild":  # fixed-point int8/16/32 with stochastic rounding: realrun.buckwild
        from .buckwild import run_buckwild

        return run_buckwild(spec, problem=problem, instrument=instrument, pin=pin, with_opt=with_opt,
                            progress=progress)
    if spec.scheme == "cyclades":  # conflict-free batches: realrun.cyclades
        from .cyclades import run_cyclades

        return run_cyclades(spec, problem=problem, instrument=instrument, pin=pin, with_opt=with_opt,
                            progress=progress)
    if problem is None:
        from workload.build import build_problem

        problem = build_problem(spec)
    prefetch_distance, trace_every, clock_every, count_lost, relabel = run_options(spec, problem)
    _check_spec(spec, problem)
    lay = Layout.of(problem, relabel)
    if spec.scheme == "lock-coord" and not lay.sorted_supports:
        bad = lay.bad_term
        raise ValueError(f"realrun lock-coord: term {bad}'s coordinates are not strictly increasing "
                         f"({problem.terms.support(bad)[:8]}...); per-coordinate locks must be taken in ascending "
                         "order without repeats: build Terms with Terms.from_csr (sorts, sums duplicates)")
    p = spec.threads
    x = lay.to_kernel(to_state(problem.initial_point(spec.seed), spec.dtype, spec.fixed_point_bits))
    scale = scale_of(spec.fixed_point_bits)
    code, step0, beta, t0 = schedule_args(spec, lay.N)
    atomic_writes = spec.scheme == "hogwild-atomic" or (spec.scheme == "hogwild" and spec.write_mode == "atomic")
    kscheme = "hogwild-atomic" if atomic_writes else spec.scheme
    probe = count_lost and kscheme in ("hogwild", "serial")
    # supports by ascending coordinate, so the hot lines move between cores fewer times:
    # stored so (sort_rows), or visited so through an index (row_order)
    sort_rows = _sort_rows_option(spec)
    ordered = _row_order_option(spec) and not sort_rows
    row_order = lay.row_order() if ordered else None
    indices, values = lay.sorted_rows() if sort_rows else (lay.indices, lay.values)
    kernel = K.make_worker(problem.update, kscheme, instrument=instrument, prefetch_distance=prefetch_distance,
                           count_lost=probe, row_ordered=ordered)
    sync = np.zeros(K.SYNC_LEN, dtype=np.int64)
    locks = np.zeros(problem.n if kscheme == "lock-coord" else 1, dtype=np.int32)
    x_star = None
    if with_opt:
        sol = problem.solution()
        x_star = None if sol is None else sol.x

    def call(order, w, xx, rec, stats, epoch):
        if ordered:
            kernel(lay.params, lay.aux, lay.indptr, indices, values, lay.y, order, w, p, xx, code, step0,
                   beta, t0, epoch, scale, lay.maxlen, sync, locks, rec, trace_every, clock_every, stats, row_order)
        else:
            kernel(lay.params, lay.aux, lay.indptr, indices, values, lay.y, order, w, p, xx, code, step0,
                   beta, t0, epoch, scale, lay.maxlen, sync, locks, rec, trace_every, clock_every, stats)

    # Compile outside any timed region: an empty order runs nothing.
    t_jit = time.perf_counter()
    call(np.empty(0, dtype=np.int64), 0, x, np.empty((0, K.REC_COLS), dtype=np.int64),
         np.zeros(K.ST_LEN, dtype=np.int64), 0)
    jit_seconds = time.perf_counter() - t_jit

    cpus = sorted(os.sched_getaffinity(0))
    do_pin = pin and p <= len(cpus)
    cores: list = [None] * p
    errors: list = []
    start_barrier = threading.Barrier(p + 1)
    end_barrier = threading.Barrier(p + 1)
    job: dict = {}
    stats = np.zeros((p, K.ST_LEN), dtype=np.int64)
    cpu = np.zeros(p)  # each worker's CPU seconds in its kernel this epoch

    def worker(w):
        try:
            if do_pin:
                os.sched_setaffinity(0, {cpus[w]})
            cores[w] = tuple(sorted(os.sched_getaffinity(0)))
            while True:
                start_barrier.wait()
                if job.get("quit"):
                    return
                c0 = time.thread_time()
                call(job["orders"][w], w, x, job["recs"][w], stats[w], job["epoch"])
                cpu[w] = time.thread_time() - c0
                end_barrier.wait()
        except threading.BrokenBarrierError:
            return
        except BaseException as exc:  # noqa: BLE001 -- handed to the main thread
            errors.append((w, job.get("epoch"), exc))
            sync[K.STOP] = 1
            start_barrier.abort()
            end_barrier.abort()

    # Trace buffers for every epoch, written once here so that no page is first touched
    # (faulted in and zeroed by the OS) inside a timed epoch.
    sizes = split_sizes(lay.N, p)
    rec_rows = [(int(m) + trace_every - 1) // trace_every if instrument else 0 for m in sizes]
    trace_bytes = spec.epochs * (sum(rec_rows) * K.REC_COLS * 8 + (lay.N * 8 if instrument else 0))
    if trace_bytes > TRACE_WARN_BYTES:
        log.warning("realrun: the trace will hold %.1f GiB (48 bytes per recorded sample, 8 per sample for "
                    "the visit orders); options.trace_every = k records every k-th sample", trace_bytes / 2**30)
    rec_all = [np.full((spec.epochs, m, K.REC_COLS), -1, dtype=np.int64) for m in rec_rows]
    # The shuffle orders' permutations are written into buffers touched here too: one per
    # epoch when instrumented (the trace keeps each epoch's order), else one reused.
    order_buf = (np.full((spec.epochs if instrument else 1, lay.N), -1, dtype=np.int64)
                 if spec.order != "with-replacement" else None)
    ns_per_tick = calibrate_tsc()[0] if instrument else 1.0
    tsc_now()  # compiled here, not in the first epoch
    threads = [threading.Thread(target=worker, args=(w,), name=f"realrun-worker-{w}", daemon=True) for w in range(p)]
    history = [history_row(problem, lay.from_kernel(x), spec, 0, 0, 0.0, x_star)]
    epoch_seconds: list[float] = []
    oncpu: list[float] = []  # per epoch: reshuffle CPU time + the slowest worker's CPU time
    raw: list = []  # per completed epoch: (epoch, orders, recs, stats copy, base)
    x_done = lay.from_kernel(x)
    samples_done = 0
    interrupted = False
    run_tsc0 = None  # the time-stamp counter when the first epoch's clock started

    ctrl_c = InterruptLatch().install()
    try:
        for th in threads:
            th.start()
        for epoch in range(spec.epochs):
            t_begin = time.perf_counter_ns()
            if run_tsc0 is None:
                run_tsc0 = int(tsc_now())
            c0 = time.thread_time()
            orders = worker_orders(spec, lay.N, epoch,
                                   out=None if order_buf is None else order_buf[epoch if instrument else 0])
            shuffle_cpu = time.thread_time() - c0
            recs = [rec_all[w][epoch, :(o.size + trace_every - 1) // trace_every] for w, o in enumerate(orders)]
            job.update(orders=orders, recs=recs, epoch=epoch)
            sync[K.CTR] = 0
            sync[K.TURN] = 0
            stats[:] = 0
            start_barrier.wait()
            end_barrier.wait()
            seconds = (time.perf_counter_ns() - t_begin) * 1e-9
            done = int(stats[:, K.ST_DONE].sum())
            if done != lay.N:
                raise WorkerFailed(f"realrun: epoch {epoch} processed {done} of {lay.N} samples")
            epoch_seconds.append(seconds)
            raw.append((epoch, orders, recs, stats.copy(), samples_done))
            oncpu.append(shuffle_cpu + float(cpu.max()))
            samples_done += done
            x_done = lay.from_kernel(x)
            row = history_row(problem, x_done, spec, epoch + 1, samples_done, float(np.sum(epoch_seconds)), x_star)
            history.append(row)
            if progress is not None:
                progress(epoch, row)
            ctrl_c.check()
    except threading.BrokenBarrierError:
        pass  # a worker failed: raised below
    except KeyboardInterrupt:
        interrupted = True
        log.warning("realrun: interrupted; keeping %d completed epoch(s)", len(epoch_seconds))
    finally:
        ctrl_c.remove()
        stop_workers(sync, K.STOP, job, (start_barrier, end_barrier), threads)
    reraise_worker_error(errors, cores, spec.scheme)

    total = float(np.sum(epoch_seconds))
    allstats = np.array([r[3] for r in raw]).reshape(-1, K.ST_LEN) if raw else np.zeros((0, K.ST_LEN), np.int64)
    if kscheme == "hogwild" and p > 1:
        lost = int(allstats[:, K.ST_LOST].sum()) if probe else None
    elif probe:
        lost = int(allstats[:, K.ST_LOST].sum())
    else:
        lost = 0
    samples = (samples_frame(raw, code, step0, beta, t0, p, trace_every, ns_per_tick, run_tsc0)
               if instrument else empty(SAMPLE_SCHEMA))
    info = {"prefetch": prefetch_distance, "relabel": lay.relabel, "trace_every": trace_every,
            "clock_every": clock_every, "pinned": do_pin, "kernel_scheme": kscheme, "row_ordered": ordered,
            "sort_rows": sort_rows,
            "cas_failures": int(allstats[:, K.ST_CAS_FAILS].sum()), "lock_spins": int(allstats[:, K.ST_SPINS].sum()),
            "ns_per_tick": ns_per_tick, "layout_seconds": lay.seconds,
            "oncpu_samples_per_s": samples_done / sum(oncpu) if oncpu and sum(oncpu) > 0 else float("nan")}
    return RealResult(x=x_done, samples=samples, history=pd.DataFrame(history).astype(HISTORY_SCHEMA),
                      epoch_seconds=np.asarray(epoch_seconds), samples_per_s=(samples_done / total if total > 0
                                                                              else float("nan")),
                      jit_seconds=jit_seconds, lost_updates=lost, threads=p, cores=tuple(cores),
                      instrument=instrument, interrupted=interrupted, spec=spec, info=info)


def samples_frame(raw, code, step0, beta, t0, p, every, ns_per_tick, tsc0) -> pd.DataFrame:
    cols = {c: [] for c in SAMPLE_SCHEMA}
    mask = np.int64(K.LOW_MASK)
    for epoch, orders, recs, st, base in raw:
        for w, (order, rec) in enumerate(zip(orders, recs)):
            m = int(st[w, K.ST_RECORDED])
            rec = rec[:m]
            pos = np.arange(m, dtype=np.int64) * every
            append_record_columns(cols, rec, base, mask, tsc0, ns_per_tick, w, epoch, pos, order[pos],
                                  _steps(code, step0, beta, t0, epoch, pos * p + w))
    if not cols["sample"]:
        return empty(SAMPLE_SCHEMA)
    df = pd.DataFrame({c: np.concatenate(v) for c, v in cols.items()})
    df = df.sort_values("sample", kind="stable")
    return conform(df, SAMPLE_SCHEMA, what="realrun samples")


def append_record_columns(cols, rec, base, mask, tsc0, ns_per_tick, w, epoch, position, term, step) -> None:
    """Append one worker's recorded samples of one epoch to the SAMPLE_SCHEMA column lists.

    ``rec`` rows hold the packed counter words read at each sample's start and end (started
    count in the high 32 bits, finished count in the low bits, relative to ``base`` for the
    epoch) and cycle-counter ticks (-1: not recorded), converted to ns since ``tsc0``.
    """
    m = rec.shape[0]
    sw, ew = rec[:, K.REC_START], rec[:, K.REC_END]
    start_seq = base + (sw >> 32)

    def ns(col):
        ticks = rec[:, col]
        return np.where(ticks >= 0, np.rint((ticks - tsc0) * ns_per_tick), -1).astype(np.int64)

    cols["sample"].append(start_seq)
    cols["worker"].append(np.full(m, w, dtype=np.int32))
    cols["epoch"].append(np.full(m, epoch, dtype=np.int32))
    cols["position"].append(position)
    cols["term"].append(term)
    cols["step"].append(step)
    cols["t_start"].append(ns(K.REC_T_START))
    cols["t_read_done"].append(ns(K.REC_T_READ))
    cols["t_write_start"].append(ns(K.REC_T_WRITE))
    cols["t_end"].append(ns(K.REC_T_END))
    cols["start_seq"].append(start_seq)
    cols["read_seq"].append(np.full(m, -1, dtype=np.int64))
    cols["end_seq"].append(base + (ew & mask))
    cols["finished_at_start"].append(base + (sw & mask))
    cols["started_at_end"].append(base + (ew >> 32))


class InterruptLatch:
    """Remembers a Ctrl-C for the length of a run, so that it stops the run even when the
    KeyboardInterrupt Python raises for it is lost -- raised inside a finalizer or a
    callback that reports and drops exceptions, say.  ``install`` chains a SIGINT handler
    in front of the current one (which still runs: the default raises KeyboardInterrupt as
    before); :meth:`check`, called at each epoch boundary, raises KeyboardInterrupt if a
    SIGINT came; ``remove`` puts the previous handler back.  Off the main thread, or where
    SIGINT is ignored or left to the OS, it does nothing (Python can only handle signals in
    the main thread, and an ignored SIGINT should stay ignored)."""

    def __init__(self):
        self.seen = False
        self._prev = None
        self._installed = False

    def _handler(self, signum, frame):
        self.seen = True
        self._prev(signum, frame)

    def install(self) -> "InterruptLatch":
        import signal

        if threading.current_thread() is threading.main_thread():
            prev = signal.getsignal(signal.SIGINT)
            if callable(prev):
                self._prev = prev
                signal.signal(signal.SIGINT, self._handler)
                self._installed = True
        return self

    def check(self) -> None:
        if self.seen:
            raise KeyboardInterrupt

    def remove(self) -> None:
        import signal

        if self._installed and signal.getsignal(signal.SIGINT) == self._handler:
            signal.signal(signal.SIGINT, self._prev)
        self._installed = False


def stop_workers(sync, stop_slot: int, job, barriers, threads) -> None:
    """Stop a run's worker threads whatever state they are in (running, spinning, waiting at
    a barrier) and join them: ``sync[stop_slot]`` for spinning kernels (each scheme's sync
    layout names its slot), the quit flag for the Python loop, aborted barriers for waiting
    threads."""
    sync[stop_slot] = 1
    job["quit"] = True
    for barrier in barriers:
        barrier.abort()
    for th in threads:
        if th.is_alive() or th.ident is not None:
            th.join()


def reraise_worker_error(errors, cores, scheme: str) -> None:
    """Re-raise the first worker's exception (its traceback kept) with a note naming the
    worker, its cores, the epoch and the scheme."""
    if errors:
        w, ep, exc = errors[0]
        exc.add_note(f"raised by realrun worker {w} (cores {cores[w]}) in epoch {ep} of scheme {scheme!r}")
        raise exc
