"""Buckwild! in the simulated machine: exact integer state, the rules of :mod:`hwsim.model`.

Timing in hwsim never depends on values (hwsim.model, "Events and the tie-break"), so a
Buckwild! run has exactly the schedule of the ``hogwild`` run of the same spec with the
same ``write_mode``: the same events, ticks, sample trace, total order of memory
operations and lost-update marks.  This module therefore (1) runs that spec through the
ordinary engine (``engine="fast"`` or ``"reference"``; ``dtype = "fixed"``, the scheme
``hogwild-atomic`` for atomic writes and ``hogwild`` with ``write_mode = "rmw"`` for
non-atomic ones) with the coordinate trace on, and (2) replays the memory operations in
their global order (``SimResult.order``, :data:`hwsim.model.ORDER_SCHEMA`) on the integer
model, one operation at a time:

* a read completion (``read_op``) loads the integer model value into the sample's buffer;
* at a sample's last read completion (its READ DONE event) the deltas are computed with
  :func:`workload.buckwild.sample_deltas` -- the very function realrun's kernels inline --
  drawing the worker's next rounding numbers (per-worker counter, advanced by the support
  size per sample, in the worker's processing order, as in realrun);
* ``write_mode = "atomic"``: a store (``write_op``) lands as ``x[j] ← sat(x[j] + d)``, the
  saturating add of :mod:`workload.buckwild` (realrun: a compare-and-swap loop);
* ``write_mode = "rmw"`` (the spec's default; realrun: a plain load and a plain store):
  the write's read (``wread_op``, at issue) takes the raw stored integer ``old = x[j]``
  and the store lands as ``x[j] ← sat(old + d)`` -- hwsim.model's rmw rule with the
  saturating add -- so every store to j that landed between the two is overwritten.
  Those are the *lost* updates: the coordinate trace's ``lost`` and ``lost_updates`` are
  the schedule's own (they depend on the order only, never on values), counted exactly as
  for the float engines.

So ``write_mode`` means the same in both engines, and a one-worker simulated run equals
realrun's and the slow oracle bit for bit in either mode (tested; with more workers the
replay is tested bit for bit against a plain-Python oracle that replays the memory order
one operation at a time).  The coordinate trace's ``read_value`` and ``delta`` are the
dequantised Buckwild! values.  De Sa et al., NIPS 2015, §4 (Buckwild!); Niu et al. 2011
for the non-atomic Hogwild! write.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from numba import njit

from workload import buckwild as B
from workload.serial import history_row
from workload.trace import HISTORY_SCHEMA

from .model import SimResult


READ, WREAD, STORE = 0, 1, 2  # memory-operation kinds of the replay (read completion, rmw read, store)


@njit(nogil=True)
def _replay(ev_row, ev_kind, row_sample, row_coord, row_first, row_m, sample_term, sample_step, sample_ctr,
            sample_key, indptr, row_aux, aq, y, x, xr, d, old, rmw, loss, rounding, reg, inv_s, a_to_x, glo, ghi, mlo,
            mhi, reads_left):
    """Apply the memory operations ``(ev_row, ev_kind)`` in order to the integer model ``x``
    (module docstring): ``xr[r]`` / ``old[r]`` receive row r's read and rmw read, ``d[r]``
    its delta; a store adds ``d[r]`` to ``old[r]`` when ``rmw``, else to the current value."""
    for i in range(ev_row.size):
        r = ev_row[i]
        j = row_coord[r]
        kind = ev_kind[i]
        if kind == STORE:
            base = old[r] if rmw else np.int64(x[j])
            x[j] = B.saturate(base + d[r], mlo, mhi)
            continue
        if kind == WREAD:
            old[r] = x[j]
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


def schedule_spec(spec):
    """The float-engine spec whose schedule a Buckwild! spec has: same timing, same memory
    order, same lost-update marks (``dtype = "fixed"``; the scheme and write mode as above)."""
    if spec.write_mode == "rmw":
        return spec.replace(scheme="hogwild", write_mode="rmw", dtype="fixed", options={})
    return spec.replace(scheme="hogwild-atomic", dtype="fixed", options={})


def memory_events(order) -> tuple[np.ndarray, np.ndarray]:
    """(row, kind) of every memory operation in global order, from the ORDER_SCHEMA table
    (one row per coordinate access pair; ``wread_op`` is -1 for atomic writes)."""
    nr = len(order)
    rows = np.arange(nr, dtype=np.int64)
    ops = [order["read_op"].to_numpy(np.int64), order["wread_op"].to_numpy(np.int64),
           order["write_op"].to_numpy(np.int64)]
    op = np.concatenate(ops)
    row = np.concatenate([rows, rows, rows])
    kinds = np.repeat(np.array([READ, WREAD, STORE], dtype=np.int8), nr)
    keep = op >= 0
    op, row, kinds = op[keep], row[keep], kinds[keep]
    by = np.argsort(op, kind="stable")
    if np.any(np.diff(op[by]) == 0):
        raise AssertionError("hwsim buckwild: two memory operations share one number in the schedule's order")
    return row[by], kinds[by]


def rounding_counters(samples, row_m: np.ndarray, threads: int) -> np.ndarray:
    """Each sample's first rounding-counter value: per worker, the support sizes of its
    earlier samples in processing order (epoch, position) summed, as realrun's kernels count."""
    worker = samples["worker"].to_numpy(np.int64)
    ctr = np.zeros(len(samples), dtype=np.int64)
    by = np.lexsort((samples["position"].to_numpy(), samples["epoch"].to_numpy(), worker))
    for w in range(threads):
        sel = by[worker[by] == w]
        ctr[sel] = np.concatenate([[0], np.cumsum(row_m[sel])[:-1]])
    return ctr


def simulate_buckwild(spec, machine, *, problem=None, engine: str = "fast", coord_trace: bool = True,
                      with_opt: bool = False) -> SimResult:
    """``hwsim.simulate`` for ``scheme = "buckwild"`` (module docstring).

    ``x`` is the integer model; ``samples``, ``order``, ``ticks``, the coordinate trace's
    ticks and ``lost`` marks, and ``lost_updates`` are those of the schedule's run
    (:func:`schedule_spec`); ``read_value`` / ``delta`` are the dequantised integers.
    """
    from . import simulate

    if problem is None:
        from workload.build import build_problem

        problem = build_problem(spec)
    cfg = B.validate_options(spec, problem)
    rmw = spec.write_mode == "rmw"
    sim = simulate(schedule_spec(spec), machine, problem=problem, engine=engine, coord_trace=True, with_opt=False)
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
    worker = S["worker"].to_numpy(np.int64)
    key_of = B.worker_keys(spec.seed, spec.threads)
    ctr = rounding_counters(S, row_m, spec.threads)
    ev_row, ev_kind = memory_events(O)
    nr = row_sample.size
    aq = B.encode_data(t.values, cfg, spec.seed)
    aux = np.ascontiguousarray(problem.aux, dtype=np.float64)
    reg = bool(np.any(aux != 0.0))
    row_aux = np.ascontiguousarray(aux[row_coord])
    x0 = B.encode_model(problem.initial_point(spec.seed), cfg)
    x = x0.copy()
    xr = np.zeros(nr, dtype=x.dtype)
    d = np.zeros(nr, dtype=np.int64)
    old = np.zeros(nr, dtype=np.int64)
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
    step = S["step"].to_numpy(np.float64)
    for e in range(spec.epochs):
        a, b = bounds[e], bounds[e + 1]
        _replay(ev_row[a:b], ev_kind[a:b], row_sample, row_coord, row_first, row_m, term, step, ctr, key_of[worker],
                t.indptr, row_aux, aq, t.y, x, xr, d, old, rmw, cfg.loss, cfg.rounding, reg, inv_s, a_to_x, glo, ghi,
                mlo, mhi, reads_left)
        h = hist.iloc[e + 1]
        rows.append(history_row(problem, B.decode_model(x, cfg), spec, e + 1, int(h["samples"]), float(h["time"]),
                                x_star))
    coords = None
    if coord_trace:
        coords = C.copy()
        coords["read_value"] = B.decode_model(xr, cfg)
        coords["delta"] = d.astype(np.float64) * 2.0**-cfg.model_exp
    return SimResult(x=x, samples=S, coords=coords, order=O if coord_trace else None,
                     history=pd.DataFrame(rows).astype(HISTORY_SCHEMA), ticks=sim.ticks,
                     lost_updates=int(sim.lost_updates),
                     engine=sim.engine, machine=machine, spec=spec, x0=x0)
