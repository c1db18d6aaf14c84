"""Buckwild! in the simulated machine: exact integer state, the rules of :mod:`hwsim.model`.

Timing in hwsim never depends on values (hwsim.model, "Events and the tie-break"), so a
Buckwild! run has exactly the schedule of the ``hogwild-atomic`` run of the same spec:
the same events, ticks, sample trace and total order of memory operations.  This module
therefore (1) runs that spec through the ordinary engine (``engine="fast"`` or
``"reference"``) with the coordinate trace on, and (2) replays the memory operations in
their global order (``SimResult.order``) on the integer model:

* a read completion loads the integer model value into the sample's buffer;
* at a sample's last read completion (its READ DONE event) the deltas are computed with
  :func:`workload.buckwild.sample_deltas` -- the very function realrun's kernels inline --
  drawing the worker's next rounding numbers (per-worker counter, advanced by the support
  size per sample, in the worker's processing order, as in realrun);
* a store lands as a saturating integer add (atomic writes: every store lands; Buckwild!'s
  integer adds are lock-free but the machine model's ``atomic`` rule is used, so no lost
  updates).

So a one-worker simulated run equals realrun's and the slow oracle bit for bit (tested).
Restriction (stated): stores are atomic adds (``write_mode`` is ignored; non-atomic
read-modify-write Buckwild! is not simulated).  The coordinate trace's ``read_value`` and
``delta`` are the dequantised Buckwild! values.  De Sa et al., NIPS 2015, §4.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from numba import njit

from workload import buckwild as B
from workload.serial import history_row
from workload.trace import HISTORY_SCHEMA

from .model import SimResult


@njit(nogil=True)
def _replay(ev_row, ev_write, row_sample, row_coord, row_first, row_m, sample_term, sample_step, sample_ctr,
            sample_key, indptr, row_aux, aq, y, x, xr, d, loss, rounding, reg, inv_s, a_to_x, glo, ghi, mlo, mhi,
            reads_left):
    for i in range(ev_row.size):
        r = ev_row[i]
        j = row_coord[r]
        if ev_write[i]:
            x[j] = B.saturate(np.int64(x[j]) + d[r], mlo, mhi)
            continue
        xr[r] = x[j]
        s = row_sample[r]
        reads_left[s] -= 1
        if reads_left[s] == 0:
            f = row_first[s]
            m = row_m[s]
            e = sample_term[s]
            lo = indptr[e]
            B.sample_deltas(loss, rounding, reg, sample_step[s], y[e], aq[lo:lo + m], xr[f:f + m], row_aux[f:f + m],
                            inv_s, a_to_x, sample_key[s], sample_ctr[s], glo, ghi, d[f:f + m])


def simulate_buckwild(spec, machine, *, problem=None, engine: str = "fast", coord_trace: bool = True,
                      with_opt: bool = False) -> SimResult:
    """``hwsim.simulate`` for ``scheme = "buckwild"`` (module docstring)."""
    from . import simulate

    if problem is None:
        from workload.build import build_problem

        problem = build_problem(spec)
    cfg = B.validate_options(spec, problem)
    sched_spec = spec.replace(scheme="hogwild-atomic", dtype="fixed", options={})
    sim = simulate(sched_spec, machine, problem=problem, engine=engine, coord_trace=True, with_opt=False)
    t = problem.terms
    S, C, O = sim.samples, sim.coords, sim.order
    ns = len(S)
    row_sample = C["sample"].to_numpy(np.int64)
    row_coord = C["coord"].to_numpy(np.int64)
    row_m = np.bincount(row_sample, minlength=ns).astype(np.int64)
    row_first = np.concatenate([[0], np.cumsum(row_m)[:-1]]).astype(np.int64)
    term = S["term"].to_numpy(np.int64)
    if not np.array_equal(row_m, np.diff(t.indptr)[term]):
        raise AssertionError("hwsim buckwild: the schedule's coordinate rows do not match the terms' supports")
    # Rounding counters: each worker's samples in processing order (epoch, position).
    worker = S["worker"].to_numpy(np.int64)
    key_of = B.worker_keys(spec.seed, spec.threads)
    ctr = np.zeros(ns, dtype=np.int64)
    by = np.lexsort((S["position"].to_numpy(), S["epoch"].to_numpy(), worker))
    for w in range(spec.threads):
        sel = by[worker[by] == w]
        ctr[sel] = np.concatenate([[0], np.cumsum(row_m[sel])[:-1]])
    rops = O["read_op"].to_numpy(np.int64)
    wops = O["write_op"].to_numpy(np.int64)
    nr = row_sample.size
    ops = np.concatenate([rops, wops])
    ev_row = np.concatenate([np.arange(nr), np.arange(nr)]).astype(np.int64)
    ev_write = np.concatenate([np.zeros(nr, np.bool_), np.ones(nr, np.bool_)])
    order = np.argsort(ops, kind="stable")
    ev_row, ev_write, ops = ev_row[order], ev_write[order], ops[order]
    aq = B.encode_data(t.values, cfg, spec.seed)
    aux = np.ascontiguousarray(problem.aux, dtype=np.float64)
    reg = bool(np.any(aux != 0.0))
    row_aux = np.ascontiguousarray(aux[row_coord])
    x0 = B.encode_model(problem.initial_point(spec.seed), cfg)
    x = x0.copy()
    xr = np.zeros(nr, dtype=x.dtype)
    d = np.zeros(nr, dtype=np.int64)
    reads_left = row_m.copy()
    inv_s, a_to_x, glo, ghi, mlo, mhi = B.constants(cfg)
    # Epochs end at barriers: every op of epoch e precedes every op of epoch e+1.
    ev_epoch = S["epoch"].to_numpy(np.int64)[row_sample[ev_row]]
    hist = sim.history
    x_star = None
    if with_opt:
        sol = problem.solution()
        x_star = None if sol is None else sol.x
    rows = [history_row(problem, B.decode_model(x0, cfg), spec, 0, 0, 0.0, x_star)]
    bounds = np.searchsorted(ev_epoch, np.arange(spec.epochs + 1), side="left")
    if np.any(np.diff(ev_epoch) < 0):
        raise AssertionError("hwsim buckwild: memory operations of two epochs interleave")
    for e in range(spec.epochs):
        a, b = bounds[e], bounds[e + 1]
        _replay(ev_row[a:b], ev_write[a:b], row_sample, row_coord, row_first, row_m, term,
                S["step"].to_numpy(np.float64), ctr, key_of[worker], t.indptr, row_aux, aq, t.y, x, xr, d,
                cfg.loss, cfg.rounding, reg, inv_s, a_to_x, glo, ghi, mlo, mhi, reads_left)
        h = hist.iloc[e + 1]
        rows.append(history_row(problem, B.decode_model(x, cfg), spec, e + 1, int(h["samples"]), float(h["time"]),
                                x_star))
    coords = None
    if coord_trace:
        coords = C.copy()
        coords["read_value"] = B.decode_model(xr, cfg)
        coords["delta"] = d.astype(np.float64) * 2.0**-cfg.model_exp
    return SimResult(x=x, samples=S, coords=coords, order=O if coord_trace else None,
                     history=pd.DataFrame(rows).astype(HISTORY_SCHEMA), ticks=sim.ticks, lost_updates=0,
                     engine=sim.engine, machine=machine, spec=spec, x0=x0)
