"""The coordinate-level trace on disk: streamed to Parquet in chunks, atomically.

``hwsim.simulate(..., coord_trace=path)`` (or a :class:`CoordTraceFile` for the options)
writes the coordinate trace -- the columns of :data:`workload.trace.COORD_SCHEMA`, then
the memory-order columns of :data:`hwsim.model.ORDER_SCHEMA` -- to one Parquet file
instead of keeping it in memory; the result's ``coords`` and ``order`` are then None and
``coords_path`` names the file.  Rows are in the in-memory trace's order (sample, then
support position), so ``pd.read_parquet(path)`` equals ``pd.concat([coords, order],
axis=1)`` of the same run with ``coord_trace=True``, exactly.

Atomic.  The rows go to ``<stem>.partial.parquet`` next to the target, one row group per
chunk; the file is renamed to the target only when the run has finished.  A run that stops
early (an exception, Ctrl-C) closes the partial file so the rows written so far stay
readable, marks it incomplete in its metadata (``wildcheck.complete = false``), logs a
warning naming it, and re-raises with a note that says so; the target is not touched.

Memory.  The fast engine keeps one buffer of ``chunk_rows`` rows (plus the rows of samples
still in flight when a chunk is cut, which grows the buffer only if in-flight samples
span half of it) and writes a row group whenever it fills.  The reference engine and the
schemes with their own engines (minibatch-sync, buckwild, cyclades, decentralized) build
the trace in memory first and then write it in the same chunks: same file, no memory bound
(minibatch-sync records no memory order: its file has the COORD_SCHEMA columns only).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from workload.trace import COORD_SCHEMA

from .model import ORDER_SCHEMA

logger = logging.getLogger(__name__)

#: the file's columns, in order: the coordinate trace, then the memory order
FILE_SCHEMA: dict[str, str] = {**COORD_SCHEMA, **ORDER_SCHEMA}
DEFAULT_CHUNK_ROWS = 1 << 20
DICTIONARY_COLUMNS = ("coord", "lost", "wread_op")


@dataclass(frozen=True)
class CoordTraceFile:
    """Where and how to stream the coordinate trace (``simulate(..., coord_trace=...)``).

    path        the target ``*.parquet`` file (its folder is created)
    chunk_rows  rows per chunk (one Parquet row group each); bounds the fast engine's buffer
    compression Parquet codec (pyarrow's names: "snappy", "zstd", "lz4", "gzip", "none")
    """

    path: str | os.PathLike
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    compression: str = "snappy"

    def __post_init__(self):
        p = Path(self.path)
        if p.suffix != ".parquet":
            raise ValueError(f"coord_trace path = {str(self.path)!r}: must name a *.parquet file; "
                             "e.g. coord_trace='out/coords.parquet'")
        if p.exists() and p.is_dir():
            raise ValueError(f"coord_trace path = {str(self.path)!r} is a folder; name a file in it, "
                             "e.g. coord_trace='out/coords.parquet'")
        if not isinstance(self.chunk_rows, (int, np.integer)) or isinstance(self.chunk_rows, bool) \
                or self.chunk_rows < 1:
            raise ValueError(f"CoordTraceFile.chunk_rows = {self.chunk_rows!r}: must be an integer >= 1; "
                             f"the default is {DEFAULT_CHUNK_ROWS}")

    @property
    def partial_path(self) -> Path:
        p = Path(self.path)
        return p.with_name(p.stem + ".partial" + p.suffix)


def coord_trace_option(coord_trace) -> tuple[bool, CoordTraceFile | None]:
    """``simulate``'s ``coord_trace`` -> (keep in memory, file to stream to or None)."""
    if isinstance(coord_trace, (bool, np.bool_)):
        return bool(coord_trace), None
    if isinstance(coord_trace, CoordTraceFile):
        return False, coord_trace
    if isinstance(coord_trace, (str, os.PathLike)):
        return False, CoordTraceFile(coord_trace)
    raise TypeError(f"coord_trace = {coord_trace!r}: must be True (keep the coordinate trace in memory), False "
                    "(none), a *.parquet path or a hwsim.CoordTraceFile (stream it to that file)")


def _arrow_schema(columns: dict[str, str]):
    import pyarrow as pa

    types = {"int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}
    return pa.schema([pa.field(c, types[t], nullable=False) for c, t in columns.items()])


class CoordTraceWriter:
    """Appends chunks of trace rows to ``target.partial_path``; :meth:`close` renames it to
    the target, :meth:`abort` leaves the partial file readable and marked incomplete.
    Use as a context manager: an exception inside the block aborts.  ``with_order=False``
    writes the COORD_SCHEMA columns only (an engine that records no memory order)."""

    def __init__(self, target: CoordTraceFile, *, with_order: bool = True):
        import pyarrow.parquet as pq

        self.target = target
        self.columns = FILE_SCHEMA if with_order else dict(COORD_SCHEMA)
        self.chunk_rows = int(target.chunk_rows)
        self.rows = 0
        self.path = Path(target.path)
        self.partial = target.partial_path
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self._schema = _arrow_schema(self.columns)
        comp = None if target.compression in (None, "none") else target.compression
        # dictionary pages only for the few-valued columns: trying them on the ticks, values
        # and op numbers costs time and saves nothing
        self._writer = pq.ParquetWriter(self.partial, self._schema, compression=comp,
                                        use_dictionary=[c for c in DICTIONARY_COLUMNS if c in self.columns])
        self._open = True

    def write(self, columns: dict[str, np.ndarray]) -> None:
        """Append rows given as one array per column (every column of the file, equal lengths)."""
        import pyarrow as pa

        n = len(columns["sample"])
        if n == 0:
            return
        arrays = [pa.array(np.asarray(columns[c]), type=f.type) for c, f in zip(self.columns, self._schema)]
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self._schema), row_group_size=n)
        self.rows += n

    def write_frames(self, coords: pd.DataFrame, order: pd.DataFrame | None) -> None:
        """Append an in-memory trace (as ``simulate(..., coord_trace=True)`` returns it), in chunks."""
        cols = {c: coords[c].to_numpy() for c in COORD_SCHEMA}
        if self.columns is FILE_SCHEMA:
            cols.update({c: order[c].to_numpy() for c in ORDER_SCHEMA})
        n = len(coords)
        for a in range(0, n, self.chunk_rows):
            self.write({c: v[a:a + self.chunk_rows] for c, v in cols.items()})

    def _finish(self, complete: bool) -> None:
        if self._open:
            self._open = False
            self._writer.add_key_value_metadata({"wildcheck.complete": "true" if complete else "false",
                                                 "wildcheck.rows": str(self.rows)})
            self._writer.close()

    def close(self) -> Path:
        """Finish the file and move it to the target path; returns the target."""
        self._finish(True)
        os.replace(self.partial, self.path)
        return self.path

    def abort(self, exc: BaseException | None = None) -> None:
        """Close the partial file (readable, marked incomplete) and say so."""
        try:
            self._finish(False)
        except Exception:  # the original error matters more than a failed footer
            logger.exception("could not finish the partial coordinate trace %s", self.partial)
        msg = (f"the coordinate trace is incomplete: {self.rows} rows were written to {self.partial} "
               f"(not renamed to {self.path})")
        logger.warning(msg)
        if exc is not None and hasattr(exc, "add_note"):
            exc.add_note(msg)

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is not None:
            self.abort(ev)
        return False


def read_coord_trace(path: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(coords, order) of a streamed trace, as ``coord_trace=True`` would have kept them
    (order None for a file written without the memory order)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no coordinate trace there (was the run streamed to another path, or "
                                "interrupted? an interrupted run leaves <name>.partial.parquet)")
    table = pq.read_table(path)
    names = set(table.column_names)
    missing = [c for c in COORD_SCHEMA if c not in names]
    if missing:
        raise ValueError(f"{path}: not a hwsim coordinate trace (columns {missing} missing)")

    def frame(schema):
        return pd.DataFrame({c: table.column(c).to_numpy().astype(t, copy=False) for c, t in schema.items()},
                            copy=False)

    return frame(COORD_SCHEMA), (frame(ORDER_SCHEMA) if all(c in names for c in ORDER_SCHEMA) else None)


def file_columns(path: str | os.PathLike) -> set[str]:
    """The column names of a streamed trace file."""
    import pyarrow.parquet as pq

    return set(pq.read_schema(path).names)


def iter_column(path: str | os.PathLike, column: str, batch_rows: int = DEFAULT_CHUNK_ROWS):
    """The values of one column of a streamed trace, in batches of numpy arrays (bounded memory)."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as f:
        for batch in f.iter_batches(batch_size=batch_rows, columns=[column]):
            yield batch.column(0).to_numpy(zero_copy_only=False)
