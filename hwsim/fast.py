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
2**62.

Hot path (reads and stores: 2m of the 2m + 3 events of a sample with m coordinates).  A
read completion or a store landing changes no other core's pending event, so the core's
next access is again the run's next event exactly when, after re-keying the core's leaf,
the tree's root is that key (the ``(tick, core)`` tie-break is in the key).  The loop then
goes on with the core's next access with its state in registers -- no pop, no dispatch, no
reload of the thread's fields -- until another core's event comes first, the quantum would
expire, or the sample's last access is followed by work for the generic step machine (the
delay draw, END, the next START).  When it does switch (most events at many cores), the
next event is the earliest of the *other* cores' events: the minimum ``r2`` of the siblings
on the core's tree path, which the core's own events cannot change.  So an access event
(pinned threads) takes ``r2`` first and loads that core's thread fields while its own
event runs; the next event, if it is that core's, starts with them in registers, and the new
root is ``min(key, r2)`` without waiting for the walk up the tree (whose stores still
happen).  A write start (the delay's end) issues the first write on a short path of its
own; everything else (read done, END, acquire/START, release, barrier, time-slice expiry)
goes through the generic step machine.

What an access event costs is mostly latency: the next event's core comes out of the tree,
its thread's fields, the coherence word of its next line, the new key, the tree again.  So
the root is carried in a register from one event to the next; the coordinate of a thread's
next-but-one access is kept in its fields (``TH_JN``) and its line's coherence word
prefetched, so the miss decision does not wait on loads; at START the row (indices,
values, label) of the thread's next sample is prefetched -- the terms are visited in random
order, so a row is otherwise a run of cache misses; the miss of the next access is
read before this access's touch / store of its own line is written (:func:`_miss_next`);
hot-path array indices are unsigned (``U``), so Numba emits no negative-index wraparound;
and the problem's ``update`` kernel is compiled inline into the loop (:func:`_kernel`).
Whole-run CPU time per access on the benchmark (``benchmarks/bench_hwsim.py``, one core of
a shared 2-vCPU VM, coordinate trace off): about 7-8 ns at 1 core, 16 ns at 4 cores and
18 ns at 16 cores, where a core rarely has two events in a row.  Of an access event at 16
cores about 5 ns is the tree's chain of dependent minima (a bare loop of tree updates runs
at that rate); a ring of per-tick core masks with a 64-tick occupancy word in a register
measured 3.4 ns in the same bare loop, and no gain at 4 cores, so the tree stays.  One
path for reads and atomic stores, with no branch on the kind of access (the next event's
kind is as good as random at many cores), ran 10% slower at 16 cores than the two paths
below: both values computed, x written back on a read, a select for every field.  Keeping
the coordinate trace in memory (~73 bytes per row, ten columns) adds about 4-6 ns per
access when the allocator recycles the pages of an earlier run and 8-15 ns when the
operating system must provide them fresh.

The coordinate trace is written column by column (one contiguous array per column) into
rows ``row - base``: with ``coord_trace=True`` the arrays hold the whole run (``base`` = 0)
and become the DataFrames without a copy; with a :class:`hwsim.coordtrace.CoordTraceFile`
they are a buffer of ``chunk_rows`` rows that the driver flushes to Parquet whenever a
START could overflow it (the loop returns, :func:`_flush` writes every finished row and
moves the rest to the front, the loop resumes), so memory stays bounded by the chunk plus
the rows of samples still in flight.  An access does not store into the columns itself:
it appends (row, tick, op, value) to a small log of its kind that :func:`_scatter` moves
into the columns in one tight pass whenever a log holds :data:`LOG_EVENTS` accesses; the
columns fixed at START (``sample``, ``coord``, an atomic write's ``wread_op`` = -1) are filled by
:func:`_fill_rows` outside the loop.

Three tiers (STYLE.md): :func:`run_fast` checks, coerces and allocates; it calls the
compiled :func:`_epoch_loop` once per epoch (and again whenever a core has used up its
block of pre-drawn delays, the trace buffer is full, or, with rmw writes, a START finds
too few free nodes for the lost-store runs (:func:`_overwrite`): the loop returns before
the event that needs it, Python refills, flushes or grows, the loop resumes at that event);
the loop itself is the kernel.  All state lives in arrays, so a call can stop and resume at
any event.

Hidden misses (``machine.miss_overlap``): the in-flight sample's budget lives in
``TH_HIDE`` (in a register on the hot paths); every miss goes through :func:`_charged`.
"""
from __future__ import annotations

import threading
import types as pytypes

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from workload.fixed import add_value, encode_delta, read_value, scale_of, to_state
from workload.problems.base import inlined
from workload.schedule import schedule_args, step_at

from .delays import DELAY_BLOCK, DelayStream
from .machine import Machine, line_count
from .model import (ORDER_SCHEMA, SCHEME_LOCK_COORD, SCHEME_LOCK_GLOBAL, SCHEME_NONE, SCHEME_ROUND_ROBIN, SampleArrays,
                    SimResult, all_orders, atomic_stores, charged, history_frame, lock_ticks, scheme_code,
                    turn_sequence)

INF = np.int64(2**62)


def _make_prefetch(rw: int, doc: str):
    @intrinsic
    def prefetch(typingctx, ary, idx):
        if not isinstance(ary, types.Array) or ary.ndim != 1:
            raise TypeError(f"prefetch: the first argument must be a 1-d array, got {ary}")
        sig = types.void(ary, types.intp)

        def codegen(context, builder, signature, args):
            arr = context.make_array(signature.args[0])(context, builder, args[0])
            ptr = cgutils.get_item_pointer(context, builder, signature.args[0], arr, [args[1]], wraparound=False)
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fn = cgutils.get_or_insert_function(builder.module,
                                                ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0")
            builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, rw), ir.Constant(i32, 3),
                              ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return sig, codegen

    prefetch.__doc__ = doc
    return prefetch


# llvm.prefetch(ptr, rw, locality 3 = all cache levels, data): a hint, it never faults
_prefetch = _make_prefetch(0, "Bring ``ary[idx]``'s cache line into L1 for reading (``prefetcht0``).")
_prefetch_w = _make_prefetch(1, "Bring ``ary[idx]``'s cache line into L1 for writing (``prefetchw``).")


#: hot-path array indices are cast to unsigned: Numba then skips the negative-index
#: wraparound (the indices are never negative)
U = np.uint64

# machine constants (mc)
MC_CORES, MC_R, MC_W, MC_H, MC_LC, MC_SLICED, MC_Q, MC_S, MC_T, MC_SCHEME, MC_RMW, MC_TRACE, MC_FIXED, \
    MC_WORDS, MC_B, MC_LSHIFT, MC_STREAM, MC_MAXLEN, MC_HW, MC_HT, MC_HIDE, MC_LOCK = range(22)
# scalars (sc)
SC_STARTED, SC_READDONE, SC_FINISHED, SC_OP, SC_NEXTROW, SC_LOST, SC_ARRIVED, SC_TURN, SC_RQH, SC_RQN, \
    SC_GHOLD, SC_GHEAD, SC_GTAIL, SC_NOW, SC_DONE, SC_FRESH, SC_NEEDCORE, SC_BASE, SC_FREE, SC_NFREE = range(20)
# thread fields (th); those an access event reads come first (one cache line); TH_JN: the
# coordinate of the access after the pending one (see the module docstring); TH_HIDE: the
# miss ticks the in-flight sample may still hide (machine.miss_overlap, hwsim.model)
TH_ACT, TH_I, TH_M, TH_LO, TH_ROW0, TH_QEND, TH_JN, TH_HIDE, TH_SNAP, TH_K, TH_POS, TH_NEED, TH_CORE, TH_TERM, \
    TH_WAIT, TH_QNEXT = range(16)
# thread actions: what the thread's next event does.  START: begin (acquire for) the next
# sample or arrive at the barrier; ACQ: woken holding the lock (turn) it waited for; READ:
# read TH_I completes; WSTART: the compute delay ended; STORE: store TH_I lands.  A thread
# is *in flight* (has a sample id and trace rows) exactly in READ, WSTART and STORE.
ACT_START, ACT_ACQ, ACT_READ, ACT_WSTART, ACT_STORE = range(5)
# core event kinds
EV_ACTION, EV_EXPIRY = 0, 1
# sample columns (smp rows), in SampleArrays.COLS order without "step"
SM_COLS = tuple(c for c in SampleArrays.COLS if c != "step")
SM_WORKER, SM_EPOCH, SM_POSITION, SM_TERM, SM_T_START, SM_T_READ_DONE, SM_T_WRITE_START, SM_T_END, SM_READ_SEQ, \
    SM_END_SEQ, SM_F_AT_START, SM_S_AT_END = range(12)
#: coordinate-trace columns the kernel writes, in its argument order (``prev``: the previous
#: store row on the same coordinate, kept for the rmw lost-update walk, not part of the output)
TRACE_COLS = {"sample": np.int64, "coord": np.int64, "read_tick": np.int64, "read_value": np.float64,
              "write_tick": np.int64, "delta": np.float64, "lost": np.bool_, "read_op": np.int64,
              "wread_op": np.int64, "write_op": np.int64, "prev": np.int64}
#: accesses the event loop logs before it moves them into the trace columns (_scatter)
LOG_EVENTS = 4096
SCATTER_AHEAD = 32  # log entries _scatter prefetches its target lines ahead
#: lost-run nodes (_overwrite) a run starts with; the driver doubles the pool when a START
#: finds fewer than threads x longest support free
RUN_POOL = 1024
# _epoch_loop return codes
RUN_DONE, RUN_NEED_DELAYS, RUN_FLUSH, RUN_GROW, RUN_STUCK = 0, 1, 2, 3, -1

# core state rows (cs)
CS_KEY, CS_KIND, CS_RUNNING, CS_IDLE = range(4)
# steps inside one event (the generic step machine)
STEP_READ_DONE, STEP_WSTART, STEP_END, STEP_START, STEP_ACQ, STEP_BEGIN = range(6)


@njit(nogil=True, inline="always")
def _tree_update(tree, cs, c):
    """Re-key leaf ``c`` of the tournament tree from ``cs[CS_KEY, c]`` and recompute its path.

    A node holds ``tick << pbits | core`` of the smaller child (the next event's tick and
    core in one int64: the model's ``(tick, core)`` order is integer order), INF for no
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
def _leaf_set(tree, v, c, P):
    """Set leaf c to the event key v (an action event; cs is not touched) and fix its path;
    returns the new root (the run's next event)."""
    node = U(P + c)
    tree[node] = v
    while node > 1:
        sib = tree[node ^ U(1)]
        if sib < v:
            v = sib
        node >>= U(1)
        tree[node] = v
    return v


@njit(nogil=True, inline="always")
def _access_fields(th, t):
    """Thread t's fields an access event uses: (act, i, m, lo, row0, qend, jn, hide)."""
    return (th[U(t), U(TH_ACT)], th[U(t), U(TH_I)], th[U(t), U(TH_M)], th[U(t), U(TH_LO)], th[U(t), U(TH_ROW0)],
            th[U(t), U(TH_QEND)], th[U(t), U(TH_JN)], th[U(t), U(TH_HIDE)])


@njit(nogil=True, inline="always")
def _miss(valid, c, j, H, lsh, LC):
    """Coherence: H when core c holds no valid copy of j's line, else 0 (hwsim.model)."""
    if H == 0:
        return 0
    line = (j >> lsh) if lsh >= 0 else j // LC
    valid_bit = (valid[U(line), U(c >> 6)] >> (c & 63)) & 1
    return H * (1 - valid_bit)  # branch-free: hits and misses are unpredictable


@njit(nogil=True, inline="always")
def _miss_next(valid, c, j, jn, H, lsh, LC):
    """:func:`_miss` of an access to jn issued in the event where c touched or stored j
    (so c holds j's line): read before that touch / store is written, so the decision
    never waits for it."""
    if H == 0:
        return 0
    line = (jn >> lsh) if lsh >= 0 else jn // LC
    same = line == ((j >> lsh) if lsh >= 0 else j // LC)
    valid_bit = (valid[U(line), U(c >> 6)] >> (c & 63)) & 1
    return H * (1 - (valid_bit | same))


#: hwsim.model.charged, compiled inline: (ticks a miss costs, hidden-miss budget left)
_charged = njit(nogil=True, inline="always")(charged)


@njit(nogil=True)
def _overwrite(ivhead, ivlo, ivhi, ivnext, sc, j, lo, hi):
    """An rmw store on coordinate j overwrites its stores lo .. hi-1 (numbered in landing
    order): returns how many were not lost before (hwsim.reference.overwrite, the same
    rule).  The coordinate's lost stores are disjoint [lo, hi) runs in a linked list, last
    run first (``ivhead[j]``, nodes ``ivlo``/``ivhi``/``ivnext`` from a free list in
    ``sc[SC_FREE]``, ``sc[SC_NFREE]`` of them): the runs ending after lo are popped and
    their union with [lo, hi) pushed, so a store costs one node at most."""
    covered = 0
    start = lo
    h = ivhead[j]
    while h >= 0 and ivhi[h] > lo:
        a = ivlo[h]
        covered += ivhi[h] - (a if a > lo else lo)
        if a < start:
            start = a
        nxt = ivnext[h]
        ivnext[h] = sc[SC_FREE]
        sc[SC_FREE] = h
        sc[SC_NFREE] += 1
        h = nxt
    node = sc[SC_FREE]
    sc[SC_FREE] = ivnext[node]
    sc[SC_NFREE] -= 1
    ivlo[node] = start
    ivhi[node] = hi
    ivnext[node] = h
    ivhead[j] = node
    return hi - lo - covered


def _run_pool(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``size`` lost-run nodes (lo, hi, next), linked 0 -> 1 -> ... -> size-1 as a free list."""
    lo = np.zeros(size, dtype=np.int64)
    hi = np.zeros(size, dtype=np.int64)
    nxt = np.arange(1, size + 1, dtype=np.int64)
    nxt[-1] = -1
    return lo, hi, nxt


@njit(nogil=True, inline="always")
def _line_hint(vflat, j, words, H, lsh, LC):
    """Prefetch the coherence word of j's line (the next access's miss will read it)."""
    if H != 0:
        _prefetch(vflat, ((j >> lsh) if lsh >= 0 else j // LC) * words)


@njit(nogil=True, inline="always")
def _touch(valid, c, j, H, lsh, LC):
    """A read (or rmw read) by c: c now holds a valid copy of the line."""
    if H != 0:
        line = (j >> lsh) if lsh >= 0 else j // LC
        valid[U(line), U(c >> 6)] |= np.int64(1) << (c & 63)


@njit(nogil=True, inline="always")
def _own(valid, c, j, H, lsh, LC):
    """A store by c: c holds the only valid copy of the line."""
    if H != 0:
        line = (j >> lsh) if lsh >= 0 else j // LC
        if valid.shape[1] == 1:
            valid[U(line), U(0)] = np.int64(1) << (c & 63)
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


def _epoch_loop(params, aux, indptr, indices, values, y, x, scale, inv_scale,
                sched_code, step0, beta, t0, epoch,
                mc, ordf, ordo, turns,
                th, thold, xr, gb, ub,
                cs, tree, rq, dbuf, dpos, valid,
                nstores, ivhead, ivlo, ivhi, ivnext, last_row,
                holder, qhead, qtail,
                sc, smp, sstep,
                c_sample, c_coord, c_rtick, c_rval, c_wtick, c_delta, c_lost, c_rop, c_wrop, c_wop, c_prev):
    """Run events until the epoch's barrier releases (RUN_DONE), a core needs delays
    (RUN_NEED_DELAYS, core in sc[SC_NEEDCORE]) or the trace buffer needs a flush (RUN_FLUSH);
    it returns *before* the event that needs them, so a call resumes exactly there.

    Plain Python here: :func:`_kernel` compiles it once per problem ``update`` kernel, which
    it calls as the global ``_update``."""
    R = mc[MC_R]
    W = mc[MC_W]
    T = mc[MC_T]
    rmw = mc[MC_RMW] != 0
    trace = mc[MC_TRACE] != 0
    stream = mc[MC_STREAM] != 0
    fixed = mc[MC_FIXED] != 0
    B = mc[MC_B]
    coord_locks = mc[MC_SCHEME] == SCHEME_LOCK_COORD
    words = valid.shape[1]
    vflat = valid.reshape(valid.size)  # (for prefetching)
    locking = mc[MC_SCHEME] != SCHEME_NONE
    sliced = mc[MC_SLICED] != 0
    H = mc[MC_H]  # a read's miss cost
    HW = mc[MC_HW]  # a store's (machine.atomic_miss_cost for atomic-instruction stores, else store_miss_cost)
    HT = mc[MC_HT]  # nonzero: some access can miss, so copy sets are kept
    lsh = mc[MC_LSHIFT]
    LC = mc[MC_LC]
    maxlen = mc[MC_MAXLEN]
    runs_need = T * maxlen  # free lost-run nodes every START needs (_overwrite: one per store at most)
    P = cs.shape[1]
    pbits = tree[0]
    base = sc[SC_BASE]  # the trace buffer's first global row
    cap = c_rtick.size  # its rows
    op = sc[SC_OP]  # the memory-operation counter, kept in a register inside the loop
    rlog = np.empty((LOG_EVENTS + maxlen, 3), dtype=np.int64)  # the latest reads' trace row, tick, op
    rlogf = np.empty(LOG_EVENTS + maxlen)  # and value read
    wlog = np.empty((LOG_EVENTS + maxlen, 3), dtype=np.int64)  # the latest stores' row, tick, op
    wlogf = np.empty(LOG_EVENTS + maxlen)  # and delta written
    lr = lw = 0
    status = RUN_DONE

    if sc[SC_FRESH] == 1:  # a fresh epoch: wake every thread in thread order
        sc[SC_FRESH] = 0
        sc[SC_DONE] = 0
        sc[SC_ARRIVED] = 0
        now = sc[SC_NOW]
        for t in range(T):
            th[t, TH_POS] = 0
            th[t, TH_ACT] = ACT_START
            _wake(th, cs, tree, rq, sc, mc, t, now)

    root = tree[1]  # kept in a register: every path below leaves the new root in it
    pc = -1  # the core whose thread's access fields are preloaded (p*), or -1
    pact = pi = pm = plo = pr0 = pqend = pjn = pleft = np.int64(0)
    r2 = INF
    while True:
        if root >= INF:
            status = RUN_STUCK  # no pending event before the barrier: a deadlock (engine bug)
            break
        c = root & (P - 1)
        now = root >> pbits
        if lr >= LOG_EVENTS or lw >= LOG_EVENTS:  # (each log has room for one more run of accesses: maxlen)
            _scatter(rlog, rlogf, lr, c_rtick, c_rval, c_rop)
            _scatter(wlog, wlogf, lw, c_wtick, c_delta, c_wop)
            lr = lw = 0
        if sliced:
            if cs[CS_KIND, c] == EV_EXPIRY:
                _expire(th, cs, tree, rq, sc, mc, c, now)
                root = tree[1]
                continue
            t = cs[CS_RUNNING, c]
        else:
            t = c  # pinned: thread c runs on core c
        if c == pc:  # its access fields were loaded during the previous event (see below)
            act, i, m, lo, r0g, qend, jn, left = pact, pi, pm, plo, pr0, pqend, pjn, pleft
        else:
            act, i, m, lo, r0g, qend, jn, left = _access_fields(th, t)
        pc = -1
        if not sliced and (act == ACT_READ or act == ACT_STORE):
            # the run's next event is most likely the next-earliest other core's (every
            # sibling on c's tree path is another core's event and stays so while c's
            # events run): load its thread's access fields now, off this event's chain
            node = U(P + c)
            r2 = INF
            while node > U(1):
                sib = tree[node ^ U(1)]
                if sib < r2:
                    r2 = sib
                node >>= U(1)
            if r2 < INF:
                pc = r2 & (P - 1)
                pact, pi, pm, plo, pr0, pqend, pjn, pleft = _access_fields(th, pc)
        if act == ACT_READ:  # hot path: read completions, this core's run of them
            if i + 1 == m and dpos[U(c)] >= B:  # READ DONE will draw a delay
                sc[SC_NEEDCORE] = c
                status = RUN_NEED_DELAYS
                break
            r0 = r0g - base
            while True:
                j = np.int64(indices[U(lo + i)])
                v = read_value(x, U(j), inv_scale)
                xr[U(t), U(i)] = v
                if trace:  # the event log (see _scatter)
                    rlog[U(lr), U(0)] = r0 + i
                    rlog[U(lr), U(1)] = now
                    rlog[U(lr), U(2)] = op
                    rlogf[U(lr)] = v
                    lr += 1
                op += 1
                i += 1
                if i == m:
                    _touch(valid, c, j, HT, lsh, LC)
                    break
                ms, left = _charged(_miss_next(valid, c, j, jn, H, lsh, LC), left)
                d = R + ms  # issue read i (of jn), decided before the touch of j
                _touch(valid, c, j, HT, lsh, LC)
                if i + 1 < m:
                    jn = np.int64(indices[U(lo + i + 1)])
                    _line_hint(vflat, jn, words, HT, lsh, LC)
                nxt = now + d
                if nxt > qend:  # (time-sliced) the quantum expires first
                    th[U(t), U(TH_I)] = i
                    _schedule(th, cs, tree, mc, t, d, now)
                    root = tree[1]
                    break
                key = (nxt << pbits) | c
                if sliced:
                    root = _leaf_set(tree, key, c, P)
                else:  # the other cores' minimum r2 is fixed while c's events run
                    _leaf_set(tree, key, c, P)  # (its stores; the root is known)
                    root = key if key < r2 else r2
                if root != key or (i + 1 == m and dpos[U(c)] >= B):
                    break
                now = nxt  # this core's next event is the run's next event: go on here
            th[U(t), U(TH_I)] = i
            th[U(t), U(TH_JN)] = jn
            th[U(t), U(TH_HIDE)] = left
            if i < m:
                continue
            step = STEP_READ_DONE
        elif act == ACT_WSTART and th[U(t), U(TH_M)] > 0:  # the delay ended: issue write 0
            m = th[U(t), U(TH_M)]
            smp[SM_T_WRITE_START, th[U(t), U(TH_K)]] = now
            th[U(t), U(TH_I)] = 0
            lo = th[U(t), U(TH_LO)]
            j = np.int64(indices[U(lo)])
            ms, left = _charged(_miss(valid, c, j, HW, lsh, LC), th[U(t), U(TH_HIDE)])
            th[U(t), U(TH_HIDE)] = left
            d = W + ms
            if m > 1:
                th[U(t), U(TH_JN)] = indices[U(lo + 1)]
                _line_hint(vflat, th[U(t), U(TH_JN)], words, HT, lsh, LC)
            if rmw:
                thold[t] = x[j]
                th[U(t), U(TH_SNAP)] = nstores[j]
                _touch(valid, c, j, HT, lsh, LC)
                if trace:
                    c_wrop[th[U(t), U(TH_ROW0)] - base] = op
                op += 1
            th[U(t), U(TH_ACT)] = ACT_STORE
            nxt = now + d
            if nxt > th[U(t), U(TH_QEND)]:
                _schedule(th, cs, tree, mc, t, d, now)
                root = tree[1]
            else:
                root = _leaf_set(tree, (nxt << pbits) | c, c, P)
            continue
        elif act == ACT_STORE:  # hot path: store landings (and the next write's issue)
            if i + 1 == m:  # END, then START with a trace row allocation and maybe a delay draw
                if dpos[U(c)] >= B:
                    sc[SC_NEEDCORE] = c
                    status = RUN_NEED_DELAYS
                    break
                if stream and sc[SC_NEXTROW] - base + maxlen > cap:
                    status = RUN_FLUSH
                    break
                if rmw and sc[SC_NFREE] < runs_need:
                    status = RUN_GROW
                    break
            r0 = r0g - base
            while True:
                j = np.int64(indices[U(lo + i)])
                dv = encode_delta(x, ub[U(t), U(i)], scale)
                if rmw:
                    x[j] = thold[t]
                    snap = th[U(t), U(TH_SNAP)]
                    if nstores[j] > snap:  # stores landed since this write's read: overwritten
                        sc[SC_LOST] += _overwrite(ivhead, ivlo, ivhi, ivnext, sc, j, snap, nstores[j])
                        if trace:  # mark them all (those already lost stay so)
                            r = last_row[j]
                            for _ in range(nstores[j] - snap):
                                c_lost[r - base] = True
                                r = c_prev[r - base]
                    nstores[j] += 1
                add_value(x, U(j), dv)
                if i + 1 < m:  # the next write's miss, read before this store owns j's line
                    ms, left = _charged(_miss_next(valid, c, j, jn, HW, lsh, LC), left)
                    d = W + ms
                _own(valid, c, j, HT, lsh, LC)
                if trace:
                    wlog[U(lw), U(0)] = r0 + i
                    wlog[U(lw), U(1)] = now
                    wlog[U(lw), U(2)] = op
                    wlogf[U(lw)] = dv * inv_scale if fixed else dv
                    lw += 1
                    if rmw:
                        c_prev[r0 + i] = last_row[j]
                        last_row[j] = base + r0 + i
                op += 1
                i += 1
                if i == m:
                    break
                j = jn  # issue write i (its miss is d): then an rmw write's read
                if i + 1 < m:
                    jn = np.int64(indices[U(lo + i + 1)])
                    _line_hint(vflat, jn, words, HT, lsh, LC)
                if rmw:
                    thold[t] = x[j]
                    th[U(t), U(TH_SNAP)] = nstores[j]
                    _touch(valid, c, j, HT, lsh, LC)
                    if trace:
                        c_wrop[r0 + i] = op
                    op += 1
                nxt = now + d
                if nxt > qend:
                    th[U(t), U(TH_I)] = i
                    _schedule(th, cs, tree, mc, t, d, now)
                    root = tree[1]
                    break
                key = (nxt << pbits) | c
                if sliced:
                    root = _leaf_set(tree, key, c, P)
                else:  # the other cores' minimum r2 is fixed while c's events run
                    _leaf_set(tree, key, c, P)  # (its stores; the root is known)
                    root = key if key < r2 else r2
                if root != key or (i + 1 == m and (
                        dpos[U(c)] >= B or (stream and sc[SC_NEXTROW] - base + maxlen > cap)
                        or (rmw and sc[SC_NFREE] < runs_need))):
                    break
                now = nxt
            th[U(t), U(TH_I)] = i
            th[U(t), U(TH_JN)] = jn
            th[U(t), U(TH_HIDE)] = left
            if i < m:
                continue
            step = STEP_END
        else:  # WSTART (END and START follow when m = 0), START, ACQ: may draw a delay, START
            if dpos[c] >= B:
                sc[SC_NEEDCORE] = c
                status = RUN_NEED_DELAYS
                break
            if stream and sc[SC_NEXTROW] - base + maxlen > cap:
                status = RUN_FLUSH
                break
            if rmw and sc[SC_NFREE] < runs_need:
                status = RUN_GROW
                break
            if act == ACT_WSTART:
                step = STEP_WSTART
            elif act == ACT_START:
                step = STEP_START
            else:
                step = STEP_ACQ

        # the generic steps of this event, in program order, until the thread waits or blocks
        pc = -1  # (they may change other threads' fields: a release wakes a waiter)
        cs[CS_KEY, c] = INF
        while True:
            if step == STEP_READ_DONE:  # compute the update; wait the compute delay
                k = th[t, TH_K]
                smp[SM_T_READ_DONE, k] = now
                smp[SM_READ_SEQ, k] = sc[SC_READDONE]
                sc[SC_READDONE] += 1
                gamma = step_at(sched_code, step0, beta, t0, epoch, th[t, TH_POS] * T + t)
                sstep[k] = gamma
                lo = th[t, TH_LO]
                m = th[t, TH_M]
                _update(params, aux, indices[lo:lo + m], values[lo:lo + m], y[th[t, TH_TERM]], xr[t, :m], gamma,
                        gb[t, :m], ub[t, :m])
                d = dbuf[c, dpos[c]]
                dpos[c] += 1
                th[t, TH_ACT] = ACT_WSTART
                _schedule(th, cs, tree, mc, t, d, now)
                break
            elif step == STEP_WSTART:
                smp[SM_T_WRITE_START, th[t, TH_K]] = now
                th[t, TH_I] = 0
                if th[t, TH_M] == 0:
                    step = STEP_END
                    continue
                lo = th[t, TH_LO]
                j = np.int64(indices[lo])  # issue write 0
                ms, th[t, TH_HIDE] = _charged(_miss(valid, c, j, HW, lsh, LC), th[t, TH_HIDE])
                d = W + ms
                if th[t, TH_M] > 1:
                    th[t, TH_JN] = indices[lo + 1]
                    _line_hint(vflat, th[t, TH_JN], words, HT, lsh, LC)
                if rmw:
                    thold[t] = x[j]
                    th[t, TH_SNAP] = nstores[j]
                    _touch(valid, c, j, HT, lsh, LC)
                    if trace:
                        c_wrop[th[t, TH_ROW0] - base] = op
                    op += 1
                th[t, TH_ACT] = ACT_STORE
                _schedule(th, cs, tree, mc, t, d, now)
                break
            elif step == STEP_END:
                k = th[t, TH_K]
                smp[SM_T_END, k] = now
                smp[SM_END_SEQ, k] = sc[SC_FINISHED]
                sc[SC_FINISHED] += 1
                smp[SM_S_AT_END, k] = sc[SC_STARTED]
                th[t, TH_ACT] = ACT_START
                if locking:
                    _release(th, cs, tree, rq, sc, mc, indices, holder, qhead, turns, t, now)
                th[t, TH_POS] += 1
                step = STEP_START
            elif step == STEP_START:  # the next sample's acquire, or arrive at the barrier
                pos = th[t, TH_POS]
                if pos == ordo[t + 1] - ordo[t]:
                    sc[SC_ARRIVED] += 1
                    _block(th, cs, tree, rq, sc, mc, t, now)
                    if sc[SC_ARRIVED] == T:
                        sc[SC_DONE] = 1
                        sc[SC_NOW] = now
                    break
                e = ordf[ordo[t] + pos]
                lo = indptr[e]
                th[t, TH_LO] = lo
                th[t, TH_M] = indptr[e + 1] - lo
                th[t, TH_TERM] = e
                th[t, TH_I] = 0
                if not locking or _acquire(th, sc, mc, indices, holder, qhead, qtail, turns, t):
                    step = STEP_BEGIN
                else:
                    th[t, TH_ACT] = ACT_ACQ
                    _block(th, cs, tree, rq, sc, mc, t, now)
                    break
            elif step == STEP_ACQ:  # woken holding the lock (turn) it waited for
                if coord_locks and not _acquire(th, sc, mc, indices, holder, qhead, qtail, turns, t):
                    th[t, TH_ACT] = ACT_ACQ
                    _block(th, cs, tree, rq, sc, mc, t, now)
                    break
                step = STEP_BEGIN
            else:  # STEP_BEGIN: START (the acquire succeeded in this event), then read 0
                k = sc[SC_STARTED]
                sc[SC_STARTED] += 1
                lo = th[t, TH_LO]
                m = th[t, TH_M]
                smp[SM_WORKER, k] = t
                smp[SM_EPOCH, k] = epoch
                smp[SM_POSITION, k] = th[t, TH_POS]
                smp[SM_TERM, k] = th[t, TH_TERM]
                smp[SM_F_AT_START, k] = sc[SC_FINISHED]
                smp[SM_T_START, k] = now
                th[t, TH_K] = k
                th[t, TH_I] = 0
                if th[t, TH_POS] + 1 < ordo[t + 1] - ordo[t]:  # the thread's next row: cold, prefetched
                    e2 = ordf[ordo[t] + th[t, TH_POS] + 1]  # now, used many events later
                    _prefetch(y, e2)
                    for q in range(indptr[e2], indptr[e2 + 1], 64 // indices.itemsize):
                        _prefetch(indices, q)
                    for q in range(indptr[e2], indptr[e2 + 1], 64 // values.itemsize):
                        _prefetch(values, q)
                if trace:  # its rows (sample, coord and, for atomic writes, wread_op: _fill_rows)
                    th[t, TH_ROW0] = sc[SC_NEXTROW]
                    sc[SC_NEXTROW] += m
                if m == 0:
                    step = STEP_READ_DONE
                    continue
                th[t, TH_ACT] = ACT_READ  # issue read 0
                if m > 1:
                    th[t, TH_JN] = indices[lo + 1]
                    _line_hint(vflat, th[t, TH_JN], words, HT, lsh, LC)
                ms, th[t, TH_HIDE] = _charged(_miss(valid, c, np.int64(indices[lo]), H, lsh, LC), mc[MC_HIDE])
                lk = mc[MC_LOCK]  # read 0 also takes the locks' cost (hwsim.model.lock_ticks; 0 without locks)
                if coord_locks:
                    lk *= m
                _schedule(th, cs, tree, mc, t, R + ms + lk, now)
                break
        if cs[CS_KEY, c] == INF:  # the thread blocked (a scheduled core updated the tree itself)
            _tree_update(tree, cs, c)
        root = tree[1]
        if sc[SC_DONE] == 1:
            status = RUN_DONE
            break
    if trace:
        _scatter(rlog, rlogf, lr, c_rtick, c_rval, c_rop)
        _scatter(wlog, wlogf, lw, c_wtick, c_delta, c_wop)
    sc[SC_OP] = op
    return status


_update = None  # the problem's update kernel: bound in each compiled _epoch_loop (_kernel)
_kernels: dict = {}
_kernels_lock = threading.Lock()


def _kernel(update):
    """:func:`_epoch_loop` compiled for one problem ``update`` kernel, which it calls inline.

    A Numba dispatcher passed as an argument is called out of line: the call costs
    reference-count updates on five array views and spills the loop's registers, once per
    sample.  So the loop is compiled per update kernel with that kernel bound as the
    global ``_update``, compiled inline by :func:`workload.problems.base.inlined` (the
    same source and arithmetic: the tests compare with the reference engine, which calls
    ``problem.update`` itself, bit for bit).  One compiled loop per update kernel, cached.
    """
    with _kernels_lock:
        fn = _kernels.get(update)
        if fn is None:
            g = dict(_epoch_loop.__globals__)
            g["_update"] = inlined(update)
            loop = pytypes.FunctionType(_epoch_loop.__code__, g, "_run_epoch", _epoch_loop.__defaults__,
                                        _epoch_loop.__closure__)
            fn = njit(nogil=True, error_model="numpy")(loop)
            _kernels[update] = fn
    return fn


@njit(nogil=True)
def _scatter(log, logf, n, c_tick, c_val, c_op):
    """Move n logged accesses of one kind into their trace rows: the reads' tick, value read
    and op (``read_tick``, ``read_value``, ``read_op``), or the stores' tick, delta and op.

    The event loop appends each access to a small log of its kind (one sequential stream
    that stays in cache) instead of storing into three columns at rows spread over every
    in-flight sample; this loop does those scattered stores in one tight pass without a
    branch, prefetching the target lines a little ahead, where the memory system can overlap
    them."""
    for q in range(n):
        if q + SCATTER_AHEAD < n:
            ra = log[q + SCATTER_AHEAD, 0]
            _prefetch_w(c_tick, ra)
            _prefetch_w(c_op, ra)
            _prefetch_w(c_val, ra)
        r = log[q, 0]
        c_tick[r] = log[q, 1]
        c_op[r] = log[q, 2]
        c_val[r] = logf[q]


@njit(nogil=True)
def _fill_rows(indptr, indices, term, k0, k1, row, base, c_sample, c_coord, c_wrop, rmw):
    """The trace columns fixed at START, for samples k0..k1-1 (rows from ``row`` on, in start
    order): ``sample``, ``coord`` and, with atomic writes, ``wread_op`` = -1.  Returns the
    next row."""
    r = row - base
    for k in range(k0, k1):
        if k + 4 < k1:  # rows come in random term order: prefetch a few samples ahead
            e4 = term[k + 4]
            for q in range(indptr[e4], indptr[e4 + 1], 64 // indices.itemsize):
                _prefetch(indices, q)
        e = term[k]
        lo = indptr[e]
        for i in range(indptr[e + 1] - lo):
            c_sample[r] = k
            c_coord[r] = indices[lo + i]
            if not rmw:
                c_wrop[r] = -1
            r += 1
    return r + base


def _flush(sink, sc, th, cols, rmw: bool) -> None:
    """Write every finished row of the trace buffer to ``sink`` and move the rest to the front.

    A row is final once its sample has ended -- every sample whose rows start below the
    oldest in-flight sample's has -- and, with rmw writes, once no pending rmw store can
    still mark it lost: its store landed before the oldest pending write's read (a store
    only overwrites stores that landed after its own read).
    """
    base, nxt = int(sc[SC_BASE]), int(sc[SC_NEXTROW])
    inflight = (th[:, TH_ACT] >= ACT_READ)
    upto = int(th[inflight, TH_ROW0].min()) if inflight.any() else nxt
    if rmw:
        pending = th[:, TH_ACT] == ACT_STORE
        if pending.any():
            rows = th[pending, TH_ROW0] + th[pending, TH_I] - base
            oldest_read = int(cols["wread_op"][rows].min())
            late = np.flatnonzero(cols["write_op"][:upto - base] > oldest_read)
            if late.size:
                upto = base + int(late[0])
    n = upto - base
    if n > 0:
        sink.write({c: a[:n] for c, a in cols.items() if c != "prev"})
        keep = nxt - upto
        for a in cols.values():
            a[:keep] = a[n:n + keep]
        cols["lost"][keep:] = False  # rows to come start not lost
        sc[SC_BASE] = upto


def _trace_columns(rows: int, rmw: bool) -> dict[str, np.ndarray]:
    """The coordinate-trace columns (TRACE_COLS), ``rows`` each; ``lost`` starts False;
    ``prev`` only exists with rmw writes."""
    cols = {c: np.empty(rows if (c != "prev" or rmw) else 0, dtype=dt) for c, dt in TRACE_COLS.items()}
    cols["lost"] = np.zeros(rows, dtype=np.bool_)
    return cols


def run_fast(spec, machine: Machine, problem, *, coord_trace: bool = True, with_opt: bool = False,
             sink=None) -> SimResult:
    """Check, coerce and allocate; run the compiled :func:`_epoch_loop` per epoch; assemble the result.

    ``sink`` (a :class:`hwsim.coordtrace.CoordTraceWriter`): stream the coordinate trace to
    it in chunks instead of keeping it (``coord_trace`` is then ignored); the caller closes it.
    """
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
    sizes = np.diff(t.indptr)
    maxlen = max(1, int(sizes.max()) if sizes.size else 1)
    trace = bool(coord_trace) or sink is not None
    stream = sink is not None
    W = machine.atomic_store_cost if atomic_stores(spec) else machine.write_cost  # a store's cost before a miss
    mc = np.array([C, machine.read_cost, W, machine.coherence_cost, machine.line_coords,
                   int(sliced), machine.quantum or 0, machine.switch_cost or 0, T, scheme, int(rmw),
                   int(trace), int(x.dtype == np.int64), words, DELAY_BLOCK, lshift, int(stream), maxlen,
                   machine.atomic_miss_cost if atomic_stores(spec) else machine.store_miss_cost,
                   int(machine.coherence_tracked), machine.miss_overlap,
                   lock_ticks(spec, machine, 1) if scheme in (SCHEME_LOCK_GLOBAL, SCHEME_LOCK_COORD) else 0],
                  dtype=np.int64)
    total = sum(o.size for ep in orders for o in ep)
    if stream:
        rows = max(int(sink.chunk_rows), 4 * T * maxlen)
    elif trace:
        rows = int(sum(int(sizes[o].sum()) for ep in orders for o in ep))
    else:
        rows = 0
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
    valid = np.full((line_count(t.n, machine.line_coords) if machine.coherence_tracked else 1, words),
                    -1, dtype=np.int64)  # bit c set: core c holds a valid copy
    nstores = np.zeros(t.n if rmw else 1, dtype=np.int64)
    ivhead = np.full(t.n if rmw else 1, -1, dtype=np.int64)  # each coordinate's lost stores (_overwrite)
    pool = max(RUN_POOL, T * maxlen) if rmw else 1
    ivlo, ivhi, ivnext = _run_pool(pool)
    last_row = np.full(t.n if (rmw and trace) else 1, -1, dtype=np.int64)
    lock_n = t.n if scheme == SCHEME_LOCK_COORD else 1
    holder = np.full(lock_n, -1, dtype=np.int64)
    qhead = np.full(lock_n, -1, dtype=np.int64)
    qtail = np.full(lock_n, -1, dtype=np.int64)
    sc = np.zeros(20, dtype=np.int64)
    sc[SC_FREE], sc[SC_NFREE] = 0, pool
    sc[SC_GHOLD] = sc[SC_GHEAD] = sc[SC_GTAIL] = -1
    smp = np.empty((12, total), dtype=np.int64)  # every entry is written
    sstep = np.empty(total)
    # every entry of a started sample's rows is written: by the loop (_scatter; wread_op,
    # prev and lost marks with rmw writes) or by _fill_rows; lost starts False; prev is
    # only needed with rmw writes
    cols = _trace_columns(rows, rmw)
    filled = [0, 0]  # samples and rows whose START columns are filled (_fill_rows)

    def fill():
        k1 = int(sc[SC_STARTED])
        filled[1] = _fill_rows(t.indptr, t.indices, smp[SM_TERM], filled[0], k1, filled[1], int(sc[SC_BASE]),
                               cols["sample"], cols["coord"], cols["wread_op"], rmw)
        filled[0] = k1

    args = tuple(cols[c] for c in TRACE_COLS)
    checkpoints = []
    run_epoch = _kernel(problem.update)
    for epoch, ep in enumerate(orders):
        ordo = np.zeros(T + 1, dtype=np.int64)
        ordo[1:] = np.cumsum([o.size for o in ep])
        ordf = np.ascontiguousarray(np.concatenate(ep) if ep else np.zeros(0, np.int64), dtype=np.int64)
        turns = turn_sequence(ep) if scheme == SCHEME_ROUND_ROBIN else np.zeros(1, dtype=np.int64)
        sc[SC_TURN] = 0
        sc[SC_FRESH] = 1
        while True:
            status = run_epoch(problem.params, problem.aux, t.indptr, t.indices, t.values, t.y, x,
                                scale, 1.0 / scale, code, step0, beta, t0, epoch,
                                mc, ordf, ordo, turns, th, thold, xr, gb, ub,
                                cs, tree, rq, dbuf, dpos, valid,
                                nstores, ivhead, ivlo, ivhi, ivnext, last_row, holder, qhead, qtail,
                                sc, smp, sstep, *args)
            if status == RUN_DONE:
                break
            if status == RUN_NEED_DELAYS:
                c = int(sc[SC_NEEDCORE])
                dbuf[c] = streams[c].refill()
                dpos[c] = 0
                continue
            if status == RUN_GROW:  # more lost-run nodes: double the pool, the new half free
                n_old = ivlo.size
                lo2, hi2, nx2 = _run_pool(2 * n_old)
                lo2[:n_old], hi2[:n_old], nx2[:n_old] = ivlo, ivhi, ivnext
                nx2[-1] = sc[SC_FREE]
                sc[SC_FREE] = n_old
                sc[SC_NFREE] += n_old
                ivlo, ivhi, ivnext = lo2, hi2, nx2
                continue
            if status == RUN_FLUSH:
                fill()
                _flush(sink, sc, th, cols, rmw)
                if int(sc[SC_NEXTROW] - sc[SC_BASE]) + maxlen > rows // 2:  # samples in flight span the buffer
                    grown = _trace_columns(2 * rows, rmw)
                    for c, a in cols.items():
                        grown[c][:rows if a.size else 0] = a
                    rows *= 2
                    cols = grown
                    args = tuple(cols[c] for c in TRACE_COLS)
                continue
            raise RuntimeError(f"fast engine: no pending event in epoch {epoch} before the barrier: either the "
                               f"simulated time passed 2**{62 - int(tree[0])} ticks (the event keys' range) or an "
                               "engine bug; rerun with engine='reference' and report the spec and machine")
        checkpoints.append((epoch + 1, int(sc[SC_FINISHED]), int(sc[SC_NOW]), x.copy()))
    if trace:
        fill()
    if stream:
        _flush(sink, sc, th, cols, rmw)  # the run is over: every row is final
    sa = SampleArrays(0)
    for i, col in enumerate(SM_COLS):
        setattr(sa, col, smp[i])
    sa.step = sstep
    samples = sa.frame()
    coords = order = None
    if trace and not stream:
        from workload.trace import COORD_SCHEMA

        from .model import _frame

        coords = _frame({c: cols[c] for c in COORD_SCHEMA}, COORD_SCHEMA)
        order = _frame({c: cols[c] for c in ORDER_SCHEMA}, ORDER_SCHEMA)
    history = history_frame(problem, spec, x0, checkpoints, with_opt)
    return SimResult(x=x, samples=samples, coords=coords, order=order, history=history, ticks=int(sc[SC_NOW]),
                     lost_updates=int(sc[SC_LOST]), engine="fast", machine=machine, spec=spec, x0=x0)
