"""The machine model: every rule both engines implement, written down once.

Both engines (:mod:`hwsim.reference`, SimPy, one event per coordinate access; and
:mod:`hwsim.fast`, a jitted event loop) implement exactly the rules below; the
property test ``tests/properties/test_hwsim_equivalence.py`` holds them to it bit for bit.
DESIGN.md ("hwsim's machine model") gives the idea; this is the letter.

Threads, cores, placement
    Thread w (w = 0..T-1, T = ``spec.threads``) processes worker w's order
    (:func:`workload.order.worker_orders`).  When T <= ``machine.cores`` thread w is pinned
    to core w for the whole run (no time slicing, ``quantum`` ignored).  When T > cores the
    OS time-slices (below).

Events and the tie-break
    Time is an integer tick (1 ns).  The run is a sequence of *events*; each belongs to one
    core and happens at one tick, and each core has at most one pending event.  The next
    event is always the pending one with the smallest ``(tick, core)``: at equal ticks the
    lower-numbered core goes first.  Every wait, even a zero-tick one, ends in a new
    event (so a core that gave another core work at tick t lets that core act at t before
    its own zero-tick continuation if that core's number is lower).  An event runs its
    thread's program from one wait to the next; everything between two waits happens in
    that event, in program order.

One sample (thread w on core c; term e with support j_0 < ... < j_{m-1})
    1. ACQUIRE, then START: the scheme's *acquire* (below) first; it may block.  START
       happens in the event where the acquire succeeds -- the same event for a free lock
       (one's own turn, or no lock at all), the wake-up event for a blocked thread:
       ``start_seq = started++`` (the sample's id), ``finished_at_start = finished``,
       ``t_start = now``.  So a sample waiting for a lock or turn has read nothing and is
       not in flight, as realrun counts it (its tickets and clock are taken inside the
       lock, :mod:`realrun.kernels`): under ``lock-global`` and ``round-robin`` no two
       samples overlap (τ_k = 0), under ``lock-coord`` only samples with disjoint
       supports can.
    2. READS, for i = 0..m-1: *issue* read i -- its cost ``read_cost + miss(c, j_i)`` is
       fixed now -- and wait that many ticks; at the event that ends the wait the read
       *completes*: x̂[i] = ``read_value(x, j_i)`` (value at that moment), the core touches
       j_i's line, and read i+1 is issued in the same event.
    3. READ DONE (in the event of the last read's completion; in the START event when
       m = 0): ``t_read_done = now``, ``read_seq = readdone++``; the update
       ``u = problem.update(x̂, γ)`` is computed with γ = ``step_at(..., epoch,
       t = position·T + w)``; the compute delay d is the next draw of the *running*
       core's delay stream; wait d ticks.
    4. WRITES: at the event after the delay ``t_write_start = now``; for i = 0..m-1: issue
       write i -- cost ``write_cost + miss(c, j_i)`` (an atomic-instruction store,
       :func:`atomic_stores`: ``machine.atomic_store_cost`` instead of ``write_cost``), miss
       decided first; a non-atomic
       (``rmw``) write then reads the raw stored value ``old = x[j_i]`` now and touches the
       line -- and wait the cost; at the event that ends the wait the store *lands*:
       atomic: ``add_value(x, j, encode_delta(x, u_i))``; rmw: ``x[j] = old`` then
       ``add_value(x, j, encode_delta(x, u_i))``.  Every store lands even when its delta
       is 0, so timing never depends on values.  The storing core becomes the only valid
       holder of the line.  The next write is issued in the same event.
    5. END (event of the last store; the write-start event when m = 0): ``t_end = now``,
       ``end_seq = finished++``, ``started_at_end = started``; the scheme's *release*; then,
       in the same event, the next sample's ACQUIRE (and START when it succeeds) or, after
       the thread's last sample, the epoch barrier.

Memory order, lost updates
    Every memory effect (read completion, rmw read, store) gets the next number of one
    global operation counter ``op`` (the coordinate trace keeps ``read_op``, ``wread_op``
    and ``write_op``).  An rmw store overwrites every store to the same coordinate that
    landed after its own read: those writes are marked *lost* (the coordinate trace's
    ``lost``) and counted once each in ``lost_updates`` (a later rmw store whose read
    preceded the overwrite can bring a lost delta back; :mod:`hwsim.checks` follows the
    exact version chains).  ``hogwild`` uses ``spec.write_mode``; ``serial``,
    ``hogwild-atomic`` and the lock / turn schemes store atomically (with a lock the two
    modes give the same values).

Coherence (``coherence_cost`` = H > 0, ``atomic_coherence_cost`` = A > 0 or ``store_coherence_cost`` = S > 0)
    Line of coordinate j: ``j // line_coords``.  Each line keeps the set of cores holding a
    valid copy, initially all cores.  ``miss(c, j) = H`` when c is not in the set of j's
    line, else 0, decided when the access is issued; for an *atomic-instruction* store
    (:func:`atomic_stores`: ``hogwild-atomic``, ``hogwild`` with ``write_mode =
    "atomic"``) the miss costs A (``machine.atomic_miss_cost``: H unless set) instead, and
    for any other store (with rmw writes: the write, its read included) S
    (``machine.store_miss_cost``: ``store_coherence_cost``, H unless set).  A read
    completion or an rmw read by c adds c to the set; a store by c makes the set ``{c}``
    (whatever it cost: with S = 0 the line still changes hands).  So an access costs H
    (A, S) exactly when another core stored to the line since c last touched it.

Hidden misses (``miss_overlap`` = B > 0)
    At START the sample's budget is B.  Each access's miss cost (H, A or S, as above; 0 on a
    hit), decided at issue, is first taken from what is left of the budget: the access
    pays ``max(0, miss - left)`` and the budget drops by the part hidden.  Reads come
    first, then writes, in program order, so a sample hides its earliest misses.  B = 0
    changes nothing.  (The core overlaps line transfers with the row's own memory
    stalls; ``analysis.calibrate`` measures B on one thread.)

Schemes: acquire and release
    * ``serial``, ``hogwild``, ``hogwild-atomic``: nothing.
    * ``lock-global``: one lock, taken at acquire, released at END.
    * ``lock-coord`` (AIG): the support's per-coordinate locks, taken one by one in
      ascending coordinate order at acquire; released in ascending order at END.
    * ``round-robin``: a turn follows the epoch's round-robin interleaving of the worker
      orders (:func:`workload.serial.interleave`); a sample proceeds at acquire only on its
      worker's turn; END passes the turn on.  The final model equals
      :func:`workload.serial.serial_oracle`.
    A free lock (or one's own turn) is taken in the same event.  Otherwise the thread
    blocks, queued FIFO; a release hands the lock (turn) straight to the queue's head and
    *wakes* it.  Taking and handing over a lock takes no time of its own; a sample that
    took locks pays ``lock_cost`` ticks per lock (``machine.lock_cost``; m locks under
    ``lock-coord``, one under ``lock-global``: :func:`lock_ticks`) on top of its first read's
    cost -- the locked instructions that took them, paid while it holds them.

Blocking and waking
    Pinned: a blocked thread keeps its core idle; woken at tick t it continues with a new
    event at (t, its core).  Time-sliced: a blocking thread gives its core up at once (see
    below); a woken thread is dispatched onto the lowest-numbered idle core if there is one,
    else appended to the ready queue.  Several threads woken in one event are woken in
    thread order.

Time slicing (T > cores; ``quantum`` Q, ``switch_cost`` S)
    A FIFO ready queue.  Dispatching thread h onto core c at tick t gives h the quantum
    [t+S, t+S+Q) and h's pending work r (the rest of an interrupted wait, 0 after a wake)
    continues after the switch: h needs S + r ticks from t.  Whenever a running thread
    needs d ticks from ``now`` and ``now + d`` <= its quantum end qe, its event is at
    ``now + d``; otherwise there is an *expiry event* at qe (on that core), where the
    thread still needs d - (qe - now): if the ready queue is empty it gets a new quantum
    [qe, qe+Q) and goes on (no switch), else it joins the back of the queue and the core
    dispatches the head.  A core whose thread blocks dispatches the head of the queue, or
    goes idle.  Threads keep ``started``/``finished`` counts while preempted: a preempted
    sample stays in flight (this is how τ becomes unbounded).

Epochs
    Every thread ends its epoch at a barrier (blocking).  The thread that arrives last
    releases it in its own event at tick t_e: the history row of the epoch is taken at
    t_e (simulated seconds = t_e·1e-9), and all threads are woken in thread order, each to
    START its next epoch.  The run starts the same way: at tick 0 all threads are woken
    in thread order.  The run ends at the last barrier (``ticks``).

Delays
    Core c draws from ``machine.delay_of(c)`` with the generator
    ``stream(spec.seed, STREAM_CORE, c)``, in blocks of :data:`hwsim.delays.DELAY_BLOCK`
    consumed in order (:class:`hwsim.delays.DelayStream`).

Not modelled (on purpose, to keep the rules exact and small)
    Cold caches (every core starts with a valid copy of every line), memory bandwidth and
    queueing in the memory system, the round-robin turn's hand-over (it costs no ticks;
    locks cost ``lock_cost`` and an atomic-instruction store ``atomic_write_cost``, both
    defaulting to a plain access), the instruction cost of the gradient beyond the drawn
    delay, and NUMA.  Calibrate ``read_cost``, ``write_cost``, ``atomic_write_cost``,
    ``lock_cost``, the coherence costs and the delay model to absorb them
    (analysis.calibrate).

Arithmetic
    Only through :func:`workload.fixed.read_value`, :func:`~workload.fixed.encode_delta`,
    :func:`~workload.fixed.add_value` and ``problem.update``.  The trace's ``delta`` is the
    written delta as a float (fixed point: ``encode_delta(u)·2^-bits``, exact) and
    ``read_value`` the float value read.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workload.fixed import to_float
from workload.order import worker_orders
from workload.serial import history_row
from workload.spec import RunSpec
from workload.trace import COORD_SCHEMA, HISTORY_SCHEMA, SAMPLE_SCHEMA

from .machine import Machine

SCHEME_NONE, SCHEME_LOCK_GLOBAL, SCHEME_LOCK_COORD, SCHEME_ROUND_ROBIN = 0, 1, 2, 3
#: scheme -> (acquire/release code, rmw writes?) ; write mode None = take spec.write_mode
SCHEMES = {
    "serial": (SCHEME_NONE, False),
    "hogwild": (SCHEME_NONE, None),
    "hogwild-atomic": (SCHEME_NONE, False),
    "lock-global": (SCHEME_LOCK_GLOBAL, False),
    "lock-coord": (SCHEME_LOCK_COORD, False),
    "round-robin": (SCHEME_ROUND_ROBIN, False),
}

#: Extra per-row columns (aligned with the coordinate trace) giving the memory order.
ORDER_SCHEMA: dict[str, str] = {"read_op": "int64", "wread_op": "int64", "write_op": "int64"}


def charged(miss, left):
    """A miss of ``miss`` ticks against what is ``left`` of the sample's hidden-miss budget
    (``machine.miss_overlap``; "Hidden misses" above): (ticks the access pays, budget left).
    Both engines charge every miss through it (the fast engine compiles it inline)."""
    hidden = miss if miss < left else left
    return miss - hidden, left - hidden


def lock_ticks(spec: RunSpec, machine, m: int) -> int:
    """Ticks a sample of ``m`` coordinates pays for the locks it took ("Schemes: acquire
    and release"): ``machine.lock_cost`` per lock -- m under ``lock-coord``, one under
    ``lock-global`` -- and 0 for the other schemes or an empty sample (which issues no read
    to add them to).  Both engines add it to read 0's cost."""
    if m == 0:
        return 0
    locks = m if spec.scheme == "lock-coord" else 1 if spec.scheme == "lock-global" else 0
    return int(machine.lock_cost) * locks


def atomic_stores(spec: RunSpec) -> bool:
    """Whether the spec's stores are atomic instructions in realrun (a compare-and-swap
    loop: ``hogwild-atomic``; ``hogwild`` with ``write_mode = "atomic"``) -- the stores
    whose miss costs ``machine.atomic_miss_cost``.  The lock and turn schemes store
    plainly under their lock; ``serial`` runs alone."""
    return spec.scheme == "hogwild-atomic" or (spec.scheme == "hogwild" and spec.write_mode == "atomic")


def scheme_code(spec: RunSpec) -> tuple[int, bool]:
    """(acquire/release code, rmw) for the spec's scheme; NotImplementedError if unsupported."""
    if spec.scheme not in SCHEMES:
        raise NotImplementedError(
            f"hwsim does not simulate scheme {spec.scheme!r} yet (supported: {', '.join(SCHEMES)}); "
            "run it with realrun, or pick a supported scheme")
    code, rmw = SCHEMES[spec.scheme]
    if rmw is None:
        rmw = spec.write_mode == "rmw"
    return code, bool(rmw)


@dataclass(frozen=True, eq=False)
class SimResult:
    """What :func:`hwsim.simulate` returns.

    x            final model in its stored dtype (int64 for ``fixed``)
    samples      SAMPLE_SCHEMA table, one row per sample, ordered by ``sample`` (= start order)
    coords       COORD_SCHEMA table (one row per support coordinate of each sample, in
                 sample then support order) or None when ``coord_trace`` is False or a file
    order        memory-operation numbers aligned with ``coords`` (ORDER_SCHEMA) or None
    history      HISTORY_SCHEMA table; time = simulated seconds
    ticks        simulated length of the run (the last barrier's tick)
    lost_updates number of writes overwritten by an rmw store (each counted once)
    engine       "reference" or "fast" (the engine that actually ran)
    machine, spec
    x0           initial model (stored dtype), for the checks
    coords_path  the Parquet file the coordinate trace was streamed to (``coord_trace`` a
                 path or :class:`hwsim.coordtrace.CoordTraceFile`), else None; the file holds
                 ``coords`` then ``order``'s columns; :meth:`coord_frames` reads it back
    """

    x: np.ndarray
    samples: pd.DataFrame
    coords: pd.DataFrame | None
    order: pd.DataFrame | None
    history: pd.DataFrame
    ticks: int
    lost_updates: int
    engine: str
    machine: Machine
    spec: RunSpec
    x0: np.ndarray
    coords_path: Path | None = None

    def x_float(self) -> np.ndarray:
        return to_float(self.x, self.spec.fixed_point_bits)

    def has_coords(self) -> bool:
        """Whether the coordinate trace was kept (in memory or in a file)."""
        return self.coords is not None or self.coords_path is not None

    def coord_frames(self) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """(coords, order): the in-memory coordinate trace, or the streamed file read back
        (whole, into memory).  ValueError when the run kept none."""
        if self.coords is not None:
            return self.coords, self.order
        if self.coords_path is not None:
            from .coordtrace import read_coord_trace

            return read_coord_trace(self.coords_path)
        raise ValueError("this needs the coordinate trace, which this run did not keep; rerun "
                         "hwsim.simulate(..., coord_trace=True) (in memory) or coord_trace='coords.parquet' "
                         "(streamed to a file)")


def all_orders(spec: RunSpec, n_terms: int) -> list[list[np.ndarray]]:
    """Per epoch, per thread, the int64 term order."""
    return [[np.ascontiguousarray(o, dtype=np.int64) for o in worker_orders(spec, n_terms, e)]
            for e in range(spec.epochs)]


def turn_sequence(orders: list[np.ndarray]) -> np.ndarray:
    """Workers in round-robin interleaving order (which worker's sample comes next)."""
    sizes = np.array([o.size for o in orders], dtype=np.int64)
    longest = int(sizes.max()) if sizes.size else 0
    i = np.repeat(np.arange(longest), sizes.size)
    w = np.tile(np.arange(sizes.size), longest)
    keep = i < sizes[w]
    return np.ascontiguousarray(w[keep], dtype=np.int64)


class SampleArrays:
    """Per-sample columns, indexed by the sample id (start order); filled by an engine."""

    COLS = ("worker", "epoch", "position", "term", "step", "t_start", "t_read_done", "t_write_start", "t_end",
            "read_seq", "end_seq", "finished_at_start", "started_at_end")

    def __init__(self, total: int):
        for c in self.COLS:
            setattr(self, c, np.full(total, -1, dtype=np.float64 if c == "step" else np.int64))

    def frame(self) -> pd.DataFrame:
        n = self.worker.size
        d = {"sample": np.arange(n, dtype=np.int64)}
        for c in self.COLS:
            d[c] = getattr(self, c)
        d["start_seq"] = d["sample"]
        return _frame(d, SAMPLE_SCHEMA)


class CoordArrays:
    """Per-coordinate-row columns (rows: sample id, then support position)."""

    def __init__(self, rows: int):
        self.sample = np.full(rows, -1, dtype=np.int64)
        self.coord = np.full(rows, -1, dtype=np.int64)
        self.read_tick = np.full(rows, -1, dtype=np.int64)
        self.read_value = np.zeros(rows, dtype=np.float64)
        self.write_tick = np.full(rows, -1, dtype=np.int64)
        self.delta = np.zeros(rows, dtype=np.float64)
        self.lost = np.zeros(rows, dtype=np.bool_)
        self.read_op = np.full(rows, -1, dtype=np.int64)
        self.wread_op = np.full(rows, -1, dtype=np.int64)
        self.write_op = np.full(rows, -1, dtype=np.int64)
        self.prev_store = np.full(rows, -1, dtype=np.int64)  # previous store row on the same coordinate

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        return (_frame({c: getattr(self, c) for c in COORD_SCHEMA}, COORD_SCHEMA),
                _frame({c: getattr(self, c) for c in ORDER_SCHEMA}, ORDER_SCHEMA))


def _frame(columns: dict, schema: dict) -> pd.DataFrame:
    """A DataFrame with the schema's columns and dtypes (casting only columns that need it)."""
    return pd.DataFrame({c: np.asarray(columns[c]).astype(t, copy=False) for c, t in schema.items()}, copy=False)


def history_frame(problem, spec: RunSpec, x0: np.ndarray, checkpoints: list[tuple[int, int, int, Any]],
                  with_opt: bool) -> pd.DataFrame:
    """History rows: the initial point, then one per (epoch, samples, tick, x_state) checkpoint."""
    x_star = None
    if with_opt:
        sol = problem.solution()
        x_star = None if sol is None else sol.x
    rows = [history_row(problem, x0, spec, 0, 0, 0.0, x_star)]
    for epoch, samples, tick, x in checkpoints:
        rows.append(history_row(problem, x, spec, epoch, samples, tick * 1e-9, x_star))
    return pd.DataFrame({c: np.array([r[c] for r in rows], dtype=t) for c, t in HISTORY_SCHEMA.items()})
