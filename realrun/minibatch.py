"""realrun ``minibatch-sync``: synchronous minibatch SGD on real threads, one barrier per step.

The arithmetic is :mod:`workload.minibatch`'s, so a run equals
:func:`workload.minibatch.minibatch_oracle` bit for bit -- with one thread and, because the
combine follows batch order and not arrival order, with any number of threads.

Per epoch each Python thread calls its nogil kernel once (three tiers, STYLE.md 1:
:func:`run_minibatch` checks, coerces and allocates; the threads run the epoch; the kernel
runs one worker's steps).  In step s (terms ``lo .. hi - 1`` of the epoch's order) worker
w:

1. computes its contiguous share (:func:`workload.minibatch.share_bounds`): reads each
   term's support with :func:`workload.fixed.read_value` from the shared model (which no
   one writes during this phase) and writes the term's update ``u`` into the shared update
   buffer at the term's entry offset within the batch (disjoint ranges, plain stores);
2. arrives at a spin barrier: a generation word and an arrival counter in the shared
   ``sync`` array (:mod:`realrun.atomics`).  The arrival is one sequentially consistent
   ``lock xadd``, so the last worker to arrive sees every other worker's buffer;
3. the last to arrive is the *combiner*: it accumulates the buffer in batch order into the
   float64 accumulator (starting at ``-0.0``), writes each touched coordinate once with
   ``add_value(x, j, encode_delta(x, v_j, scale))`` (v_j = a_j / b for ``mean``, a_j for
   ``sum``), resets the counter, and releases the step by a release-store of the next
   generation; waiting workers spin on an acquire-load of it (pausing, and yielding
   their core every 128 pauses, so more threads than cores still progress).

The combine is serial (a parameter-server reduce): it costs O(batch entries) in one thread
per step, part of the synchronous scheme's price that the step times below include.

Measured: ``RealResult.info["iterations"]`` (``workload.minibatch.ITERATION_SCHEMA``, ns
since the run started) -- every step's begin, first and last arrival, combiner and end,
read from the time-stamp counter (always recorded: p + 1 readings per step; a step begins
when the previous one ended, an epoch's first step when the main thread started the
epoch's clock, so it includes waking the threads); and, with
``instrument``, the per-sample ``samples`` table as the other schemes give it (counters
and clocks; ``options.trace_every`` / ``clock_every`` as in :mod:`realrun.engine`).
``options.prefetch``, ``count_lost`` and ``relabel`` are not read: nothing is prefetched, no
update can be lost (``lost_updates`` is 0), and coordinates keep the data's numbering.
"""
from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np
import pandas as pd
from numba import njit

from workload.fixed import add_value, encode_delta, read_value, scale_of, to_state
from workload.minibatch import ITERATION_SCHEMA, entry_offsets, epoch_order, minibatch_options, step_bounds
from workload.problems.base import Problem
from workload.schedule import schedule_args, step_at
from workload.serial import history_row
from workload.spec import RunSpec, SpecError
from workload.trace import HISTORY_SCHEMA, SAMPLE_SCHEMA, conform, empty

from . import kernels as K
from .kernels import (REC_END, REC_START, REC_T_END, REC_T_READ, REC_T_START, REC_T_WRITE, ST_CAS_FAILS, ST_DONE,
                      ST_LOST, ST_RECORDED, ST_SPINS, STARTED_ONE)
from .atomics import atomic_add, calibrate_tsc, load_acquire, os_yield, spin_pause, store_release, tsc, tsc_now
from .engine import InterruptLatch, RealResult, WorkerFailed, reraise_worker_error, stop_workers

log = logging.getLogger(__name__)

# Slots of the shared int64 ``sync`` array (each on its own 64-byte line); CTR and STOP are
# the engine's (realrun.kernels).
CTR = K.CTR
STOP = K.STOP
ARRIVED = 32  # workers arrived at this step's barrier
GEN = 40  # barrier generation: incremented by the combiner to release a step
SYNC_LEN = 48

# Columns of a worker's per-step record (int64, tsc readings).
SR_ARRIVE, SR_END = range(2)  # SR_END: written by the step's combiner only
# Columns of the per-step combiner record.
CR_WORKER, CR_END = range(2)

_SPIN_CHECK = K._SPIN_CHECK

_cache: dict = {}
_cache_lock = threading.Lock()


def make_minibatch_worker(update, *, instrument: bool):
    """The kernel for one (update, instrumentation) combination (cached).

    ``kernel(params, aux, indptr, indices, values, y, order, bounds, eoff, w, p, x, code,
    step0, beta, t0, epoch, scale, mean, maxlen, ubuf, acc, mark, touched, sync, arrive,
    comb, rec, stride, clock_every, stats)`` runs worker w's part of every step of one
    epoch in place on x.  ``arrive[s, w]`` receives w's arrival time-stamp in step s,
    ``comb[s]`` (combiner, end time-stamp) the combiner's; ``rec`` a row per recorded
    sample (``realrun.kernels.REC_*`` columns) for ranks divisible by ``stride``.
    """
    key = (update, bool(instrument))
    with _cache_lock:
        kern = _cache.get(key)
    if kern is None:
        kern = _build(K.inline_update(update), bool(instrument))
        with _cache_lock:
            kern = _cache.setdefault(key, kern)
    return kern


def _build(upd, instrument):
    @njit(nogil=True)
    def kernel(params, aux, indptr, indices, values, y, order, bounds, eoff, w, p, x, code, step0, beta, t0, epoch,
               scale, mean, maxlen, ubuf, acc, mark, touched, sync, arrive, comb, rec, stride, clock_every, stats):
        inv_scale = 1.0 / scale
        xr = np.empty(maxlen)
        g = np.empty(maxlen)
        spins = 0
        done = 0
        nrec = 0
        rank = 0  # this worker's sample count in the epoch
        stopped = False
        for s in range(bounds.size - 1):
            lo = bounds[s]
            hi = bounds[s + 1]
            b = hi - lo
            base = b // p
            extra = b % p
            wlo = lo + w * base + min(w, extra)
            whi = wlo + base + (1 if w < extra else 0)
            gamma = step_at(code, step0, beta, t0, epoch, lo)
            e0 = eoff[lo]
            # 1. the share, against the same model
            for i in range(wlo, whi):
                if load_acquire(sync, STOP) != 0:
                    stopped = True
                    break
                e = order[i]
                a = indptr[e]
                k = indptr[e + 1] - a
                if instrument:
                    clocked = rank % clock_every == 0
                    t_start = tsc() if clocked else -1
                    start_word = atomic_add(sync, CTR, STARTED_ONE)
                for q in range(k):
                    xr[q] = read_value(x, indices[a + q], inv_scale)
                if instrument:
                    t_read = tsc() if clocked else -1
                off = eoff[i] - e0
                upd(params, aux, indices[a:a + k], values[a:a + k], y[e], xr[:k], gamma, g[:k], ubuf[off:off + k])
                done += 1
                if instrument:
                    t_write = tsc() if clocked else -1
                    end_word = atomic_add(sync, CTR, 1)
                    t_end = tsc() if clocked else -1
                    if rank % stride == 0:
                        rec[nrec, REC_START] = start_word
                        rec[nrec, REC_END] = end_word
                        rec[nrec, REC_T_START] = t_start
                        rec[nrec, REC_T_READ] = t_read
                        rec[nrec, REC_T_WRITE] = t_write
                        rec[nrec, REC_T_END] = t_end
                        nrec += 1
                rank += 1
            if stopped:
                break
            # 2. the barrier
            gen = load_acquire(sync, GEN)
            arrive[s, w] = tsc()
            if atomic_add(sync, ARRIVED, 1) == p - 1:
                # 3. the last to arrive combines, in batch order
                nt = 0
                for i in range(lo, hi):
                    e = order[i]
                    a = indptr[e]
                    off = eoff[i] - e0
                    for q in range(indptr[e + 1] - a):
                        j = indices[a + q]
                        acc[j] += ubuf[off + q]
                        if mark[j] == 0:
                            mark[j] = 1
                            touched[nt] = j
                            nt += 1
                fb = float(b)
                for q in range(nt):
                    j = touched[q]
                    mark[j] = 0
                    v = acc[j] / fb if mean else acc[j]
                    add_value(x, j, encode_delta(x, v, scale))
                    acc[j] = -0.0
                comb[s, CR_WORKER] = w
                comb[s, CR_END] = tsc()
                store_release(sync, ARRIVED, 0)
                store_release(sync, GEN, gen + 1)
            else:
                while load_acquire(sync, GEN) == gen:
                    spin_pause()
                    spins += 1
                    if (spins & _SPIN_CHECK) == 0:
                        if load_acquire(sync, STOP) != 0:
                            stopped = True
                            break
                        os_yield()
                if stopped:
                    break
        stats[ST_DONE] = done
        stats[ST_LOST] = 0
        stats[ST_CAS_FAILS] = 0
        stats[ST_SPINS] = spins
        stats[ST_RECORDED] = nrec

    return kernel


def _trace_options(spec: RunSpec) -> tuple[int, int]:
    """``options.trace_every`` and ``clock_every`` (the rules of :mod:`realrun.engine`)."""
    out = []
    for name in ("trace_every", "clock_every"):
        v = spec.options.get(name, 1)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise SpecError(f"options.{name}", v, "must be an integer >= 1", f"set options.{name} = 1")
        out.append(int(v))
    return out[0], out[1]


class _Arrays:
    """The problem's arrays as the kernel takes them, coerced once (outside any timed region)."""

    def __init__(self, problem: Problem):
        t0 = time.perf_counter()
        t = problem.terms
        self.N, self.n = t.N, t.n
        self.indptr = np.ascontiguousarray(t.indptr, dtype=np.int64)
        # coordinates are non-negative: the unsigned view indexes without the negative-index fix-up
        self.indices = np.ascontiguousarray(t.indices, dtype=np.int32).view(np.uint32)
        self.values = np.ascontiguousarray(t.values, dtype=np.float64)
        self.y = np.ascontiguousarray(t.y, dtype=np.float64)
        self.params = np.ascontiguousarray(problem.params, dtype=np.float64)
        self.aux = np.ascontiguousarray(problem.aux, dtype=np.float64)
        self.maxlen = int(K.max_support(self.indptr))
        self.relabel = False
        self.seconds = time.perf_counter() - t0

    def to_kernel(self, x: np.ndarray) -> np.ndarray:
        return x

    def from_kernel(self, xk: np.ndarray) -> np.ndarray:
        return xk.copy()


def _worker_positions(n_terms: int, batch_size: int, p: int) -> list[np.ndarray]:
    """For each worker, the epoch positions it processes, in its processing order."""
    out: list[list] = [[] for _ in range(p)]
    bounds = step_bounds(n_terms, batch_size)
    for s in range(bounds.size - 1):
        lo, hi = int(bounds[s]), int(bounds[s + 1])
        b = hi - lo
        base, extra = divmod(b, p)
        wlo = lo
        for w in range(p):
            whi = wlo + base + (1 if w < extra else 0)
            out[w].append(np.arange(wlo, whi, dtype=np.int64))
            wlo = whi
    return [np.concatenate(o) if o else np.zeros(0, np.int64) for o in out]


def run_minibatch(spec: RunSpec, *, problem: Problem | None = None, instrument: bool = True, pin: bool = True,
                  with_opt: bool = False, progress=None) -> RealResult:
    """``realrun.run`` for ``minibatch-sync`` (same arguments and result; module docstring)."""
    if not isinstance(spec, RunSpec):
        raise TypeError(f"realrun.run: spec must be a workload.spec.RunSpec, got {type(spec).__name__}")
    if spec.scheme != "minibatch-sync":
        raise ValueError(f"run_minibatch: spec.scheme = {spec.scheme!r}; use realrun.run for other schemes")
    if problem is None:
        from workload.build import build_problem

        problem = build_problem(spec)
    trace_every, clock_every = _trace_options(spec)
    opt = minibatch_options(spec, problem.N)
    if problem.N >= 2**31:
        raise ValueError(f"realrun: {problem.N} terms per epoch; the packed instrumentation counter holds "
                         "at most 2**31 - 1 samples per epoch")
    lay = _Arrays(problem)
    p = spec.threads
    N = lay.N
    x = lay.to_kernel(to_state(problem.initial_point(spec.seed), spec.dtype, spec.fixed_point_bits))
    scale = scale_of(spec.fixed_point_bits)
    code, step0, beta, t0 = schedule_args(spec, N)
    bounds = step_bounds(N, opt.batch_size)
    S = bounds.size - 1
    kernel = make_minibatch_worker(problem.update, instrument=instrument)
    sync = np.zeros(SYNC_LEN, dtype=np.int64)
    maxlen = max(1, lay.maxlen)
    nnz = int(lay.indptr[-1])
    ubuf = np.zeros(max(1, min(nnz, maxlen * opt.batch_size)))
    acc = np.full(lay.n, -0.0)
    mark = np.zeros(lay.n, dtype=np.int8)
    touched = np.zeros(max(1, lay.n), dtype=np.int64)
    positions = _worker_positions(N, opt.batch_size, p)
    x_star = None
    if with_opt:
        sol = problem.solution()
        x_star = None if sol is None else sol.x

    def call(order, bnd, eoff, w, arrive, comb, rec, st, epoch):
        kernel(lay.params, lay.aux, lay.indptr, lay.indices, lay.values, lay.y, order, bnd, eoff, w, p, x, code,
               step0, beta, t0, epoch, scale, opt.mean, maxlen, ubuf, acc, mark, touched, sync, arrive, comb, rec,
               trace_every, clock_every, st)

    # Compile outside any timed region: an epoch without steps runs nothing.
    t_jit = time.perf_counter()
    call(np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(1, np.int64), 0, np.zeros((0, p), np.int64),
         np.zeros((0, 2), np.int64), np.zeros((0, K.REC_COLS), np.int64), np.zeros(K.ST_LEN, np.int64), 0)
    jit_seconds = time.perf_counter() - t_jit

    cpus = sorted(os.sched_getaffinity(0))
    do_pin = pin and p <= len(cpus)
    cores: list = [None] * p
    errors: list = []
    start_barrier = threading.Barrier(p + 1)
    end_barrier = threading.Barrier(p + 1)
    job: dict = {}
    stats = np.zeros((p, K.ST_LEN), dtype=np.int64)

    def worker(w):
        try:
            if do_pin:
                os.sched_setaffinity(0, {cpus[w]})
            cores[w] = tuple(sorted(os.sched_getaffinity(0)))
            while True:
                start_barrier.wait()
                if job.get("quit"):
                    return
                call(job["order"], bounds, job["eoff"], w, job["arrive"], job["comb"], job["recs"][w], stats[w],
                     job["epoch"])
                end_barrier.wait()
        except threading.BrokenBarrierError:
            return
        except BaseException as exc:  # noqa: BLE001 -- handed to the main thread
            errors.append((w, job.get("epoch"), exc))
            sync[STOP] = 1
            start_barrier.abort()
            end_barrier.abort()

    rec_rows = [(pos.size + trace_every - 1) // trace_every if instrument else 0 for pos in positions]
    rec_all = [np.full((spec.epochs, m, K.REC_COLS), -1, dtype=np.int64) for m in rec_rows]
    arrive_all = np.full((spec.epochs, S, p), -1, dtype=np.int64)
    comb_all = np.full((spec.epochs, S, 2), -1, dtype=np.int64)
    ns_per_tick = calibrate_tsc()[0]
    tsc_now()
    threads = [threading.Thread(target=worker, args=(w,), name=f"realrun-minibatch-{w}", daemon=True)
               for w in range(p)]
    history = [history_row(problem, lay.from_kernel(x), spec, 0, 0, 0.0, x_star)]
    epoch_seconds: list[float] = []
    raw: list = []  # per completed epoch: (epoch, order, stats copy, base, tsc at the epoch's start)
    x_done = lay.from_kernel(x)
    samples_done = 0
    interrupted = False
    run_tsc0 = None
    ctrl_c = InterruptLatch().install()
    try:
        for th in threads:
            th.start()
        for epoch in range(spec.epochs):
            t_begin = time.perf_counter_ns()
            tsc_begin = int(tsc_now())
            if run_tsc0 is None:
                run_tsc0 = tsc_begin
            order = epoch_order(spec, N, epoch)
            eoff = entry_offsets(lay.indptr, order)
            recs = [rec_all[w][epoch] for w in range(p)]
            job.update(order=order, eoff=eoff, arrive=arrive_all[epoch], comb=comb_all[epoch], recs=recs, epoch=epoch)
            sync[CTR] = 0
            sync[ARRIVED] = 0
            stats[:] = 0
            start_barrier.wait()
            end_barrier.wait()
            seconds = (time.perf_counter_ns() - t_begin) * 1e-9
            done = int(stats[:, K.ST_DONE].sum())
            if done != N:
                raise WorkerFailed(f"realrun minibatch-sync: epoch {epoch} processed {done} of {N} samples")
            epoch_seconds.append(seconds)
            raw.append((epoch, order, stats.copy(), samples_done, tsc_begin))
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
        stop_workers(sync, STOP, job, (start_barrier, end_barrier), threads)
    reraise_worker_error(errors, cores, spec.scheme)

    total = float(np.sum(epoch_seconds))
    allstats = np.array([r[2] for r in raw]).reshape(-1, K.ST_LEN) if raw else np.zeros((0, K.ST_LEN), np.int64)

    def ns(ticks):
        return np.where(ticks >= 0, np.rint((ticks - run_tsc0) * ns_per_tick), -1).astype(np.int64)

    iterations = _iterations_frame(raw, bounds, arrive_all, comb_all, ns)
    samples = (_samples_frame(raw, positions, rec_all, bounds, code, step0, beta, t0, trace_every, ns)
               if instrument else empty(SAMPLE_SCHEMA))
    info = {"trace_every": trace_every, "clock_every": clock_every, "pinned": do_pin, "ns_per_tick": ns_per_tick,
            "cas_failures": 0, "lock_spins": int(allstats[:, K.ST_SPINS].sum()), "kernel_scheme": "minibatch-sync",
            "relabel": lay.relabel, "layout_seconds": lay.seconds, "batch_size": opt.batch_size,
            "combine": opt.combine, "iterations": iterations}
    return RealResult(x=x_done, samples=samples, history=pd.DataFrame(history).astype(HISTORY_SCHEMA),
                      epoch_seconds=np.asarray(epoch_seconds),
                      samples_per_s=(samples_done / total if total > 0 else float("nan")),
                      jit_seconds=jit_seconds, lost_updates=0, threads=p, cores=tuple(cores), instrument=instrument,
                      interrupted=interrupted, spec=spec, info=info)


def _iterations_frame(raw, bounds, arrive_all, comb_all, ns) -> pd.DataFrame:
    parts = []
    S = bounds.size - 1
    for epoch, _order, _st, _base, tsc_begin in raw:
        arr = arrive_all[epoch]
        end = comb_all[epoch, :, CR_END]
        begin = np.concatenate([[tsc_begin], end[:-1]])
        parts.append(pd.DataFrame({"epoch": np.full(S, epoch), "step": np.arange(S), "batch": np.diff(bounds),
                                   "t_begin": ns(begin), "t_first_arrival": ns(arr.min(axis=1)),
                                   "t_last_arrival": ns(arr.max(axis=1)), "combiner": comb_all[epoch, :, CR_WORKER],
                                   "t_end": ns(end)}))
    if not parts:
        return empty(ITERATION_SCHEMA)
    return conform(pd.concat(parts, ignore_index=True), ITERATION_SCHEMA, what="realrun iterations")


@njit(nogil=True)
def _steps_of(positions, batch_size, code, step0, beta, t0, epoch):
    out = np.empty(positions.size)
    for i in range(positions.size):
        out[i] = step_at(code, step0, beta, t0, epoch, (positions[i] // batch_size) * batch_size)
    return out


def _samples_frame(raw, positions, rec_all, bounds, code, step0, beta, t0, every, ns) -> pd.DataFrame:
    cols = {c: [] for c in SAMPLE_SCHEMA}
    mask = np.int64(K.LOW_MASK)
    B = int(bounds[1] - bounds[0]) if bounds.size > 1 else 1
    for epoch, order, st, base, _ in raw:
        for w, pos_all in enumerate(positions):
            m = int(st[w, K.ST_RECORDED])
            rec = rec_all[w][epoch, :m]
            rank = np.arange(m, dtype=np.int64) * every
            pos = pos_all[rank]
            sw, ew = rec[:, K.REC_START], rec[:, K.REC_END]
            start_seq = base + (sw >> 32)
            cols["sample"].append(start_seq)
            cols["worker"].append(np.full(m, w, dtype=np.int32))
            cols["epoch"].append(np.full(m, epoch, dtype=np.int32))
            cols["position"].append(rank)
            cols["term"].append(order[pos])
            cols["step"].append(_steps_of(pos, B, code, step0, beta, t0, epoch))
            cols["t_start"].append(ns(rec[:, K.REC_T_START]))
            cols["t_read_done"].append(ns(rec[:, K.REC_T_READ]))
            cols["t_write_start"].append(ns(rec[:, K.REC_T_WRITE]))
            cols["t_end"].append(ns(rec[:, K.REC_T_END]))
            cols["start_seq"].append(start_seq)
            cols["read_seq"].append(np.full(m, -1, dtype=np.int64))
            cols["end_seq"].append(base + (ew & mask))
            cols["finished_at_start"].append(base + (sw & mask))
            cols["started_at_end"].append(base + (ew >> 32))
    if not cols["sample"]:
        return empty(SAMPLE_SCHEMA)
    df = pd.DataFrame({c: np.concatenate(v) for c, v in cols.items()})
    df = df.sort_values("sample", kind="stable")
    return conform(df, SAMPLE_SCHEMA, what="realrun samples")
