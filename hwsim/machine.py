"""The simulated machine: cores, memory costs, delay models, coherence, time slicing.

:class:`Machine` is a frozen, keyword-only dataclass; its fields are stored as given and
checked once by :func:`validate`, whose errors (:class:`MachineError`) name the field, the
value, what is allowed and the fix.  The rules the fields feed are in :mod:`hwsim.model`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .delays import Constant, DelayModel, delay_from_dict


class MachineError(ValueError):
    """A machine field holds a value that is not allowed (message: field, value, allowed, fix)."""

    def __init__(self, name: str, value: Any, allowed: str, fix: str):
        self.field = name
        self.value = value
        super().__init__(f"Machine.{name} = {value!r}: {allowed}; {fix}")


@dataclass(frozen=True, kw_only=True)
class Machine:
    """A simulated shared-memory machine (1 tick = 1 ns).

    cores
        Number of cores.  Thread w runs pinned on core w when ``spec.threads <= cores``;
        with more threads than cores the OS time-slices (``quantum``, ``switch_cost``).
    read_cost, write_cost
        Ticks per coordinate read / write (integers >= 1).
    lock_cost
        Ticks a sample pays per lock it takes (``lock-coord``: one per coordinate;
        ``lock-global``: one), added to its first read (:func:`hwsim.model.lock_ticks`): the
        locked instructions that take and release them.  0 (default) = free locks.
    atomic_write_cost
        Ticks per *atomic-instruction* store (``hogwild-atomic``, and ``hogwild`` with
        ``write_mode = "atomic"``: realrun's compare-and-swap loop), ``None`` (default) =
        ``write_cost``.  A locked instruction drains the store buffer and waits for its own
        result, so on hardware it costs several times a plain store even alone on one core
        (``analysis.calibrate.atomic_write_ns``: from a 1-thread run of such a scheme).
    delay
        The compute-delay model (:mod:`hwsim.delays`) of every core, or a tuple with one
        model per core.
    coherence_cost
        Extra ticks for a read or write of a cache line that another core wrote since this
        core last touched it (0 = off).
    atomic_coherence_cost
        The same extra ticks for an *atomic-instruction* store (``hogwild-atomic``, and
        ``hogwild`` with ``write_mode = "atomic"``: realrun's compare-and-swap): ``None``
        (default) = ``coherence_cost``.  A locked instruction is a full barrier, so its
        line transfer is not overlapped with other misses as plain loads and stores are:
        on hardware it costs about one lone transfer (the ping-pong), while a plain miss
        in a burst costs much less (:func:`analysis.calibrate.coherence_in_flight`).
    store_coherence_cost
        The same extra ticks for a *plain* store (every other scheme's write; with
        ``write_mode = "rmw"`` the write's load and store together): ``None`` (default) =
        ``coherence_cost``.  0 says the core never waits for a write's line: nothing later
        in the thread depends on a plain store (it retires into the store buffer) or on an
        rmw write's load (it feeds only its own store), so an out-of-order core runs on into
        the next sample while the line arrives -- unlike a read, whose value the gradient
        needs.  The line still changes hands when the store lands: the other cores' copies
        are invalidated and lost updates are counted as before.
    miss_overlap
        Ticks of coherence-miss time per sample that the core hides under the sample's own
        memory stalls (0 = none, the default).  Each sample starts with this budget; every
        miss it pays (reads, then writes, in program order) is first taken from what is left
        of it and only the rest is charged.  On hardware an out-of-order core overlaps the
        model lines' transfers with the row's own cache misses: a latency-bound visit (rows in
        random order, no prefetch) hides them all, a cache-friendly one hides few.  Calibrate
        it as the 1-thread per-sample time minus that of the same kernel on cache-resident
        rows (:func:`analysis.calibrate.memory_stall_ns`).
    line_coords
        Coordinates per 64-byte cache line (8 float64 / int64 values).
    quantum, switch_cost
        Time slicing when ``spec.threads > cores``: a thread runs for ``quantum`` ticks,
        then waits for a core; taking a core costs ``switch_cost`` ticks.  ``None`` = off
        (then ``spec.threads`` must not exceed ``cores``).
    """

    cores: int = 1
    read_cost: int = 1
    write_cost: int = 1
    atomic_write_cost: int | None = None
    lock_cost: int = 0
    delay: Any = field(default_factory=lambda: Constant(50))
    coherence_cost: int = 0
    atomic_coherence_cost: int | None = None
    store_coherence_cost: int | None = None
    miss_overlap: int = 0
    line_coords: int = 8
    quantum: int | None = None
    switch_cost: int | None = None

    def __post_init__(self):
        validate(self)

    def delay_of(self, core: int) -> DelayModel:
        """The delay model core ``core`` draws from."""
        d = self.delay[core] if isinstance(self.delay, tuple) else self.delay
        return d.for_core(core)

    @property
    def atomic_miss_cost(self) -> int:
        """Ticks an atomic-instruction store pays on a miss (``atomic_coherence_cost``, or
        ``coherence_cost`` when that is None)."""
        return int(self.coherence_cost if self.atomic_coherence_cost is None else self.atomic_coherence_cost)

    @property
    def atomic_store_cost(self) -> int:
        """Ticks an atomic-instruction store takes before a miss (``atomic_write_cost``, or
        ``write_cost`` when that is None)."""
        return int(self.write_cost if self.atomic_write_cost is None else self.atomic_write_cost)

    @property
    def store_miss_cost(self) -> int:
        """Ticks a plain store pays on a miss (``store_coherence_cost``, or ``coherence_cost``
        when that is None)."""
        return int(self.coherence_cost if self.store_coherence_cost is None else self.store_coherence_cost)

    @property
    def coherence_tracked(self) -> bool:
        """Whether any access can miss (the engines keep per-line copy sets only then)."""
        return self.coherence_cost > 0 or self.atomic_miss_cost > 0 or self.store_miss_cost > 0

    @property
    def sliced(self) -> bool:
        return self.quantum is not None

    def replace(self, **changes) -> "Machine":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """A TOML-able mapping (``None`` fields are left out)."""
        d = {"cores": int(self.cores), "read_cost": int(self.read_cost), "write_cost": int(self.write_cost),
             "coherence_cost": int(self.coherence_cost), "line_coords": int(self.line_coords)}
        if isinstance(self.delay, tuple):
            d["delay"] = [m.to_dict() for m in self.delay]
        else:
            d["delay"] = self.delay.to_dict()
        if self.atomic_write_cost is not None:
            d["atomic_write_cost"] = int(self.atomic_write_cost)
        if self.lock_cost:
            d["lock_cost"] = int(self.lock_cost)
        if self.atomic_coherence_cost is not None:
            d["atomic_coherence_cost"] = int(self.atomic_coherence_cost)
        if self.store_coherence_cost is not None:
            d["store_coherence_cost"] = int(self.store_coherence_cost)
        if self.miss_overlap:
            d["miss_overlap"] = int(self.miss_overlap)
        if self.quantum is not None:
            d["quantum"] = int(self.quantum)
        if self.switch_cost is not None:
            d["switch_cost"] = int(self.switch_cost)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Machine":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise MachineError(unknown[0], d[unknown[0]], f"not a Machine field (fields: {', '.join(sorted(known))})",
                               "remove it or fix its spelling")
        d = dict(d)
        if "delay" in d:
            dl = d["delay"]
            d["delay"] = tuple(delay_from_dict(x) for x in dl) if isinstance(dl, (list, tuple)) else delay_from_dict(dl)
        return cls(**d)


def _int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def validate(m: Machine) -> None:
    """The one place where a machine is checked."""

    def need_int(name, lo, example):
        v = getattr(m, name)
        if not _int(v) or v < lo:
            raise MachineError(name, v, f"must be an integer >= {lo}", f"set {name}, e.g. {name}={example}")

    need_int("cores", 1, 4)
    need_int("read_cost", 1, 1)
    need_int("write_cost", 1, 1)
    need_int("coherence_cost", 0, 0)
    need_int("lock_cost", 0, 0)
    for name, lo, same, example in (("atomic_write_cost", 1, "write_cost", 5),
                                    ("atomic_coherence_cost", 0, "coherence_cost", 30),
                                    ("store_coherence_cost", 0, "coherence_cost", 0)):
        v = getattr(m, name)
        if v is not None and (not _int(v) or v < lo):
            raise MachineError(name, v, f"must be an integer >= {lo} or None (None: the same as {same})",
                               f"e.g. {name}={example}, or leave it out")
    need_int("miss_overlap", 0, 0)
    need_int("line_coords", 1, 8)
    if isinstance(m.delay, tuple):
        if len(m.delay) != m.cores:
            raise MachineError("delay", m.delay, f"a tuple of delay models needs one per core ({m.cores})",
                               "give exactly `cores` models or a single model for all cores")
        bad = [x for x in m.delay if not isinstance(x, DelayModel)]
    else:
        bad = [] if isinstance(m.delay, DelayModel) else [m.delay]
    if bad:
        raise MachineError("delay", bad[0], "must be a hwsim.delays model (Constant, Exponential, ...)",
                           "e.g. delay=hwsim.delays.Constant(50)")
    if (m.quantum is None) != (m.switch_cost is None):
        raise MachineError("quantum" if m.quantum is None else "switch_cost",
                           None, "quantum and switch_cost are set together (time slicing on) or both None (off)",
                           "set both, e.g. quantum=100_000, switch_cost=2_000, or neither")
    if m.quantum is not None:
        need_int("quantum", 1, 100_000)
        need_int("switch_cost", 0, 2_000)


def check_fits(machine: Machine, threads: int) -> None:
    """Raise when ``threads`` need time slicing and the machine has none."""
    if threads > machine.cores and not machine.sliced:
        raise MachineError("quantum", None, f"spec.threads = {threads} > cores = {machine.cores} needs time slicing",
                           "set quantum and switch_cost, or use at most `cores` threads")


def line_count(n: int, line_coords: int) -> int:
    return max(1, math.ceil(n / line_coords))
