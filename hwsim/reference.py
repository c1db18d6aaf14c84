"""The reference engine: SimPy processes, one event per coordinate read and write.

Slow and plain on purpose: it is the executable form of the rules in :mod:`hwsim.model`
(read that docstring first).  Each simulated thread is a SimPy process; every wait is a
:class:`_Tick` scheduled with priority ``2 + core``, so SimPy's event queue, ordered by
``(time, priority, insertion)``, runs the pending events in ``(tick, core)`` order --
the model's tie-break.  Wake-ups (lock hand-over, barrier, dispatch) are ordinary SimPy
events at NORMAL priority: they only let a process schedule its next ``_Tick``, never
touch memory, so they cannot reorder actions.
"""
from __future__ import annotations

from collections import deque

import numpy as np
import simpy
from simpy.events import Event

from workload.fixed import add_value, encode_delta, read_value, scale_of, to_state
from workload.schedule import global_t, schedule_args, step_at

from .delays import DelayStream
from .machine import Machine, line_count
from .model import (SCHEME_LOCK_COORD, SCHEME_LOCK_GLOBAL, SCHEME_ROUND_ROBIN, CoordArrays,
                    SampleArrays, all_orders, atomic_stores, charged, lock_ticks, scheme_code, turn_sequence)

_CORE_PRIORITY = 2  # after SimPy's URGENT (0) and NORMAL (1) events of the same tick


class _Tick(Event):
    """A wait of ``delay`` ticks that ends in an event of ``core`` (priority 2 + core)."""

    def __init__(self, env: simpy.Environment, delay: int, core: int):
        self.env = env
        self.callbacks = []
        self._value = None
        self._ok = True
        env.schedule(self, _CORE_PRIORITY + core, delay)


class _Thread:
    def __init__(self, tid: int):
        self.id = tid
        self.core: int | None = None
        self.quantum_end = 0
        self.switch = 0  # switch ticks still to pay after a dispatch
        self.wakeup: Event | None = None


class _CPU:
    """Placement: pinned threads, or time slicing with a FIFO ready queue (model docstring)."""

    def __init__(self, env: simpy.Environment, machine: Machine, threads: list[_Thread]):
        self.env = env
        self.sliced = len(threads) > machine.cores
        self.Q = machine.quantum
        self.S = machine.switch_cost
        self.ready: deque[_Thread] = deque()
        self.idle = set(range(machine.cores))
        if not self.sliced:
            for th in threads:
                th.core = th.id
                self.idle.discard(th.id)

    def tick(self, th: _Thread, d: int) -> _Tick:
        return _Tick(self.env, d, th.core)

    def run(self, th: _Thread, d: int):
        """Wait ``d`` ticks of CPU time; returns inside the event that ends the wait."""
        if not self.sliced:
            yield self.tick(th, d)
            return
        d += th.switch
        th.switch = 0
        while True:
            left = th.quantum_end - self.env.now
            if d <= left:
                yield self.tick(th, d)
                return
            yield self.tick(th, left)  # the quantum-expiry event
            d -= left
            if not self.ready:
                th.quantum_end = self.env.now + self.Q
                continue
            core = th.core
            th.core = None
            th.wakeup = self.env.event()
            self.ready.append(th)
            self._dispatch(self.ready.popleft(), core)
            yield th.wakeup  # dispatched again (possibly onto another core)
            d += th.switch
            th.switch = 0

    def block(self, th: _Thread, then=None):
        """Block until :meth:`wake`; returns inside the thread's next event.

        ``then()`` runs after the core is given up (the barrier's release wakes everyone).
        """
        th.wakeup = self.env.event()
        if self.sliced:
            core = th.core
            th.core = None
            if self.ready:
                self._dispatch(self.ready.popleft(), core)
            else:
                self.idle.add(core)
        if then is not None:
            then()
        yield th.wakeup
        yield from self.run(th, 0)

    def wake(self, th: _Thread):
        if not self.sliced:
            th.wakeup.succeed()
        elif self.idle:
            core = min(self.idle)
            self._dispatch(th, core)
        else:
            self.ready.append(th)

    def _dispatch(self, th: _Thread, core: int):
        self.idle.discard(core)
        th.core = core
        th.switch = self.S
        th.quantum_end = self.env.now + self.S + self.Q
        th.wakeup.succeed()


class _Lock:
    """A FIFO lock: ``acquire`` takes it or queues; ``release`` hands it to the queue head."""

    __slots__ = ("holder", "waiting")

    def __init__(self):
        self.holder = None
        self.waiting: deque[_Thread] = deque()

    def acquire(self, th: _Thread) -> bool:
        if self.holder is None:
            self.holder = th
            return True
        self.waiting.append(th)
        return False

    def release(self) -> _Thread | None:
        """Free the lock or hand it over; returns the thread to wake (or None)."""
        if self.waiting:
            self.holder = self.waiting.popleft()
            return self.holder
        self.holder = None
        return None


class _Machine:
    """Shared state of one simulation: memory, coherence, counters, locks, trace."""

    def __init__(self, env, spec, machine, problem, coord_trace):
        self.env = env
        self.spec = spec
        self.machine = machine
        self.problem = problem
        t = problem.terms
        self.terms = t
        self.T = spec.threads
        self.orders = all_orders(spec, t.N)
        self.scheme, self.rmw = scheme_code(spec)
        self.x = to_state(problem.initial_point(spec.seed), spec.dtype, spec.fixed_point_bits)
        self.x0 = self.x.copy()
        self.scale = scale_of(spec.fixed_point_bits)
        self.inv_scale = 1.0 / self.scale
        self.sched = schedule_args(spec, t.N)
        # coherence: per line, a bit set of the cores holding a valid copy
        self.H = machine.coherence_cost
        self.HW = machine.atomic_miss_cost if atomic_stores(spec) else machine.store_miss_cost  # a store's miss cost
        self.W = machine.atomic_store_cost if atomic_stores(spec) else machine.write_cost  # and its cost before one
        self.tracked = machine.coherence_tracked
        self.line_coords = machine.line_coords
        self.valid = [(1 << machine.cores) - 1] * line_count(t.n, machine.line_coords)
        self.delays = [DelayStream(machine.delay_of(c), spec.seed, c) for c in range(machine.cores)]
        # counters and trace
        self.started = self.readdone = self.finished = self.op = 0
        self.total = sum(o.size for ep in self.orders for o in ep)
        self.S = SampleArrays(self.total)
        rows = sum(int(np.sum(t.indptr[o + 1] - t.indptr[o])) for ep in self.orders for o in ep) if coord_trace else 0
        self.C = CoordArrays(rows) if coord_trace else None
        self.next_row = 0
        # lost-update bookkeeping, per coordinate
        self.nstores = np.zeros(t.n, dtype=np.int64)
        self.lost_runs: dict[int, list[list[int]]] = {}  # coordinate -> its lost stores, as [lo, hi) runs
        self.last_store_row = np.full(t.n, -1, dtype=np.int64)
        self.lost_updates = 0
        # schemes
        self.global_lock = _Lock()
        self.coord_locks: dict[int, _Lock] = {}
        self.turns: np.ndarray | None = None
        self.turn = 0
        self.turn_waiting: dict[int, _Thread] = {}
        # epochs
        self.threads = [_Thread(w) for w in range(self.T)]
        self.cpu = _CPU(env, machine, self.threads)
        self.arrived = 0
        self.epoch = 0
        self.checkpoints: list = []

    # --- coherence ---------------------------------------------------------------------
    def miss(self, core: int, j: int, cost: int) -> int:
        """``cost`` (H for a read or plain store, HW for a store) when core holds no valid copy of j's line."""
        if cost == 0:
            return 0
        return 0 if (self.valid[j // self.line_coords] >> core) & 1 else cost

    def touch(self, core: int, j: int):
        if self.tracked:
            self.valid[j // self.line_coords] |= 1 << core

    def own(self, core: int, j: int):
        if self.tracked:
            self.valid[j // self.line_coords] = 1 << core

    # --- epochs ------------------------------------------------------------------------
    def wake_all(self):
        for th in self.threads:
            self.cpu.wake(th)

    def start_epoch(self, epoch: int):
        self.epoch = epoch
        self.arrived = 0
        if self.scheme == SCHEME_ROUND_ROBIN:
            self.turns = turn_sequence(self.orders[epoch])
            self.turn = 0

    def barrier(self, th: _Thread):
        """Block at the epoch barrier; the last arrival ends the epoch and wakes everyone.

        Returns (through ``yield from``) False when the run is over.
        """
        self.arrived += 1
        if self.arrived < self.T:
            yield from self.cpu.block(th)
            return True
        self.checkpoints.append((self.epoch + 1, self.finished, self.env.now, self.x.copy()))
        if self.epoch + 1 == self.spec.epochs:
            self.ticks = self.env.now
            return False
        self.start_epoch(self.epoch + 1)
        yield from self.cpu.block(th, then=self.wake_all)
        return True

    # --- scheme acquire / release -------------------------------------------------------
    def acquire(self, th: _Thread, idx: np.ndarray):
        if self.scheme == SCHEME_LOCK_GLOBAL:
            if not self.global_lock.acquire(th):
                yield from self.cpu.block(th)
        elif self.scheme == SCHEME_LOCK_COORD:
            for j in idx:
                lock = self.coord_locks.setdefault(int(j), _Lock())
                if not lock.acquire(th):
                    yield from self.cpu.block(th)
        elif self.scheme == SCHEME_ROUND_ROBIN:
            if self.turns[self.turn] != th.id:
                self.turn_waiting[th.id] = th
                yield from self.cpu.block(th)

    def release(self, th: _Thread, idx: np.ndarray):
        if self.scheme == SCHEME_LOCK_GLOBAL:
            woken = self.global_lock.release()
            if woken is not None:
                self.cpu.wake(woken)
        elif self.scheme == SCHEME_LOCK_COORD:
            for j in idx:
                woken = self.coord_locks[int(j)].release()
                if woken is not None:
                    self.cpu.wake(woken)
        elif self.scheme == SCHEME_ROUND_ROBIN:
            self.turn += 1
            if self.turn < self.turns.size:
                nxt = self.turn_waiting.pop(int(self.turns[self.turn]), None)
                if nxt is not None:
                    self.cpu.wake(nxt)


def overwrite(runs: list[list[int]], lo: int, hi: int) -> int:
    """An rmw store overwrites the stores ``lo .. hi-1`` of its coordinate (numbered in
    landing order): add them to ``runs`` (the coordinate's lost stores as disjoint
    ``[lo, hi)`` runs, in order; ``hi`` is past every run's end) and return how many were
    not lost before.  The runs a store reaches are the last ones: it pops those ending after
    ``lo`` and pushes their union with ``[lo, hi)``."""
    covered, start = 0, lo
    while runs and runs[-1][1] > lo:
        a, b = runs.pop()
        covered += b - max(a, lo)
        start = min(start, a)
    runs.append([start, hi])
    return hi - lo - covered


def _sample(sim: _Machine, th: _Thread, epoch: int, pos: int, e: int):
    """One sample, steps 1-5 of the model; returns inside its END event."""
    env, cpu, t, S, C, x = sim.env, sim.cpu, sim.terms, sim.S, sim.C, sim.x
    lo, hi = int(t.indptr[e]), int(t.indptr[e + 1])
    idx = t.indices[lo:hi]
    m = hi - lo
    # 1. the scheme's acquire (may block), then START in the event where it succeeds
    yield from sim.acquire(th, idx)
    k = sim.started
    sim.started += 1
    S.worker[k], S.epoch[k], S.position[k], S.term[k] = th.id, epoch, pos, e
    S.finished_at_start[k] = sim.finished
    S.t_start[k] = env.now
    row0 = sim.next_row
    sim.next_row += m if C is not None else 0
    # 2. READS
    left = sim.machine.miss_overlap  # miss ticks this sample may still hide (hwsim.model)
    xr = np.empty(m)
    locks = lock_ticks(sim.spec, sim.machine, m)  # what the locks took, paid on read 0
    for i in range(m):
        j = int(idx[i])
        paid, left = charged(sim.miss(th.core, j, sim.H), left)
        yield from cpu.run(th, sim.machine.read_cost + paid + (locks if i == 0 else 0))
        xr[i] = read_value(x, j, sim.inv_scale)
        sim.touch(th.core, j)
        if C is not None:
            r = row0 + i
            C.sample[r], C.coord[r], C.read_tick[r], C.read_value[r], C.read_op[r] = k, j, env.now, xr[i], sim.op
        sim.op += 1
    # 3. READ DONE: compute the update, then the compute delay
    S.t_read_done[k] = env.now
    S.read_seq[k] = sim.readdone
    sim.readdone += 1
    code, step0, beta, t0 = sim.sched
    gamma = step_at(code, step0, beta, t0, epoch, global_t(pos, th.id, sim.T))
    S.step[k] = gamma
    g = np.empty(m)
    u = np.empty(m)
    sim.problem.update(sim.problem.params, sim.problem.aux, idx, t.values[lo:hi], t.y[e], xr, gamma, g, u)
    yield from cpu.run(th, sim.delays[th.core].next())
    # 4. WRITES
    S.t_write_start[k] = env.now
    for i in range(m):
        j = int(idx[i])
        paid, left = charged(sim.miss(th.core, j, sim.HW), left)
        cost = sim.W + paid
        if sim.rmw:
            old = x[j]
            snap = sim.nstores[j]
            sim.touch(th.core, j)
            if C is not None:
                C.wread_op[row0 + i] = sim.op
            sim.op += 1
        yield from cpu.run(th, cost)
        d = encode_delta(x, u[i], sim.scale)
        if sim.rmw:
            x[j] = old
            over = int(sim.nstores[j]) - int(snap)  # stores that landed since this write's read
            if over > 0:
                sim.lost_updates += overwrite(sim.lost_runs.setdefault(j, []), int(snap), int(sim.nstores[j]))
                if C is not None:  # mark all of them (those already lost stay so)
                    r = sim.last_store_row[j]
                    for _ in range(over):
                        C.lost[r] = True
                        r = C.prev_store[r]
        add_value(x, j, d)
        sim.own(th.core, j)
        sim.nstores[j] += 1
        if C is not None:
            r = row0 + i
            C.write_tick[r], C.write_op[r] = env.now, sim.op
            C.delta[r] = d * sim.inv_scale if x.dtype == np.int64 else d
            C.prev_store[r] = sim.last_store_row[j]
            sim.last_store_row[j] = r
        sim.op += 1
    # 5. END
    S.t_end[k] = env.now
    S.end_seq[k] = sim.finished
    sim.finished += 1
    S.started_at_end[k] = sim.started
    sim.release(th, idx)


def _thread(sim: _Machine, th: _Thread):
    """A simulated thread: wait for the start, then epochs of samples, each ending at the barrier."""
    th.wakeup = sim.env.event()
    yield th.wakeup  # every thread is woken at tick 0, in thread order
    yield from sim.cpu.run(th, 0)
    while True:
        epoch = sim.epoch
        for pos, e in enumerate(sim.orders[epoch][th.id]):
            yield from _sample(sim, th, epoch, pos, int(e))
        if not (yield from sim.barrier(th)):
            return


def _starter(sim: _Machine):
    sim.wake_all()
    yield sim.env.timeout(0)


def run_reference(spec, machine: Machine, problem, coord_trace: bool = True):
    """Simulate ``spec`` on ``machine`` with SimPy; returns the raw arrays (see simulate)."""
    env = simpy.Environment()
    sim = _Machine(env, spec, machine, problem, coord_trace)
    sim.start_epoch(0)
    for th in sim.threads:
        env.process(_thread(sim, th))
    env.process(_starter(sim))
    env.run()
    if len(sim.checkpoints) != spec.epochs:
        raise RuntimeError(f"reference engine stopped after {len(sim.checkpoints)} of {spec.epochs} epochs "
                           "(a thread blocked forever: a bug in the engine)")
    return sim
