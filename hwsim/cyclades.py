"""hwsim: the Cyclades scheme (Pan et al., NIPS 2016) on the simulated machine.

The batches, components, per-core lists and the serial permutation come from
:mod:`workload.cyclades` (the same as realrun's); this module runs them on the machine of
:mod:`hwsim.model` as its own small event loop, in two engines that give identical
results: ``fast`` (one jitted loop; a tournament tree over cores picks the next
``(tick, core)``) and ``reference`` (plain Python with ``heapq``: the specification).

Rules (those of :mod:`hwsim.model`, where they apply, and the barrier rules below)
    * Threads and cores: ``spec.threads`` = T threads, thread w pinned to core w; T must
      not exceed ``machine.cores`` (no time slicing for this scheme).
    * Events and the tie-break: model.py's -- integer ticks, the pending event with the
      smallest ``(tick, core)`` runs next, every wait (a zero-tick one too) ends in a new
      event, at most one pending event per core.
    * One sample: model.py's START / READS / READ DONE / WRITES / END, word for word,
      with no acquire or release (a batch's components share no coordinate): read costs
      ``read_cost + miss`` fixed at issue, the value read at completion; the update with
      ``problem.update``; the compute delay the next draw of the core's delay stream
      (``stream(seed, STREAM_CORE, core)``, blocks of ``DELAY_BLOCK``); writes cost
      ``write_cost + miss`` and land as atomic adds (``add_value(x, j,
      encode_delta(x, u))``; no other core touches the coordinate within the batch, so
      the two write modes give the same values and no update is lost).  The step is
      ``step_at(..., epoch, t = the sample's epoch position)`` (workload.cyclades).
    * Coherence and memory order: model.py's (line sets, misses decided at issue, one
      global operation counter); false sharing between components of one batch that
      sit on one cache line costs misses exactly as in Hogwild!.
    * Counters: ``start_seq``/``read_seq``/``end_seq``, ``finished_at_start`` and
      ``started_at_end`` as in model.py, counted over the whole run (so ``sample`` is
      the start order); ``position`` is the sample's index in its core's list for the
      epoch (its batches' lists, concatenated).
    * An epoch (starting at tick s: 0, or the release of the previous epoch's last
      barrier): every core first finds the components of the batches b ≡ core (mod T):
      a wait of Σ_b rint(``component_cost`` · (nnz_b + size_b)) ticks (0 by default),
      ending in an event where it arrives at barrier 0 (a wait of 0 in the epochs that
      reuse epoch 0's schedule: ``order = "fixed-shuffle"``,
      :func:`workload.cyclades.reuses_schedule`).  Barrier k < B (B batches)
      precedes batch k; barrier B ends the epoch.  A core arrives at barrier k+1 in the
      END event of its last sample of batch k (or in the event that starts batch k, when
      its list is empty).  The last arrival, at tick t, *releases* the barrier: each core
      gets an event at ``t + barrier_cost`` in which it starts its list for the next
      batch (in core order, by the tie-break).  The history row of an epoch is taken at
      its last barrier's release tick, which is where the next epoch starts.
    With ``component_cost = barrier_cost = 0`` on one thread, the run's length in ticks is
    that of ``serial``'s: the same samples, costs and delay draws in another order.

Equivalence: the final model equals :func:`workload.cyclades.replay` over the recorded
permutation bit for bit; :func:`simulate_cyclades` checks it after every run
(``options.verify``, on by default).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numba import njit

from workload.cyclades import (Permutation, cyclades_options, epoch_order, epoch_schedule, reuses_schedule,
                               schedule_stats, serial_permutation, verify)
from workload.fixed import add_value, encode_delta, read_value, scale_of, to_state
from workload.schedule import schedule_args, step_at
from workload.trace import COORD_SCHEMA

from .delays import DELAY_BLOCK, DelayStream
from .machine import Machine, MachineError, line_count
from .model import ORDER_SCHEMA, SampleArrays, SimResult, history_frame

ENGINES = ("fast", "reference")
INF = np.int64(2**62)

# per-core fields (cst[c, F_*])
F_ACT, F_I, F_K, F_LO, F_M, F_TERM, F_POS, F_POSW, F_Q, F_QEND, F_ROW0 = range(11)
F_LEN = 11
ACT_ARRIVE, ACT_START, ACT_READ, ACT_WSTART, ACT_STORE = range(5)
STEP_READ, STEP_READ_DONE, STEP_BEGIN_READS, STEP_WSTART, STEP_STORE, STEP_END, STEP_START, STEP_ARRIVE = range(8)
# scalars (sc[S_*])
S_STARTED, S_READDONE, S_FINISHED, S_OP, S_NEXTROW, S_ARRIVED, S_BARRIER, S_NOW, S_FRESH, S_DONE, S_NEEDCORE = \
    range(11)
S_LEN = 11
# machine constants (mc[M_*])
M_T, M_R, M_W, M_H, M_LC, M_LSHIFT, M_TRACE, M_FIXED, M_BC, M_DB = range(10)
# sample rows (smp[SM_*, k]) in SampleArrays.COLS order without "step"
SM_COLS = tuple(c for c in SampleArrays.COLS if c != "step")
SM_WORKER, SM_EPOCH, SM_POSITION, SM_TERM, SM_T_START, SM_T_READ_DONE, SM_T_WRITE_START, SM_T_END, SM_READ_SEQ, \
    SM_END_SEQ, SM_F_AT_START, SM_S_AT_END = range(12)
# coordinate rows: ci[r, CI_*] (int), cf[r, CF_*] (float)
CI_SAMPLE, CI_COORD, CI_READ_TICK, CI_WRITE_TICK, CI_READ_OP, CI_WRITE_OP = range(6)
CF_READ_VALUE, CF_DELTA = range(2)


class CycladesError(MachineError):
    """The machine cannot run the Cyclades scheme as asked (message: field, value, fix)."""


@dataclass(frozen=True, eq=False, kw_only=True)
class CycladesSimResult(SimResult):
    """:class:`hwsim.model.SimResult` plus what makes the run checkable.

    permutation, steps, epoch_ptr
        the serial order the run is equivalent to (term ids, epoch after epoch), each
        term's step, and where each epoch starts in them (:class:`workload.cyclades.Permutation`).
    batches
        one row per epoch and batch: the schedule's statistics
        (:func:`workload.cyclades.schedule_stats`) and ``t_begin`` (the tick its cores
        started: the release of the barrier before it), ``t_end`` (the last arrival at the
        barrier after it).
    info
        ``batch_size``, ``barrier_cost``, ``component_cost``, ``component_ticks`` (per
        epoch: from the epoch's start to barrier 0's last arrival), ``serially_equivalent``
        (True when verified, None when ``options.verify`` is off).
    """

    permutation: np.ndarray
    steps: np.ndarray
    epoch_ptr: np.ndarray
    batches: pd.DataFrame
    info: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# The fast engine
# --------------------------------------------------------------------------------------
@njit(nogil=True, inline="always")
def _tree_set(tree, key, c, k):
    """Core c's next event at tick k (INF: none); recompute c's path of the tournament tree.

    A node holds ``tick << pbits | core`` of its smaller child, so the model's ``(tick,
    core)`` order is integer order; tree[0] holds pbits, leaves start at P = tree.size // 2.
    """
    key[c] = k
    P = tree.size // 2
    v = INF if k >= INF else (k << tree[0]) | c
    node = P + c
    tree[node] = v
    while node > 1:
        sib = tree[node ^ 1]
        if sib < v:
            v = sib
        node >>= 1
        tree[node] = v


@njit(nogil=True, inline="always")
def _line(mc, j):
    sh = mc[M_LSHIFT]
    return (j >> sh) if sh >= 0 else j // mc[M_LC]


@njit(nogil=True, inline="always")
def _miss(valid, mc, c, j):
    if mc[M_H] == 0:
        return 0
    return 0 if (valid[_line(mc, j), c >> 6] >> (c & 63)) & 1 else mc[M_H]


@njit(nogil=True, inline="always")
def _touch(valid, mc, c, j):
    if mc[M_H] != 0:
        valid[_line(mc, j), c >> 6] |= np.int64(1) << (c & 63)


@njit(nogil=True, inline="always")
def _own(valid, mc, c, j):
    if mc[M_H] != 0:
        line = _line(mc, j)
        for w in range(valid.shape[1]):
            valid[line, w] = 0
        valid[line, c >> 6] = np.int64(1) << (c & 63)


@njit(nogil=True, error_model="numpy")
def _run_epoch(update, params, aux, indptr, indices, values, y, x, scale, inv_scale, code, step0, beta, t0, epoch,
               mc, order, work, core_ptr, busy, cst, xr, gb, ub, tree, key, dbuf, dpos, valid, sc, smp, sstep, ci, cf,
               bar_last, bar_rel):
    """Run events until the epoch's last barrier releases (0), a core needs delays (1), or a deadlock (-1)."""
    T = mc[M_T]
    R = mc[M_R]
    W = mc[M_W]
    BC = mc[M_BC]
    DB = mc[M_DB]
    trace = mc[M_TRACE] != 0
    fixed = mc[M_FIXED] != 0
    nb = core_ptr.shape[0]
    pbits = tree[0]
    P = tree.size // 2
    op = sc[S_OP]
    if sc[S_FRESH] == 1:  # the epoch starts: every core finds its batches' components
        sc[S_FRESH] = 0
        sc[S_DONE] = 0
        sc[S_ARRIVED] = 0
        sc[S_BARRIER] = 0
        now = sc[S_NOW]
        for c in range(T):
            cst[c, F_ACT] = ACT_ARRIVE
            cst[c, F_POSW] = 0
            _tree_set(tree, key, c, now + busy[c])
    while True:
        root = tree[1]
        if root >= INF:
            sc[S_OP] = op
            return -1
        c = root & (P - 1)
        now = root >> pbits
        act = cst[c, F_ACT]
        # hot paths: a read or a store that is not the sample's last
        if act == ACT_READ:
            i = cst[c, F_I]
            if i + 1 < cst[c, F_M]:
                lo = cst[c, F_LO]
                j = indices[lo + i]
                v = read_value(x, j, inv_scale)
                xr[c, i] = v
                _touch(valid, mc, c, j)
                if trace:
                    r = cst[c, F_ROW0] + i
                    ci[r, CI_SAMPLE] = cst[c, F_K]
                    ci[r, CI_COORD] = j
                    ci[r, CI_READ_TICK] = now
                    ci[r, CI_READ_OP] = op
                    cf[r, CF_READ_VALUE] = v
                op += 1
                cst[c, F_I] = i + 1
                _tree_set(tree, key, c, now + R + _miss(valid, mc, c, indices[lo + i + 1]))
                continue
        elif act == ACT_STORE:
            i = cst[c, F_I]
            if i + 1 < cst[c, F_M]:
                lo = cst[c, F_LO]
                j = indices[lo + i]
                d = encode_delta(x, ub[c, i], scale)
                add_value(x, j, d)
                _own(valid, mc, c, j)
                if trace:
                    r = cst[c, F_ROW0] + i
                    ci[r, CI_WRITE_TICK] = now
                    ci[r, CI_WRITE_OP] = op
                    cf[r, CF_DELTA] = d * inv_scale if fixed else d
                op += 1
                cst[c, F_I] = i + 1
                _tree_set(tree, key, c, now + W + _miss(valid, mc, c, indices[lo + i + 1]))
                continue
        if act != ACT_ARRIVE and dpos[c] >= DB:  # this event may draw a delay: refill first
            sc[S_NEEDCORE] = c
            sc[S_OP] = op
            return 1
        key[c] = INF
        if act == ACT_READ:
            step = STEP_READ
        elif act == ACT_STORE:
            step = STEP_STORE
        elif act == ACT_WSTART:
            step = STEP_WSTART
        elif act == ACT_START:
            step = STEP_START
        else:
            step = STEP_ARRIVE
        while True:
            if step == STEP_READ:  # read i completes
                i = cst[c, F_I]
                j = indices[cst[c, F_LO] + i]
                v = read_value(x, j, inv_scale)
                xr[c, i] = v
                _touch(valid, mc, c, j)
                if trace:
                    r = cst[c, F_ROW0] + i
                    ci[r, CI_SAMPLE] = cst[c, F_K]
                    ci[r, CI_COORD] = j
                    ci[r, CI_READ_TICK] = now
                    ci[r, CI_READ_OP] = op
                    cf[r, CF_READ_VALUE] = v
                op += 1
                cst[c, F_I] = i + 1
                if i + 1 < cst[c, F_M]:
                    cst[c, F_ACT] = ACT_READ
                    key[c] = now + R + _miss(valid, mc, c, indices[cst[c, F_LO] + i + 1])
                    break
                step = STEP_READ_DONE
            elif step == STEP_READ_DONE:  # the update; wait the compute delay
                k = cst[c, F_K]
                smp[SM_T_READ_DONE, k] = now
                smp[SM_READ_SEQ, k] = sc[S_READDONE]
                sc[S_READDONE] += 1
                lo = cst[c, F_LO]
                m = cst[c, F_M]
                gamma = step_at(code, step0, beta, t0, epoch, cst[c, F_POS])
                sstep[k] = gamma
                update(params, aux, indices[lo:lo + m], values[lo:lo + m], y[cst[c, F_TERM]], xr[c, :m], gamma,
                       gb[c, :m], ub[c, :m])
                d = dbuf[c, dpos[c]]
                dpos[c] += 1
                cst[c, F_ACT] = ACT_WSTART
                key[c] = now + d
                break
            elif step == STEP_BEGIN_READS:
                cst[c, F_I] = 0
                if cst[c, F_M] > 0:
                    cst[c, F_ACT] = ACT_READ
                    key[c] = now + R + _miss(valid, mc, c, indices[cst[c, F_LO]])
                    break
                step = STEP_READ_DONE
            elif step == STEP_WSTART or step == STEP_STORE:
                if step == STEP_WSTART:
                    smp[SM_T_WRITE_START, cst[c, F_K]] = now
                    cst[c, F_I] = 0
                else:  # store i lands
                    i = cst[c, F_I]
                    j = indices[cst[c, F_LO] + i]
                    d = encode_delta(x, ub[c, i], scale)
                    add_value(x, j, d)
                    _own(valid, mc, c, j)
                    if trace:
                        r = cst[c, F_ROW0] + i
                        ci[r, CI_WRITE_TICK] = now
                        ci[r, CI_WRITE_OP] = op
                        cf[r, CF_DELTA] = d * inv_scale if fixed else d
                    op += 1
                    cst[c, F_I] = i + 1
                i = cst[c, F_I]
                if i < cst[c, F_M]:  # issue write i
                    cst[c, F_ACT] = ACT_STORE
                    key[c] = now + W + _miss(valid, mc, c, indices[cst[c, F_LO] + i])
                    break
                step = STEP_END
            elif step == STEP_END:
                k = cst[c, F_K]
                smp[SM_T_END, k] = now
                smp[SM_END_SEQ, k] = sc[S_FINISHED]
                sc[S_FINISHED] += 1
                smp[SM_S_AT_END, k] = sc[S_STARTED]
                cst[c, F_Q] += 1
                cst[c, F_POSW] += 1
                step = STEP_START
            elif step == STEP_START:  # the next sample of this core's list, or the barrier
                q = cst[c, F_Q]
                if q == cst[c, F_QEND]:
                    step = STEP_ARRIVE
                    continue
                pos = work[q]
                e = order[pos]
                k = sc[S_STARTED]
                sc[S_STARTED] += 1
                lo = indptr[e]
                m = indptr[e + 1] - lo
                smp[SM_WORKER, k] = c
                smp[SM_EPOCH, k] = epoch
                smp[SM_POSITION, k] = cst[c, F_POSW]
                smp[SM_TERM, k] = e
                smp[SM_F_AT_START, k] = sc[S_FINISHED]
                smp[SM_T_START, k] = now
                cst[c, F_K] = k
                cst[c, F_LO] = lo
                cst[c, F_M] = m
                cst[c, F_TERM] = e
                cst[c, F_POS] = pos
                if trace:
                    cst[c, F_ROW0] = sc[S_NEXTROW]
                    sc[S_NEXTROW] += m
                step = STEP_BEGIN_READS
            else:  # STEP_ARRIVE at barrier sc[S_BARRIER]
                sc[S_ARRIVED] += 1
                if sc[S_ARRIVED] == T:  # the last arrival releases it
                    b = sc[S_BARRIER]
                    rel = now + BC
                    bar_last[b] = now
                    bar_rel[b] = rel
                    sc[S_ARRIVED] = 0
                    sc[S_BARRIER] = b + 1
                    if b == nb:
                        sc[S_NOW] = rel
                        sc[S_DONE] = 1
                    else:
                        for cc in range(T):
                            cst[cc, F_ACT] = ACT_START
                            cst[cc, F_Q] = core_ptr[b, cc]
                            cst[cc, F_QEND] = core_ptr[b, cc + 1]
                            if cc != c:
                                _tree_set(tree, key, cc, rel)
                        key[c] = rel
                break
        _tree_set(tree, key, c, key[c])
        if sc[S_DONE] == 1:
            sc[S_OP] = op
            return 0


class _Run:
    """What both engines share: the spec's epochs, schedules and result assembly."""

    def __init__(self, spec, machine: Machine, problem, coord_trace: bool):
        self.opts = cyclades_options(spec)
        T = spec.threads
        if T > machine.cores:
            raise CycladesError("cores", machine.cores, f"cyclades runs one thread per core and spec.threads = {T}",
                                f"use a machine with cores >= {T} or set spec.threads <= {machine.cores}")
        self.spec, self.machine, self.problem, self.coord_trace = spec, machine, problem, bool(coord_trace)
        t = problem.terms
        self.T = T
        self.x = to_state(problem.initial_point(spec.seed), spec.dtype, spec.fixed_point_bits)
        self.x0 = self.x.copy()
        self.scale = scale_of(spec.fixed_point_bits)
        self.sched_args = schedule_args(spec, t.N)
        self.orders = [epoch_order(spec, t.N, e) for e in range(spec.epochs)]
        self.schedules = [epoch_schedule(t, o, self.opts.batch_size, T) for o in self.orders]
        sizes = np.diff(t.indptr)
        self.busy = []
        for epoch, s in enumerate(self.schedules):
            if reuses_schedule(spec, epoch):
                self.busy.append(np.zeros(T, dtype=np.int64))
                continue
            nnz = np.add.reduceat(sizes[s.order], s.bounds[:-1]) if s.order.size else np.zeros(0, np.int64)
            cost = np.rint(self.opts.component_cost * (nnz + np.diff(s.bounds))).astype(np.int64)
            busy = np.zeros(T, dtype=np.int64)
            np.add.at(busy, np.arange(cost.size) % T, cost)
            self.busy.append(busy)
        self.total = sum(o.size for o in self.orders)
        self.rows = int(sum(int(sizes[o].sum()) for o in self.orders)) if coord_trace else 0
        self.maxlen = max(1, int(sizes.max()) if sizes.size else 1)

    def result(self, engine, samples, coords, order, checkpoints, ticks, bars, with_opt) -> CycladesSimResult:
        spec, problem = self.spec, self.problem
        perm: Permutation = serial_permutation(spec, problem.N)
        equivalent = None
        if self.opts.verify:
            verify(self.x, problem, spec, perm, f"hwsim ({engine})")
            equivalent = True
        frames, comp_ticks = [], []
        start = 0
        for epoch, (s, (last, rel)) in enumerate(zip(self.schedules, bars)):
            st = schedule_stats(s, problem.terms)
            st.insert(0, "epoch", np.int64(epoch))
            st["t_begin"] = rel[:-1]
            st["t_end"] = last[1:]
            frames.append(st)
            comp_ticks.append(int(last[0] - start))
            start = int(rel[-1])
        batches = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        history = history_frame(problem, spec, self.x0, checkpoints, with_opt)
        info = {"batch_size": self.opts.batch_size, "barrier_cost": self.opts.barrier_cost,
                "component_cost": self.opts.component_cost, "component_ticks": comp_ticks,
                "serially_equivalent": equivalent}
        return CycladesSimResult(x=self.x, samples=samples, coords=coords, order=order, history=history,
                                 ticks=int(ticks), lost_updates=0, engine=engine, machine=self.machine, spec=spec,
                                 x0=self.x0, permutation=perm.terms, steps=perm.steps, epoch_ptr=perm.epoch_ptr,
                                 batches=batches, info=info)


def _coord_frames(ci, cf):
    n = ci.shape[0]
    coords = pd.DataFrame({"sample": ci[:, CI_SAMPLE], "coord": ci[:, CI_COORD], "read_tick": ci[:, CI_READ_TICK],
                           "read_value": cf[:, CF_READ_VALUE], "write_tick": ci[:, CI_WRITE_TICK],
                           "delta": cf[:, CF_DELTA], "lost": np.zeros(n, dtype=np.bool_)}).astype(COORD_SCHEMA)
    order = pd.DataFrame({"read_op": ci[:, CI_READ_OP], "wread_op": np.full(n, -1, dtype=np.int64),
                          "write_op": ci[:, CI_WRITE_OP]}).astype(ORDER_SCHEMA)
    return coords, order


def _run_fast(r: _Run, with_opt: bool) -> CycladesSimResult:
    spec, machine, problem = r.spec, r.machine, r.problem
    t = problem.terms
    T = r.T
    x = r.x
    code, step0, beta, t0 = r.sched_args
    words = (T + 63) // 64
    lc = machine.line_coords
    lshift = lc.bit_length() - 1 if lc & (lc - 1) == 0 else -1
    H = machine.coherence_cost
    mc = np.array([T, machine.read_cost, machine.write_cost, H, lc, lshift, int(r.coord_trace),
                   int(x.dtype == np.int64), r.opts.barrier_cost, DELAY_BLOCK], dtype=np.int64)
    P = 1
    while P < T:
        P *= 2
    tree = np.full(2 * P, INF, dtype=np.int64)
    tree[0] = P.bit_length() - 1
    key = np.full(P, INF, dtype=np.int64)
    cst = np.zeros((T, F_LEN), dtype=np.int64)
    xr = np.zeros((T, r.maxlen))
    gb = np.zeros((T, r.maxlen))
    ub = np.zeros((T, r.maxlen))
    streams = [DelayStream(machine.delay_of(c), spec.seed, c) for c in range(T)]
    dbuf = np.zeros((T, DELAY_BLOCK), dtype=np.int64)
    dpos = np.zeros(T, dtype=np.int64)
    for c in range(T):
        dbuf[c] = streams[c].refill()
    valid = np.full((line_count(t.n, lc) if H else 1, words), -1, dtype=np.int64)
    sc = np.zeros(S_LEN, dtype=np.int64)
    smp = np.full((12, r.total), -1, dtype=np.int64)
    sstep = np.zeros(r.total)
    ci = np.full((r.rows, 6), -1, dtype=np.int64)
    cf = np.zeros((r.rows, 2))
    checkpoints, bars = [], []
    for epoch, s in enumerate(r.schedules):
        bar_last = np.full(s.batches + 1, -1, dtype=np.int64)
        bar_rel = np.full(s.batches + 1, -1, dtype=np.int64)
        sc[S_FRESH] = 1
        while True:
            status = _run_epoch(problem.update, problem.params, problem.aux, t.indptr, t.indices, t.values, t.y, x,
                                r.scale, 1.0 / r.scale, code, step0, beta, t0, epoch, mc, s.order, s.work, s.core_ptr,
                                r.busy[epoch], cst, xr, gb, ub, tree, key, dbuf, dpos, valid, sc, smp, sstep, ci, cf,
                                bar_last, bar_rel)
            if status == 0:
                break
            if status == 1:
                c = int(sc[S_NEEDCORE])
                dbuf[c] = streams[c].refill()
                dpos[c] = 0
                continue
            raise RuntimeError(f"hwsim cyclades: no pending event in epoch {epoch} before its last barrier "
                               "(engine bug); rerun with engine='reference' and report the spec and machine")
        checkpoints.append((epoch + 1, int(sc[S_FINISHED]), int(sc[S_NOW]), x.copy()))
        bars.append((bar_last, bar_rel))
    sa = SampleArrays(0)
    for i, col in enumerate(SM_COLS):
        setattr(sa, col, smp[i])
    sa.step = sstep
    coords, order = _coord_frames(ci, cf) if r.coord_trace else (None, None)
    return r.result("fast", sa.frame(), coords, order, checkpoints, sc[S_NOW], bars, with_opt)


# --------------------------------------------------------------------------------------
# The reference engine: the same rules, plain Python
# --------------------------------------------------------------------------------------
_ARRIVE = object()  # a core program yields this to arrive at the next barrier


def _run_reference(r: _Run, with_opt: bool) -> CycladesSimResult:
    spec, machine, problem = r.spec, r.machine, r.problem
    t = problem.terms
    T = r.T
    x = r.x
    code, step0, beta, t0 = r.sched_args
    scale = r.scale
    inv = 1.0 / scale
    R, W, H, LC = machine.read_cost, machine.write_cost, machine.coherence_cost, machine.line_coords
    valid = np.ones((line_count(t.n, LC), T), dtype=bool)  # core c holds a valid copy of the line
    streams = [DelayStream(machine.delay_of(c), spec.seed, c) for c in range(T)]
    sa = SampleArrays(r.total)
    rows = {k: [] for k in ("sample", "coord", "read_tick", "read_value", "write_tick", "delta", "read_op",
                            "write_op")}
    st = {"started": 0, "readdone": 0, "finished": 0, "op": 0, "now": 0}

    def miss(c, j):
        return 0 if H == 0 or valid[j // LC, c] else H

    def touch(c, j):
        valid[j // LC, c] = True

    def own(c, j):
        valid[j // LC, :] = False
        valid[j // LC, c] = True

    def sample(c, epoch, pos, posw):
        """One sample (model.py's START .. END); yields the ticks of each wait."""
        e = int(s.order[pos])
        lo, hi = int(t.indptr[e]), int(t.indptr[e + 1])
        idx = t.indices[lo:hi]
        k = st["started"]
        st["started"] += 1
        sa.worker[k], sa.epoch[k], sa.position[k], sa.term[k] = c, epoch, posw, e
        sa.finished_at_start[k], sa.t_start[k] = st["finished"], st["now"]
        row0 = len(rows["sample"])
        if r.coord_trace:
            for q, j in enumerate(idx):
                rows["sample"].append(k)
                rows["coord"].append(int(j))
                for col in ("read_tick", "write_tick", "read_op", "write_op"):
                    rows[col].append(-1)
                rows["read_value"].append(0.0)
                rows["delta"].append(0.0)
        xr = np.zeros(hi - lo)
        for q, j in enumerate(idx):
            yield R + miss(c, j)
            xr[q] = read_value(x, j, inv)
            touch(c, j)
            if r.coord_trace:
                rows["read_tick"][row0 + q] = st["now"]
                rows["read_value"][row0 + q] = xr[q]
                rows["read_op"][row0 + q] = st["op"]
            st["op"] += 1
        sa.t_read_done[k] = st["now"]
        sa.read_seq[k] = st["readdone"]
        st["readdone"] += 1
        gamma = step_at(code, step0, beta, t0, epoch, pos)
        sa.step[k] = gamma
        g = np.zeros(hi - lo)
        u = np.zeros(hi - lo)
        problem.update(problem.params, problem.aux, idx, t.values[lo:hi], t.y[e], xr, gamma, g, u)
        yield streams[c].next()
        sa.t_write_start[k] = st["now"]
        for q, j in enumerate(idx):
            yield W + miss(c, j)
            d = encode_delta(x, float(u[q]), scale)
            add_value(x, j, d)
            own(c, j)
            if r.coord_trace:
                rows["write_tick"][row0 + q] = st["now"]
                rows["write_op"][row0 + q] = st["op"]
                rows["delta"][row0 + q] = float(d) * inv if x.dtype == np.int64 else float(d)
            st["op"] += 1
        sa.t_end[k] = st["now"]
        sa.end_seq[k] = st["finished"]
        st["finished"] += 1
        sa.started_at_end[k] = st["started"]

    def program(c, epoch):
        """Core c's epoch: find its batches' components, then its list of every batch."""
        yield int(r.busy[epoch][c])
        yield _ARRIVE
        posw = 0
        for b in range(s.batches):
            for pos in s.core_list(b, c):
                yield from sample(c, epoch, int(pos), posw)
                posw += 1
            yield _ARRIVE

    checkpoints, bars = [], []
    for epoch, s in enumerate(r.schedules):
        progs = [program(c, epoch) for c in range(T)]
        heap = [(st["now"] + next(progs[c]), c) for c in range(T)]
        heapq.heapify(heap)
        bar_last = np.full(s.batches + 1, -1, dtype=np.int64)
        bar_rel = np.full(s.batches + 1, -1, dtype=np.int64)
        barrier, arrived, done = 0, 0, False
        while heap and not done:
            now, c = heapq.heappop(heap)
            st["now"] = now
            w = next(progs[c])
            if w is not _ARRIVE:
                heapq.heappush(heap, (now + w, c))
                continue
            arrived += 1
            if arrived < T:
                continue
            rel = now + r.opts.barrier_cost
            bar_last[barrier], bar_rel[barrier] = now, rel
            arrived = 0
            if barrier == s.batches:
                st["now"] = rel
                done = True
            else:
                for cc in range(T):  # each core's event at the release starts its next list
                    heapq.heappush(heap, (rel, cc))
            barrier += 1
        if not done:
            raise RuntimeError(f"hwsim cyclades reference: epoch {epoch} ended before its last barrier (bug)")
        # a released core resumes with the generator's next step, which is START (model: same event)
        checkpoints.append((epoch + 1, st["finished"], st["now"], x.copy()))
        bars.append((bar_last, bar_rel))
    coords = order = None
    if r.coord_trace:
        n = len(rows["sample"])
        ci = np.zeros((n, 6), dtype=np.int64)
        cf = np.zeros((n, 2))
        for col, name in ((CI_SAMPLE, "sample"), (CI_COORD, "coord"), (CI_READ_TICK, "read_tick"),
                          (CI_WRITE_TICK, "write_tick"), (CI_READ_OP, "read_op"), (CI_WRITE_OP, "write_op")):
            ci[:, col] = rows[name]
        cf[:, CF_READ_VALUE] = rows["read_value"]
        cf[:, CF_DELTA] = rows["delta"]
        coords, order = _coord_frames(ci, cf)
    return r.result("reference", sa.frame(), coords, order, checkpoints, st["now"], bars, with_opt)


def simulate_cyclades(spec, machine: Machine, *, problem=None, engine: str = "fast", coord_trace: bool = True,
                      with_opt: bool = False) -> CycladesSimResult:
    """Simulate a ``cyclades`` spec on ``machine`` (module docstring); :func:`hwsim.simulate` calls this.

    Raises :class:`workload.cyclades.SerialEquivalenceError` when the final model is not
    bit-identical to serial SGD over the recorded permutation (``options.verify``).
    """
    if spec.scheme != "cyclades":
        raise ValueError(f"spec.scheme = {spec.scheme!r}: simulate_cyclades runs 'cyclades' only; "
                         "use hwsim.simulate for the other schemes")
    if engine not in ENGINES:
        raise ValueError(f"engine = {engine!r}: must be one of {', '.join(ENGINES)}")
    if not isinstance(machine, Machine):
        raise TypeError(f"machine = {machine!r}: must be a hwsim.Machine; build one with hwsim.Machine(cores=..., ...)")
    if problem is None:
        from workload.build import build_problem

        problem = build_problem(spec)
    r = _Run(spec, machine, problem, coord_trace)
    return _run_fast(r, with_opt) if engine == "fast" else _run_reference(r, with_opt)
