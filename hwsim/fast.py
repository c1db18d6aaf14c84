"""The fast engine: the rules of :mod:`hwsim.model` as one jitted event loop.

Design.  Because no timing in the model depends on a value, the simulation needs no
look-ahead or rollback: a jitted loop keeps, per core, the tick of its one pending event in
a tournament tree (leaf = core, node = the child with the smaller ``(tick, core)``), pops
the minimum, runs that thread's step *with its arithmetic*, and re-keys the core.  This is
the reference engine's SimPy queue with the same order, minus Python: the same
``workload.fixed`` read/encode/add functions and the problem's own ``update`` kernel run
in the same order on the same values, so traces and the final model are bit-identical.

Events are keyed ``tick << pbits | core`` (pbits = log2 of the cores rounded up to a power
of two) so the model's ``(tick, core)`` order is plain integer order; keys must stay below
2**62.  The hot paths (a read or an atomic store that is not the sample's last) skip the
generic step machine.  Cost per coordinate event is ~20-50 ns on one core (more with the
coordinate trace and coherence on); JIT compilation is a few seconds per (problem kernel,
state dtype) pair.

Three tiers (STYLE.md): :func:`run_fast` checks, coerces and allocates; it calls
:func:`_run_epoch` once per epoch (and again whenever a core has used up its block of
pre-drawn delays: the loop returns, Python draws the core's next block from its stream,
the loop resumes where it stopped); the loop itself is the kernel.  All state lives in
arrays, so a call can stop and resume at any event.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from workload.fixed import add_value, encode_delta, read_value, scale_of, to_state
from workload.schedule import schedule_args, step_at

from .delays import DELAY_BLOCK, DelayStream
from .machine import Machine, line_count
from .model import (SCHEME_LOCK_COORD, SCHEME_LOCK_GLOBAL, SCHEME_ROUND_ROBIN, SampleArrays, SimResult,
                    all_orders, history_frame, scheme_code, turn_sequence)

INF = np.int64(2**62)

# machine constants (mc)
MC_CORES, MC_R, MC_W, MC_H, MC_LC, MC_SLICED, MC_Q, MC_S, MC_T, MC_SCHEME, MC_RMW, MC_TRACE, MC_FIXED, \
    MC_WORDS, MC_B, MC_LSHIFT = range(16)
# scalars (sc)
SC_STARTED, SC_READDONE, SC_FINISHED, SC_OP, SC_NEXTROW, SC_LOST, SC_ARRIVED, SC_TURN, SC_RQH, SC_RQN, \
    SC_GHOLD, SC_GHEAD, SC_GTAIL, SC_NOW, SC_DONE, SC_FRESH, SC_NEEDCORE = range(17)
# thread fields (th)
TH_POS, TH_K, TH_I, TH_ACT, TH_NEED, TH_QEND, TH_CORE, TH_ROW0, TH_SNAP, TH_LO, TH_M, TH_TERM, TH_WAIT, \
    TH_QNEXT = range(14)
# thread actions
ACT_START, ACT_ACQ, ACT_READ, ACT_WSTART, ACT_STORE = range(5)
# core event kinds
EV_ACTION, EV_EXPIRY = 0, 1
# sample columns (smp rows), in SampleArrays.COLS order without "step"
SM_COLS = tuple(c for c in SampleArrays.COLS if c != "step")
SM_WORKER, SM_EPOCH, SM_POSITION, SM_TERM, SM_T_START, SM_T_READ_DONE, SM_T_WRITE_START, SM_T_END, SM_READ_SEQ, \
    SM_END_SEQ, SM_F_AT_START, SM_S_AT_END = range(12)
# coordinate-trace int columns (ci[:, col]) and float columns (cf[:, col])
CI_SAMPLE, CI_COORD, CI_READ_TICK, CI_WRITE_TICK, CI_READ_OP, CI_WREAD_OP, CI_WRITE_OP, CI_PREV = range(8)
CF_READ_VALUE, CF_DELTA = range(2)


# core state rows (cs)
CS_KEY, CS_KIND, CS_RUNNING, CS_IDLE = range(4)
# steps inside one event (the main loop's state machine)
STEP_READ, STEP_READ_DONE, STEP_BEGIN_READS, STEP_WSTART, STEP_STORE, STEP_END, STEP_START, STEP_ACQ = range(8)


@njit(nogil=True, inline="always")
def _tree_update(tree, cs, c):
    """Re-key leaf ``c`` of the tournament tree and recompute its path to the root.

    A node holds ``tick << pbits | core`` of the smaller child (the next event's tick and
    core in one int64: the model's ``(tick, core)`` order is integer order), INF_NODE for no
    event; tree[0] holds pbits.
    """
    P = cs.shape[1]
    k = cs[CS_KEY, c]
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
def _key_set(tree, cs, c, k, pbits, P):
    """Pinned fast path of _schedule + _tree_update: core c's next action at tick k."""
    cs[CS_KEY, c] = k
    cs[CS_KIND, c] = EV_ACTION
    v = (k << pbits) | c
    node = P + c
    tree[node] = v
    while node > 1:
        sib = tree[node ^ 1]
        if sib < v:
            v = sib
        node >>= 1
        tree[node] = v


@njit(nogil=True, inline="always")
def _miss(valid, c, j, H, lsh, LC):
    """Coherence: H when core c holds no valid copy of j's line, else 0 (hwsim.model)."""
    if H == 0:
        return 0
    line = (j >> lsh) if lsh >= 0 else j // LC
    valid_bit = (valid[line, c >> 6] >> (c & 63)) & 1
    return H * (1 - valid_bit)  # branch-free: hits and misses are unpredictable


@njit(nogil=True, inline="always")
def _touch(valid, c, j, H, lsh, LC):
    """A read (or rmw read) by c: c now holds a valid copy of the line."""
    if H != 0:
        line = (j >> lsh) if lsh >= 0 else j // LC
        valid[line, c >> 6] |= np.int64(1) << (c & 63)


@njit(nogil=True, inline="always")
def _own(valid, c, j, H, lsh, LC):
    """A store by c: c holds the only valid copy of the line."""
    if H != 0:
        line = (j >> lsh) if lsh >= 0 else j // LC
        if valid.shape[1] == 1:
            valid[line, 0] = np.int64(1) << (c & 63)
        else:
            for w in range(valid.shape[1]):
                valid[line, w] = 0
            valid[line, c >> 6] = np.int64(1) << (c & 63)


@njit(nogil=True, inline="always")
def _schedule(th, cs, tree, mc, t, d, now):
    """Thread t (running) needs d ticks from now: its core's next event (action or expiry)."""
    c = th[t, TH_CORE]
    if mc[MC_SLICED] == 0:
        cs[CS_KEY, c] = now + d
        cs[CS_KIND, c] = EV_ACTION
    else:
        left = th[t, TH_QEND] - now
        if d <= left:
            cs[CS_KEY, c] = now + d
            cs[CS_KIND, c] = EV_ACTION
        else:
            cs[CS_KEY, c] = th[t, TH_QEND]
            cs[CS_KIND, c] = EV_EXPIRY
            th[t, TH_NEED] = d - left
    _tree_update(tree, cs, c)


@njit(nogil=True)
def _dispatch(th, cs, tree, mc, h, c, now):
    """Thread h takes core c at tick now: switch, fresh quantum, then its pending work."""
    cs[CS_IDLE, c] = 0
    cs[CS_RUNNING, c] = h
    th[h, TH_CORE] = c
    th[h, TH_QEND] = now + mc[MC_S] + mc[MC_Q]
    _schedule(th, cs, tree, mc, h, mc[MC_S] + th[h, TH_NEED], now)


@njit(nogil=True)
def _ready_pop(rq, sc):
    h = rq[sc[SC_RQH]]
    sc[SC_RQH] = (sc[SC_RQH] + 1) % rq.size
    sc[SC_RQN] -= 1
    return h


@njit(nogil=True)
def _ready_push(rq, sc, t):
    rq[(sc[SC_RQH] + sc[SC_RQN]) % rq.size] = t
    sc[SC_RQN] += 1


@njit(nogil=True)
def _block(th, cs, tree, rq, sc, mc, t, now):
    """Thread t blocks in its own event (its core has no pending event any more)."""
    if mc[MC_SLICED] != 0:
        c = th[t, TH_CORE]
        th[t, TH_CORE] = -1
        cs[CS_RUNNING, c] = -1
        if sc[SC_RQN] > 0:
            _dispatch(th, cs, tree, mc, _ready_pop(rq, sc), c, now)
        else:
            cs[CS_IDLE, c] = 1


@njit(nogil=True)
def _wake(th, cs, tree, rq, sc, mc, t, now):
    if mc[MC_SLICED] == 0:
        _schedule(th, cs, tree, mc, t, 0, now)
        return
    th[t, TH_NEED] = 0
    for c in range(mc[MC_CORES]):
        if cs[CS_IDLE, c] != 0:
            _dispatch(th, cs, tree, mc, t, c, now)
            return
    _ready_push(rq, sc, t)


@njit(nogil=True)
def _expire(th, cs, tree, rq, sc, mc, c, now):
    """The quantum of core c's thread ends: go on, or yield the core to the ready queue's head."""
    t = cs[CS_RUNNING, c]
    cs[CS_KEY, c] = INF
    if sc[SC_RQN] == 0:
        th[t, TH_QEND] = now + mc[MC_Q]
        _schedule(th, cs, tree, mc, t, th[t, TH_NEED], now)
    else:
        _ready_push(rq, sc, t)
        th[t, TH_CORE] = -1
        cs[CS_RUNNING, c] = -1
        _dispatch(th, cs, tree, mc, _ready_pop(rq, sc), c, now)
    _tree_update(tree, cs, c)


@njit(nogil=True)
def _acquire(th, sc, mc, indices, holder, qhead, qtail, turns, t):
    """Take the scheme's locks (from lock th[I] on); True when all are held, else queued."""
    scheme = mc[MC_SCHEME]
    if scheme == SCHEME_LOCK_GLOBAL:
        if sc[SC_GHOLD] == -1:
            sc[SC_GHOLD] = t
            return True
        th[t, TH_QNEXT] = -1
        if sc[SC_GHEAD] == -1:
            sc[SC_GHEAD] = t
        else:
            th[sc[SC_GTAIL], TH_QNEXT] = t
        sc[SC_GTAIL] = t
        return False
    if scheme == SCHEME_LOCK_COORD:
        lo = th[t, TH_LO]
        m = th[t, TH_M]
        while th[t, TH_I] < m:
            j = indices[lo + th[t, TH_I]]
            if holder[j] == -1:
                holder[j] = t
                th[t, TH_I] += 1
                continue
            th[t, TH_QNEXT] = -1
            if qhead[j] == -1:
                qhead[j] = t
            else:
                th[qtail[j], TH_QNEXT] = t
            qtail[j] = t
            return False
        return True
    if scheme == SCHEME_ROUND_ROBIN:
        if turns[sc[SC_TURN]] == t:
            return True
        th[t, TH_WAIT] = 1
        return False
    return True


@njit(nogil=True)
def _release(th, cs, tree, rq, sc, mc, indices, holder, qhead, turns, t, now):
    """END's release: hand each lock (the turn) to its first waiter and wake it."""
    scheme = mc[MC_SCHEME]
    if scheme == SCHEME_LOCK_GLOBAL:
        h = sc[SC_GHEAD]
        if h == -1:
            sc[SC_GHOLD] = -1
        else:
            sc[SC_GHEAD] = th[h, TH_QNEXT]
            sc[SC_GHOLD] = h
            _wake(th, cs, tree, rq, sc, mc, h, now)
    elif scheme == SCHEME_LOCK_COORD:
        lo = th[t, TH_LO]
        for i in range(th[t, TH_M]):
            j = indices[lo + i]
            h = qhead[j]
            if h == -1:
                holder[j] = -1
            else:
                qhead[j] = th[h, TH_QNEXT]
                holder[j] = h
                th[h, TH_I] += 1  # the handed-over lock is h's
                _wake(th, cs, tree, rq, sc, mc, h, now)
    elif scheme == SCHEME_ROUND_ROBIN:
        sc[SC_TURN] += 1
        if sc[SC_TURN] < turns.size:
            w = turns[sc[SC_TURN]]
            if th[w, TH_WAIT] == 1:
                th[w, TH_WAIT] = 0
                _wake(th, cs, tree, rq, sc, mc, w, now)


@njit(nogil=True, error_model="numpy")
def _run_epoch(update, params, aux, indptr, indices, values, y, x, scale, inv_scale,
               sched_code, step0, beta, t0, epoch,
               mc, ordf, ordo, turns,
               th, thold, xr, gb, ub,
               cs, tree, rq, dbuf, dpos, valid,
               nstores, lost_upto, last_row,
               holder, qhead, qtail,
               sc, smp, sstep, ci, cf, clost):
    """Run events until the epoch's barrier releases (return 0) or a core needs delays (1)."""
    R = mc[MC_R]
    W = mc[MC_W]
    T = mc[MC_T]
    rmw = mc[MC_RMW] != 0
    trace = mc[MC_TRACE] != 0
    fixed = mc[MC_FIXED] != 0
    B = mc[MC_B]
    coord_locks = mc[MC_SCHEME] == SCHEME_LOCK_COORD
    sliced = mc[MC_SLICED] != 0
    H = mc[MC_H]
    lsh = mc[MC_LSHIFT]
    LC = mc[MC_LC]
    P = cs.shape[1]
    pbits = tree[0]
    op = sc[SC_OP]  # the memory-operation counter, kept in a register inside the loop

    if sc[SC_FRESH] == 1:  # a fresh epoch: wake every thread in thread order
        sc[SC_FRESH] = 0
        sc[SC_DONE] = 0
        sc[SC_ARRIVED] = 0
        now = sc[SC_NOW]
        for t in range(T):
            th[t, TH_POS] = 0
            th[t, TH_ACT] = ACT_START
            _wake(th, cs, tree, rq, sc, mc, t, now)

    while True:
        root = tree[1]
        if root >= INF:
            sc[SC_OP] = op
            return -1  # no pending event before the barrier: a deadlock (engine bug)
        c = root & (P - 1)
        now = root >> pbits
        if sliced:
            if cs[CS_KIND, c] == EV_EXPIRY:
                _expire(th, cs, tree, rq, sc, mc, c, now)
                continue
            t = cs[CS_RUNNING, c]
        else:
            t = c  # pinned: thread c runs on core c
        act = th[t, TH_ACT]
        # hot paths: a read or a store that is not the sample's last (no delay draw, no END)
        if act == ACT_READ:
            i = th[t, TH_I]
            if i + 1 < th[t, TH_M]:
                lo = th[t, TH_LO]
                j = indices[lo + i]
                v = read_value(x, j, inv_scale)
                xr[t, i] = v
                _touch(valid, c, j, H, lsh, LC)
                if trace:
                    r = th[t, TH_ROW0] + i
                    ci[r, CI_SAMPLE] = th[t, TH_K]
                    ci[r, CI_COORD] = j
                    ci[r, CI_READ_TICK] = now
                    cf[r, CF_READ_VALUE] = v
                    ci[r, CI_READ_OP] = op
                op += 1
                th[t, TH_I] = i + 1
                d = R + _miss(valid, c, indices[lo + i + 1], H, lsh, LC)
                if sliced:
                    _schedule(th, cs, tree, mc, t, d, now)
                else:
                    _key_set(tree, cs, c, now + d, pbits, P)
                continue
        elif act == ACT_STORE and not rmw:
            i = th[t, TH_I]
            if i + 1 < th[t, TH_M]:
                lo = th[t, TH_LO]
                j = indices[lo + i]
                d = encode_delta(x, ub[t, i], scale)
                add_value(x, j, d)
                _own(valid, c, j, H, lsh, LC)
                if trace:
                    r = th[t, TH_ROW0] + i
                    ci[r, CI_WRITE_TICK] = now
                    ci[r, CI_WRITE_OP] = op
                    cf[r, CF_DELTA] = d * inv_scale if fixed else d
                op += 1
                th[t, TH_I] = i + 1
                d = W + _miss(valid, c, indices[lo + i + 1], H, lsh, LC)
                if sliced:
                    _schedule(th, cs, tree, mc, t, d, now)
                else:
                    _key_set(tree, cs, c, now + d, pbits, P)
                continue
        if dpos[c] >= B:
            sc[SC_NEEDCORE] = c
            sc[SC_OP] = op
            return 1
        cs[CS_KEY, c] = INF
        if act == ACT_READ:
            step = STEP_READ
        elif act == ACT_STORE:
            step = STEP_STORE
        elif act == ACT_WSTART:
            step = STEP_WSTART
        elif act == ACT_START:
            step = STEP_START
        else:
            step = STEP_ACQ
        # the steps of this event, in program order, until the thread waits or blocks
        while True:
            if step == STEP_READ:  # read i completes
                i = th[t, TH_I]
                j = indices[th[t, TH_LO] + i]
                v = read_value(x, j, inv_scale)
                xr[t, i] = v
                _touch(valid, c, j, H, lsh, LC)
                if trace:
                    r = th[t, TH_ROW0] + i
                    ci[r, CI_SAMPLE] = th[t, TH_K]
                    ci[r, CI_COORD] = j
                    ci[r, CI_READ_TICK] = now
                    cf[r, CF_READ_VALUE] = v
                    ci[r, CI_READ_OP] = op
                op += 1
                th[t, TH_I] = i + 1
                if i + 1 < th[t, TH_M]:
                    j = indices[th[t, TH_LO] + i + 1]
                    th[t, TH_ACT] = ACT_READ
                    _schedule(th, cs, tree, mc, t, R + _miss(valid, c, j, H, lsh, LC), now)
                    break
                step = STEP_READ_DONE
            elif step == STEP_READ_DONE:  # compute the update; wait the compute delay
                k = th[t, TH_K]
                smp[SM_T_READ_DONE, k] = now
                smp[SM_READ_SEQ, k] = sc[SC_READDONE]
                sc[SC_READDONE] += 1
                lo = th[t, TH_LO]
                m = th[t, TH_M]
                gamma = step_at(sched_code, step0, beta, t0, epoch, th[t, TH_POS] * T + t)
                sstep[k] = gamma
                update(params, aux, indices[lo:lo + m], values[lo:lo + m], y[th[t, TH_TERM]], xr[t, :m], gamma,
                       gb[t, :m], ub[t, :m])
                d = dbuf[c, dpos[c]]
                dpos[c] += 1
                th[t, TH_ACT] = ACT_WSTART
                _schedule(th, cs, tree, mc, t, d, now)
                break
            elif step == STEP_BEGIN_READS:
                th[t, TH_I] = 0
                if th[t, TH_M] > 0:
                    j = indices[th[t, TH_LO]]
                    th[t, TH_ACT] = ACT_READ
                    _schedule(th, cs, tree, mc, t, R + _miss(valid, c, j, H, lsh, LC), now)
                    break
                step = STEP_READ_DONE
            elif step == STEP_WSTART or step == STEP_STORE:
                if step == STEP_WSTART:
                    smp[SM_T_WRITE_START, th[t, TH_K]] = now
                    th[t, TH_I] = 0
                else:  # store i lands
                    i = th[t, TH_I]
                    j = indices[th[t, TH_LO] + i]
                    d = encode_delta(x, ub[t, i], scale)
                    if rmw:
                        x[j] = thold[t]
                        first = th[t, TH_SNAP]
                        if lost_upto[j] > first:
                            first = lost_upto[j]
                        victims = nstores[j] - first
                        if victims > 0:
                            sc[SC_LOST] += victims
                            lost_upto[j] = nstores[j]
                            if trace:
                                r = last_row[j]
                                for _ in range(victims):
                                    clost[r] = True
                                    r = ci[r, CI_PREV]
                    add_value(x, j, d)
                    _own(valid, c, j, H, lsh, LC)
                    if rmw:
                        nstores[j] += 1
                    if trace:
                        r = th[t, TH_ROW0] + i
                        ci[r, CI_WRITE_TICK] = now
                        ci[r, CI_WRITE_OP] = op
                        cf[r, CF_DELTA] = d * inv_scale if fixed else d
                        if rmw:
                            ci[r, CI_PREV] = last_row[j]
                            last_row[j] = r
                    op += 1
                    th[t, TH_I] = i + 1
                i = th[t, TH_I]
                if i < th[t, TH_M]:  # issue write i
                    j = indices[th[t, TH_LO] + i]
                    cost = W + _miss(valid, c, j, H, lsh, LC)
                    if rmw:
                        thold[t] = x[j]
                        th[t, TH_SNAP] = nstores[j]
                        _touch(valid, c, j, H, lsh, LC)
                        if trace:
                            ci[th[t, TH_ROW0] + i, CI_WREAD_OP] = op
                        op += 1
                    th[t, TH_ACT] = ACT_STORE
                    _schedule(th, cs, tree, mc, t, cost, now)
                    break
                step = STEP_END
            elif step == STEP_END:
                k = th[t, TH_K]
                smp[SM_T_END, k] = now
                smp[SM_END_SEQ, k] = sc[SC_FINISHED]
                sc[SC_FINISHED] += 1
                smp[SM_S_AT_END, k] = sc[SC_STARTED]
                _release(th, cs, tree, rq, sc, mc, indices, holder, qhead, turns, t, now)
                th[t, TH_POS] += 1
                step = STEP_START
            elif step == STEP_START:  # START the next sample, or arrive at the barrier
                pos = th[t, TH_POS]
                if pos == ordo[t + 1] - ordo[t]:
                    sc[SC_ARRIVED] += 1
                    _block(th, cs, tree, rq, sc, mc, t, now)
                    if sc[SC_ARRIVED] == T:
                        sc[SC_DONE] = 1
                        sc[SC_NOW] = now
                    break
                e = ordf[ordo[t] + pos]
                k = sc[SC_STARTED]
                sc[SC_STARTED] += 1
                lo = indptr[e]
                m = indptr[e + 1] - lo
                smp[SM_WORKER, k] = t
                smp[SM_EPOCH, k] = epoch
                smp[SM_POSITION, k] = pos
                smp[SM_TERM, k] = e
                smp[SM_F_AT_START, k] = sc[SC_FINISHED]
                smp[SM_T_START, k] = now
                th[t, TH_K] = k
                th[t, TH_LO] = lo
                th[t, TH_M] = m
                th[t, TH_TERM] = e
                th[t, TH_I] = 0
                if trace:
                    th[t, TH_ROW0] = sc[SC_NEXTROW]
                    sc[SC_NEXTROW] += m
                if _acquire(th, sc, mc, indices, holder, qhead, qtail, turns, t):
                    step = STEP_BEGIN_READS
                else:
                    th[t, TH_ACT] = ACT_ACQ
                    _block(th, cs, tree, rq, sc, mc, t, now)
                    break
            else:  # STEP_ACQ: woken holding the lock (turn) it waited for
                if coord_locks and not _acquire(th, sc, mc, indices, holder, qhead, qtail, turns, t):
                    th[t, TH_ACT] = ACT_ACQ
                    _block(th, cs, tree, rq, sc, mc, t, now)
                    break
                step = STEP_BEGIN_READS
        if cs[CS_KEY, c] == INF:  # the thread blocked (a scheduled core updated the tree itself)
            _tree_update(tree, cs, c)
        if sc[SC_DONE] == 1:
            sc[SC_OP] = op
            return 0


def run_fast(spec, machine: Machine, problem, *, coord_trace: bool = True, with_opt: bool = False) -> SimResult:
    """Check, coerce and allocate; run :func:`_run_epoch` per epoch; assemble the result."""
    t = problem.terms
    T = spec.threads
    C = machine.cores
    scheme, rmw = scheme_code(spec)
    orders = all_orders(spec, t.N)
    x = to_state(problem.initial_point(spec.seed), spec.dtype, spec.fixed_point_bits)
    x0 = x.copy()
    scale = scale_of(spec.fixed_point_bits)
    code, step0, beta, t0 = schedule_args(spec, t.N)
    sliced = T > C
    words = (C + 63) // 64
    lc = machine.line_coords
    lshift = lc.bit_length() - 1 if lc & (lc - 1) == 0 else -1
    mc = np.array([C, machine.read_cost, machine.write_cost, machine.coherence_cost, machine.line_coords,
                   int(sliced), machine.quantum or 0, machine.switch_cost or 0, T, scheme, int(rmw),
                   int(coord_trace), int(x.dtype == np.int64), words, DELAY_BLOCK, lshift], dtype=np.int64)
    sizes = np.diff(t.indptr)
    total = sum(o.size for ep in orders for o in ep)
    rows = int(sum(int(sizes[o].sum()) for ep in orders for o in ep)) if coord_trace else 0
    maxlen = max(1, int(sizes.max()) if sizes.size else 1)
    th = np.zeros((T, 16), dtype=np.int64)
    th[:, TH_CORE] = -1 if sliced else np.arange(T)
    th[:, TH_QEND] = INF
    thold = np.zeros(T, dtype=x.dtype)
    xr = np.zeros((T, maxlen))
    gb = np.zeros((T, maxlen))
    ub = np.zeros((T, maxlen))
    P = 1
    while P < C:
        P *= 2
    cs = np.zeros((4, P), dtype=np.int64)
    cs[CS_KEY] = INF
    cs[CS_RUNNING] = -1
    if not sliced:
        cs[CS_RUNNING, :T] = np.arange(T)
    else:
        cs[CS_IDLE, :C] = 1
    tree = np.full(2 * P, INF, dtype=np.int64)
    tree[0] = P.bit_length() - 1  # pbits
    rq = np.zeros(T, dtype=np.int64)
    streams = [DelayStream(machine.delay_of(c), spec.seed, c) for c in range(C)]
    dbuf = np.zeros((C, DELAY_BLOCK), dtype=np.int64)
    dpos = np.zeros(C, dtype=np.int64)
    for c in range(min(C, T)):  # cores >= T never run a thread (pinned); others draw when they need to
        dbuf[c] = streams[c].refill()
    dpos[min(C, T):] = DELAY_BLOCK
    valid = np.full((line_count(t.n, machine.line_coords) if machine.coherence_cost else 1, words),
                    -1, dtype=np.int64)  # bit c set: core c holds a valid copy
    nstores = np.zeros(t.n, dtype=np.int64)
    lost_upto = np.zeros(t.n, dtype=np.int64)
    last_row = np.full(t.n if coord_trace else 1, -1, dtype=np.int64)
    lock_n = t.n if scheme == SCHEME_LOCK_COORD else 1
    holder = np.full(lock_n, -1, dtype=np.int64)
    qhead = np.full(lock_n, -1, dtype=np.int64)
    qtail = np.full(lock_n, -1, dtype=np.int64)
    sc = np.zeros(17, dtype=np.int64)
    sc[SC_GHOLD] = sc[SC_GHEAD] = sc[SC_GTAIL] = -1
    smp = np.full((12, total), -1, dtype=np.int64)
    sstep = np.zeros(total)
    ci = np.full((rows, 8), -1, dtype=np.int64)  # one row per coordinate access pair
    cf = np.zeros((rows, 2))
    clost = np.zeros(rows, dtype=np.bool_)
    checkpoints = []
    for epoch, ep in enumerate(orders):
        ordo = np.zeros(T + 1, dtype=np.int64)
        ordo[1:] = np.cumsum([o.size for o in ep])
        ordf = np.ascontiguousarray(np.concatenate(ep) if ep else np.zeros(0, np.int64), dtype=np.int64)
        turns = turn_sequence(ep) if scheme == SCHEME_ROUND_ROBIN else np.zeros(1, dtype=np.int64)
        sc[SC_TURN] = 0
        sc[SC_FRESH] = 1
        while True:
            status = _run_epoch(problem.update, problem.params, problem.aux, t.indptr, t.indices, t.values, t.y, x,
                                scale, 1.0 / scale, code, step0, beta, t0, epoch,
                                mc, ordf, ordo, turns, th, thold, xr, gb, ub,
                                cs, tree, rq, dbuf, dpos, valid,
                                nstores, lost_upto, last_row, holder, qhead, qtail,
                                sc, smp, sstep, ci, cf, clost)
            if status == 0:
                break
            if status == 1:
                c = int(sc[SC_NEEDCORE])
                dbuf[c] = streams[c].refill()
                dpos[c] = 0
                continue
            raise RuntimeError(f"fast engine: no pending event in epoch {epoch} before the barrier: either the "
                               f"simulated time passed 2**{62 - int(tree[0])} ticks (the event keys' range) or an "
                               "engine bug; rerun with engine='reference' and report the spec and machine")
        checkpoints.append((epoch + 1, int(sc[SC_FINISHED]), int(sc[SC_NOW]), x.copy()))
    sa = SampleArrays(0)
    for i, col in enumerate(SM_COLS):
        setattr(sa, col, smp[i])
    sa.step = sstep
    samples = sa.frame()
    coords = order = None
    if coord_trace:
        from workload.trace import COORD_SCHEMA

        from .model import ORDER_SCHEMA, _frame

        coords = _frame({"sample": ci[:, CI_SAMPLE], "coord": ci[:, CI_COORD], "read_tick": ci[:, CI_READ_TICK],
                         "read_value": cf[:, CF_READ_VALUE], "write_tick": ci[:, CI_WRITE_TICK], "delta": cf[:, CF_DELTA],
                         "lost": clost}, COORD_SCHEMA)
        order = _frame({"read_op": ci[:, CI_READ_OP], "wread_op": ci[:, CI_WREAD_OP], "write_op": ci[:, CI_WRITE_OP]},
                       ORDER_SCHEMA)
    history = history_frame(problem, spec, x0, checkpoints, with_opt)
    return SimResult(x=x, samples=samples, coords=coords, order=order, history=history, ticks=int(sc[SC_NOW]),
                     lost_updates=int(sc[SC_LOST]), engine="fast", machine=machine, spec=spec, x0=x0)
