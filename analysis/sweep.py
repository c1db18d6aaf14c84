"""Parameter sweeps: a grid of runs, simulated in parallel, locally or on a Dask cluster.

A sweep is a TOML *grid* (:func:`load_grid`): a base run spec ``[run]`` (the fields of
:class:`workload.spec.RunSpec`), a base simulated machine ``[machine]``
(:class:`hwsim.Machine`), and the points to run -- the Cartesian product of the axes in
``[grid]``, an explicit list ``[[points]]``, or each listed point crossed with the grid::

    [sweep]                      # optional; defaults shown
    kind = "sim"                 # "sim" (hwsim.simulate) or "real" (realrun.run)
    # engine = "fast"            # hwsim engine; omitted: hwsim.simulate's default
    with_opt = true              # ‖x − x*‖² where the problem gives x*
    max_history_rows = 10000     # keep a point's history when it has at most this many rows

    [run]
    problem = "least-squares"
    scheme = "hogwild"
    epochs = 2
    step = 0.01
    [run.data]
    source = "synthetic-regression"
    params = { n_rows = 500, n_features = 100, nnz_mean = 5 }

    [machine]
    cores = 4
    delay = { kind = "constant", ticks = 50 }

    [grid]                       # every combination: 3 × 2 × 2 = 12 points
    threads = [1, 2, 4]
    seed = [0, 1]
    "machine.delay" = [{ kind = "constant", ticks = 50 }, { kind = "exponential", mean_ticks = 50.0 }]

    [checks]                     # optional verdicts (summarise_sweep): column = bound
    tau_max = 8                  # τ = max_k τ_k <= 8
    samples_per_s = { at_least = 1e6 }

Keys name what they set.  A bare key is a ``RunSpec`` field (``threads``, ``seed``,
``step`` ...; ``run.threads`` is the same), ``data.<field>`` / ``data.params.<key>``,
``problem_params.<key>`` and ``options.<key>`` reach inside the run's tables,
``machine.<field>`` (and ``machine.delay.<param>``) a machine field, and ``kind``,
``engine``, ``repeat`` (an integer, to repeat an identical run, e.g. real runs for their
spread) describe the point itself.  Quoted (``"machine.cores"``) and nested
(``machine = { cores = [1, 2] }``) spellings are the same key.  A table value for
``data``, ``data.params``, ``problem_params``, ``options`` or ``machine`` is merged into the
base; any other value replaces it (a delay model is replaced whole).  With both
``[[points]]`` and ``[grid]``, every listed point is crossed with every grid combination
(e.g. points pairing ``threads`` with ``machine.cores``, crossed with a ``seed`` axis).
The grid is checked once, up front (:func:`validate_grid`): every point must build a valid
spec and machine, its scheme must be one its engine runs, and no two points may be the
same run; a :class:`GridError` names the file, the key and the fix.

Each point's id is a hash of what decides its result (resolved spec, machine, kind,
engine, ``with_opt``, ``repeat``), so a sweep's output folder knows what is done: run
the same sweep again -- after a crash, a kill, Ctrl-C, or with more grid values -- and
only the missing points run.  (Changing hwsim's code does not change ids: use a new
folder to recompute.)

Running (:func:`run_sweep`)
    Simulations run on a local process pool sized to the usable cores (spawned
    processes: each compiles the fast engine once for every problem and dtype it meets),
    in this process when ``workers=1``, or on a Dask cluster when ``scheduler`` is an
    address (``"tcp://host:8786"``) or a ``distributed.Client``; a
    ``concurrent.futures.Executor`` may be passed too.  Points travel in chunks sized to
    take about :data:`TASK_SECONDS` each (many tiny simulations would otherwise spend
    their time in dispatch), with a window of two chunks per worker in flight.  Real points
    (``kind = "real"``) run afterwards, in this process, one at a time, after every
    simulation has finished and the local pool is shut down, so no other work of the sweep
    disturbs their timing.  A point that raises is recorded as failed and the sweep goes
    on; Ctrl-C commits what has finished, writes the combined tables and stops.

Output folder (tables and JSON written atomically: temporary file, then rename)
    ``grid.toml``         the grid as run
    ``plan.parquet``      one row per point: id, index, kind, the axes' values, the
                          resolved spec and machine as JSON
    ``points/*.parquet``  committed results, one file per batch of finished points
                          (:data:`RESULT_SCHEMA` columns); a point is done when its row is here
    ``history/*.parquet`` their histories (``point_id`` + ``HISTORY_SCHEMA``), same names
    ``failures/<id>.json`` a failed point's error: type, message, traceback
    ``journal.log``       append-only: ``begin``/``end`` of each run, ``start``/``finish``/
                          ``fail`` from the process that computed a point (local and
                          same-host clusters), ``commit`` from the driver after the point's
                          row is on disk (a kill in between leaves a committed point without
                          its ``commit`` line: the ``points/`` files are the record)
    ``results.parquet``   the combined table (plan columns + results; ``status`` done /
                          failed / pending), ``history.parquet``, ``summary.parquet``
                          (:func:`summarise_sweep`), written when the sweep ends or stops

Reading: :func:`load_results` (works while a sweep runs, or after it was killed),
:func:`load_history`, :func:`load_failures`; for the report: :func:`summarise_sweep`
(verdicts per point and check) and :func:`plot_sweep` (a figure over the axes), and for its
sweep section (``wildcheck report --sweep DIR_OR_GRID``, :func:`analysis.study.section_sweep`)
:func:`sweep_source`, :func:`sweep_counts`, :func:`verdict_grid`, :func:`plot_axes`,
:func:`report_figures` and :func:`plot_sweep_panels`.

Command line: ``wildcheck sweep GRID.toml [--out DIR] [--scheduler ADDRESS] [--workers N]``
(in :mod:`analysis.cli`); ``python -m analysis.sweep`` is the same command.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import itertools
import json
import logging
import math
import os
import socket
import statistics
import sys
import threading
import time
import tomllib
import traceback
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from workload.spec import DataSpec, RunSpec, SpecError
from workload.trace import HISTORY_SCHEMA, atomic_write_bytes, tau_overlap, write_table

log = logging.getLogger("wildcheck.sweep")

#: Version of the point-id recipe; bump it when what decides a point's result changes.
ID_VERSION = 1
KINDS = ("sim", "real")
META_KEYS = ("kind", "engine", "repeat")
SWEEP_KEYS = {"name": "a label for the sweep", "kind": "default kind of a point: sim or real",
              "engine": "hwsim engine: fast or reference (omitted: hwsim.simulate's default)",
              "with_opt": "true/false: compute ‖x − x*‖² where x* is known",
              "max_history_rows": "keep a point's history when it has at most this many rows"}
TOP_TABLES = ("sweep", "run", "machine", "grid", "points", "checks")
#: Tables inside a run or a machine whose keys can be set one by one (a table value merges).
NAMESPACES = frozenset({"", "machine", "data", "data.params", "problem_params", "options"})
#: Quantiles of τ_k reported per point.
TAU_QUANTILES = (0.5, 0.9, 0.99)
DEFAULT_MAX_HISTORY_ROWS = 10_000
DEFAULT_FLUSH_SECONDS = 1.0
#: At most this many finished points are committed in one file.
BATCH_MAX = 256
#: Points are sent to workers in chunks that take about this long (many tiny simulations
#: would otherwise spend their time in dispatch), of at most CHUNK_MAX points.
TASK_SECONDS = 0.2
CHUNK_MAX = 64

#: Columns of a committed result row (``points/*.parquet``) and their dtypes.
RESULT_SCHEMA: dict[str, str] = {
    "point_id": "object",
    "status": "object",  # done / failed
    "engine": "object",  # the hwsim engine that ran, or "realrun"
    "final_objective": "float64",
    "initial_objective": "float64",
    "dist2_opt": "float64",  # ‖x − x*‖² at the end (NaN where x* is unknown or with_opt is off)
    "tau_max": "Int64",  # τ = max_k τ_k (workload.trace.tau_overlap); NA where not recorded
    "tau_mean": "float64",
    "tau_p50": "float64",
    "tau_p90": "float64",
    "tau_p99": "float64",
    "lost_updates": "Int64",  # NA where not measured (some real runs)
    "samples": "Int64",  # samples processed
    "ticks": "Int64",  # simulated length (sim); NA for real runs
    "time_s": "float64",  # simulated seconds (sim: ticks · 1e-9) or measured seconds (real)
    "samples_per_s": "float64",  # samples / time_s (simulated time for sims)
    "trace_sha256": "object",  # hwsim.trace_hash of the run (sim); "" for real runs
    "error_type": "object",
    "error_message": "object",
    "wall_s": "float64",  # wall-clock seconds the point took to compute (varies run to run)
    "cpu_s": "float64",  # CPU seconds its process used meanwhile (varies run to run)
    "worker": "object",  # host:pid that computed it (varies run to run)
}
#: Result columns that vary from one execution to the next even for a simulation.
NONDETERMINISTIC_COLUMNS = ("wall_s", "cpu_s", "worker")
#: Numeric result columns a ``[checks]`` entry may bound.
CHECKABLE = tuple(c for c, t in RESULT_SCHEMA.items()
                  if t in ("float64", "Int64") and c not in NONDETERMINISTIC_COLUMNS)
PLAN_FIXED = ("point_id", "index", "kind")


class GridError(SpecError):
    """A sweep grid is malformed; the message names the file, the key and the fix.

    A :class:`~workload.spec.SpecError`, so everything that reports bad specs (the
    ``wildcheck`` CLI: exit status 2) reports bad grids the same way.
    """

    def __init__(self, where: str, key: str | None, problem: str, fix: str):
        self.field = key
        self.value = None
        self.where = where
        ValueError.__init__(self, f"{where}{' ' + key if key else ''}: {problem}; {fix}")


class SchedulerUnreachable(ConnectionError):
    """No Dask scheduler answered at the address given."""


# ----------------------------------------------------------------------------------------
# The grid
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Point:
    """One run of a sweep: what :func:`execute_point` needs, and its place in the plan.

    ``values`` are the point's own settings (axis path → raw value); ``machine`` is None
    for real runs (they run on this machine).
    """

    id: str
    index: int
    kind: str
    engine: str | None
    spec: RunSpec
    machine: Any
    values: Mapping[str, Any]
    with_opt: bool = True
    max_history_rows: int = DEFAULT_MAX_HISTORY_ROWS

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_label(v)}" for k, v in self.values.items()) or "(base)"


@dataclass(frozen=True, eq=False)
class Grid:
    """A parsed sweep grid (module docstring).  Build it with :func:`load_grid` or
    :meth:`from_dict`; :func:`validate_grid` checks it and computes ``plan``.

    run, machine      base tables (``[run]``, ``[machine]``)
    axes              path → list of values (``[grid]``), in the order written
    points            the ``[[points]]`` entries, each path → value (keys already
                      flattened to dotted paths: build from TOML-shaped tables with
                      :meth:`from_dict`)
    options           the ``[sweep]`` table
    checks            ``[checks]``: result column → bound (a number: ``<=``) or
                      ``{at_most = v}`` / ``{at_least = v}``
    source            where the grid came from (a file name), for messages
    """

    run: Mapping[str, Any] = field(default_factory=dict)
    machine: Mapping[str, Any] = field(default_factory=dict)
    axes: Mapping[str, tuple] = field(default_factory=dict)
    points: tuple = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    checks: Mapping[str, Any] = field(default_factory=dict)
    source: str = "<grid>"
    plan: tuple = field(default=(), init=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "plan", tuple(validate_grid(self)))

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], source: str = "<grid>") -> "Grid":
        """A grid from a parsed TOML document (top-level tables as in the module docstring)."""
        if not isinstance(doc, Mapping):
            raise GridError(source, None, f"a grid must be a table, got {type(doc).__name__}",
                            "give the parsed TOML document")
        bad = [k for k in doc if k not in TOP_TABLES]
        if bad:
            raise GridError(source, f"[{bad[0]}]", f"not a grid table (tables: {', '.join(TOP_TABLES)})",
                            "remove it or fix its spelling; run fields go under [run]")
        for name in ("sweep", "run", "machine", "grid", "checks"):
            if name in doc and not isinstance(doc[name], Mapping):
                raise GridError(source, name, "must be a table", f"write it as [{name}]")
        points = doc.get("points", [])
        if not isinstance(points, list) or not all(isinstance(p, Mapping) for p in points):
            raise GridError(source, "points", "must be an array of tables", "write each point as [[points]]")
        axes = _flatten(doc.get("grid", {}), source, "[grid]")
        pts = tuple(_flatten(p, source, f"[[points]] #{i}") for i, p in enumerate(points))
        return cls(run=dict(doc.get("run", {})), machine=dict(doc.get("machine", {})), axes=axes, points=pts,
                   options=dict(doc.get("sweep", {})), checks=dict(doc.get("checks", {})), source=source)

    def to_dict(self) -> dict:
        """The grid as a TOML-able document (dotted keys quoted)."""
        doc: dict[str, Any] = {}
        if self.options:
            doc["sweep"] = dict(self.options)
        doc["run"] = dict(self.run)
        if self.machine:
            doc["machine"] = dict(self.machine)
        if self.axes:
            doc["grid"] = {k: list(v) for k, v in self.axes.items()}
        if self.points:
            doc["points"] = [dict(p) for p in self.points]
        if self.checks:
            doc["checks"] = dict(self.checks)
        return _toml_safe(doc)

    def to_toml(self) -> str:
        import tomli_w

        return tomli_w.dumps(self.to_dict())

    def __len__(self) -> int:
        return len(self.plan)


def load_grid(path_or_text: str | Path) -> Grid:
    """Read a grid from a ``.toml`` file (a path) or from TOML text."""
    if isinstance(path_or_text, Path) or (isinstance(path_or_text, str) and "\n" not in path_or_text
                                          and path_or_text.strip().endswith(".toml")):
        path = Path(path_or_text)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: grid file not found; give the path of a sweep grid .toml "
                                    "(e.g. examples/sweep_small.toml)")
        text, source = path.read_text(), str(path)
    else:
        text, source = str(path_or_text), "<grid text>"
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GridError(source, None, f"not valid TOML ({exc})", "fix the syntax at the position named") from None
    return Grid.from_dict(doc, source=source)


def _norm(path: str) -> str:
    return path[4:] if path.startswith("run.") else ("" if path == "run" else path)


def _flatten(table: Mapping[str, Any], source: str, where: str, prefix: str = "") -> dict[str, Any]:
    """path → value, descending into tables that are namespaces (NAMESPACES)."""
    out: dict[str, Any] = {}
    for k, v in table.items():
        path = _norm(f"{prefix}.{k}" if prefix else str(k))
        if isinstance(v, Mapping) and (path in NAMESPACES or path == ""):
            out.update(_flatten(v, source, where, path))
            continue
        if path in out:
            raise GridError(source, f"{where} {path!r}", "is set twice (e.g. as run.x and x, or quoted and nested)",
                            "keep one spelling")
        out[path] = v
    return out


def _check_path(path: str, source: str, where: str) -> None:
    """Is ``path`` something a point can set?  (The one list of settable keys.)"""
    from hwsim import Machine

    run_fields = {f.name for f in dataclasses.fields(RunSpec)}
    data_fields = {f.name for f in dataclasses.fields(DataSpec)}
    machine_fields = {f.name for f in dataclasses.fields(Machine)}
    parts = path.split(".")
    ok = False
    if path in META_KEYS or path in NAMESPACES:
        ok = True
    elif parts[0] == "machine":
        ok = len(parts) >= 2 and parts[1] in machine_fields and (len(parts) == 2 or parts[1] == "delay")
    elif parts[0] == "data":
        ok = len(parts) >= 2 and parts[1] in data_fields and (len(parts) == 2 or parts[1] == "params")
    elif parts[0] in ("problem_params", "options"):
        ok = len(parts) >= 2
    else:
        ok = len(parts) == 1 and parts[0] in run_fields
    if not ok:
        raise GridError(source, f"{where} {path!r}", "is not a key a point can set",
                        f"use a RunSpec field ({', '.join(sorted(run_fields))}), data.<field>, data.params.<key>, "
                        f"problem_params.<key>, options.<key>, machine.<field> ({', '.join(sorted(machine_fields))}), "
                        f"machine.delay.<param>, or {', '.join(META_KEYS)}")


def _assign(run: dict, machine: dict, meta: dict, path: str, value: Any) -> None:
    """Set ``path`` to ``value`` in the point's run / machine / meta tables (copies)."""
    if path in META_KEYS:
        meta[path] = value
        return
    if path == "machine":
        machine.update(copy.deepcopy(dict(value)))
        return
    parts = path.split(".")
    d = machine if parts[0] == "machine" else run
    if parts[0] == "machine":
        parts = parts[1:]
    for p in parts[:-1]:
        sub = d.get(p)
        if isinstance(sub, DataSpec):
            sub = {k: v for k, v in dataclasses.asdict(sub).items() if v is not None}
        d[p] = copy.deepcopy(dict(sub)) if isinstance(sub, Mapping) else {}
        d = d[p]
    last = parts[-1]
    if isinstance(value, Mapping) and path in NAMESPACES and isinstance(d.get(last), Mapping):
        d[last] = {**d[last], **copy.deepcopy(dict(value))}
    else:
        d[last] = copy.deepcopy(value)


def validate_grid(grid: Grid) -> list[Point]:
    """The one place a grid is checked; returns its plan (one :class:`Point` per run).

    Every point must build a valid ``RunSpec`` (and ``hwsim.Machine`` for simulations),
    its scheme must be one its engine runs, a simulation's threads must fit the machine,
    and no two points may resolve to the same run.
    """
    import hwsim

    src = grid.source
    for k in grid.options:
        if k not in SWEEP_KEYS:
            raise GridError(src, f"[sweep] {k!r}", f"not a sweep option ({', '.join(SWEEP_KEYS)})",
                            "remove it or fix its spelling; run fields go under [run]")
    kind0 = grid.options.get("kind", "sim")
    engine0 = grid.options.get("engine")
    with_opt = grid.options.get("with_opt", True)
    max_hist = grid.options.get("max_history_rows", DEFAULT_MAX_HISTORY_ROWS)
    if not isinstance(with_opt, bool):
        raise GridError(src, "[sweep] with_opt", f"must be true or false, got {with_opt!r}", "write with_opt = true")
    if not _is_int(max_hist) or max_hist < 0:
        raise GridError(src, "[sweep] max_history_rows", f"must be an integer >= 0, got {max_hist!r}",
                        "e.g. max_history_rows = 10000 (0 keeps no history)")
    for col, bound in grid.checks.items():
        _parse_check(col, bound, src)
    axis_paths = list(grid.axes)
    for p in axis_paths:
        _check_path(p, src, "[grid]")
        values = grid.axes[p]
        if not isinstance(values, (list, tuple)):
            raise GridError(src, f"[grid] {p!r}", f"an axis needs a list of values, got {values!r}",
                            f"write {p!r} = [v1, v2, ...] (or move a single value to [run]/[machine])")
        if not values:
            raise GridError(src, f"[grid] {p!r}", "the axis is empty", "give at least one value or remove the axis")
    for i, pt in enumerate(grid.points):
        for p in pt:
            _check_path(p, src, f"[[points]] #{i}")
            if p in grid.axes:
                raise GridError(src, f"[[points]] #{i} {p!r}", "is also a [grid] axis",
                                "set it in [grid] or in the points, not both")
    base_run = _toml_plain(grid.run)
    base_machine = _toml_plain(grid.machine)
    default_engine = inspect.signature(hwsim.simulate).parameters["engine"].default
    explicit = grid.points or ({},)
    combos = list(itertools.product(*(grid.axes[a] for a in axis_paths)))
    plan: list[Point] = []
    seen: dict[str, int] = {}
    real_schemes = None
    for pi, pt in enumerate(explicit):
        for combo in combos:
            index = len(plan)
            values = {**dict(pt), **dict(zip(axis_paths, combo))}
            run, machine, meta = copy.deepcopy(base_run), copy.deepcopy(base_machine), {}
            for path, v in values.items():
                _assign(run, machine, meta, path, _toml_plain(v))
            where = f"point #{index} ({', '.join(f'{k}={_label(v)}' for k, v in values.items()) or 'base'})"

            def src_of(*keys: str, pt=pt, pi=pi) -> str:
                return _source_of(grid, pi, pt, *keys)

            kind = meta.get("kind", kind0)
            engine = meta.get("engine", engine0)
            repeat = meta.get("repeat", 0)
            if kind not in KINDS:
                raise GridError(src, f"{src_of('kind')} ({where})", f"kind = {kind!r}: must be one of "
                                f"{', '.join(KINDS)}", 'use "sim" (hwsim) or "real" (realrun)')
            if engine is not None and engine not in hwsim.ENGINES:
                raise GridError(src, f"{src_of('engine')} ({where})",
                                f"engine = {engine!r}: must be one of {', '.join(hwsim.ENGINES)}",
                                "use \"fast\" or \"reference\", or leave it out for hwsim's default")
            if not _is_int(repeat) or repeat < 0:
                raise GridError(src, f"{src_of('repeat')} ({where})", f"repeat = {repeat!r}: must be an integer >= 0",
                                "use repeat = [0, 1, 2] to repeat a run")
            try:
                spec = RunSpec.from_dict(run, where="RunSpec")
            except (SpecError, TypeError, ValueError) as exc:
                key = str(getattr(exc, "field", None) or "run")
                raise GridError(src, f"{src_of(key, key.split('.')[0])} ({where})", str(exc),
                                "fix that value in the grid") from None
            mach = None
            if kind == "sim":
                try:
                    mach = hwsim.Machine.from_dict(machine)
                except (TypeError, ValueError) as exc:
                    key = str(getattr(exc, "field", None) or "")
                    raise GridError(src, f"{src_of('machine.' + key, 'machine.delay', 'machine')} ({where})", str(exc),
                                    "fix that machine value in the grid") from None
                if spec.scheme not in hwsim.SUPPORTED_SCHEMES:
                    raise GridError(src, f"{src_of('scheme')} ({where})",
                                    f"hwsim does not simulate scheme {spec.scheme!r} "
                                    f"(it runs {', '.join(hwsim.SUPPORTED_SCHEMES)})",
                                    "drop that scheme from the simulated points, or make them kind = \"real\"")
                try:
                    hwsim.machine.check_fits(mach, spec.threads)
                except ValueError as exc:
                    raise GridError(src, f"{src_of('threads')} ({where})", str(exc),
                                    "pair threads with machine.cores in [[points]] entries, or set machine.quantum "
                                    "and machine.switch_cost") from None
            else:
                if real_schemes is None:
                    from .study import need

                    real_schemes = need("realrun", "SCHEMES")
                if spec.scheme not in real_schemes:
                    raise GridError(src, f"{src_of('scheme')} ({where})",
                                    f"realrun does not run scheme {spec.scheme!r} (it runs {', '.join(real_schemes)})",
                                    "drop that scheme from the real points")
            pid = point_id(kind=kind, engine=engine or default_engine, spec=spec, machine=mach,
                           with_opt=with_opt, repeat=repeat)
            if pid in seen:
                raise GridError(src, f"({where})", f"resolves to the same run as point #{seen[pid]}",
                                "remove the duplicate, or add a `repeat` axis to repeat a run on purpose "
                                "(real runs ignore machine.* keys)")
            seen[pid] = index
            plan.append(Point(id=pid, index=index, kind=kind, engine=engine, spec=spec, machine=mach,
                              values=values, with_opt=with_opt, max_history_rows=int(max_hist)))
    return plan


def _source_of(grid: Grid, pi: int, pt: Mapping[str, Any], *keys: str) -> str:
    """Which grid entry set ``keys[0]`` (or the next key, ...), or something inside it,
    for a point made from ``[[points]]`` entry ``pi`` (``pt``): for error messages."""
    def related(k: str, key: str) -> bool:
        return k == key or k.startswith(key + ".") or key.startswith(k + ".")

    for key in keys:
        for k in pt:
            if related(k, key):
                return f"[[points]] #{pi} {k!r}"
        for k in grid.axes:
            if related(k, key):
                return f"[grid] {k!r}"
    return "[machine]" if keys[0].startswith("machine") else "[run]"


def point_id(*, kind: str, engine: str | None, spec: RunSpec, machine, with_opt: bool, repeat: int = 0) -> str:
    """A stable id (16 hex digits of SHA-256) of everything that decides a point's result."""
    doc: dict[str, Any] = {"v": ID_VERSION, "kind": kind, "run": spec.to_dict(), "with_opt": bool(with_opt),
                           "repeat": int(repeat)}
    if kind == "sim":
        doc["machine"] = machine.to_dict()
        doc["engine"] = engine
    return hashlib.sha256(_canonical(doc).encode()).hexdigest()[:16]


def _parse_check(col: str, bound: Any, source: str = "<checks>") -> tuple[float, str]:
    """(bound, relation) of one ``[checks]`` entry."""
    if col not in CHECKABLE:
        raise GridError(source, f"[checks] {col!r}", f"not a numeric result column ({', '.join(CHECKABLE)})",
                        "bound one of those columns")
    rel = "<="
    if isinstance(bound, Mapping):
        if len(bound) != 1 or next(iter(bound)) not in ("at_most", "at_least"):
            raise GridError(source, f"[checks] {col!r}", f"a bound table takes exactly one of at_most / at_least, "
                            f"got {dict(bound)!r}", f"write {col} = {{ at_most = 8 }} or {col} = 8")
        key, bound = next(iter(bound.items()))
        rel = "<=" if key == "at_most" else ">="
    if not isinstance(bound, (int, float)) or isinstance(bound, bool) or math.isnan(bound):
        raise GridError(source, f"[checks] {col!r}", f"the bound must be a number, got {bound!r}",
                        f"e.g. {col} = 8")
    return float(bound), rel


# ----------------------------------------------------------------------------------------
# Executing one point (in a pool process, a Dask worker, or here)
# ----------------------------------------------------------------------------------------
_PROBLEMS: "OrderedDict[str, Any]" = OrderedDict()
_PROBLEMS_LOCK = threading.Lock()
_PROBLEMS_MAX = 4


def _problem_for(spec: RunSpec):
    """The spec's problem, memoised per process (a few recent ones): building the data and
    solving for x* once serves every point that shares problem, data and seed."""
    from workload.build import build_problem

    # the root seed seeds generated data unless data.params has its own (loaders read files)
    root_seeded = not spec.data.path and "seed" not in spec.data.params
    key = _canonical({"problem": spec.problem, "params": dict(spec.problem_params),
                      "data": dataclasses.asdict(spec.data), "seed": spec.seed if root_seeded else None})
    with _PROBLEMS_LOCK:
        if key in _PROBLEMS:
            _PROBLEMS.move_to_end(key)
            return _PROBLEMS[key]
    problem = build_problem(spec)
    with _PROBLEMS_LOCK:
        _PROBLEMS[key] = problem
        while len(_PROBLEMS) > _PROBLEMS_MAX:
            _PROBLEMS.popitem(last=False)
    return problem


def _tau_figures(samples: pd.DataFrame | None) -> dict:
    if samples is None or len(samples) == 0 or (samples["finished_at_start"] < 0).any():
        return {"tau_max": None, "tau_mean": math.nan, **{f"tau_p{round(q * 100)}": math.nan for q in TAU_QUANTILES}}
    tau = tau_overlap(samples)
    qs = np.quantile(tau, TAU_QUANTILES)
    return {"tau_max": int(tau.max()), "tau_mean": float(tau.mean()),
            **{f"tau_p{round(q * 100)}": float(v) for q, v in zip(TAU_QUANTILES, qs)}}


def _history_figures(history: pd.DataFrame) -> dict:
    if history is None or len(history) == 0:
        return {"final_objective": math.nan, "initial_objective": math.nan, "dist2_opt": math.nan}
    return {"final_objective": float(history["objective"].iloc[-1]),
            "initial_objective": float(history["objective"].iloc[0]),
            "dist2_opt": float(history["dist2_opt"].iloc[-1])}


def _simulate_point(point: Point) -> tuple[dict, pd.DataFrame]:
    import hwsim

    kw = {} if point.engine is None else {"engine": point.engine}
    res = hwsim.simulate(point.spec, point.machine, problem=_problem_for(point.spec), coord_trace=False,
                         with_opt=point.with_opt, **kw)
    seconds = res.ticks * 1e-9
    n = len(res.samples)
    row = {"engine": res.engine, **_history_figures(res.history), **_tau_figures(res.samples),
           "lost_updates": int(res.lost_updates), "samples": n, "ticks": int(res.ticks), "time_s": seconds,
           "samples_per_s": n / seconds if seconds > 0 else math.nan, "trace_sha256": hwsim.trace_hash(res)}
    return row, res.history


def _real_point(point: Point) -> tuple[dict, pd.DataFrame]:
    from .study import need

    run = need("realrun", "run")
    res = run(point.spec, problem=_problem_for(point.spec), with_opt=point.with_opt)
    seconds = float(np.sum(res.epoch_seconds)) if len(res.epoch_seconds) else math.nan
    h = res.history
    row = {"engine": "realrun", **_history_figures(h), **_tau_figures(res.samples if res.instrument else None),
           "lost_updates": None if res.lost_updates is None else int(res.lost_updates),
           "samples": int(h["samples"].iloc[-1]) if len(h) else None, "ticks": None, "time_s": seconds,
           "samples_per_s": float(res.samples_per_s), "trace_sha256": ""}
    return row, h


def execute_point(point: Point, journal: str | None = None) -> dict:
    """Compute one point; never raises for the point's own errors (they are returned).

    Returns ``{"point_id", "status" ("done" / "failed"), "row" (result columns),
    "history" (HISTORY_SCHEMA column → array, or None), "error" (None or type / message /
    traceback)}``.  ``journal``: a path to append ``start`` / ``finish`` / ``fail`` lines to.
    """
    worker = f"{socket.gethostname()}:{os.getpid()}"
    _journal(journal, "start", point.id, f"worker={worker}")
    t0, c0 = time.perf_counter(), time.process_time()
    error = None
    history = None
    try:
        row, history = (_simulate_point if point.kind == "sim" else _real_point)(point)
        status = "done"
        if history is not None:  # plain arrays: cheaper to send back than a DataFrame
            history = (None if len(history) > point.max_history_rows else
                       {c: np.asarray(history[c], dtype=t) for c, t in HISTORY_SCHEMA.items()})
    except Exception as exc:  # recorded, reported, and the sweep goes on (issue 12)
        status = "failed"
        row = {"engine": _engine_name(point)}
        error = {"type": _type_name(exc), "message": str(exc), "traceback": traceback.format_exc()}
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    _journal(journal, "finish" if status == "done" else "fail", point.id, f"worker={worker} wall_s={wall:.3f}")
    row = {**row, "point_id": point.id, "status": status, "wall_s": wall, "cpu_s": cpu, "worker": worker,
           "error_type": error["type"] if error else "", "error_message": error["message"] if error else ""}
    return {"point_id": point.id, "status": status, "row": row, "history": history, "error": error}


def execute_points(points: Sequence[Point], journal: str | None = None) -> list[dict]:
    """:func:`execute_point` for each of ``points`` in turn (one task of a sweep)."""
    return [execute_point(p, journal) for p in points]


def _engine_name(point: Point) -> str:
    if point.kind == "real":
        return "realrun"
    if point.engine is not None:
        return point.engine
    import hwsim

    return inspect.signature(hwsim.simulate).parameters["engine"].default


def _failed_outcome(point: Point, exc: BaseException, tb: str | None = None, note: str = "") -> dict:
    """The outcome of a point whose execution itself broke (a worker died, a cancelled task)."""
    message = str(exc) + (f" ({note})" if note else "")
    error = {"type": _type_name(exc), "message": message,
             "traceback": tb or "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}
    row = {"engine": _engine_name(point), "point_id": point.id, "status": "failed", "wall_s": math.nan,
           "cpu_s": math.nan, "worker": "", "error_type": error["type"], "error_message": message}
    return {"point_id": point.id, "status": "failed", "row": row, "history": None, "error": error}


# ----------------------------------------------------------------------------------------
# The output folder
# ----------------------------------------------------------------------------------------
class _Store:
    """An output folder: committed batches, failures, the journal, the combined tables."""

    def __init__(self, out: Path, flush_seconds: float):
        self.out = out
        self.points_dir = out / "points"
        self.history_dir = out / "history"
        self.failures_dir = out / "failures"
        self.journal = str(out / "journal.log")
        self.flush_seconds = flush_seconds
        self.buffer: list[dict] = []
        self.plan: pd.DataFrame | None = None
        self.first_buffered = 0.0
        self.seq = 0

    def prepare(self, grid: Grid) -> None:
        for d in (self.points_dir, self.history_dir, self.failures_dir):
            d.mkdir(parents=True, exist_ok=True)
            for tmp in d.glob(".*.tmp"):  # a write_table interrupted by a kill
                tmp.unlink(missing_ok=True)
        for tmp in self.out.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        committed = {p.name for p in self.points_dir.glob("*.parquet")}
        for h in self.history_dir.glob("*.parquet"):  # written just before a kill, never committed
            if h.name not in committed:
                h.unlink(missing_ok=True)
        atomic_write_bytes(self.out / "grid.toml", grid.to_toml().encode())
        self.plan = plan_frame(grid)
        write_table(self.plan, self.out / "plan.parquet")

    def committed(self) -> dict[str, str]:
        """point id → status of its latest committed row."""
        rows = _read_rows(self.points_dir, columns=["point_id", "status"])
        return dict(zip(rows["point_id"], rows["status"])) if len(rows) else {}

    def add(self, outcome: dict) -> None:
        if not self.buffer:
            self.first_buffered = time.monotonic()
        self.buffer.append(outcome)

    def due(self) -> bool:
        return bool(self.buffer) and (len(self.buffer) >= BATCH_MAX
                                      or time.monotonic() - self.first_buffered >= self.flush_seconds)

    def flush(self) -> None:
        """Commit the buffered outcomes: failures and history first, then the rows (the commit)."""
        if not self.buffer:
            return
        batch, self.buffer = self.buffer, []
        self.seq += 1
        name = f"{time.time_ns():020d}-{os.getpid()}-{self.seq:05d}.parquet"
        for o in batch:
            if o["error"] is not None:
                doc = {"point_id": o["point_id"], "error_type": o["error"]["type"],
                       "error_message": o["error"]["message"], "traceback": o["error"]["traceback"],
                       "worker": o["row"].get("worker", ""), "time_utc": _utc()}
                atomic_write_bytes(self.failures_dir / f"{o['point_id']}.json",
                                   (json.dumps(doc, indent=1) + "\n").encode())
        hist = [o for o in batch if o["history"] is not None]
        if hist:
            sizes = [len(o["history"]["epoch"]) for o in hist]
            h = {"point_id": np.repeat(np.array([o["point_id"] for o in hist], dtype=object), sizes)}
            for c, t in HISTORY_SCHEMA.items():
                h[c] = np.concatenate([o["history"][c] for o in hist]).astype(t)
            write_table(pd.DataFrame(h), self.history_dir / name)
        write_table(_rows_frame([o["row"] for o in batch]), self.points_dir / name)
        for o in batch:
            if o["status"] == "done":
                (self.failures_dir / f"{o['point_id']}.json").unlink(missing_ok=True)
            _journal(self.journal, "commit", o["point_id"], f"status={o['status']}")

    def maybe_flush(self) -> None:
        if self.due():
            self.flush()


def _read_rows(points_dir: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Every committed row, the latest per point (files sort by commit time)."""
    files = sorted(points_dir.glob("*.parquet")) if points_dir.is_dir() else []
    if not files:
        return _rows_frame([]) if columns is None else _rows_frame([])[list(columns)]
    df = pd.concat([pd.read_parquet(f, columns=list(columns) if columns else None) for f in files],
                   ignore_index=True)
    return df.drop_duplicates("point_id", keep="last").reset_index(drop=True)


def _rows_frame(rows: list[dict]) -> pd.DataFrame:
    def missing(v) -> bool:
        return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))

    out = {}
    for c, t in RESULT_SCHEMA.items():
        vals = [r.get(c) for r in rows]
        if t == "float64":
            out[c] = np.array([math.nan if missing(v) else float(v) for v in vals], dtype=np.float64)
        elif t == "Int64":
            out[c] = pd.array([None if missing(v) else int(v) for v in vals], dtype="Int64")
        else:
            out[c] = np.array(["" if missing(v) else str(v) for v in vals], dtype=object)
    return pd.DataFrame(out, columns=list(RESULT_SCHEMA))


def plan_frame(grid: Grid) -> pd.DataFrame:
    """One row per point: ``point_id, index, kind``, one column per axis / point key (its
    value; tables and lists as labels), and the resolved ``spec`` and ``machine`` as JSON."""
    keys: list[str] = []
    for pt in grid.points:
        keys += [k for k in pt if k not in keys]
    keys += [k for k in grid.axes if k not in keys]
    keys = [k for k in keys if k not in PLAN_FIXED and k not in RESULT_SCHEMA]  # "engine": the result's
    d: dict[str, list] = {"point_id": [], "index": [], "kind": []}
    for k in keys:
        d[k] = []
    d["spec"], d["machine"] = [], []
    for p in grid.plan:
        d["point_id"].append(p.id)
        d["index"].append(p.index)
        d["kind"].append(p.kind)
        for k in keys:
            d[k].append(p.values.get(k))
        d["spec"].append(_canonical(p.spec.to_dict()))
        d["machine"].append(_canonical(p.machine.to_dict()) if p.machine is not None else "")
    df = pd.DataFrame({"point_id": d["point_id"], "index": np.asarray(d["index"], dtype=np.int64),
                       "kind": d["kind"]})
    for k in keys:
        df[k] = _column(d[k])
    df["spec"] = d["spec"]
    df["machine"] = d["machine"]
    return df


def _column(values: list) -> pd.Series:
    """An axis column: numbers, booleans or strings as they are; anything else as labels."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pd.Series(values, dtype="boolean")
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pd.Series(values, dtype="Int64")
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pd.Series([math.nan if v is None else float(v) for v in values], dtype="float64")
    return pd.Series([None if v is None else _label(v) for v in values], dtype=object)


# ----------------------------------------------------------------------------------------
# Running a sweep
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SweepResult:
    """What :func:`run_sweep` returns.

    results     the combined table (``results.parquet``): plan columns + result columns,
                ``status`` done / failed / pending, in plan order
    history     the points' histories (``point_id`` + HISTORY_SCHEMA)
    failures    failed points: ``point_id``, ``error_type``, ``error_message``, ``traceback``
    computed    points computed by this call; ``reused`` points already committed before it
    seconds     wall-clock seconds of this call
    """

    out_dir: Path
    results: pd.DataFrame
    history: pd.DataFrame
    failures: pd.DataFrame
    computed: int
    reused: int
    seconds: float

    @property
    def n_failed(self) -> int:
        return int((self.results["status"] == "failed").sum())

    @property
    def ok(self) -> bool:
        return bool((self.results["status"] == "done").all())


def run_sweep(grid: Grid | str | Path, out_dir: str | Path, *, scheduler=None, workers: int | None = None,
              progress: bool | None = True, retry_failed: bool = False,
              flush_seconds: float = DEFAULT_FLUSH_SECONDS) -> SweepResult:
    """Run every point of ``grid`` not yet committed in ``out_dir``; combine the results.

    Parameters
    ----------
    grid : Grid, or the path of a grid TOML
    out_dir : folder of the sweep (created; an existing one is resumed)
    scheduler : None, str, distributed.Client or concurrent.futures.Executor
        None: a local pool of ``workers`` spawned processes (in this process when
        ``workers == 1``); ``"tcp://host:port"``: a Dask scheduler to connect to (the
        client is closed at the end); a ``distributed.Client``: use it (left open); an
        ``Executor``: submit to it (left open).  Dask workers must be able to import
        wildcheck.  Real points always run here, one at a time, after the simulations.
    workers : int, optional
        Local pool size (default: the usable cores).  Only for the local pool.
    progress : bool or None
        A progress bar (points done / total, failures, ETA) on stderr; None: only on a
        terminal.
    retry_failed : bool
        Run points whose committed result is a failure again (default: keep the failure).
    flush_seconds : float
        Finished points are committed at least this often (and at the end): a kill loses at
        most this much finished work.
    """
    t_start = time.perf_counter()
    if not isinstance(grid, Grid):
        grid = load_grid(grid)
    if workers is not None and (not _is_int(workers) or workers < 1):
        raise ValueError(f"workers = {workers!r}: must be an integer >= 1; e.g. workers=2 (default: usable cores)")
    if workers is not None and scheduler is not None:
        raise ValueError("workers applies to the local pool only; size the Dask cluster / executor instead, "
                         "or leave scheduler=None")
    if not (isinstance(flush_seconds, (int, float)) and flush_seconds >= 0):
        raise ValueError(f"flush_seconds = {flush_seconds!r}: must be a number >= 0; e.g. 1.0")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a folder; give a folder for the sweep's output")
    store = _Store(out, float(flush_seconds))
    store.prepare(grid)
    committed = store.committed()
    todo = [p for p in grid.plan
            if p.id not in committed or (retry_failed and committed[p.id] == "failed")]
    reused = len(grid.plan) - len(todo)
    sims = [p for p in todo if p.kind == "sim"]
    reals = [p for p in todo if p.kind == "real"]
    _journal(store.journal, "begin", "-", f"points={len(grid.plan)} committed={reused} todo={len(todo)} "
                                          f"pid={os.getpid()}")
    log.info("sweep %s: %d points, %d already done, %d to run (%d simulated, %d real)", out, len(grid.plan),
             reused, len(todo), len(sims), len(reals))
    todo_ids = {p.id for p in todo}
    failed0 = sum(1 for p in grid.plan if committed.get(p.id) == "failed" and p.id not in todo_ids)
    bar = _progress_bar(len(grid.plan), reused, failed0, progress)

    def record(outcome: dict, point: Point) -> None:
        store.add(outcome)
        if outcome["status"] == "failed":
            bar.failed += 1
            log.warning("sweep point #%d %s (%s) failed: %s: %s (traceback in %s)", point.index, point.id,
                        point.label, outcome["error"]["type"], outcome["error"]["message"],
                        store.failures_dir / f"{point.id}.json")
        bar.advance()
        store.maybe_flush()

    computed = 0
    try:
        if sims:
            computed += _run_simulations(sims, store, record, scheduler, workers)
        for p in reals:  # one at a time, in this process, with nothing else of the sweep running
            record(execute_point(p, store.journal), p)
            store.flush()
            computed += 1
    except KeyboardInterrupt:
        store.flush()
        _journal(store.journal, "interrupted", "-", "")
        _combine(store, grid)
        bar.close()
        raise
    finally:
        store.flush()
    _journal(store.journal, "end", "-", f"computed={computed}")
    bar.close()
    results, history, failures = _combine(store, grid)
    return SweepResult(out_dir=out, results=results, history=history, failures=failures, computed=computed,
                       reused=reused, seconds=time.perf_counter() - t_start)


def _run_simulations(points: list[Point], store: _Store, record: Callable, scheduler, workers) -> int:
    from concurrent.futures import Executor

    if scheduler is None:
        n = min(workers or _usable_cores(), len(points))
        if n == 1:
            for p in points:
                record(execute_point(p, store.journal), p)
            return len(points)
        return _drive(_PoolBackend(lambda: local_pool(n), own=True, window=2 * n, journal=store.journal),
                      points, store, record)
    if isinstance(scheduler, Executor):
        return _drive(_PoolBackend(lambda: scheduler, own=False, window=2 * max(1, getattr(
            scheduler, "_max_workers", 2)), journal=store.journal), points, store, record)
    return _drive(_DaskBackend(scheduler, store.journal), points, store, record)


def _drive(backend, points: list[Point], store: _Store, record: Callable) -> int:
    """Keep a window of tasks in flight; record each point as it comes back; commit regularly.

    A task is a chunk of points sized so that it takes about :data:`TASK_SECONDS` (from
    the median compute time of the points so far; 1 point until there is one), but never
    so large that the remaining points would not spread over every slot of the window.
    """
    todo = list(points)
    pos = 0
    pending: dict[Any, list[Point]] = {}
    walls: deque = deque(maxlen=64)
    n = 0
    try:
        while True:
            window = backend.window()
            while len(pending) < window and pos < len(todo):
                k = 1
                if walls:
                    k = int(TASK_SECONDS / max(statistics.median(walls), 1e-6))
                    k = max(1, min(k, CHUNK_MAX, math.ceil((len(todo) - pos) / window)))
                chunk = todo[pos:pos + k]
                pos += k
                pending[backend.submit(chunk)] = chunk
            if not pending:
                break
            done = backend.wait(list(pending), timeout=max(store.flush_seconds, 0.05))
            for f in done:
                chunk = pending.pop(f)
                for p, outcome in zip(chunk, backend.outcomes(f, chunk)):
                    if not math.isnan(outcome["row"]["wall_s"]):
                        walls.append(outcome["row"]["wall_s"])
                    record(outcome, p)
                    n += 1
            store.maybe_flush()
    except BaseException:
        backend.cancel(list(pending))
        raise
    finally:
        backend.close()
    return n


def local_pool(workers: int | None = None):
    """A ``ProcessPoolExecutor`` of spawned processes suited to simulations: each worker
    exits when the process that made the pool dies (so a killed sweep leaves no orphans)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    n = workers or _usable_cores()
    return ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init, initargs=(os.getpid(),))


def _worker_init(parent_pid: int) -> None:
    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="wildcheck-orphan-watch", daemon=True).start()


class _PoolBackend:
    def __init__(self, make: Callable, *, own: bool, window: int, journal: str):
        self.make, self.own, self._window, self.journal = make, own, max(1, window), journal
        self.pool = make()

    def window(self) -> int:
        return self._window

    def submit(self, chunk: list[Point]):
        from concurrent.futures.process import BrokenProcessPool

        try:
            return self.pool.submit(execute_points, chunk, self.journal)
        except BrokenProcessPool:
            if not self.own:
                raise
            log.warning("sweep: the local pool broke (a worker died); starting a new one")
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self.make()
            return self.pool.submit(execute_points, chunk, self.journal)

    def wait(self, futures, timeout):
        from concurrent.futures import FIRST_COMPLETED, wait

        return wait(futures, timeout=timeout, return_when=FIRST_COMPLETED).done

    def outcomes(self, f, chunk: list[Point]) -> list[dict]:
        exc = f.exception()
        if exc is None:
            return f.result()
        return [_failed_outcome(p, exc, note="the worker process computing it died (a crash or out of memory) "
                                             "or the pool broke while it was queued; rerun with --retry-failed")
                for p in chunk]

    def cancel(self, futures) -> None:
        for f in futures:
            f.cancel()

    def close(self) -> None:
        if self.own:
            self.pool.shutdown(wait=True, cancel_futures=True)


class _DaskBackend:
    def __init__(self, scheduler, journal: str):
        from .study import need

        distributed = need("distributed")
        self.distributed = distributed
        if isinstance(scheduler, str):
            try:
                self.client, self.own = distributed.Client(scheduler), True
            except OSError as exc:  # refused, unknown host, timed out (TimeoutError is an OSError)
                raise SchedulerUnreachable(
                    f"scheduler = {scheduler!r}: could not connect to a Dask scheduler there ({type(exc).__name__}: "
                    f"{exc}); check the address and that `dask scheduler` runs there, or leave it out to run on "
                    "the local pool") from exc
        elif isinstance(scheduler, distributed.Client):
            self.client, self.own = scheduler, False
        else:
            raise TypeError(f"scheduler = {scheduler!r}: must be None (local pool), a Dask scheduler address "
                            "('tcp://host:8786'), a distributed.Client or a concurrent.futures.Executor")
        self.journal = journal if self._same_host() else None
        self._win, self._win_at = 2, -math.inf

    def _same_host(self) -> bool:
        from urllib.parse import urlparse

        local = {"127.0.0.1", "localhost", "::1", socket.gethostname()}
        try:
            local.add(socket.gethostbyname(socket.gethostname()))
        except OSError:
            pass
        workers = self.client.scheduler_info().get("workers", {})
        return bool(workers) and all(urlparse(a).hostname in local for a in workers)

    def window(self) -> int:
        now = time.monotonic()
        if now - self._win_at > 5.0:  # follow a cluster that grows or shrinks
            self._win = max(2, 2 * sum(self.client.nthreads().values()))
            self._win_at = now
        return self._win

    def submit(self, chunk: list[Point]):
        return self.client.submit(execute_points, chunk, self.journal, pure=False,
                                  key=f"wildcheck-sweep-{chunk[0].id}-{len(chunk)}-{os.getpid()}-{time.monotonic_ns()}")

    def wait(self, futures, timeout):
        try:
            return self.distributed.wait(futures, timeout=timeout, return_when="FIRST_COMPLETED").done
        except TimeoutError:
            return set()

    def outcomes(self, f, chunk: list[Point]) -> list[dict]:
        if f.status == "finished":
            return f.result()
        if f.status == "error":
            exc = f.exception()
            tb = "".join(traceback.format_tb(f.traceback())) if f.traceback() is not None else None
            return [_failed_outcome(p, exc, tb, note="raised outside the point (a worker died or the task failed "
                                                     "to run)") for p in chunk]
        return [_failed_outcome(p, RuntimeError(f"Dask future status {f.status!r}"), "",
                                note="the task was cancelled or lost by the cluster") for p in chunk]

    def cancel(self, futures) -> None:
        if futures:
            self.client.cancel(futures)

    def close(self) -> None:
        if self.own:
            self.client.close()


class _Bar:
    def __init__(self, total: int, initial: int, failed: int, enabled: bool):
        from tqdm.auto import tqdm

        self.failed = failed
        self.tqdm = tqdm(total=total, initial=initial, desc="sweep", unit="pt", disable=not enabled,
                         dynamic_ncols=True, file=sys.stderr)
        self.tqdm.set_postfix(failed=failed)

    def advance(self) -> None:
        self.tqdm.update(1)
        self.tqdm.set_postfix(failed=self.failed, refresh=False)

    def close(self) -> None:
        self.tqdm.close()


def _progress_bar(total: int, initial: int, failed: int, progress: bool | None) -> _Bar:
    enabled = sys.stderr.isatty() if progress is None else bool(progress)
    return _Bar(total, initial, failed, enabled)


def _combine(store: _Store, grid: Grid) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    results = _results_table(store.plan, _read_rows(store.points_dir))
    history = _history_table(store.out, set(results["point_id"][results["status"] == "done"]))
    failures = load_failures(store.out, ids=set(results["point_id"][results["status"] == "failed"]))
    write_table(results, store.out / "results.parquet")
    write_table(history, store.out / "history.parquet")
    write_table(summarise_sweep(results, grid.checks), store.out / "summary.parquet")
    # hand back exactly what is on disk (dtypes as Parquet gives them back)
    return pd.read_parquet(store.out / "results.parquet"), pd.read_parquet(store.out / "history.parquet"), failures


def _results_table(plan: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    plan = plan.drop(columns=["spec", "machine"])
    res = plan.merge(rows, on="point_id", how="left", validate="one_to_one")
    res["status"] = res["status"].fillna("pending")
    for c in ("engine", "trace_sha256", "error_type", "error_message", "worker"):
        res[c] = res[c].fillna("")
    return res.sort_values("index", kind="stable").reset_index(drop=True)


def _history_table(out: Path, ids: set[str]) -> pd.DataFrame:
    committed = {p.name for p in (out / "points").glob("*.parquet")}
    files = sorted(f for f in (out / "history").glob("*.parquet") if f.name in committed)
    cols = {"point_id": "str", **HISTORY_SCHEMA}
    if not files:
        return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in cols.items()})
    h = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    h = h[h["point_id"].isin(ids)].drop_duplicates(["point_id", "epoch"], keep="last")
    return h[list(cols)].astype(cols).reset_index(drop=True)


def load_results(out_dir: str | Path) -> pd.DataFrame:
    """The combined results of a sweep folder, read from its committed batches (so it works
    while the sweep runs or after it was killed): plan columns + :data:`RESULT_SCHEMA`,
    ``status`` done / failed / pending, in plan order."""
    out = Path(out_dir)
    plan_path = out / "plan.parquet"
    if not plan_path.is_file():
        raise FileNotFoundError(f"{plan_path}: not a sweep folder (no plan.parquet); give a folder written by "
                                "run_sweep / `wildcheck sweep`")
    return _results_table(pd.read_parquet(plan_path), _read_rows(out / "points"))


def load_history(out_dir: str | Path) -> pd.DataFrame:
    """Histories of the done points of a sweep folder (``point_id`` + HISTORY_SCHEMA)."""
    res = load_results(out_dir)
    return _history_table(Path(out_dir), set(res["point_id"][res["status"] == "done"]))


def load_failures(out_dir: str | Path, ids: Iterable[str] | None = None) -> pd.DataFrame:
    """Failed points of a sweep folder: ``point_id, error_type, error_message, traceback,
    worker, time_utc`` (from ``failures/*.json``; only ``ids`` when given)."""
    rows = []
    for f in sorted((Path(out_dir) / "failures").glob("*.json")):
        if ids is not None and f.stem not in ids:
            continue
        rows.append(json.loads(f.read_text()))
    cols = ["point_id", "error_type", "error_message", "traceback", "worker", "time_utc"]
    return pd.DataFrame(rows, columns=cols).astype(object)


def comparable(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` without the columns that vary between executions
    (:data:`NONDETERMINISTIC_COLUMNS`), sorted by point id: two executions of the same
    simulated sweep -- locally, on a cluster, resumed -- give equal tables."""
    return (results.drop(columns=[c for c in NONDETERMINISTIC_COLUMNS if c in results.columns])
            .sort_values("point_id").reset_index(drop=True))


# ----------------------------------------------------------------------------------------
# For the report
# ----------------------------------------------------------------------------------------
def axis_columns(results: pd.DataFrame) -> list[str]:
    """The columns of a results table that are the sweep's axes / point keys."""
    return [c for c in results.columns if c not in RESULT_SCHEMA and c not in PLAN_FIXED]


def summarise_sweep(results: pd.DataFrame, checks: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Verdicts across a sweep: one row per point and check.

    Every point gets the check ``completed`` (verdict ``done`` / ``failed`` with the error
    in ``note`` / ``not run``); each entry of ``checks`` (result column → bound: a number
    means ``<=``; ``{"at_most": v}`` or ``{"at_least": v}``), e.g. ``{"tau_max": 8}``,
    adds a row per point built by :func:`analysis.verdicts.check_row` (``holds`` /
    ``violated`` / ``not applicable`` -- a failed or pending point, or a figure the run did
    not record).  A grid's ``[checks]`` table is used by :func:`run_sweep` for
    ``summary.parquet``.

    Columns: ``source`` ("sweep"), ``point_id, index, kind``, the axes, ``check``, and
    ``observed, bound, relation, ratio, margin, verdict, note``
    (:data:`analysis.verdicts.CHECK_COLUMNS`).
    """
    from .verdicts import CHECK_COLUMNS, check_row

    parsed = {c: _parse_check(c, b) for c, b in (checks or {}).items()}
    keys = ["point_id", "index", "kind", *axis_columns(results)]
    rows = []
    for r in results.to_dict("records"):
        base = {"source": "sweep", **{k: r.get(k) for k in keys}}
        status = r.get("status", "pending")
        note = f"{r.get('error_type')}: {r.get('error_message')}" if status == "failed" else ""
        rows.append({**base, "check": "completed", "observed": math.nan, "bound": math.nan, "relation": "",
                     "ratio": math.nan, "margin": math.nan,
                     "verdict": {"done": "done", "failed": "failed"}.get(status, "not run"), "note": note})
        for col, (bound, rel) in parsed.items():
            v = r.get(col)
            v = None if v is None or v is pd.NA else float(v)
            why = None if status == "done" else ("point failed" if status == "failed" else "point not run")
            if why is None and (v is None or math.isnan(v)):
                why = f"{col} not recorded for this point"
            rows.append({**base, "check": f"{col} {rel} {bound:g}",
                         **check_row(v, bound, rel, not_applicable=why)})
    cols = ["source", *keys, "check", *CHECK_COLUMNS]
    return pd.DataFrame(rows, columns=cols)


def plot_sweep(results: pd.DataFrame, x: str, y: str, hue: str | None = None, *, agg: str = "mean",
               logx: bool | None = None, logy: bool = False, ax=None):
    """A figure of ``y`` over the axis ``x``, one line per value of ``hue``.

    Done points only.  Points that share ``x`` and ``hue`` (other axes: seeds, delays ...)
    are aggregated by ``agg`` ("mean" or "median") with a bar from their min to max.  A
    non-numeric ``x`` is plotted as categories in the order met.  Returns a
    ``matplotlib.figure.Figure`` (made without pyplot; ``ax`` draws into an existing axes
    instead and returns its figure).  ``logx`` None: log scale when x is positive numbers
    spanning more than a factor 10.
    """
    for name, col in (("x", x), ("y", y), ("hue", hue)):
        if col is not None and col not in results.columns:
            raise ValueError(f"plot_sweep: {name} = {col!r} is not a column of the results "
                             f"(axes: {', '.join(axis_columns(results))}; figures: {', '.join(CHECKABLE)})")
    if agg not in ("mean", "median"):
        raise ValueError(f"plot_sweep: agg = {agg!r}: must be 'mean' or 'median'")
    df = results[results["status"] == "done"] if "status" in results.columns else results
    df = df.assign(_y=pd.to_numeric(df[y], errors="coerce").astype("float64"))
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.0, 4.0), dpi=100)
        ax = fig.subplots()
    else:
        fig = ax.figure
    numeric = pd.api.types.is_numeric_dtype(df[x]) and not pd.api.types.is_bool_dtype(df[x])
    cats = list(dict.fromkeys(df[x].tolist())) if not numeric else None
    groups = [(None, df)] if hue is None else list(df.groupby(hue, sort=True, dropna=False))
    for i, (key, g) in enumerate(groups):
        s = g.groupby(x, sort=numeric)["_y"].agg([agg, "min", "max"])
        if cats is not None:  # categories: markers side by side, no lines between unrelated values
            s = s.reindex([c for c in cats if c in s.index])
            xs = np.array([cats.index(c) for c in s.index], dtype=np.float64)
            xs += 0.3 * ((i + 0.5) / len(groups) - 0.5) if len(groups) > 1 else 0.0
        else:
            xs = s.index.to_numpy(dtype=np.float64)
        yerr = np.vstack([s[agg] - s["min"], s["max"] - s[agg]])
        ax.errorbar(xs, s[agg], yerr=yerr, marker="o", capsize=3, linestyle="none" if cats is not None else "-",
                    label=None if hue is None else f"{hue} = {_label(key)}")
    if cats is not None:
        ax.set_xticks(range(len(cats)))
        ax.set_xticklabels([_label(c) for c in cats], rotation=20, ha="right")
    else:
        values = np.unique(df[x].to_numpy(dtype=np.float64))
        if logx or (logx is None and values.size and values[0] > 0 and values[-1] > 10 * values[0]):
            ax.set_xscale("log")
        if 0 < values.size <= 12:  # few values (threads, cores): ticks exactly there
            ax.set_xticks(values)
            ax.set_xticklabels([str(int(v)) if float(v).is_integer() else f"{v:g}" for v in values])
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(y if len(df.groupby(x)) == len(df) else f"{y} ({agg}, min–max)")
    if hue is not None:
        ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------
# For the report's sweep section (``wildcheck report --sweep DIR_OR_GRID``)
# ----------------------------------------------------------------------------------------
#: Result columns plotted over a sweep's axes, in this order, where the sweep recorded them.
REPORT_FIGURES = ("samples_per_s", "final_objective", "tau_mean", "tau_max", "lost_updates")
#: A second varying axis is used as the hue of a plot when it has at most this many values.
MAX_HUE_VALUES = 8


def sweep_source(path: str | Path) -> tuple[str, Path]:
    """What a sweep argument names: ``("folder", path)`` for a sweep's output folder (one
    with ``plan.parquet``: finished, partial or still running), ``("grid", path)`` for a grid
    ``.toml`` (parsed and checked here: a bad grid raises :class:`GridError`).

    Raises ``FileNotFoundError`` naming the path and the fix when it is neither.
    """
    p = Path(path)
    if p.is_dir():
        if not (p / "plan.parquet").is_file():
            raise FileNotFoundError(f"{p}: not a sweep folder (no plan.parquet); give a folder written by "
                                    "`wildcheck sweep` or the path of a grid .toml")
        return "folder", p
    if p.is_file():
        if p.suffix != ".toml":
            raise FileNotFoundError(f"{p}: neither a sweep folder nor a grid .toml; give a folder written by "
                                    "`wildcheck sweep` or a grid such as examples/sweep_small.toml")
        load_grid(p)
        return "grid", p
    raise FileNotFoundError(f"{p}: no such sweep folder or grid file; give a folder written by `wildcheck sweep` "
                            "or the path of a grid .toml (e.g. examples/sweep_small.toml)")


def read_checks(out_dir: str | Path) -> dict:
    """The ``[checks]`` table of the grid a sweep folder ran (its ``grid.toml``); {} if none."""
    path = Path(out_dir) / "grid.toml"
    if not path.is_file():
        return {}
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise GridError(str(path), None, f"not valid TOML ({exc})", "the sweep folder is damaged; run the sweep "
                        "again into a new folder") from None
    checks = doc.get("checks", {})
    return dict(checks) if isinstance(checks, Mapping) else {}


def sweep_counts(results: pd.DataFrame) -> dict:
    """Points in all, done, failed and pending (not run yet); ``partial`` when any is pending."""
    status = results["status"] if "status" in results.columns else pd.Series([], dtype=object)
    done, failed = int((status == "done").sum()), int((status == "failed").sum())
    pending = int(len(results)) - done - failed
    return {"points": int(len(results)), "done": done, "failed": failed, "pending": pending,
            "partial": pending > 0}


def varying_axes(results: pd.DataFrame) -> list[str]:
    """The axis columns (:func:`axis_columns`) that take more than one value across the points."""
    return [c for c in axis_columns(results) if results[c].map(_label).nunique(dropna=False) > 1]


def plot_axes(results: pd.DataFrame) -> list[tuple[str, str | None]]:
    """``(x, hue)`` for one plot per varying axis: the hue is the other varying axis with the
    fewest values (at most :data:`MAX_HUE_VALUES`; ties: the first in the grid), or None."""
    axes = varying_axes(results)
    counts = {c: results[c].map(_label).nunique(dropna=False) for c in axes}
    out = []
    for x in axes:
        others = [c for c in axes if c != x and counts[c] <= MAX_HUE_VALUES]
        out.append((x, min(others, key=lambda c: (counts[c], axes.index(c))) if others else None))
    return out


def report_figures(results: pd.DataFrame) -> list[str]:
    """The :data:`REPORT_FIGURES` a sweep recorded (a finite value at one done point at least)."""
    done = results[results["status"] == "done"] if "status" in results.columns else results
    out = []
    for c in REPORT_FIGURES:
        if c in done.columns and np.isfinite(pd.to_numeric(done[c], errors="coerce").astype("float64")).any():
            out.append(c)
    return out


def plot_sweep_panels(results: pd.DataFrame, x: str, hue: str | None, ys: Sequence[str], *, agg: str = "mean"):
    """One figure, one :func:`plot_sweep` panel per figure in ``ys``, all over the axis ``x``."""
    if not ys:
        raise ValueError("plot_sweep_panels: ys is empty; give result columns to plot, e.g. report_figures(results)")
    from matplotlib.figure import Figure

    ncol = min(2, len(ys))
    nrow = math.ceil(len(ys) / ncol)
    fig = Figure(figsize=(5.2 * ncol, 3.6 * nrow), dpi=100)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for ax, y in zip(axes.flat, ys):
        plot_sweep(results, x, y, hue, agg=agg, ax=ax)
        ax.set_title(f"{y} over {x}", fontsize="medium")
    for ax in list(axes.flat)[len(ys):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def verdict_grid(summary: pd.DataFrame) -> pd.DataFrame:
    """:func:`summarise_sweep`'s rows (one per point and check) as one row per point: the
    point's keys and axes, one column per check holding its verdict (``completed``: done /
    failed / not run), and ``note`` (a failed point's error), in plan order."""
    from .verdicts import CHECK_COLUMNS

    keys = [c for c in summary.columns if c not in ("source", "check", *CHECK_COLUMNS)]
    keys = [c for c in ("index",) if c in keys] + [c for c in keys if c != "index"]
    checks = list(dict.fromkeys(summary["check"]))
    rows: dict[str, dict] = {}
    for r in summary.to_dict("records"):
        row = rows.setdefault(r["point_id"], {**{k: r[k] for k in keys}, "note": ""})
        row[r["check"]] = r["verdict"]
        if r["check"] == "completed" and r["note"]:
            row["note"] = r["note"]
    df = pd.DataFrame(list(rows.values()), columns=[*keys, *checks, "note"])
    for k in keys:
        df[k] = df[k].astype(summary[k].dtype)
    return df.sort_values("index", kind="stable").reset_index(drop=True) if "index" in df.columns else df


# ----------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------
def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _usable_cores() -> int:
    from .environment import usable_cores

    return usable_cores()


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (set, frozenset)):
        return sorted(v)
    if dataclasses.is_dataclass(v):
        return dataclasses.asdict(v)
    raise TypeError(f"not JSON-able: {v!r}")


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _toml_plain(v):
    """Plain dicts and lists (tomllib gives those already; Python callers may pass tuples)."""
    if isinstance(v, Mapping):
        return {str(k): _toml_plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_toml_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _toml_safe(v):
    if isinstance(v, Mapping):
        return {str(k): _toml_safe(x) for k, x in v.items() if x is not None}
    if isinstance(v, (list, tuple)):
        return [_toml_safe(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _label(v) -> str:
    """A short text for a value: numbers and strings as they are, a table with a ``kind``
    as ``kind(k=v, ...)``, anything else as compact JSON."""
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, int, float, np.generic)) or v is None:
        return str(v.item() if isinstance(v, np.generic) else v)
    if isinstance(v, Mapping) and "kind" in v:
        inner = ", ".join(f"{k}={_label(x)}" for k, x in v.items() if k != "kind")
        return f"{v['kind']}({inner})"
    return _canonical(_toml_plain(v))


def _type_name(exc: BaseException) -> str:
    t = type(exc)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _utc() -> str:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _journal(path: str | None, event: str, pid: str, extra: str) -> None:
    """Append one line to the journal (O_APPEND: lines from several processes never mix)."""
    if not path:
        return
    line = f"{_utc()} {event} {pid} {extra}".rstrip() + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:  # e.g. a cluster worker on another host: the journal is a log, not a result
        log.debug("sweep journal %s not writable here (%s)", path, exc)
        return
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


if __name__ == "__main__":  # ``python -m analysis.sweep ...`` is ``wildcheck sweep ...``
    from analysis.cli import main as _main

    sys.exit(_main(["sweep", *sys.argv[1:]]))
