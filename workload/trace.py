"""The trace schema both engines emit, and its I/O (Parquet or gzipped CSV, atomic).

Sample-level table: one row per processed sample.

=================  =======  ===============================================================
column             dtype    meaning
=================  =======  ===============================================================
sample             int64    row id: the sample's position in *start* order (= start_seq)
worker             int32    worker (thread / simulated core) that processed it
epoch              int32    epoch
position           int64    its index in the worker's order for the epoch
term               int64    the term e processed
step               float64  γ used
t_start            int64    ns (hwsim: ticks) when processing began; -1 if not recorded
t_read_done        int64    when its last read completed; -1 if not recorded
t_write_start      int64    when its first write began; -1 if not recorded
t_end              int64    when its last write landed; -1 if not recorded
start_seq          int64    labels in the three orders (Mania et al. 2015 *start*,
read_seq           int64    Leblond et al. *after-read*, Niu et al. *after-write*);
end_seq            int64    -1 where the engine cannot tell
finished_at_start  int64    the global finished-counter value when it started
started_at_end     int64    the global started-counter value when it finished
=================  =======  ===============================================================

From the two counters, the number of other samples whose processing interval overlaps
sample k's is ``tau_k = (start_seq - finished_at_start) + (started_at_end - start_seq - 1)``
= samples in flight when k started + samples that started while k ran (realrun measures
exactly this with two atomic counters; hwsim fills them from its clock).

Coordinate-level table (hwsim only): one row per coordinate read of a sample.

sample (int64), coord (int64), read_tick (int64), read_value (float64), write_tick
(int64), delta (float64: the update written, as a float), lost (bool: a non-atomic write
that another core's write overwrote).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

SAMPLE_SCHEMA: dict[str, str] = {
    "sample": "int64",
    "worker": "int32",
    "epoch": "int32",
    "position": "int64",
    "term": "int64",
    "step": "float64",
    "t_start": "int64",
    "t_read_done": "int64",
    "t_write_start": "int64",
    "t_end": "int64",
    "start_seq": "int64",
    "read_seq": "int64",
    "end_seq": "int64",
    "finished_at_start": "int64",
    "started_at_end": "int64",
}

COORD_SCHEMA: dict[str, str] = {
    "sample": "int64",
    "coord": "int64",
    "read_tick": "int64",
    "read_value": "float64",
    "write_tick": "int64",
    "delta": "float64",
    "lost": "bool",
}

HISTORY_SCHEMA: dict[str, str] = {
    "epoch": "int32",  # objective after this many epochs (0 = initial point)
    "samples": "int64",
    "objective": "float64",
    "dist2_opt": "float64",  # ‖x - x*‖² (NaN where x* is unknown)
    "time": "float64",  # seconds (realrun) or simulated seconds (hwsim) at the checkpoint
}


class TraceError(ValueError):
    pass


def empty(schema: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in schema.items()})


def conform(df: pd.DataFrame, schema: dict[str, str], what: str = "trace") -> pd.DataFrame:
    """Check ``df`` has exactly the schema's columns and cast them to its dtypes."""
    missing = [c for c in schema if c not in df.columns]
    extra = [c for c in df.columns if c not in schema]
    if missing or extra:
        raise TraceError(f"{what}: columns do not match the schema (missing {missing}, unexpected {extra}); "
                         "build it with workload.trace.SAMPLE_SCHEMA / COORD_SCHEMA")
    return df[list(schema)].astype(schema).reset_index(drop=True)


def tau_overlap(samples: pd.DataFrame) -> np.ndarray:
    """τ_k for each row: other samples whose processing interval overlapped sample k's."""
    return (samples["start_seq"].to_numpy() - samples["finished_at_start"].to_numpy()
            + samples["started_at_end"].to_numpy() - samples["start_seq"].to_numpy() - 1)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a table atomically; the format follows the suffix (.parquet or .csv.gz)."""
    path = Path(path)
    name = path.name
    if not (name.endswith(".parquet") or name.endswith(".csv.gz")):
        raise TraceError(f"{path}: unknown table format; name the file *.parquet or *.csv.gz")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    try:
        if name.endswith(".parquet"):
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False, compression="gzip")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_table(path: str | Path, schema: dict[str, str] | None = None) -> pd.DataFrame:
    """Read a table written by :func:`write_table`, conformed to ``schema`` if given."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such table")
    df = pd.read_parquet(path) if path.name.endswith(".parquet") else pd.read_csv(path, compression="gzip")
    return conform(df, schema, what=str(path)) if schema is not None else df
