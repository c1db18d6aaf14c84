"""Buckwild! on real threads: nogil kernels on int8 / int16 / int32 model and data arrays.

Three tiers (STYLE.md 1): :func:`run_buckwild` validates the options
(:func:`workload.buckwild.validate_options`, and realrun's own through
:func:`realrun.engine.run_options`), quantises the data and the initial point once and starts
the threads; a kernel made by :func:`make_kernel` runs one worker's share of one epoch,
lock-free against the one shared integer model.

The kernel, per sample: gather the model at the support into a small buffer (int loads);
:func:`workload.buckwild.sample_deltas` -- an int64 dot product and the rounding loop, both
free of loop-carried dependencies except the sum (the counter-based generator needs no
state), so LLVM vectorises them; then a scalar scatter loop of saturating adds.  The loss,
the rounding mode, whether the regulariser is read, the write mode, the instrumentation and
the prefetch distance are compile-time constants.

Writes (``spec.write_mode``, the same meaning as in hwsim: :mod:`hwsim.buckwild`)
    ``"rmw"`` (the default): a plain load and a plain store, ``x[j] ← sat(x[j] + d)``, as
    the original Hogwild! and Buckwild! code; another thread's store between the two is
    lost (not counted here: ``lost_updates`` is ``None`` for more than one thread).
    ``"atomic"``: the same saturating add as a compare-and-swap loop on the int8 / int16 /
    int32 element (:func:`realrun.atomics.atomic_cas`), so every update lands; the retries
    are ``info["cas_failures"]``.

Instrumentation (``instrument=True``, the default; the shared trace of
:mod:`realrun.engine`): per sample the packed counter ``sync[realrun.kernels.CTR]``
(started << 32 | finished) is read by the ``lock xadd`` that takes the sample's start and
end tickets, so τ_k is exact; as in the lock-free hogwild kernels a worker's consecutive
samples abut (one ticket of ``2**32 + 1`` ends sample i and starts sample i+1, one clock
reading serves as t_end of i and t_start of i+1).  Time stamps are ``rdtsc`` readings
converted to ns by the decoder the other drivers use
(:func:`realrun.engine.append_record_columns`, via ``realrun.engine.samples_frame``).
``options.trace_every`` / ``options.clock_every`` / ``options.prefetch`` mean what they mean
for the other schemes (:mod:`realrun.engine`); ``relabel`` and ``count_lost`` are not
supported here and are refused when set.

De Sa et al., "Taming the Wild", NIPS 2015, §4.  Row data is prefetched ``prefetch``
samples ahead as in realrun.kernels.
"""
from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np
import pandas as pd
from numba import njit

from workload import buckwild as B
from workload.order import split_sizes, worker_orders
from workload.schedule import schedule_args, step_at
from workload.serial import history_row
from workload.spec import RunSpec, SpecError
from workload.trace import HISTORY_SCHEMA, SAMPLE_SCHEMA, empty

from . import kernels as K
from .atomics import atomic_add, atomic_cas, calibrate_tsc, load_acquire, prefetch, prefetch_l2, tsc, tsc_now
from .engine import (TRACE_WARN_BYTES, InterruptLatch, RealResult, WorkerFailed, run_options, samples_frame,
                     reraise_worker_error, stop_workers)

log = logging.getLogger(__name__)

_kernels: dict = {}
_lock = threading.Lock()


REG_NONE, REG_AUX, REG_DEGREE = 0, 1, 2
PREFETCH = 16  # default samples ahead whose row data is prefetched into L2 (2x that: row pointer, label)


def make_kernel(loss: int, rounding: int, reg: int, *, atomic: bool = False, instrument: bool = False,
                prefetch_distance: int = PREFETCH):
    """The worker kernel for one (loss, rounding, reg, write mode, instrumentation, prefetch)
    combination (compiled lazily, cached).

    ``kernel(aux, deg, mun, indptr, indices, aq, y, order, w, p, x, code, step0, beta, t0,
    epoch, inv_s, a_to_x, key, ctr, glo, ghi, mlo, mhi, maxlen, sync, rec, stride,
    clock_every, stats) -> ctr`` processes ``order`` (worker ``w`` of ``p``) in place on the
    integer model ``x`` and returns the advanced rounding counter.  ``reg``: REG_NONE (no
    regulariser), REG_AUX (load the float64 weight aux[j], a random gather) or REG_DEGREE
    (recompute aux[j] = mun / d_j from ``deg``, the degree of each *nonzero's* coordinate
    stored alongside the data as uint8 / uint16 / uint32: the same float64 division the
    problem did, so the same bits, streamed and prefetched with the row instead of gathered
    from an n-long float64 array).  ``atomic``: saturating adds by compare-and-swap
    (``write_mode = "atomic"``) instead of plain load / store (``"rmw"``).  ``instrument``:
    take the counter tickets in ``sync[K.CTR]`` and fill ``rec`` (``K.REC_*`` columns, one
    row per position divisible by ``stride``; clock columns at positions divisible by
    ``clock_every``, -1 elsewhere).  ``stats`` receives ``K.ST_DONE``, ``K.ST_CAS_FAILS``
    and ``K.ST_RECORDED``.
    """
    k = (int(loss), int(rounding), int(reg), bool(atomic), bool(instrument), int(prefetch_distance))
    with _lock:
        kern = _kernels.get(k)
        if kern is None:
            kern = _kernels[k] = _build(*k)
    return kern


@njit(nogil=True, inline="always")
def _atomic_saturating_add(x, j, d, lo, hi):
    """``x[j] ← sat(x[j] + d)`` as one atomic step (compare-and-swap loop); returns the retries."""
    old = x[j]
    fails = 0
    while True:
        seen = atomic_cas(x, j, old, B.saturate(np.int64(old) + d, lo, hi))
        if seen == old:
            return fails
        old = seen
        fails += 1


def _build(LOSS, ROUNDING, REG, ATOMIC, INSTR, PF):
    sample_deltas = B.sample_deltas
    saturate = B.saturate
    CTR, STOP, ONE_START, BOTH = K.CTR, K.STOP, K.STARTED_ONE, K.STARTED_ONE + 1

    @njit(nogil=True)
    def kernel(aux, deg, mun, indptr, indices, aq, y, order, w, p, x, code, step0, beta, t0, epoch, inv_s, a_to_x,
               key, ctr, glo, ghi, mlo, mhi, maxlen, sync, rec, stride, clock_every, stats):
        xr = np.empty(maxlen, dtype=x.dtype)
        d = np.empty(maxlen, dtype=np.int64)
        cr = np.zeros(maxlen)
        n = order.size
        step_aq = max(64 // aq.itemsize, 1)
        step_deg = max(64 // deg.itemsize, 1)
        fails = 0
        done = 0
        nrec = 0
        rec_next = 0  # next recorded position
        clock_next = 0  # next position whose clock is read
        word = np.int64(0)  # this sample's start ticket (taken by the previous sample's end ticket)
        mark = np.int64(-1)  # the clock reading that opens this sample
        row = -1  # this sample's trace row, or -1
        timed = False  # whether this sample's clock is read
        for i in range(n):
            if load_acquire(sync, STOP) != 0:
                break
            # Prefetch hints as realrun.kernels does (they change no value).
            if PF > 0 and i + 2 * PF < n:
                e2 = order[i + 2 * PF]
                prefetch(indptr, e2)
                prefetch(y, e2)
            if PF > 0 and i + PF < n:
                e1 = order[i + PF]
                lo1 = indptr[e1]
                hi1 = indptr[e1 + 1]
                if hi1 > lo1:
                    for b in range(lo1, hi1, 16):
                        prefetch_l2(indices, b)
                    prefetch_l2(indices, hi1 - 1)
                    for b in range(lo1, hi1, step_aq):
                        prefetch_l2(aq, b)
                    prefetch_l2(aq, hi1 - 1)
                    if REG == REG_DEGREE:
                        for b in range(lo1, hi1, step_deg):
                            prefetch_l2(deg, b)
                        prefetch_l2(deg, hi1 - 1)
            if INSTR:
                row = nrec if i == rec_next else -1
                timed = i == clock_next
                if timed:
                    clock_next += clock_every
                timed = timed and row >= 0
                if i == 0:  # the first sample takes its own start ticket
                    mark = tsc() if timed else -1
                    word = atomic_add(sync, CTR, ONE_START)
                if row >= 0:
                    rec_next += stride
                    nrec += 1
                    rec[row, K.REC_START] = word
                    if timed:
                        rec[row, K.REC_T_START] = mark
            e = order[i]
            lo = indptr[e]
            m = indptr[e + 1] - lo
            idx = indices[lo:lo + m]
            for k in range(m):
                xr[k] = x[idx[k]]
            if REG == REG_AUX:
                for k in range(m):
                    cr[k] = aux[idx[k]]
            elif REG == REG_DEGREE:
                for k in range(m):
                    cr[k] = mun / np.float64(deg[lo + k])
            if INSTR:
                if timed:
                    rec[row, K.REC_T_READ] = tsc()
            gamma = step_at(code, step0, beta, t0, epoch, i * p + w)
            sample_deltas(LOSS, ROUNDING, REG != REG_NONE, gamma, y[e], aq[lo:lo + m], xr[:m], cr[:m], inv_s,
                          a_to_x, key, ctr, glo, ghi, d)
            if INSTR:
                if timed:
                    rec[row, K.REC_T_WRITE] = tsc()
            if ATOMIC:
                for k in range(m):
                    fails += _atomic_saturating_add(x, idx[k], d[k], mlo, mhi)
            else:
                for k in range(m):
                    j = idx[k]
                    x[j] = saturate(np.int64(x[j]) + d[k], mlo, mhi)
            ctr += m
            done += 1
            if INSTR:
                if i + 1 < n:  # one ticket ends this sample and starts the next (which sees it finished)
                    end = atomic_add(sync, CTR, BOTH)
                    word = end + 1
                else:
                    end = atomic_add(sync, CTR, 1)
                if timed or (i + 1 == clock_next and i + 1 == rec_next):
                    mark = tsc()
                if row >= 0:
                    rec[row, K.REC_END] = end
                    if timed:
                        rec[row, K.REC_T_END] = mark
        stats[K.ST_DONE] = done
        stats[K.ST_CAS_FAILS] = fails
        stats[K.ST_RECORDED] = nrec
        return ctr

    return kernel


def _regulariser(problem, aux):
    """(reg mode, per-nonzero degree array, μN): REG_DEGREE when aux is exactly μN/d_j where d_j > 0."""
    none = np.zeros(1, dtype=np.uint8)
    if not np.any(aux != 0.0):
        return REG_NONE, none, 0.0
    d = problem.terms.degrees()
    if problem.params.size >= 2 and d.size == aux.size:
        mun = float(problem.params[1]) * problem.terms.N
        nz = d > 0
        cand = np.zeros(aux.size)
        cand[nz] = mun / d[nz]
        if np.array_equal(cand, aux):
            dt = np.uint8 if d.max() < 2**8 else np.uint16 if d.max() < 2**16 else np.uint32
            return REG_DEGREE, np.ascontiguousarray(d[problem.terms.indices].astype(dt)), mun
    return REG_AUX, none, 0.0


class Prepared:
    """The run's arrays, coerced and quantised once (outside timed regions)."""

    def __init__(self, spec: RunSpec, problem):
        self.cfg = cfg = B.validate_options(spec, problem)
        t = problem.terms
        self.N = t.N
        self.indptr = np.ascontiguousarray(t.indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(t.indices, dtype=np.int32).view(np.uint32)
        self.aq = B.encode_data(t.values, cfg, spec.seed)
        self.y = np.ascontiguousarray(t.y, dtype=np.float64)
        self.aux = np.ascontiguousarray(problem.aux, dtype=np.float64)
        self.reg, self.deg, self.mun = _regulariser(problem, self.aux)
        self.maxlen = int(np.max(np.diff(self.indptr))) if t.N else 0
        self.consts = B.constants(cfg)
        self.keys = B.worker_keys(spec.seed, spec.threads)


def _realrun_options(spec: RunSpec, problem) -> tuple[int, int, int]:
    """(prefetch, trace_every, clock_every): realrun's options as :func:`realrun.engine.run_options`
    checks them, minus the two Buckwild! does not support (refused, not ignored)."""
    for name, fix in (("relabel", "remove options.relabel (Buckwild! keeps the data's numbering)"),
                      ("count_lost", "remove options.count_lost; hwsim.simulate counts lost updates exactly")):
        if spec.options.get(name):
            raise SpecError(f"options.{name}", spec.options[name], "is not supported by scheme 'buckwild'", fix)
    pf, every, clock, _, _ = run_options(spec, problem)
    if problem.N >= 2**31:
        raise ValueError(f"realrun buckwild: {problem.N} terms per epoch; the packed instrumentation counter holds "
                         "at most 2**31 - 1 samples per epoch")
    return pf, every, clock


def _trace_buffers(spec: RunSpec, n_terms: int, every: int, instrument: bool) -> list[np.ndarray]:
    """Per worker, an (epochs, rows, K.REC_COLS) int64 record filled with -1, written here so
    that no page is first touched inside a timed epoch (as realrun.engine does)."""
    rows = [(int(m) + every - 1) // every if instrument else 0 for m in split_sizes(n_terms, spec.threads)]
    nbytes = spec.epochs * sum(rows) * K.REC_COLS * 8
    if nbytes > TRACE_WARN_BYTES:
        log.warning("realrun buckwild: the trace will hold %.1f GiB (48 bytes per recorded sample); "
                    "options.trace_every = k records every k-th sample", nbytes / 2**30)
    return [np.full((spec.epochs, m, K.REC_COLS), -1, dtype=np.int64) for m in rows]


def run_buckwild(spec: RunSpec, *, problem=None, instrument: bool = True, pin: bool = True, with_opt: bool = False,
                 progress=None) -> RealResult:
    """``realrun.run`` for ``scheme = "buckwild"``: a :class:`realrun.engine.RealResult`.

    ``x`` is the integer model (``model_bits``); ``history`` evaluates the dequantised
    model; ``samples`` is the per-sample trace of :mod:`realrun.engine` (SAMPLE_SCHEMA;
    empty when ``instrument`` is False), so ``tau()`` works as for ``hogwild``;
    ``lost_updates`` is 0 with one thread or atomic writes, else ``None`` (not measured);
    ``info`` holds the ``config`` (:class:`workload.buckwild.Config`), ``x_float``, the
    options in force (``prefetch``, ``trace_every``, ``clock_every``), ``write_mode``,
    ``cas_failures``, ``ns_per_tick`` and ``oncpu_samples_per_s`` (as :class:`RealResult`
    describes them).  Ctrl-C keeps the completed epochs
    (``interrupted=True``), as :func:`realrun.run`.
    """
    if problem is None:
        from workload.build import build_problem

        problem = build_problem(spec)
    prep = Prepared(spec, problem)
    prefetch_distance, trace_every, clock_every = _realrun_options(spec, problem)
    cfg = prep.cfg
    p = spec.threads
    atomic = spec.write_mode == "atomic"
    x = B.encode_model(problem.initial_point(spec.seed), cfg)
    code, step0, beta, t0 = schedule_args(spec, prep.N)
    inv_s, a_to_x, glo, ghi, mlo, mhi = prep.consts
    kernel = make_kernel(cfg.loss, cfg.rounding, prep.reg, atomic=atomic, instrument=instrument,
                         prefetch_distance=prefetch_distance)
    ctrs = np.zeros(p, dtype=np.int64)
    sync = np.zeros(K.SYNC_LEN, dtype=np.int64)
    stats = np.zeros((p, K.ST_LEN), dtype=np.int64)
    cpu = np.zeros(p)  # each worker's CPU seconds in its kernel this epoch
    x_star = None
    if with_opt:
        sol = problem.solution()
        x_star = None if sol is None else sol.x

    def call(order, w, epoch, rec):
        return kernel(prep.aux, prep.deg, prep.mun, prep.indptr, prep.indices, prep.aq, prep.y, order, w, p, x, code,
                      step0, beta, t0, epoch, inv_s, a_to_x, prep.keys[w], ctrs[w], glo, ghi, mlo, mhi, prep.maxlen,
                      sync, rec, trace_every, clock_every, stats[w])

    t_jit = time.perf_counter()
    call(np.empty(0, dtype=np.int64), 0, 0, np.empty((0, K.REC_COLS), dtype=np.int64))
    jit_seconds = time.perf_counter() - t_jit

    cpus = sorted(os.sched_getaffinity(0))
    do_pin = pin and p <= len(cpus)
    cores: list = [None] * p
    errors: list = []
    start, end = threading.Barrier(p + 1), threading.Barrier(p + 1)
    job: dict = {}

    def worker(w):
        try:
            if do_pin:
                os.sched_setaffinity(0, {cpus[w]})
            cores[w] = tuple(sorted(os.sched_getaffinity(0)))
            while True:
                start.wait()
                if job.get("quit"):
                    return
                c0 = time.thread_time()
                ctrs[w] = call(job["orders"][w], w, job["epoch"], job["recs"][w])
                cpu[w] = time.thread_time() - c0
                end.wait()
        except threading.BrokenBarrierError:
            return
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the main thread
            errors.append((w, job.get("epoch"), exc))
            sync[K.STOP] = 1
            start.abort()
            end.abort()

    rec_all = _trace_buffers(spec, prep.N, trace_every, instrument)
    ns_per_tick = calibrate_tsc()[0] if instrument else 1.0
    tsc_now()  # compiled here, not in the first epoch
    threads = [threading.Thread(target=worker, args=(w,), daemon=True, name=f"buckwild-{w}") for w in range(p)]
    x_done = x.copy()
    history = [history_row(problem, B.decode_model(x_done, cfg), spec, 0, 0, 0.0, x_star)]
    epoch_seconds: list[float] = []
    oncpu: list[float] = []  # per epoch: reshuffle CPU time + the slowest worker's CPU time
    raw: list = []  # per completed epoch: (epoch, orders, recs, stats copy, samples before it)
    done = 0
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
            orders = [np.ascontiguousarray(o) for o in worker_orders(spec, prep.N, epoch)]
            shuffle_cpu = time.thread_time() - c0
            recs = [r[epoch] for r in rec_all]
            job.update(orders=orders, recs=recs, epoch=epoch)
            sync[K.CTR] = 0
            stats[:] = 0
            start.wait()
            end.wait()
            epoch_seconds.append((time.perf_counter_ns() - t_begin) * 1e-9)
            if int(stats[:, K.ST_DONE].sum()) != prep.N:
                raise WorkerFailed(f"realrun buckwild: epoch {epoch} processed {int(stats[:, K.ST_DONE].sum())} "
                                   f"of {prep.N} samples")
            raw.append((epoch, orders, recs, stats.copy(), done))
            oncpu.append(shuffle_cpu + float(cpu.max()))
            done += prep.N
            x_done = x.copy()
            row = history_row(problem, B.decode_model(x_done, cfg), spec, epoch + 1, done,
                              float(np.sum(epoch_seconds)), x_star)
            history.append(row)
            if progress is not None:
                progress(epoch, row)
            ctrl_c.check()
    except threading.BrokenBarrierError:
        pass  # a worker failed: raised below
    except KeyboardInterrupt:
        interrupted = True
        log.warning("realrun buckwild: interrupted; keeping %d completed epoch(s)", len(epoch_seconds))
    finally:
        ctrl_c.remove()
        stop_workers(sync, K.STOP, job, (start, end), threads)
    reraise_worker_error(errors, cores, spec.scheme)
    total = float(np.sum(epoch_seconds))
    samples = (samples_frame(raw, code, step0, beta, t0, p, trace_every, ns_per_tick, run_tsc0)
               if instrument else empty(SAMPLE_SCHEMA))
    cas_failures = int(sum(int(r[3][:, K.ST_CAS_FAILS].sum()) for r in raw))
    info = {"config": cfg, "x_float": B.decode_model(x_done, cfg), "pinned": do_pin, "reg": prep.reg,
            "rounding_counters": ctrs.copy(), "prefetch": prefetch_distance, "trace_every": trace_every,
            "clock_every": clock_every, "write_mode": spec.write_mode, "cas_failures": cas_failures,
            "ns_per_tick": ns_per_tick,
            "oncpu_samples_per_s": done / sum(oncpu) if oncpu and sum(oncpu) > 0 else float("nan")}
    return RealResult(x=x_done, samples=samples, history=pd.DataFrame(history).astype(HISTORY_SCHEMA),
                      epoch_seconds=np.asarray(epoch_seconds),
                      samples_per_s=done / total if total > 0 else float("nan"),
                      jit_seconds=jit_seconds, lost_updates=0 if p == 1 or atomic else None, threads=p,
                      cores=tuple(cores), instrument=instrument, interrupted=interrupted, spec=spec, info=info)


def serial_fast(spec: RunSpec, problem) -> list[np.ndarray]:
    """Jitted serial Buckwild! (one worker, no threads, no trace): the model after each epoch; for tests."""
    if spec.threads != 1:
        raise ValueError(f"serial_fast: spec.threads = {spec.threads}; one worker only")
    prep = Prepared(spec, problem)
    cfg = prep.cfg
    x = B.encode_model(problem.initial_point(spec.seed), cfg)
    code, step0, beta, t0 = schedule_args(spec, prep.N)
    kernel = make_kernel(cfg.loss, cfg.rounding, prep.reg, atomic=spec.write_mode == "atomic")
    sync, rec, stats = np.zeros(K.SYNC_LEN, np.int64), np.empty((0, K.REC_COLS), np.int64), np.zeros(K.ST_LEN, np.int64)
    ctr = 0
    out = []
    for epoch in range(spec.epochs):
        order = np.ascontiguousarray(worker_orders(spec, prep.N, epoch)[0])
        ctr = kernel(prep.aux, prep.deg, prep.mun, prep.indptr, prep.indices, prep.aq, prep.y, order, 0, 1, x, code,
                     step0, beta, t0, epoch, *prep.consts[:2], prep.keys[0], ctr, *prep.consts[2:], prep.maxlen,
                     sync, rec, 1, 1, stats)
        out.append(x.copy())
    return out
