"""Buckwild! on real threads: nogil kernels on int8 / int16 / int32 model and data arrays.

Three tiers (STYLE.md 1): :func:`run_buckwild` validates the options
(:func:`workload.buckwild.validate_options`), quantises the data and the initial point once
and starts the threads; a kernel made by :func:`make_kernel` runs one worker's share of one
epoch, lock-free against the one shared integer model (plain loads and stores, as
``hogwild`` with ``write_mode = "rmw"``).

The kernel, per sample: gather the model at the support into a small buffer (int loads);
:func:`workload.buckwild.sample_deltas` -- an int64 dot product and the rounding loop, both
free of loop-carried dependencies except the sum (the counter-based generator needs no
state), so LLVM vectorises them; then a scalar scatter loop of saturating adds.  The loss,
the rounding mode and whether the regulariser is read are compile-time constants.

De Sa et al., "Taming the Wild", NIPS 2015, §4.  Row data is prefetched ``PREFETCH`` samples ahead as in
realrun.kernels.  Not yet here: the per-sample trace (``samples`` is empty) and the
relabelling of realrun.engine.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pandas as pd
from numba import njit

from workload import buckwild as B

from .atomics import prefetch, prefetch_l2
from workload.order import worker_orders
from workload.schedule import schedule_args, step_at
from workload.serial import history_row
from workload.spec import RunSpec
from workload.trace import HISTORY_SCHEMA, SAMPLE_SCHEMA, empty

_kernels: dict = {}
_lock = threading.Lock()


REG_NONE, REG_AUX, REG_DEGREE = 0, 1, 2


def make_kernel(loss: int, rounding: int, reg: int):
    """The worker kernel for one (loss, rounding, reg) combination (compiled lazily, cached).

    ``kernel(aux, deg, mun, indptr, indices, aq, y, order, w, p, x, code, step0, beta, t0,
    epoch, inv_s, a_to_x, key, ctr, glo, ghi, mlo, mhi, maxlen) -> ctr`` processes ``order``
    (worker ``w`` of ``p``) in place on the integer model ``x`` and returns the advanced
    rounding counter.  ``reg``: REG_NONE (no regulariser), REG_AUX (load the float64
    weight aux[j], a random gather) or REG_DEGREE (recompute aux[j] = mun / d_j from
    ``deg``, the degree of each *nonzero's* coordinate stored alongside the data as uint8 /
    uint16 / uint32: the same float64 division the problem did, so the same bits, streamed
    and prefetched with the row instead of gathered from an n-long float64 array).
    """
    k = (int(loss), int(rounding), int(reg))
    with _lock:
        kern = _kernels.get(k)
        if kern is None:
            kern = _kernels[k] = _build(*k)
    return kern


PREFETCH = 16  # samples ahead whose row data is prefetched into L2 (2x that: row pointer, label)


def _build(LOSS, ROUNDING, REG):
    sample_deltas = B.sample_deltas
    saturate = B.saturate
    PF = PREFETCH

    @njit(nogil=True)
    def kernel(aux, deg, mun, indptr, indices, aq, y, order, w, p, x, code, step0, beta, t0, epoch, inv_s, a_to_x,
               key, ctr, glo, ghi, mlo, mhi, maxlen):
        xr = np.empty(maxlen, dtype=x.dtype)
        d = np.empty(maxlen, dtype=np.int64)
        cr = np.zeros(maxlen)
        n = order.size
        step_aq = max(64 // aq.itemsize, 1)
        step_deg = max(64 // deg.itemsize, 1)
        for i in range(n):
            # Prefetch hints as realrun.kernels does (they change no value).
            if i + 2 * PF < n:
                e2 = order[i + 2 * PF]
                prefetch(indptr, e2)
                prefetch(y, e2)
            if i + PF < n:
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
            gamma = step_at(code, step0, beta, t0, epoch, i * p + w)
            sample_deltas(LOSS, ROUNDING, REG != REG_NONE, gamma, y[e], aq[lo:lo + m], xr[:m], cr[:m], inv_s,
                          a_to_x, key, ctr, glo, ghi, d)
            for k in range(m):
                j = idx[k]
                x[j] = saturate(np.int64(x[j]) + d[k], mlo, mhi)
            ctr += m
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


def run_buckwild(spec: RunSpec, *, problem=None, instrument: bool = True, pin: bool = True, with_opt: bool = False,
                 progress=None):
    """``realrun.run`` for ``scheme = "buckwild"``: a :class:`realrun.engine.RealResult`.

    ``x`` is the integer model (``model_bits``); ``history`` evaluates the dequantised
    model; ``samples`` is empty (no per-sample trace yet); ``info`` holds the ``config``
    (:class:`workload.buckwild.Config`) and ``x_float``.
    """
    from .engine import RealResult

    if problem is None:
        from workload.build import build_problem

        problem = build_problem(spec)
    prep = Prepared(spec, problem)
    cfg = prep.cfg
    p = spec.threads
    x = B.encode_model(problem.initial_point(spec.seed), cfg)
    code, step0, beta, t0 = schedule_args(spec, prep.N)
    inv_s, a_to_x, glo, ghi, mlo, mhi = prep.consts
    kernel = make_kernel(cfg.loss, cfg.rounding, prep.reg)
    ctrs = np.zeros(p, dtype=np.int64)
    x_star = None
    if with_opt:
        sol = problem.solution()
        x_star = None if sol is None else sol.x

    def call(order, w, epoch):
        return kernel(prep.aux, prep.deg, prep.mun, prep.indptr, prep.indices, prep.aq, prep.y, order, w, p, x, code,
                      step0, beta, t0, epoch, inv_s, a_to_x, prep.keys[w], ctrs[w], glo, ghi, mlo, mhi, prep.maxlen)

    t_jit = time.perf_counter()
    call(np.empty(0, dtype=np.int64), 0, 0)
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
                ctrs[w] = call(job["orders"][w], w, job["epoch"])
                end.wait()
        except threading.BrokenBarrierError:
            return
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the main thread
            errors.append((w, exc))
            start.abort()
            end.abort()

    threads = [threading.Thread(target=worker, args=(w,), daemon=True, name=f"buckwild-{w}") for w in range(p)]
    history = [history_row(problem, B.decode_model(x, cfg), spec, 0, 0, 0.0, x_star)]
    epoch_seconds: list[float] = []
    done = 0
    try:
        for th in threads:
            th.start()
        for epoch in range(spec.epochs):
            t_begin = time.perf_counter_ns()
            job.update(orders=[np.ascontiguousarray(o) for o in worker_orders(spec, prep.N, epoch)], epoch=epoch)
            start.wait()
            end.wait()
            epoch_seconds.append((time.perf_counter_ns() - t_begin) * 1e-9)
            done += prep.N
            row = history_row(problem, B.decode_model(x, cfg), spec, epoch + 1, done, float(np.sum(epoch_seconds)),
                              x_star)
            history.append(row)
            if progress is not None:
                progress(epoch, row)
    except threading.BrokenBarrierError:
        pass
    finally:
        job["quit"] = True
        start.abort()
        end.abort()
        for th in threads:
            if th.ident is not None:
                th.join()
    if errors:
        w, exc = errors[0]
        exc.add_note(f"raised by realrun buckwild worker {w}")
        raise exc
    total = float(np.sum(epoch_seconds))
    return RealResult(x=x, samples=empty(SAMPLE_SCHEMA), history=pd.DataFrame(history).astype(HISTORY_SCHEMA),
                      epoch_seconds=np.asarray(epoch_seconds),
                      samples_per_s=done / total if total > 0 else float("nan"),
                      jit_seconds=jit_seconds, lost_updates=0 if p == 1 else None, threads=p, cores=tuple(cores),
                      instrument=False, interrupted=False, spec=spec,
                      info={"config": cfg, "x_float": B.decode_model(x, cfg), "pinned": do_pin, "reg": prep.reg,
                            "rounding_counters": ctrs.copy()})


def serial_fast(spec: RunSpec, problem) -> list[np.ndarray]:
    """Jitted serial Buckwild! (one worker, no threads): the model after each epoch; for tests."""
    if spec.threads != 1:
        raise ValueError(f"serial_fast: spec.threads = {spec.threads}; one worker only")
    prep = Prepared(spec, problem)
    cfg = prep.cfg
    x = B.encode_model(problem.initial_point(spec.seed), cfg)
    code, step0, beta, t0 = schedule_args(spec, prep.N)
    kernel = make_kernel(cfg.loss, cfg.rounding, prep.reg)
    ctr = 0
    out = []
    for epoch in range(spec.epochs):
        order = np.ascontiguousarray(worker_orders(spec, prep.N, epoch)[0])
        ctr = kernel(prep.aux, prep.deg, prep.mun, prep.indptr, prep.indices, prep.aq, prep.y, order, 0, 1, x, code,
                     step0, beta, t0, epoch, *prep.consts[:2], prep.keys[0], ctr, *prep.consts[2:], prep.maxlen)
        out.append(x.copy())
    return out


