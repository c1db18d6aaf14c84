"""realrun ``cyclades``: conflict-free batches on real threads (Pan et al., NIPS 2016).

The batches, components, per-core lists and the serial permutation are
:mod:`workload.cyclades`'s, so a run equals serial SGD over its recorded permutation bit for
bit (checked after every run unless ``options.verify`` is false) and hwsim runs the very
same schedule.

Per epoch each Python thread calls its nogil kernel once (three tiers, STYLE.md 1:
:func:`run_cyclades` checks, coerces and allocates; the threads run the epoch; the kernel
runs one worker's part).  Worker w of p:

1. *finds components*: for the batches b ≡ w (mod p) it runs
   :func:`workload.cyclades.batch_schedule` (union-find over the batch's supports, then the
   largest-first balancer), writing the batch's per-core lists into the shared schedule
   arrays (disjoint slices);
2. arrives at a spin barrier (an arrival counter in the shared ``sync`` array: one
   sequentially consistent ``lock xadd`` per arrival, so every list and every model write
   made before it is visible to whoever sees the count; waiters spin on an acquire-load,
   pausing, and yield their core every 128 pauses, so more threads than cores progress);
3. for each batch in order: processes its list -- each sample reads its support with
   :func:`workload.fixed.read_value`, computes with the problem's own ``update``, writes
   with :func:`workload.fixed.add_value` (plain loads and stores: no other thread touches
   those coordinates in this batch) -- then arrives at the batch's barrier.

Measured, per epoch: ``component_seconds`` (the component phase: first worker's start to
the last worker's end of step 1; about 0 after epoch 0 with ``order = "fixed-shuffle"``,
whose schedule is found once: :func:`workload.cyclades.reuses_schedule`), ``update_seconds`` (all workers past the barrier of step
2 to the last worker's last sample), both from the time-stamp counter, beside
``epoch_seconds`` (the main thread's clock around the whole epoch, the order's draw
included, as for every scheme); ``info["components_found"]``: per epoch, the components
the workers found.  ``info["barrier_wait_seconds"]``: per worker, the time
spent waiting at batch barriers (load imbalance made visible).  With ``instrument`` the
``samples`` table is filled as for the other schemes (the packed started/finished counter
of :mod:`realrun.kernels`, clocks; ``options.trace_every`` / ``clock_every``), its
``position`` being the sample's index in its worker's list for the epoch.

Options: ``batch_size`` and ``verify`` (:func:`workload.cyclades.cyclades_options`);
``prefetch`` and ``relabel`` as in :mod:`realrun.engine` (software prefetch along each
worker's list; renumbering coordinates, which changes neither the components nor any
value); ``count_lost`` does not apply (no update can be lost: ``lost_updates`` is 0).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import njit

from workload.cyclades import (alloc_schedule, cyclades_options, epoch_order, epoch_steps, reuses_schedule,
                               schedule_batches, schedule_stats, serial_permutation, verify)
from workload.fixed import add_value, encode_delta, read_value, scale_of, to_state
from workload.problems.base import Problem
from workload.schedule import schedule_args, step_at
from workload.serial import history_row
from workload.spec import RunSpec
from workload.trace import HISTORY_SCHEMA, SAMPLE_SCHEMA, conform, empty

from . import kernels as K
from .atomics import (atomic_add, calibrate_tsc, load_acquire, os_yield, prefetch, prefetch_l2, spin_pause, tsc,
                      tsc_now)
from .engine import (InterruptLatch, RealResult, WorkerFailed, Layout, run_options, append_record_columns,
                     reraise_worker_error, stop_workers)

log = logging.getLogger(__name__)

# Slots of the shared int64 ``sync`` array, each on its own 64-byte line.
CTR = 0  # packed instrumentation counter (realrun.kernels): started << 32 | finished
BAR = 8  # barrier arrivals in this epoch (barrier k is passed when BAR >= k * p)
STOP = 16  # nonzero: stop now (a worker failed, or Ctrl-C)
SYNC_LEN = 24

# Columns of a worker's per-sample record: realrun.kernels' six, then the epoch position.
REC_POS = K.REC_COLS
REC_COLS = K.REC_COLS + 1

# Stats a kernel returns (int64).
ST_DONE, ST_RECORDED, ST_SPINS, ST_T0, ST_T1, ST_T2, ST_T3, ST_WAIT, ST_COMPONENTS = range(9)
ST_LEN = 9

_SPIN_CHECK = 127
_cache: dict = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True, kw_only=True, eq=False)
class CycladesRealResult(RealResult):
    """:class:`realrun.engine.RealResult` plus what makes the run checkable and its cost split.

    permutation, steps, epoch_ptr
        the serial order the run is equivalent to (term ids, completed epochs in turn), each
        term's step, where each epoch starts (:class:`workload.cyclades.Permutation`).
    batches
        per epoch and batch, the schedule's statistics (:func:`workload.cyclades.schedule_stats`).
    component_seconds, update_seconds
        per completed epoch, the measured component phase and update phase (module docstring).
    """

    permutation: np.ndarray
    steps: np.ndarray
    epoch_ptr: np.ndarray
    batches: pd.DataFrame
    component_seconds: np.ndarray
    update_seconds: np.ndarray


@njit(nogil=True, inline="always")
def _barrier(sync, target):
    """Arrive; spin until ``target`` arrivals.  Returns the pauses spent, or -1 when told to stop."""
    atomic_add(sync, BAR, 1)
    spins = 0
    while load_acquire(sync, BAR) < target:
        spin_pause()
        spins += 1
        if (spins & _SPIN_CHECK) == 0:
            if load_acquire(sync, STOP) != 0:
                return -1
            os_yield()
    return spins


def make_cyclades_worker(update, *, instrument: bool, prefetch_distance: int):
    """The kernel for one (update, instrumentation, prefetch) combination (cached).

    ``kernel(params, aux, indptr, indices, values, y, x, scale, code, step0, beta, t0,
    epoch, order, bounds, core_ptr, work, comp, tag, stamp_base, first, w, p, maxlen, sync,
    rec, stride, clock_every, stats)`` runs worker w's part of one epoch (module docstring)
    in place on x, finding the components of batches ``first, first + p, ...`` (``first =
    w``, or the batch count to keep the schedule already in the arrays); ``rec`` receives a row per recorded sample (``REC_*``), ``stats`` the
    ``ST_*`` figures.
    """
    key = (update, bool(instrument), int(prefetch_distance))
    with _cache_lock:
        kern = _cache.get(key)
    if kern is None:
        kern = _build(K.inline_update(update), bool(instrument), int(prefetch_distance))
        with _cache_lock:
            kern = _cache.setdefault(key, kern)
    return kern


def _build(upd, instrument, dist):
    dist2 = 2 * dist
    dist3 = 3 * dist

    @njit(nogil=True)
    def kernel(params, aux, indptr, indices, values, y, x, scale, code, step0, beta, t0, epoch, order, bounds,
               core_ptr, work, comp, tag, stamp_base, first, w, p, maxlen, sync, rec, stride, clock_every, stats):
        inv_scale = 1.0 / scale
        nb = bounds.size - 1
        # 1. components of this worker's batches
        stats[ST_T0] = tsc()
        stats[ST_COMPONENTS] = schedule_batches(indptr, indices, order, bounds, p, tag, stamp_base, work, core_ptr,
                                                comp, first, p)
        stats[ST_T1] = tsc()
        # 2. every list is written
        r = _barrier(sync, p)
        stats[ST_T2] = tsc()
        if r < 0:
            return
        spins = r
        # 3. the batches, a barrier after each
        xr = np.empty(maxlen)
        g = np.empty(maxlen)
        u = np.empty(maxlen)
        done = 0
        nrec = 0
        waited = 0
        i = 0  # this worker's sample count in the epoch
        for b in range(nb):
            if load_acquire(sync, STOP) != 0:
                break
            qlo = core_ptr[b, w]
            qhi = core_ptr[b, w + 1]
            for q in range(qlo, qhi):
                if dist > 0:
                    if q + dist3 < qhi:
                        prefetch(order, work[q + dist3])
                    if q + dist2 < qhi:
                        e2 = order[work[q + dist2]]
                        prefetch(indptr, e2)
                        prefetch(y, e2)
                    if q + dist < qhi:
                        e1 = order[work[q + dist]]
                        lo1 = indptr[e1]
                        hi1 = indptr[e1 + 1]
                        if hi1 > lo1:
                            for a in range(lo1, hi1, 16):
                                prefetch_l2(indices, a)
                            prefetch_l2(indices, hi1 - 1)
                            for a in range(lo1, hi1, 8):
                                prefetch_l2(values, a)
                            prefetch_l2(values, hi1 - 1)
                pos = work[q]
                e = order[pos]
                lo = indptr[e]
                k = indptr[e + 1] - lo
                gamma = step_at(code, step0, beta, t0, epoch, pos)
                if instrument:
                    clocked = i % clock_every == 0
                    t_start = tsc() if clocked else -1
                    start_word = atomic_add(sync, CTR, K.STARTED_ONE)
                for j in range(k):
                    xr[j] = read_value(x, indices[lo + j], inv_scale)
                if instrument:
                    t_read = tsc() if clocked else -1
                upd(params, aux, indices[lo:lo + k], values[lo:lo + k], y[e], xr[:k], gamma, g[:k], u[:k])
                if instrument:
                    t_write = tsc() if clocked else -1
                for j in range(k):
                    add_value(x, indices[lo + j], encode_delta(x, u[j], scale))
                done += 1
                if instrument:
                    end_word = atomic_add(sync, CTR, 1)
                    t_end = tsc() if clocked else -1
                    if i % stride == 0:
                        rec[nrec, K.REC_START] = start_word
                        rec[nrec, K.REC_END] = end_word
                        rec[nrec, K.REC_T_START] = t_start
                        rec[nrec, K.REC_T_READ] = t_read
                        rec[nrec, K.REC_T_WRITE] = t_write
                        rec[nrec, K.REC_T_END] = t_end
                        rec[nrec, REC_POS] = pos
                        nrec += 1
                i += 1
            if b + 1 < nb:
                tw = tsc()
                r = _barrier(sync, (b + 2) * p)
                waited += tsc() - tw
                if r < 0:
                    break
                spins += r
        stats[ST_T3] = tsc()
        stats[ST_DONE] = done
        stats[ST_RECORDED] = nrec
        stats[ST_SPINS] = spins
        stats[ST_WAIT] = waited

    return kernel


def run_cyclades(spec: RunSpec, *, problem: Problem | None = None, instrument: bool = True, pin: bool = True,
                 with_opt: bool = False, progress=None) -> CycladesRealResult:
    """Run a ``cyclades`` spec on real threads (module docstring); :func:`realrun.run` calls this.

    Arguments as :func:`realrun.run`.  Raises :class:`workload.cyclades.SerialEquivalenceError`
    when the model is not bit-identical to serial SGD over the recorded permutation
    (``options.verify``, on by default; the replay runs after the run, untimed).
    """
    if not isinstance(spec, RunSpec):
        raise TypeError(f"run_cyclades: spec must be a workload.spec.RunSpec, got {type(spec).__name__}")
    if spec.scheme != "cyclades":
        raise ValueError(f"spec.scheme = {spec.scheme!r}: run_cyclades runs 'cyclades' only; use realrun.run")
    if problem is None:
        from workload.build import build_problem

        problem = build_problem(spec)
    opts = cyclades_options(spec)
    prefetch_distance, trace_every, clock_every, _, relabel = run_options(spec, problem)
    if problem.N >= 2**31:
        raise ValueError(f"realrun cyclades: {problem.N} terms per epoch; the packed instrumentation counter holds "
                         "at most 2**31 - 1 samples per epoch")
    lay = Layout(problem, relabel=relabel)
    p = spec.threads
    N = lay.N
    x = lay.to_kernel(to_state(problem.initial_point(spec.seed), spec.dtype, spec.fixed_point_bits))
    scale = scale_of(spec.fixed_point_bits)
    code, step0, beta, t0 = schedule_args(spec, N)
    kernel = make_cyclades_worker(problem.update, instrument=instrument, prefetch_distance=prefetch_distance)
    sync = np.zeros(SYNC_LEN, dtype=np.int64)
    x_star = None
    if with_opt:
        sol = problem.solution()
        x_star = None if sol is None else sol.x

    # Everything an epoch touches is allocated (and written) here, outside any timed region.
    sched = alloc_schedule(np.zeros(N, dtype=np.int64), opts.batch_size, p)
    nb = sched.batches
    tags = np.full((p, max(lay.n, 1)), -1, dtype=np.int64)  # per worker union-find scratch
    sched.work[:] = 0
    sched.comp[:] = 0
    rec_rows = (N + trace_every - 1) // trace_every if instrument else 0  # a worker may get every sample
    recs = [np.full((rec_rows, REC_COLS), -1, dtype=np.int64) for _ in range(p)]
    stats = np.zeros((p, ST_LEN), dtype=np.int64)

    def call(order, w, epoch):
        first = nb if reuses_schedule(spec, epoch) else w
        kernel(lay.params, lay.aux, lay.indptr, lay.indices, lay.values, lay.y, x, scale, code, step0, beta, t0,
               epoch, order, sched.bounds, sched.core_ptr, sched.work, sched.comp, tags[w], epoch * (nb + 1), first,
               w, p, lay.maxlen, sync, recs[w], trace_every, clock_every, stats[w])

    # Compile outside any timed region: one worker of one thread, an empty epoch.
    t_jit = time.perf_counter()
    kernel(lay.params, lay.aux, lay.indptr, lay.indices, lay.values, lay.y, x, scale, code, step0, beta, t0, 0,
           np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64), np.zeros((0, 2), dtype=np.int64),
           np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.full(max(lay.n, 1), -1, dtype=np.int64), 0, 0, 0,
           1, lay.maxlen, np.zeros(SYNC_LEN, dtype=np.int64), np.zeros((0, REC_COLS), dtype=np.int64), 1, 1,
           np.zeros(ST_LEN, dtype=np.int64))
    epoch_steps(code, step0, beta, t0, 0, 0)
    jit_seconds = time.perf_counter() - t_jit

    cpus = sorted(os.sched_getaffinity(0))
    do_pin = pin and p <= len(cpus)
    cores: list = [None] * p
    errors: list = []
    start_barrier = threading.Barrier(p + 1)
    end_barrier = threading.Barrier(p + 1)
    job: dict = {}

    def worker(w):
        try:
            if do_pin:
                os.sched_setaffinity(0, {cpus[w]})
            cores[w] = tuple(sorted(os.sched_getaffinity(0)))
            while True:
                start_barrier.wait()
                if job.get("quit"):
                    return
                call(job["order"], w, job["epoch"])
                end_barrier.wait()
        except threading.BrokenBarrierError:
            return
        except BaseException as exc:  # noqa: BLE001 -- handed to the main thread
            errors.append((w, job.get("epoch"), exc))
            sync[STOP] = 1
            start_barrier.abort()
            end_barrier.abort()

    ns_per_tick = calibrate_tsc()[0]
    tsc_now()
    threads = [threading.Thread(target=worker, args=(w,), name=f"realrun-cyclades-{w}", daemon=True)
               for w in range(p)]
    history = [history_row(problem, lay.from_kernel(x), spec, 0, 0, 0.0, x_star)]
    epoch_seconds: list[float] = []
    comp_seconds: list[float] = []
    upd_seconds: list[float] = []
    wait_ticks = np.zeros(p, dtype=np.int64)
    found: list[int] = []  # components found per epoch (0 where the schedule was reused)
    spins = 0
    raw: list = []  # per completed epoch: (epoch, order, recorded rows per worker, base)
    batch_frames: list = []
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
            if run_tsc0 is None:
                run_tsc0 = int(tsc_now())
            order = epoch_order(spec, N, epoch)
            job.update(order=order, epoch=epoch)
            sync[CTR] = 0
            sync[BAR] = 0
            stats[:] = 0
            start_barrier.wait()
            end_barrier.wait()
            seconds = (time.perf_counter_ns() - t_begin) * 1e-9
            done = int(stats[:, ST_DONE].sum())
            if done != N:
                raise WorkerFailed(f"realrun cyclades: epoch {epoch} processed {done} of {N} samples")
            epoch_seconds.append(seconds)
            comp_seconds.append(float(stats[:, ST_T1].max() - stats[:, ST_T0].min()) * ns_per_tick * 1e-9)
            upd_seconds.append(float(stats[:, ST_T3].max() - stats[:, ST_T2].max()) * ns_per_tick * 1e-9)
            wait_ticks += stats[:, ST_WAIT]
            found.append(int(stats[:, ST_COMPONENTS].sum()))
            spins += int(stats[:, ST_SPINS].sum())
            if instrument:
                raw.append((epoch, order, [recs[w][:int(stats[w, ST_RECORDED])].copy() for w in range(p)],
                            samples_done))
            st = schedule_stats(sched._replace(order=order), problem.terms)
            st.insert(0, "epoch", np.int64(epoch))
            batch_frames.append(st)
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
        log.warning("realrun cyclades: interrupted; keeping %d completed epoch(s)", len(epoch_seconds))
    finally:
        ctrl_c.remove()
        stop_workers(sync, STOP, job, (start_barrier, end_barrier), threads)
    reraise_worker_error(errors, cores, spec.scheme)

    completed = len(epoch_seconds)
    perm = serial_permutation(spec, N, epochs=completed)
    equivalent = None
    if opts.verify:
        verify(x_done, problem, spec, perm, "realrun")
        equivalent = True
    total = float(np.sum(epoch_seconds))
    upd_total = float(np.sum(upd_seconds))
    samples = _samples_frame(raw, perm, trace_every, ns_per_tick, run_tsc0) if instrument else empty(SAMPLE_SCHEMA)
    info = {"batch_size": opts.batch_size, "prefetch": prefetch_distance, "trace_every": trace_every,
            "clock_every": clock_every, "pinned": do_pin, "ns_per_tick": ns_per_tick, "relabel": lay.relabel,
            "layout_seconds": lay.seconds, "cas_failures": 0, "lock_spins": spins,
            "barrier_wait_seconds": (wait_ticks * ns_per_tick * 1e-9).tolist(), "components_found": found,
            "update_samples_per_s": samples_done / upd_total if upd_total > 0 else float("nan"),
            "serially_equivalent": equivalent}
    batches = pd.concat(batch_frames, ignore_index=True) if batch_frames else pd.DataFrame()
    return CycladesRealResult(
        x=x_done, samples=samples, history=pd.DataFrame(history).astype(HISTORY_SCHEMA),
        epoch_seconds=np.asarray(epoch_seconds), samples_per_s=samples_done / total if total > 0 else float("nan"),
        jit_seconds=jit_seconds, lost_updates=0, threads=p, cores=tuple(cores), instrument=instrument,
        interrupted=interrupted, spec=spec, info=info, permutation=perm.terms, steps=perm.steps,
        epoch_ptr=perm.epoch_ptr, batches=batches, component_seconds=np.asarray(comp_seconds),
        update_seconds=np.asarray(upd_seconds))


def _samples_frame(raw, perm, every, ns_per_tick, tsc0) -> pd.DataFrame:
    cols = {c: [] for c in SAMPLE_SCHEMA}
    mask = np.int64(K.LOW_MASK)
    for epoch, order, recs, base in raw:
        steps = perm.steps[perm.epoch_ptr[epoch]:perm.epoch_ptr[epoch + 1]]
        for w, rec in enumerate(recs):
            m = rec.shape[0]
            pos = rec[:, REC_POS]
            append_record_columns(cols, rec, base, mask, tsc0, ns_per_tick, w, epoch,
                                  np.arange(m, dtype=np.int64) * every, order[pos], steps[pos])
    if not cols["sample"]:
        return empty(SAMPLE_SCHEMA)
    df = pd.DataFrame({c: np.concatenate(v) for c, v in cols.items()})
    df = df.sort_values("sample", kind="stable")
    return conform(df, SAMPLE_SCHEMA, what="realrun cyclades samples")
