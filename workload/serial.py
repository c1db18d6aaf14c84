"""Serial SGD: the plain oracle and the jitted driver, which agree bit for bit.

Both process the spec's per-worker orders (:func:`workload.order.worker_orders`)
interleaved round-robin -- worker 0's first sample, worker 1's first, ..., then the second
of each -- which for one worker is plain serial SGD and for p workers is the serial
equivalent of the ``round-robin`` scheme (Langford et al.'s strict worker order).  The
sample with position ``i`` in worker ``w``'s order gets the global sequence number
``t = i·p + w`` and step ``step_at(..., epoch, t)``.

The oracle is a readable Python loop over numpy; the per-term arithmetic is the problem's
``update`` kernel in both, so the only things compared are order, schedule, state
representation and the write rule.  The jitted driver inlines ``update`` into its loop
(:func:`workload.problems.base.inlined`: the same source compiled inline; an out-of-line
call per term costs reference counting and blocks optimisation across the call).
"""
from __future__ import annotations

import threading
import time
from typing import NamedTuple

import numpy as np
import pandas as pd
from numba import njit

from .fixed import add_value, encode_delta, read_value, scale_of, to_float, to_state
from .order import worker_orders
from .problems.base import Problem, inlined
from .schedule import global_t, schedule_args, step_at
from .spec import RunSpec
from .trace import HISTORY_SCHEMA


class SerialResult(NamedTuple):
    x: np.ndarray  # final model in its stored dtype
    history: pd.DataFrame  # HISTORY_SCHEMA
    seconds: float  # wall time of the SGD loops (objective evaluation excluded)


def interleave(orders: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Round-robin interleaving of per-worker orders: (terms, global sequence numbers t)."""
    p = len(orders)
    terms, ts = [], []
    longest = max(o.size for o in orders)
    for i in range(longest):
        for w in range(p):
            if i < orders[w].size:
                terms.append(orders[w][i])
                ts.append(global_t(i, w, p))
    return np.asarray(terms, dtype=np.int64), np.asarray(ts, dtype=np.int64)


def history_row(problem: Problem, x_state: np.ndarray, spec: RunSpec, epoch: int, samples: int, t: float,
                x_star: np.ndarray | None) -> dict:
    x = to_float(x_state, spec.fixed_point_bits)
    d2 = float(np.sum((x - x_star) ** 2)) if x_star is not None else float("nan")
    return {"epoch": epoch, "samples": samples, "objective": problem.objective(x), "dist2_opt": d2, "time": t}


def _x_star(problem: Problem, with_opt: bool):
    if not with_opt:
        return None
    sol = problem.solution()
    return None if sol is None else sol.x


def serial_oracle(problem: Problem, spec: RunSpec, *, with_opt: bool = False) -> SerialResult:
    """Plain serial SGD: a Python loop over numpy (slow; the reference)."""
    t = problem.terms
    x = to_state(problem.initial_point(spec.seed), spec.dtype, spec.fixed_point_bits)
    scale = scale_of(spec.fixed_point_bits)
    code, step0, beta, t0 = schedule_args(spec, t.N)
    x_star = _x_star(problem, with_opt)
    rows = [history_row(problem, x, spec, 0, 0, 0.0, x_star)]
    samples, seconds = 0, 0.0
    for epoch in range(spec.epochs):
        t_begin = time.perf_counter()
        seq, ts = interleave(worker_orders(spec, t.N, epoch))
        for e, tt in zip(seq, ts):
            lo, hi = t.indptr[e], t.indptr[e + 1]
            idx = t.indices[lo:hi]
            gamma = step_at(code, step0, beta, t0, epoch, tt)
            xr = x[idx] * (1.0 / scale) if x.dtype == np.int64 else x[idx].astype(np.float64)
            g = np.empty(hi - lo)
            u = np.empty(hi - lo)
            problem.update(problem.params, problem.aux, idx, t.values[lo:hi], t.y[e], xr, gamma, g, u)
            if x.dtype == np.int64:
                x[idx] = x[idx] + np.rint(u * scale).astype(np.int64)
            elif x.dtype == np.float32:
                x[idx] = (x[idx].astype(np.float64) + u).astype(np.float32)
            else:
                x[idx] = x[idx] + u
        seconds += time.perf_counter() - t_begin
        samples += seq.size
        rows.append(history_row(problem, x, spec, epoch + 1, samples, seconds, x_star))
    return SerialResult(x=x, history=pd.DataFrame(rows).astype(HISTORY_SCHEMA), seconds=seconds)


_passes: dict = {}
_passes_lock = threading.Lock()


def _build_pass(upd):
    @njit(nogil=True)
    def run_pass(params, aux, indptr, indices, values, y, seq, ts, x, code, step0, beta, t0, epoch, scale):
        inv_scale = 1.0 / scale
        maxlen = 0
        for e in seq:
            maxlen = max(maxlen, indptr[e + 1] - indptr[e])
        xr = np.empty(maxlen)
        g = np.empty(maxlen)
        u = np.empty(maxlen)
        for i in range(seq.size):
            e = seq[i]
            lo = indptr[e]
            hi = indptr[e + 1]
            k = hi - lo
            idx = indices[lo:hi]  # indexed by the loop counter only: no negative-index fix-up
            for j in range(k):
                xr[j] = read_value(x, idx[j], inv_scale)
            gamma = step_at(code, step0, beta, t0, epoch, ts[i])
            upd(params, aux, idx, values[lo:hi], y[e], xr[:k], gamma, g[:k], u[:k])
            for j in range(k):
                add_value(x, idx[j], encode_delta(x, u[j], scale))

    return run_pass


def sgd_pass(update, params, aux, indptr, indices, values, y, seq, ts, x, code, step0, beta, t0, epoch, scale):
    """Serial SGD over the terms ``seq`` (global sequence numbers ``ts``), in place on x.

    ``update`` (the problem's kernel) is inlined into the jitted loop
    (:func:`workload.problems.base.inlined`); one compiled loop per update, cached.
    """
    with _passes_lock:
        fn = _passes.get(update)
        if fn is None:
            fn = _passes[update] = _build_pass(inlined(update))
    fn(params, aux, indptr, indices, values, y, seq, ts, x, code, step0, beta, t0, epoch, scale)


def serial_sgd(problem: Problem, spec: RunSpec, *, with_opt: bool = False) -> SerialResult:
    """Jitted serial SGD; bit-identical to :func:`serial_oracle` for the same spec."""
    t = problem.terms
    x = to_state(problem.initial_point(spec.seed), spec.dtype, spec.fixed_point_bits)
    scale = scale_of(spec.fixed_point_bits)
    code, step0, beta, t0 = schedule_args(spec, t.N)
    x_star = _x_star(problem, with_opt)
    rows = [history_row(problem, x, spec, 0, 0, 0.0, x_star)]
    samples, seconds = 0, 0.0
    for epoch in range(spec.epochs):
        t_begin = time.perf_counter()
        orders = worker_orders(spec, t.N, epoch)
        seq, ts = (orders[0], np.arange(orders[0].size, dtype=np.int64)) if len(orders) == 1 else interleave(orders)
        sgd_pass(problem.update, problem.params, problem.aux, t.indptr, t.indices, t.values, t.y, seq, ts, x,
                 code, step0, beta, t0, epoch, scale)
        seconds += time.perf_counter() - t_begin
        samples += seq.size
        rows.append(history_row(problem, x, spec, epoch + 1, samples, seconds, x_star))
    return SerialResult(x=x, history=pd.DataFrame(rows).astype(HISTORY_SCHEMA), seconds=seconds)
