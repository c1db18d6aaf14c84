"""hwsim ``minibatch-sync``: synchronous minibatch SGD on the simulated machine, and stragglers.

The arithmetic is :mod:`workload.minibatch`'s (read that docstring first): per step every
term of the batch is computed against the same model, the updates are combined in batch
order and written once per coordinate -- so a simulated run equals
:func:`workload.minibatch.minibatch_oracle` bit for bit at any thread count.  This module
adds *time*, with the costs and delay models of :mod:`hwsim.model`.

Timing rules (ticks; thread w pinned on core w; ``spec.threads <= machine.cores``)
    Step s of an epoch begins at tick T_s for every thread at once (T_0 of the run is 0;
    an epoch begins where the previous one ended).  Thread w processes its contiguous share
    of the batch (:func:`workload.minibatch.share_bounds`), term after term:

    1. START at ``t_start``; READS: each support coordinate j in index order costs
       ``read_cost + miss(w, j)`` and completes (touching j's line) at the end of that cost;
    2. READ DONE at ``t_read_done``; COMPUTE: the next draw d of core w's delay stream
       (:class:`hwsim.delays.DelayStream`, the stream every hwsim scheme uses); wait d;
    3. ``t_write_start``: the term's update goes to w's private update buffer, ``write_cost``
       per support entry (private: no coherence); END at ``t_end``, and the next term starts.

    Thread w *arrives* at the barrier when its share is done (at T_s for an empty share).
    The last thread to arrive -- largest arrival tick, and at equal ticks the highest core
    (events run in ``(tick, core)`` order, so it is the last one) -- is the *combiner*.
    At its arrival A_s it combines in batch order: it reads every entry of the batch's
    update buffer (``read_cost`` each, plus ``coherence_cost`` once per 64-byte buffer line
    holding entries another thread wrote, ``line_coords`` entries per line), then stores
    each touched coordinate once, in first-touch order, ``write_cost + miss(combiner, j)``
    each, the store landing at the end of its cost.  The step ends at the last landing:
    T_{s+1}.  So iteration time = max over threads of their share time + the combine cost.

    Coherence (``coherence_cost`` H > 0), the rule of :mod:`hwsim.model` applied to this
    schedule: ``miss(c, j) = H`` when j's line was stored to after core c last touched it
    (a read completion or c's own store); initially every core holds every line.  Only
    the combiner stores to the model, so in step s+1 a thread misses on the lines the
    combiner of step s wrote, unless it was that combiner.

    Delays are drawn per core in sample order (one per term), as in every hwsim scheme.
    Time slicing (more threads than cores) is not modelled for this scheme.

Trace
    ``samples`` (SAMPLE_SCHEMA): one row per term; the counters are those of the events
    START / READ DONE / END taken in ``(tick, core, program order)``: ``start_seq`` (= the
    row id ``sample``), ``read_seq``, ``end_seq`` are ranks, ``finished_at_start`` and
    ``started_at_end`` the counts of END / START events before.  ``coords``
    (COORD_SCHEMA, when asked): one row per support entry -- ``read_tick`` the read's
    completion, ``read_value`` the value read, ``write_tick`` when the combined store of
    that coordinate landed, ``delta`` the *term's own* update u (before combining), ``lost``
    False.  ``order`` is None (no per-access memory-operation numbers for this scheme).
    :class:`SyncResult` adds ``iterations``: one row per step (``ITERATION_SCHEMA``).

Engines
    ``reference``: SimPy processes, one event per read and write (this docstring, executed);
    arithmetic by the oracle's own numpy step.  ``fast``: one jitted loop per epoch for the
    timing and :func:`workload.minibatch.minibatch_pass` for the arithmetic.  Identical
    results (tested).

At scale
    :func:`straggler_study` skips the per-coordinate machinery: worker w's step time is
    ``fixed_ticks`` plus the sum of its next ``samples_per_step`` draws from core w's delay
    stream (the same draws :func:`hwsim.simulate` would give core w), and an iteration
    takes the maximum over workers plus ``combine_ticks`` -- vectorised over iterations,
    for 10,000 workers and more.  Order statistics: for X = c + Exp(λ), E[max of n] =
    c + H_n/λ (Rényi's representation of exponential order statistics; Dutta et al. 2018,
    "Slow and stale gradients can win the race", §3).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from numba import njit

from workload.fixed import scale_of, to_state
from workload.minibatch import (ITERATION_SCHEMA, entry_offsets, epoch_order, minibatch_options, minibatch_pass,
                                oracle_step, share_bounds, step_bounds)
from workload.schedule import schedule_args, step_at
from workload.trace import COORD_SCHEMA, SAMPLE_SCHEMA

from .delays import DelayModel, DelayStream
from .machine import Machine, check_fits, line_count
from .model import SimResult, _frame, history_frame

ENGINES = ("fast", "reference")



@dataclass(frozen=True, eq=False)
class SyncResult(SimResult):
    """:class:`hwsim.model.SimResult` plus ``iterations`` (ITERATION_SCHEMA, one row per step)."""

    iterations: pd.DataFrame | None = None


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------
def simulate_sync(spec, machine: Machine, *, problem=None, engine: str = "fast", coord_trace: bool = True,
                  with_opt: bool = False) -> SyncResult:
    """Simulate a ``minibatch-sync`` spec (called by :func:`hwsim.simulate`; same arguments)."""
    if spec.scheme != "minibatch-sync":
        raise ValueError(f"simulate_sync: spec.scheme = {spec.scheme!r}; this simulates 'minibatch-sync' only "
                         "(use hwsim.simulate for the other schemes)")
    if engine not in ENGINES:
        raise ValueError(f"engine = {engine!r}: must be one of {', '.join(ENGINES)}")
    check_fits(machine, spec.threads)
    if spec.threads > machine.cores:
        raise NotImplementedError(
            f"hwsim minibatch-sync: spec.threads = {spec.threads} > cores = {machine.cores}: time slicing is not "
            "modelled for this scheme; use at most `cores` threads (hwsim.straggler_study scales to any n)")
    if problem is None:
        from workload.build import build_problem

        problem = build_problem(spec)
    opt = minibatch_options(spec, problem.N)
    run = _reference if engine == "reference" else _fast
    return run(spec, machine, problem, opt, bool(coord_trace), bool(with_opt))


# --------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------
def worker_of_position(n_terms: int, batch_size: int, workers: int) -> np.ndarray:
    """The thread that processes each epoch position (int64, (N,)): contiguous shares of
    each step, the first ``b % p`` shares one term longer (:func:`workload.minibatch.share_bounds`)."""
    i = np.arange(n_terms, dtype=np.int64)
    s = i // batch_size
    r = i - s * batch_size
    b = np.minimum(batch_size, n_terms - s * batch_size)
    base, extra = b // workers, b % workers
    long_part = extra * (base + 1)
    w = np.where(r < long_part, r // (base + 1), extra + (r - long_part) // np.maximum(base, 1))
    return w.astype(np.int64)


def take(ds: DelayStream, k: int) -> np.ndarray:
    """The next ``k`` delays of a core's stream (int64), exactly the values ``k`` calls of
    ``ds.next()`` return (the stream's blocks are consumed in order)."""
    out = np.empty(int(k), dtype=np.int64)
    filled = 0
    while filled < k:
        if ds.pos >= ds.block.size:
            ds.refill()
        m = min(k - filled, ds.block.size - ds.pos)
        out[filled:filled + m] = ds.block[ds.pos:ds.pos + m]
        ds.pos += m
        filled += m
    return out


class _Run:
    """Per-run arrays both engines fill, and the frames built from them."""

    def __init__(self, spec, problem, opt):
        t = problem.terms
        self.N, self.p, self.B = t.N, spec.threads, opt.batch_size
        self.bounds = step_bounds(t.N, opt.batch_size)
        self.S = self.bounds.size - 1
        self.wpos = worker_of_position(t.N, opt.batch_size, spec.threads)
        rank = np.empty(t.N, dtype=np.int64)  # position within the worker's list for the epoch
        by_w = np.argsort(self.wpos, kind="stable")
        counts = np.bincount(self.wpos, minlength=self.p)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank[by_w] = np.arange(t.N) - np.repeat(starts, counts)
        self.rank, self.by_w, self.counts = rank, by_w, counts
        E = spec.epochs
        self.cols = {c: np.full((E, t.N), -1, dtype=np.int64)
                     for c in ("term", "t_start", "t_read_done", "t_write_start", "t_end")}
        self.gamma = np.zeros((E, t.N))
        self.it = {c: np.zeros((E, self.S), dtype=np.int64) for c in ITERATION_SCHEMA if c not in ("epoch", "step")}
        self.coords = []  # per epoch: (sample-position-major arrays)
        self.checkpoints = []

    def epoch_delays(self, streams, epoch) -> np.ndarray:
        """Each position's compute delay: the next draws of its thread's core, in position order."""
        d = np.empty(self.N, dtype=np.int64)
        d[self.by_w] = np.concatenate([take(streams[w], int(self.counts[w])) for w in range(self.p)])
        return d

    def samples_frame(self) -> pd.DataFrame:
        E, N, p = self.gamma.shape[0], self.N, self.p
        worker = np.tile(self.wpos, E)
        ts, tr, te = (self.cols[c].ravel() for c in ("t_start", "t_read_done", "t_end"))
        # program order of each thread's events: its q-th sample of the run -> 3q, 3q+1, 3q+2
        q = np.empty(E * N, dtype=np.int64)
        run_order = np.lexsort((np.tile(self.rank, E), np.repeat(np.arange(E), N), worker))
        per_w = np.bincount(worker, minlength=p)
        q[run_order] = np.arange(E * N) - np.repeat(np.concatenate([[0], np.cumsum(per_w)[:-1]]), per_w)
        tick = np.concatenate([ts, tr, te])
        core = np.concatenate([worker, worker, worker])
        prog = np.concatenate([3 * q, 3 * q + 1, 3 * q + 2])
        kind = np.repeat(np.arange(3), E * N)
        ev = np.lexsort((prog, core, tick))
        k_sorted = kind[ev]
        before = [np.cumsum(k_sorted == k) - (k_sorted == k) for k in range(3)]  # events of kind k strictly before
        at = np.empty((3, 3 * E * N), dtype=np.int64)
        for k in range(3):
            at[k, ev] = before[k]
        m = E * N
        start_seq, finished_at_start = at[0, :m], at[2, :m]
        read_seq = at[1, m:2 * m]
        end_seq, started_at_end = at[2, 2 * m:], at[0, 2 * m:]
        cols = {"sample": start_seq, "worker": worker, "epoch": np.repeat(np.arange(E), N),
                "position": np.tile(self.rank, E), "term": self.cols["term"].ravel(), "step": self.gamma.ravel(),
                "t_start": ts, "t_read_done": tr, "t_write_start": self.cols["t_write_start"].ravel(), "t_end": te,
                "start_seq": start_seq, "read_seq": read_seq, "end_seq": end_seq,
                "finished_at_start": finished_at_start, "started_at_end": started_at_end}
        self.row_of = start_seq.reshape(E, N)  # sample id of (epoch, position)
        inv = np.empty(m, dtype=np.int64)
        inv[start_seq] = np.arange(m)
        return _frame({c: np.asarray(v)[inv] for c, v in cols.items()}, SAMPLE_SCHEMA)

    def coords_frame(self, problem) -> pd.DataFrame:
        """Coordinate rows in sample (start) order, then support order."""
        t = problem.terms
        parts = []
        for epoch, (order, eoff, rtick, wtick, xr, u) in enumerate(self.coords):
            sizes = np.diff(eoff)
            sample = np.repeat(self.row_of[epoch], sizes)
            coord = t.indices[_support_positions(t.indptr, order, eoff)].astype(np.int64)
            parts.append((sample, coord, rtick, xr, wtick, u))
        cat = [np.concatenate([p[i] for p in parts]) for i in range(6)]
        o = np.argsort(cat[0], kind="stable")
        return _frame({"sample": cat[0][o], "coord": cat[1][o], "read_tick": cat[2][o], "read_value": cat[3][o],
                       "write_tick": cat[4][o], "delta": cat[5][o], "lost": np.zeros(o.size, dtype=np.bool_)},
                      COORD_SCHEMA)

    def iterations_frame(self) -> pd.DataFrame:
        E = self.gamma.shape[0]
        d = {"epoch": np.repeat(np.arange(E), self.S), "step": np.tile(np.arange(self.S), E)}
        d.update({c: v.ravel() for c, v in self.it.items()})
        return _frame(d, ITERATION_SCHEMA)


def _support_positions(indptr, order, eoff) -> np.ndarray:
    """Index into ``indices`` of every support entry of ``order``'s terms, in order."""
    sizes = np.diff(eoff)
    return np.repeat(indptr[order] - eoff[:-1], sizes) + np.arange(eoff[-1])


def _result(spec, machine, problem, run: _Run, x, x0, ticks, engine, coord_trace, with_opt) -> SyncResult:
    samples = run.samples_frame()
    coords = run.coords_frame(problem) if coord_trace else None
    history = history_frame(problem, spec, x0, run.checkpoints, with_opt)
    return SyncResult(x=x, samples=samples, coords=coords, order=None, history=history, ticks=int(ticks),
                      lost_updates=0, engine=engine, machine=machine, spec=spec, x0=x0,
                      iterations=run.iterations_frame())


# --------------------------------------------------------------------------------------------
# Fast engine
# --------------------------------------------------------------------------------------------
@njit(nogil=True)
def _epoch_timing(order, bounds, eoff, indptr, indices, p, R, W, H, LC, dly, now, last_write, last_touch,
                  ts, tr, tw, te, it_begin, it_first, it_last, it_comb, it_end, trace, rtick, wtick,
                  mark, touched, land):
    """The timing rules (module docstring) for one epoch; returns the tick the epoch ends."""
    for s in range(bounds.size - 1):
        lo = bounds[s]
        hi = bounds[s + 1]
        b = hi - lo
        base = b // p
        extra = b % p
        T = now
        first = np.int64(2**62)
        last = np.int64(-1)
        comb = 0
        comb_lo = lo
        comb_hi = lo
        wlo = lo
        for w in range(p):
            whi = wlo + base + (1 if w < extra else 0)
            t = T
            for i in range(wlo, whi):
                e = order[i]
                a = indptr[e]
                k = indptr[e + 1] - a
                ts[i] = t
                for q in range(k):
                    j = indices[a + q]
                    cost = R
                    if H > 0:
                        line = j // LC
                        if last_write[line] > last_touch[w, line]:
                            cost += H
                    t += cost
                    if H > 0:
                        last_touch[w, j // LC] = t
                    if trace:
                        rtick[eoff[i] + q] = t
                tr[i] = t
                t += dly[i]
                tw[i] = t
                t += k * W
                te[i] = t
            if t < first:
                first = t
            if t >= last:  # the last to arrive: largest tick, then highest core
                last = t
                comb = w
                comb_lo = wlo
                comb_hi = whi
            wlo = whi
        # combine: read the batch's update buffer, then one store per touched coordinate
        t = last
        nb = eoff[hi] - eoff[lo]
        t += nb * R
        if H > 0:
            own_lo = eoff[comb_lo] - eoff[lo]
            own_hi = eoff[comb_hi] - eoff[lo]
            nlines = (nb + LC - 1) // LC
            for ln in range(nlines):
                l_lo = ln * LC
                l_hi = min(nb, l_lo + LC)
                if not (own_lo <= l_lo and l_hi <= own_hi):
                    t += H
        nt = 0
        for i in range(lo, hi):
            e = order[i]
            for q in range(indptr[e], indptr[e + 1]):
                j = indices[q]
                if mark[j] == 0:
                    mark[j] = 1
                    touched[nt] = j
                    nt += 1
        for q in range(nt):
            j = touched[q]
            mark[j] = 0
            cost = W
            if H > 0:
                line = j // LC
                if last_write[line] > last_touch[comb, line]:
                    cost += H
            t += cost
            land[j] = t
            if H > 0:
                last_write[j // LC] = t
                last_touch[comb, j // LC] = t
        if trace:
            for i in range(lo, hi):
                e = order[i]
                a = indptr[e]
                for q in range(indptr[e + 1] - a):
                    wtick[eoff[i] + q] = land[indices[a + q]]
        it_begin[s] = T
        it_first[s] = first
        it_last[s] = last
        it_comb[s] = comb
        it_end[s] = t
        now = t
    return now


def _fast(spec, machine, problem, opt, coord_trace, with_opt) -> SyncResult:
    t = problem.terms
    p = spec.threads
    run = _Run(spec, problem, opt)
    x = to_state(problem.initial_point(spec.seed), spec.dtype, spec.fixed_point_bits)
    x0 = x.copy()
    scale = scale_of(spec.fixed_point_bits)
    code, step0, beta, t0 = schedule_args(spec, t.N)
    H, LC = int(machine.coherence_cost), int(machine.line_coords)
    lines = line_count(t.n, LC) if H else 1
    last_write = np.full(lines, -1, dtype=np.int64)
    last_touch = np.full((p if H else 1, lines), -1, dtype=np.int64)
    streams = [DelayStream(machine.delay_of(w), spec.seed, w) for w in range(p)]
    acc = np.full(t.n, -0.0)
    mark = np.zeros(t.n, dtype=np.int8)
    touched = np.zeros(max(1, t.n), dtype=np.int64)
    land = np.zeros(max(1, t.n), dtype=np.int64)
    now = 0
    steps_t = run.bounds[:-1]
    for epoch in range(spec.epochs):
        order = epoch_order(spec, t.N, epoch)
        eoff = entry_offsets(t.indptr, order)
        dly = run.epoch_delays(streams, epoch)
        nrec = int(eoff[-1]) if coord_trace else 0
        rtick = np.full(nrec, -1, dtype=np.int64)
        wtick = np.full(nrec, -1, dtype=np.int64)
        c = run.cols
        it = run.it
        now = _epoch_timing(order, run.bounds, eoff, t.indptr, t.indices, p, int(machine.read_cost),
                            int(machine.write_cost), H, LC, dly, np.int64(now), last_write, last_touch,
                            c["t_start"][epoch], c["t_read_done"][epoch], c["t_write_start"][epoch], c["t_end"][epoch],
                            it["t_begin"][epoch], it["t_first_arrival"][epoch], it["t_last_arrival"][epoch],
                            it["combiner"][epoch], it["t_end"][epoch], coord_trace, rtick, wtick, mark, touched, land)
        rec_xr = np.zeros(nrec)
        rec_u = np.zeros(nrec)
        minibatch_pass(problem.update, problem.params, problem.aux, t.indptr, t.indices, t.values, t.y, order,
                       run.bounds, x, code, step0, beta, t0, epoch, scale, opt.mean, acc, mark, touched, rec_xr, rec_u)
        c["term"][epoch] = order
        it["batch"][epoch] = np.diff(run.bounds)
        gam = np.array([step_at(code, step0, beta, t0, epoch, int(lo)) for lo in steps_t])
        run.gamma[epoch] = np.repeat(gam, np.diff(run.bounds))
        if coord_trace:
            run.coords.append((order, eoff, rtick, wtick, rec_xr, rec_u))
        run.checkpoints.append((epoch + 1, (epoch + 1) * t.N, int(now), x.copy()))
    return _result(spec, machine, problem, run, x, x0, now, "fast", coord_trace, with_opt)


# --------------------------------------------------------------------------------------------
# Reference engine (SimPy)
# --------------------------------------------------------------------------------------------
def _reference(spec, machine, problem, opt, coord_trace, with_opt) -> SyncResult:
    import simpy
    from simpy.events import Event

    class _Tick(Event):
        """A wait of ``delay`` ticks ending in an event of ``core``: SimPy's queue, ordered by
        (time, priority, insertion), then runs events in the model's (tick, core) order."""

        def __init__(self, env, delay, core):
            self.env = env
            self.callbacks = []
            self._value = None
            self._ok = True
            env.schedule(self, 2 + core, delay)

    t = problem.terms
    p = spec.threads
    R, W, H, LC = int(machine.read_cost), int(machine.write_cost), int(machine.coherence_cost), int(machine.line_coords)
    run = _Run(spec, problem, opt)
    x = to_state(problem.initial_point(spec.seed), spec.dtype, spec.fixed_point_bits)
    x0 = x.copy()
    scale = scale_of(spec.fixed_point_bits)
    code, step0, beta, t0 = schedule_args(spec, t.N)
    streams = [DelayStream(machine.delay_of(w), spec.seed, w) for w in range(p)]
    last_write: dict[int, int] = {}  # line -> tick of the last store landing (absent: never stored)
    last_touch: dict[tuple[int, int], int] = {}  # (core, line) -> tick of the core's last touch

    def miss(c, j):
        line = j // LC
        return H if H > 0 and last_write.get(line, -1) > last_touch.get((c, line), -1) else 0

    env = simpy.Environment()
    state = {"now": 0}

    def share(w, epoch, order, eoff, lo, hi, T, arrivals, rec, done):
        yield _Tick(env, 0, w)  # released at T
        sb = share_bounds(lo, hi, p)
        for i in range(int(sb[w]), int(sb[w + 1])):
            e = order[i]
            idx = t.support(e)
            run.cols["t_start"][epoch, i] = env.now
            for q, j in enumerate(idx):
                yield _Tick(env, R + miss(w, int(j)), w)
                last_touch[(w, int(j) // LC)] = env.now
                if coord_trace:
                    rec["rtick"][eoff[i] + q] = env.now
            run.cols["t_read_done"][epoch, i] = env.now
            yield _Tick(env, streams[w].next(), w)
            run.cols["t_write_start"][epoch, i] = env.now
            for _ in idx:
                yield _Tick(env, W, w)
            run.cols["t_end"][epoch, i] = env.now
        arrivals.append((env.now, w, int(sb[w]), int(sb[w + 1])))
        if len(arrivals) == p:  # the last to arrive combines
            env.process(combine(w, epoch, order, eoff, lo, hi, arrivals, rec, done))

    def combine(c, epoch, order, eoff, lo, hi, arrivals, rec, done):
        yield _Tick(env, 0, c)
        nb = int(eoff[hi] - eoff[lo])
        own_lo, own_hi = int(eoff[arrivals[-1][2]] - eoff[lo]), int(eoff[arrivals[-1][3]] - eoff[lo])
        for q in range(nb):  # read the update buffer
            extra = 0
            if H > 0 and q % LC == 0:
                l_hi = min(nb, q + LC)
                extra = 0 if (own_lo <= q and l_hi <= own_hi) else H
            yield _Tick(env, R + extra, c)
        gamma = step_at(code, step0, beta, t0, epoch, lo)
        reads, ups, _ = oracle_step(problem, x, order[lo:hi], gamma, opt.mean, scale)
        first_touch = list(dict.fromkeys(int(j) for e in order[lo:hi] for j in t.support(e)))
        land = {}
        for j in first_touch:  # the stores land one by one (the values were written above: x is
            yield _Tick(env, W + miss(c, j), c)  # read by nobody until the step ends)
            land[j] = env.now
            last_write[j // LC] = env.now
            last_touch[(c, j // LC)] = env.now
        if coord_trace:
            for k, i in enumerate(range(lo, hi)):
                idx = t.support(order[i])
                a = int(eoff[i])
                rec["xr"][a:a + idx.size] = reads[k]
                rec["u"][a:a + idx.size] = ups[k]
                rec["wtick"][a:a + idx.size] = [land[int(j)] for j in idx]
        done.succeed((env.now, c, arrivals))

    def driver():
        for epoch in range(spec.epochs):
            order = epoch_order(spec, t.N, epoch)
            eoff = entry_offsets(t.indptr, order)
            n = int(eoff[-1]) if coord_trace else 0
            rec = {"rtick": np.full(n, -1, np.int64), "wtick": np.full(n, -1, np.int64), "xr": np.zeros(n),
                   "u": np.zeros(n)}
            for s in range(run.S):
                lo, hi = int(run.bounds[s]), int(run.bounds[s + 1])
                T = env.now
                arrivals: list = []
                done = env.event()
                for w in range(p):
                    env.process(share(w, epoch, order, eoff, lo, hi, T, arrivals, rec, done))
                end, c, arr = yield done
                run.it["t_begin"][epoch, s] = T
                run.it["t_first_arrival"][epoch, s] = min(a[0] for a in arr)
                run.it["t_last_arrival"][epoch, s] = arr[-1][0]
                run.it["combiner"][epoch, s] = c
                run.it["t_end"][epoch, s] = end
                run.it["batch"][epoch, s] = hi - lo
                run.gamma[epoch, lo:hi] = step_at(code, step0, beta, t0, epoch, lo)
            run.cols["term"][epoch] = order
            if coord_trace:
                run.coords.append((order, eoff, rec["rtick"], rec["wtick"], rec["xr"], rec["u"]))
            state["now"] = env.now
            run.checkpoints.append((epoch + 1, (epoch + 1) * t.N, int(env.now), x.copy()))

    env.process(driver())
    env.run()
    return _result(spec, machine, problem, run, x, x0, state["now"], "reference", coord_trace, with_opt)


# --------------------------------------------------------------------------------------------
# The straggler study at scale
# --------------------------------------------------------------------------------------------
class IterationTimes(NamedTuple):
    """What :func:`straggler_study` returns (ticks)."""

    ticks: np.ndarray  # int64 (n_iterations,): max over workers of the step time + combine_ticks
    straggler: np.ndarray  # int64 (n_iterations,): the slowest worker (the highest id on ties)
    worker_mean: float  # mean step time over all workers and iterations
    n_workers: int


def _need_int(name, v, lo):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"straggler_study: {name} = {v!r}: must be an integer >= {lo}; set {name}, e.g. {max(lo, 1)}")


def straggler_study(delay: DelayModel, n_workers: int, n_iterations: int, seed: int, *, samples_per_step: int = 1,
                    fixed_ticks: int = 0, combine_ticks: int = 0, chunk: int = 512) -> IterationTimes:
    """Iteration times of synchronous SGD with ``n_workers`` workers, without the model.

    Worker w's step time in iteration i is ``fixed_ticks`` plus the sum of draws
    ``i·k .. i·k + k - 1`` (k = ``samples_per_step``) of core w's delay stream
    (``DelayStream(delay, seed, w)``: the stream :func:`hwsim.simulate` gives core w); the
    iteration takes the maximum over workers plus ``combine_ticks``.  Workers are processed
    in chunks of ``chunk`` (an iterations × chunk matrix each, reduced per row), so memory
    stays O(n_iterations · chunk) for any number of workers.
    """
    if not isinstance(delay, DelayModel):
        raise TypeError(f"straggler_study: delay = {delay!r}: must be a hwsim.delays model, e.g. "
                        "ShiftedExponential(shift=1000, rate=5e-4)")
    _need_int("n_workers", n_workers, 1)
    _need_int("n_iterations", n_iterations, 1)
    _need_int("seed", seed, 0)
    _need_int("samples_per_step", samples_per_step, 1)
    _need_int("fixed_ticks", fixed_ticks, 0)
    _need_int("combine_ticks", combine_ticks, 0)
    _need_int("chunk", chunk, 1)
    k = int(samples_per_step)
    best = np.full(n_iterations, -1, dtype=np.int64)
    who = np.zeros(n_iterations, dtype=np.int64)
    total = 0.0
    for c0 in range(0, n_workers, chunk):
        c1 = min(n_workers, c0 + chunk)
        mat = np.empty((n_iterations, c1 - c0), dtype=np.int64)
        for w in range(c0, c1):
            d = take(DelayStream(delay, seed, w), n_iterations * k)
            mat[:, w - c0] = d.reshape(n_iterations, k).sum(axis=1) if k > 1 else d
        total += float(mat.sum())
        rev = mat.shape[1] - 1 - np.argmax(mat[:, ::-1], axis=1)  # the highest id among equal maxima
        m = mat[np.arange(n_iterations), rev]
        upd = m >= best  # a later chunk holds higher ids: it wins ties
        best = np.where(upd, m, best)
        who = np.where(upd, c0 + rev, who)
    mean = total / (n_workers * n_iterations) + fixed_ticks
    return IterationTimes(ticks=best + int(fixed_ticks) + int(combine_ticks), straggler=who, worker_mean=mean,
                          n_workers=int(n_workers))


def expected_max_shifted_exponential(shift: float, rate: float, n: int) -> float:
    """E[max of n iid c + Exp(λ)] = c + H_n / λ (continuous; before rounding to ticks)."""
    return float(shift) + harmonic(n) / float(rate)


def harmonic(n: int) -> float:
    """H_n = Σ_{k=1}^n 1/k (summed from the smallest term up)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"harmonic: n = {n!r}: must be an integer >= 1")
    return float(math.fsum(1.0 / k for k in range(int(n), 0, -1)))
