"""How much of a cache-line transfer a core hides when several are in flight.

:func:`realrun.calibrate.pingpong` times *one* line handed back and forth: every transfer
waits for the previous one, so it measures latency.  An SGD sample's reads of the model
are independent loads, and an out-of-order core issues the misses among them together
(memory-level parallelism); what a transfer costs a sample is then less than its latency.

:func:`pingpong_lines` hands ``k`` lines over per round instead of one: the receiving side
polls all ``k`` lines in one pass of independent loads until every one carries the round's
value, then writes all ``k`` back.  A round moves each line twice (there and back), so
``round / 2 = a + b·k`` where ``a`` is the latency the round cannot hide and ``b`` the
*marginal* cost of one more line in flight.  :func:`overlap_fit` fits that line over
``k = 1, 2, 4, …`` (least squares on the per-``k`` medians); ``a + b`` is the cost of a
lone transfer (≈ the one-line ping-pong) and ``(a + b) / b`` how many transfers the core
overlaps once many are outstanding.
"""
from __future__ import annotations

import os
import threading
from typing import NamedTuple, Sequence

import numpy as np
from numba import njit

from .atomics import calibrate_tsc, load_acquire, spin_pause, store_release, tsc

#: int64 slots per line: each polled value alone on a 128-byte pair of lines (the adjacent-line
#: prefetcher fetches lines in pairs).
STRIDE = 16


class OverlapFit(NamedTuple):
    table: object  # DataFrame: k, half_round_ns (median), per_line_ns, batches
    latency_ns: float  # a: what a round cannot hide
    marginal_ns: float  # b: one more line in flight
    lone_ns: float  # a + b
    overlap: float  # (a + b) / b
    cores: tuple


@njit(nogil=True)
def _lines_side(buf, k, parity, rounds, stamps, batch):
    """Wait until all k lines carry this side's round value (one pass of independent loads
    per poll), then write the next value into each; ``parity`` 0 starts and keeps time."""
    for i in range(rounds):
        want = 2 * i + parity
        while True:
            ok = 0
            for j in range(k):
                ok += load_acquire(buf, j * STRIDE) == want
            if ok == k:
                break
            spin_pause()
        for j in range(k):
            store_release(buf, j * STRIDE, want + 1)
        if parity == 0 and i % batch == 0:
            stamps[i // batch] = tsc()
    if parity == 0 and rounds > 0:
        stamps[rounds // batch] = tsc()
    return 0


def two_cpus(cores, who: str) -> tuple[int, int]:
    """The two CPUs a two-thread microbenchmark pins to: ``cores`` checked, or the first
    two of this process's affinity; ``who`` names the caller in the errors."""
    cpus = sorted(os.sched_getaffinity(0))
    if cores is None:
        if len(cpus) < 2:
            raise RuntimeError(f"{who}: needs two CPUs, this process may run on {cpus} only")
        return cpus[0], cpus[1]
    if len(cores) != 2 or cores[0] == cores[1] or not set(cores) <= set(cpus):
        raise ValueError(f"{who}: cores = {cores!r}: must be two different CPUs among {cpus}")
    return tuple(cores)


def run_pair(cores: tuple[int, int], side) -> None:
    """Run ``side(parity)`` for parity 1 and 0 on two threads, each pinned to ``cores[parity]``
    (parity 1 starts first: it waits for the other's first hand-over), and re-raise the first
    error a side raised once both have ended."""
    errors = []

    def pinned(parity):
        try:
            os.sched_setaffinity(0, {cores[parity]})
            side(parity)
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the caller's thread
            errors.append(exc)

    ths = [threading.Thread(target=pinned, args=(q,), daemon=True) for q in (1, 0)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    if errors:
        raise errors[0]


def pingpong_lines(k: int, *, rounds: int = 20_000, batch: int = 200, cores: tuple[int, int] | None = None,
                   ns_per_tick: float | None = None) -> np.ndarray:
    """Per-batch half round trips (ns) with ``k`` lines handed over per round (module docstring)."""
    for name, v, lo in (("k", k, 1), ("rounds", rounds, 2), ("batch", batch, 1)):
        if not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"pingpong_lines: {name} = {v!r}: must be an integer >= {lo}")
    if rounds < 2 * batch:
        raise ValueError(f"pingpong_lines: rounds = {rounds} must be at least 2 * batch = {2 * batch}")
    cores = two_cpus(cores, "pingpong_lines")
    if ns_per_tick is None:
        ns_per_tick = calibrate_tsc()[0]
    buf = np.zeros(int(k) * STRIDE + STRIDE, dtype=np.int64)
    n_batches = rounds // batch
    stamps = np.zeros(n_batches + 1, dtype=np.int64)
    _lines_side(buf, 1, 0, 0, stamps, batch)  # compile outside the measurement
    run_pair(cores, lambda parity: _lines_side(buf, int(k), parity, n_batches * batch, stamps, batch))
    return np.diff(stamps) * ns_per_tick / batch / 2.0


def overlap_fit(ks: Sequence[int] = (1, 2, 4, 8, 16, 32), *, rounds: int = 20_000, batch: int = 200,
                cores: tuple[int, int] | None = None) -> OverlapFit:
    """Fit ``half round = a + b·k`` over ``ks`` (module docstring); each k's figure is the
    median over its batches."""
    import pandas as pd

    ks = sorted({int(k) for k in ks})
    if len(ks) < 2 or ks[0] < 1:
        raise ValueError(f"overlap_fit: ks = {ks!r}: need at least two distinct integers >= 1, e.g. (1, 2, 4, 8)")
    cores = two_cpus(cores, "overlap_fit")
    npt = calibrate_tsc()[0]
    rows = []
    for k in ks:
        half = pingpong_lines(k, rounds=rounds, batch=batch, cores=cores, ns_per_tick=npt)
        med = float(np.median(half))
        rows.append({"k": k, "half_round_ns": med, "per_line_ns": med / k, "batches": int(half.size)})
    return _line(pd.DataFrame(rows), cores)


def pooled_fit(fits: Sequence[OverlapFit]) -> OverlapFit:
    """One :class:`OverlapFit` from several taken at different times (a study probes
    between its repeats, as the host's caches and placement may change under it): per
    ``k``, the median of the fits' half rounds (``half_round_lo`` / ``half_round_hi``: their
    range), then the same least-squares line.  The fits must share their ``k`` values."""
    import pandas as pd

    fits = list(fits)
    if not fits:
        raise ValueError("pooled_fit: fits is empty: pass at least one overlap_fit() result")
    ks = [tuple(int(k) for k in f.table["k"]) for f in fits]
    if any(k != ks[0] for k in ks):
        raise ValueError(f"pooled_fit: the fits were taken at different k ({sorted(set(ks))}); take them with "
                         "the same ks")
    halves = np.array([f.table["half_round_ns"].to_numpy(np.float64) for f in fits])
    med = np.median(halves, axis=0)
    table = pd.DataFrame({"k": ks[0], "half_round_ns": med, "per_line_ns": med / np.asarray(ks[0]),
                          "batches": np.sum([f.table["batches"].to_numpy() for f in fits], axis=0),
                          "half_round_lo": halves.min(axis=0), "half_round_hi": halves.max(axis=0),
                          "fits": len(fits)})
    return _line(table, fits[0].cores)


def _line(table, cores) -> OverlapFit:
    """Least squares ``half_round_ns = a + b·k`` over the table's rows."""
    b, a = np.polyfit(table["k"].to_numpy(np.float64), table["half_round_ns"].to_numpy(np.float64), 1)
    b = max(float(b), 1e-9)
    return OverlapFit(table=table, latency_ns=float(a), marginal_ns=b, lone_ns=float(a) + b,
                      overlap=(float(a) + b) / b, cores=cores)
