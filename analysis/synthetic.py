"""Traces from known timings: the oracle that calibration and overlap are tested against.

:func:`trace_from_phases` lays out each worker's samples back to back from given read,
compute and write durations (integer ticks) and fills every column of
``workload.trace.SAMPLE_SCHEMA`` exactly as an engine would: labels in the three orders
(ties broken by worker id, as in hwsim) and the two counters (a finish at the same tick as
a start is counted before it).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from workload.trace import SAMPLE_SCHEMA, conform


def _rank(t: np.ndarray, worker: np.ndarray) -> np.ndarray:
    order = np.lexsort((worker, t))
    r = np.empty(t.size, dtype=np.int64)
    r[order] = np.arange(t.size)
    return r


def trace_from_phases(worker, term, read, compute, write, *, start=None, epoch=None, step: float = 0.1,
                      gap=None) -> pd.DataFrame:
    """A SAMPLE_SCHEMA trace; arrays are per sample, in each worker's processing order.

    ``start``: per-worker start tick (default 0); ``gap``: idle ticks before each sample
    (default 0; e.g. a time-slice wait).
    """
    worker = np.asarray(worker, dtype=np.int64)
    n = worker.size
    read, compute, write = (np.asarray(a, dtype=np.int64) for a in (read, compute, write))
    gap = np.zeros(n, np.int64) if gap is None else np.asarray(gap, dtype=np.int64)
    if min(read.min(initial=0), compute.min(initial=0), write.min(initial=0), gap.min(initial=0)) < 0:
        raise ValueError("trace_from_phases: durations must be >= 0 ticks")
    workers = np.unique(worker)
    start = {w: 0 for w in workers} if start is None else {w: int(start[i]) for i, w in enumerate(workers)}
    t_start = np.empty(n, np.int64)
    position = np.empty(n, np.int64)
    for w in workers:
        idx = np.flatnonzero(worker == w)
        dur = gap[idx] + read[idx] + compute[idx] + write[idx]
        ends = start[w] + np.cumsum(dur)
        t_start[idx] = ends - dur + gap[idx]
        position[idx] = np.arange(idx.size)
    t_read = t_start + read
    t_wstart = t_read + compute
    t_end = t_wstart + write
    start_seq = _rank(t_start, worker)
    ends_sorted = np.sort(t_end)
    starts_sorted = np.sort(t_start)
    finished_at_start = np.searchsorted(ends_sorted, t_start, side="right")
    started_at_end = np.searchsorted(starts_sorted, t_end, side="left")
    df = pd.DataFrame({
        "sample": start_seq, "worker": worker, "epoch": np.zeros(n, np.int64) if epoch is None else epoch,
        "position": position, "term": np.asarray(term, dtype=np.int64), "step": step,
        "t_start": t_start, "t_read_done": t_read, "t_write_start": t_wstart, "t_end": t_end,
        "start_seq": start_seq, "read_seq": _rank(t_read, worker), "end_seq": _rank(t_end, worker),
        "finished_at_start": finished_at_start, "started_at_end": started_at_end,
    })
    df = df.sort_values("sample", kind="stable")
    return conform(df, SAMPLE_SCHEMA, what="synthetic trace")
