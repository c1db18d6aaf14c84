"""The reproducibility study: what ``wildcheck report`` runs, section by section.

A study is a :class:`StudySpec` (TOML: ``[study]``, the workload's ``[run]``, the
dense-conflict case's ``[dense.run]`` and optionally a pinned simulated ``[machine]``) and a
fixed list of sections.  :func:`run_study` executes the sections in order and writes every
table the moment a section finishes (atomically: :func:`workload.trace.write_table`), with
``manifest.json`` rewritten after each section.  A section ends in one of:

``done``           it ran;
``not available``  a module or function it needs does not exist (yet), or its data file is
                   absent -- the reason names what is missing;
``skipped``        the study's time budget ran out before it (or during it: partial
                   tables are kept and marked ``complete = false``);
``failed``         it raised; the traceback is in ``errors/<section>.txt``;
``interrupted``    Ctrl-C during it; every later section is ``not run``.

Nothing is faked: a figure whose inputs are missing is absent and the report says why.

Kinds of tables (what ``wildcheck rerun`` demands of them):

``simulated``  produced by hwsim from the spec and a pinned machine: must regenerate bit
               for bit (compared by :func:`table_sha256`);
``computed``   deterministic functions of seeded data (sparsity statistics): bit for bit;
``measured``   wall-clock measurements on real threads: must fall within the run-to-run
               spread the original report measured (the study repeats every real run).

Simulation needs a machine.  A fresh study calibrates one from its own measurements
(section ``calibrate``) and saves it as ``machine.toml``; ``wildcheck rerun`` pins that
machine (``StudySpec.machine``), so the rerun's simulated figures are a pure function of
the saved spec and must match the original's exactly.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import logging
import math
import sys
import time
import traceback
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from workload.spec import SCHEMES, DataSpec, RunSpec, SpecError
from workload.trace import atomic_write_bytes, tau_overlap, write_table

from . import environment

log = logging.getLogger("wildcheck.study")

REPO_ROOT = environment.REPO_ROOT
DEFAULT_A8A = REPO_ROOT.parent / "shared" / "data" / "a8a.gz"
STUDY_SCHEMES = ("serial", "hogwild", "hogwild-atomic", "lock-coord", "round-robin")
DENSE_SCHEMES = ("serial", "hogwild", "hogwild-atomic")
PREDICT_CORES = (1, 2, 4, 8, 16, 32, 64)
BUDGET_S = 600.0
ENGINES = ("fast", "reference")
RCV1_FEATURES = 47_236
RCV1_NNZ_MEAN = 75
RCV1_ROWS = 200_000
MANIFEST_VERSION = 1

# A measured figure regenerates "within the run-to-run spread" when the rerun's median lies
# within SPREAD_FACTOR x (max - min over the original's repeats) of the original's median.
SPREAD_FACTOR = 1.0

STATUSES = ("done", "not requested", "not available", "skipped", "failed", "interrupted", "not run")


# ----------------------------------------------------------------------------------------
# Errors that end a section without failing the study
# ----------------------------------------------------------------------------------------
class Unavailable(Exception):
    """Something a section needs is missing: a module, a function, a data file, a table."""


class NotRequested(Exception):
    """A section the study's spec does not ask for (not a gap in the report)."""


class BudgetExhausted(Exception):
    """The study's time budget ran out."""


def need(module: str, *attrs: str):
    """Import ``module`` and return it (or the attribute chain ``attrs``) or raise
    :class:`Unavailable` naming what is missing."""
    try:
        obj = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
            raise Unavailable(f"{module} missing") from exc
        raise
    for a in attrs:
        if not hasattr(obj, a):
            raise Unavailable(f"{module}.{a} missing")
        obj = getattr(obj, a)
    return obj


# ----------------------------------------------------------------------------------------
# The study spec
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class StudySpec:
    """Everything that decides a study (validated once, in :func:`validate_study`).

    run
        The base run spec of the sparse (RCV1-shaped) workload; ``scheme`` and ``threads``
        are replaced per run.
    schemes, threads, repeats
        Real runs: every scheme at every thread count (``serial`` at 1 only), each
        repeated ``repeats`` times to measure the run-to-run spread.
    predict_cores
        Simulated core counts of the prediction.
    dense, dense_schemes
        The dense-conflict case (a8a: a feature in 95% of rows): its run spec or None.
    sim_engine
        hwsim engine for every simulation (``fast`` or ``reference``: identical traces).
    epsilon
        Target accuracy ε of the theory checks (Niu et al.: f(x) − f⋆; Mania et al.:
        ‖x − x⋆‖²).
    budget_s
        Wall-clock budget; sections that do not fit are ``skipped`` and say so.
    machine
        A pinned hwsim machine (``hwsim.Machine.to_dict()``) for every simulation, or None
        to calibrate one from the study's own measurements.
    buckwild
        Run the Buckwild! section (int16 / int8 against float64 on the workload; ~30 s of
        runs, simulations and JIT compilation, so off by default: ``--buckwild``).
    regime_rows
        Rows of the workload in the ``regimes`` section (the run's synthetic data with
        ``n_rows`` replaced), or None for the run's own.  The latency-bound regime is so only
        when the rows do not fit in the last-level cache: the default study uses RCV1's
        200,000 (about 180 MB of rows), while its other sections stay at the rows x⋆ fits.
    sweep
        A parameter sweep to summarise (section ``sweep``): the path of a sweep's output
        folder (finished, partial or running: re-read as it is, also by a rerun) or of a
        grid ``.toml`` (run into ``<report>/sweep/`` through :func:`analysis.sweep.run_sweep`,
        in this process, and again by a rerun); None: not requested.
    """

    name: str = "default"
    run: RunSpec = field(default_factory=RunSpec)
    schemes: tuple[str, ...] = STUDY_SCHEMES
    threads: tuple[int, ...] = (1, 2)
    repeats: int = 3
    predict_cores: tuple[int, ...] = PREDICT_CORES
    dense: RunSpec | None = None
    dense_schemes: tuple[str, ...] = DENSE_SCHEMES
    sim_engine: str = "fast"
    epsilon: float = 1e-2
    budget_s: float = BUDGET_S
    machine: Mapping[str, Any] | None = None
    machine_provenance: Mapping[str, Any] | None = None
    buckwild: bool = False
    regime_rows: int | None = None
    sweep: str | None = None

    def __post_init__(self):
        for name in ("schemes", "threads", "predict_cores", "dense_schemes"):
            v = getattr(self, name)
            if isinstance(v, (list, tuple)):
                object.__setattr__(self, name, tuple(v))
        validate_study(self)

    def replace(self, **changes) -> "StudySpec":
        return dataclasses.replace(self, **changes)

    def seeds(self) -> dict[str, Any]:
        out = {"run.seed": self.run.seed, "run.data.seed": self.run.data.params.get("seed", self.run.seed)}
        if self.dense is not None:
            out["dense.seed"] = self.dense.seed
        return out

    def to_doc(self) -> dict:
        study = {"name": self.name, "schemes": list(self.schemes), "threads": list(self.threads),
                 "repeats": self.repeats, "predict_cores": list(self.predict_cores),
                 "dense_schemes": list(self.dense_schemes), "sim_engine": self.sim_engine,
                 "epsilon": float(self.epsilon), "budget_s": float(self.budget_s), "buckwild": bool(self.buckwild)}
        if self.regime_rows is not None:
            study["regime_rows"] = int(self.regime_rows)
        if self.sweep is not None:
            study["sweep"] = self.sweep
        doc: dict[str, Any] = {"study": study, "run": self.run.to_dict()}
        if self.dense is not None:
            doc["dense"] = {"run": self.dense.to_dict()}
        if self.machine is not None:
            doc["machine"] = _toml_safe(dict(self.machine))
        if self.machine_provenance is not None:
            doc["machine_provenance"] = _toml_safe(dict(self.machine_provenance))
        return doc

    def to_toml(self) -> str:
        import tomli_w

        header = ("# wildcheck study spec: `wildcheck report --spec THIS_FILE` runs this study again;\n"
                  "# `wildcheck rerun REPORT_DIR` does so with the report's calibrated machine pinned.\n")
        return header + tomli_w.dumps(self.to_doc())

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], where: str = "StudySpec") -> "StudySpec":
        unknown = sorted(set(doc) - {"study", "run", "dense", "machine", "machine_provenance"})
        if unknown:
            raise SpecError(unknown[0], "...", "not a study table (tables: [study], [run], [dense.run], [machine])",
                            "remove it or fix its spelling", where=where)
        study = dict(doc.get("study", {}))
        known = {f.name for f in dataclasses.fields(cls)} - {"run", "dense", "machine", "machine_provenance"}
        bad = sorted(set(study) - known)
        if bad:
            raise SpecError(f"study.{bad[0]}", study[bad[0]], f"not a study field ({', '.join(sorted(known))})",
                            "remove it or fix its spelling", where=where)
        if "run" not in doc:
            raise SpecError("run", None, "the study has no [run] table (the workload's run spec)",
                            "add a [run] table, e.g. from `wildcheck report --print-spec`", where=where)
        run = RunSpec.from_dict(doc["run"], where=f"{where} [run]")
        dense = None
        if "dense" in doc:
            if not isinstance(doc["dense"], Mapping) or "run" not in doc["dense"]:
                raise SpecError("dense", doc["dense"], "must hold a [dense.run] table",
                                "write the dense case's run spec under [dense.run]", where=where)
            dense = RunSpec.from_dict(doc["dense"]["run"], where=f"{where} [dense.run]")
        machine = doc.get("machine")
        try:
            return cls(run=run, dense=dense, machine=machine, machine_provenance=doc.get("machine_provenance"),
                       **study)
        except SpecError as exc:
            raise _with_where(exc, where) from None

    @classmethod
    def from_toml(cls, text_or_path: str | Path) -> "StudySpec":
        where = "StudySpec"
        if isinstance(text_or_path, Path) or (isinstance(text_or_path, str) and "\n" not in text_or_path
                                               and text_or_path.endswith(".toml")):
            path = Path(text_or_path)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: study spec not found; give the path of an existing .toml file "
                                        "(e.g. a report's spec.toml)")
            text, where = path.read_text(), str(path)
        else:
            text = str(text_or_path)
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SpecError("toml", None, f"not valid TOML ({exc})", "fix the syntax at the position named",
                            where=where) from None
        return cls.from_doc(doc, where=where)


def _with_where(exc: SpecError, where: str) -> SpecError:
    """The same error, its message prefixed with where the value came from."""
    new = SpecError(exc.field, exc.value, "", "", where=where)
    new.args = (f"{where}: {exc}",)
    return new


def validate_study(s: StudySpec) -> None:
    """The one place where a study spec is checked."""

    def err(name, value, allowed, fix):
        raise SpecError(name, value, allowed, fix, where="StudySpec")

    if not isinstance(s.name, str) or not s.name:
        err("name", s.name, "must be a non-empty string", "name the study, e.g. 'default'")
    if not isinstance(s.run, RunSpec):
        err("run", s.run, "must be a RunSpec", "build it with workload.spec.RunSpec(...)")
    for name in ("schemes", "dense_schemes"):
        v = getattr(s, name)
        if not isinstance(v, tuple) or not v:
            err(name, v, "must be a non-empty list of schemes", f"e.g. {list(STUDY_SCHEMES)}")
        for x in v:
            if x not in SCHEMES:
                err(name, x, f"unknown scheme; must be one of {', '.join(SCHEMES)}", "fix the scheme's spelling")
    for name in ("threads", "predict_cores"):
        v = getattr(s, name)
        if not isinstance(v, tuple) or not v or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 1
                                                        for t in v):
            err(name, v, "must be a non-empty list of integers >= 1", "e.g. [1, 2]")
    if not isinstance(s.repeats, int) or isinstance(s.repeats, bool) or s.repeats < 1:
        err("repeats", s.repeats, "must be an integer >= 1", "use e.g. 3 (2 or more measures the spread)")
    if not isinstance(s.epsilon, (int, float)) or isinstance(s.epsilon, bool) or not (s.epsilon > 0) \
            or not math.isfinite(s.epsilon):
        err("epsilon", s.epsilon, "must be a finite number > 0", "use e.g. 0.01")
    if s.sim_engine not in ENGINES:
        err("sim_engine", s.sim_engine, f"must be one of {', '.join(ENGINES)}", "use 'fast'")
    if not isinstance(s.budget_s, (int, float)) or isinstance(s.budget_s, bool) or not (s.budget_s > 0) \
            or not math.isfinite(s.budget_s):
        err("budget_s", s.budget_s, "must be a number of seconds > 0", "use e.g. 600")
    if s.dense is not None and not isinstance(s.dense, RunSpec):
        err("dense", s.dense, "must be a RunSpec or None", "build it with workload.spec.RunSpec(...)")
    if s.machine is not None and not isinstance(s.machine, Mapping):
        err("machine", s.machine, "must be a table (hwsim.Machine.to_dict())", "write it as a [machine] table")
    if s.machine_provenance is not None and not isinstance(s.machine_provenance, Mapping):
        err("machine_provenance", s.machine_provenance, "must be a table", "write it as a [machine_provenance] table")
    if not isinstance(s.buckwild, bool):
        err("buckwild", s.buckwild, "must be true or false", "write buckwild = true to run the Buckwild! section")
    if s.regime_rows is not None:
        if not isinstance(s.regime_rows, int) or isinstance(s.regime_rows, bool) or s.regime_rows < 100:
            err("regime_rows", s.regime_rows, "must be an integer >= 100 or left out (the run's own rows)",
                "e.g. regime_rows = 200000")
        if isinstance(s.run, RunSpec) and "n_rows" not in dict(s.run.data.params or {}):
            err("regime_rows", s.regime_rows, f"needs generated data with an n_rows parameter; [run.data] is "
                f"{s.run.data.source!r}", "remove regime_rows (the regimes then use the run's own data)")
    # Only the form here: whether the folder or grid exists is checked where it is used
    # (the CLI, before running; the section, which is 'not available' when it is gone), as
    # for a data file, so a saved spec stays readable on another machine.
    if s.sweep is not None and (not isinstance(s.sweep, str) or not s.sweep.strip()):
        err("sweep", s.sweep, "must be the path of a sweep output folder or of a sweep grid .toml",
            "e.g. sweep = 'reports/sweep-small' or sweep = 'examples/sweep_small.toml', or remove it")


def thread_counts(cores: int) -> tuple[int, ...]:
    """1..cores when cores <= 8; beyond that powers of two and ``cores`` itself."""
    if cores <= 8:
        return tuple(range(1, cores + 1))
    out = sorted({1 << k for k in range(int(math.log2(cores)) + 1)} | {cores})
    return tuple(out)


#: Rows of the RCV1-shaped workload that fit the default 10-minute budget.  What binds is
#: not the runs but x⋆ for the theory checks (workload's SVM solution: liblinear's dual
#: coordinate descent to tol 1e-10, single-threaded, so more cores do not help): measured
#: on a 2-core AMD EPYC, 2 s at 20k rows, 20-35 s at 50k, and over 5 minutes at 100k.  At
#: 50k rows the whole default study took ~150 s there, JIT compilation included.
ROWS_PER_BUDGET = 50_000 / 600.0


def rows_for_budget(cores: int, budget_s: float) -> int:
    """Rows of the RCV1-shaped workload that fit ``budget_s`` (see :data:`ROWS_PER_BUDGET`).

    The real runs and simulations scale linearly in the rows and fit easily; x⋆'s cost grows
    faster than linearly and does not shrink with cores, so the row count follows the
    budget only, capped at 50k per 10 minutes and at RCV1's 200,000 rows.  ``cores`` is
    kept for the signature: thread counts, not rows, follow the cores.
    """
    rows = int(ROWS_PER_BUDGET * min(float(budget_s), 600.0)) // 1000 * 1000
    return int(max(5_000, min(RCV1_ROWS, rows)))


def default_study(*, cores: int | None = None, rows: int | None = None, a8a: str | Path | None = None,
                  budget_s: float = BUDGET_S, seed: int = 0, repeats: int = 3,
                  threads: Sequence[int] | None = None, epochs: int = 3) -> StudySpec:
    """The embedded default study, sized for the machine in front of us.

    The RCV1-shaped workload (47,236 features, ~75 nonzeros per row, Zipf-skewed feature
    frequencies; Niu et al. 2011's RCV1 SVM), real runs at 1..cores threads for the five
    schemes of :data:`STUDY_SCHEMES`, calibration, prediction to 64 cores, the theory
    checks, and a8a (Δ ≈ 0.95) as the dense-conflict case when its file is present.
    """
    cores = environment.usable_cores() if cores is None else int(cores)
    rows = rows_for_budget(cores, budget_s) if rows is None else int(rows)
    run = RunSpec(problem="svm", problem_params={"lam": 1e-4, "reg": "hogwild"},
                  data=DataSpec(source="synthetic-classification",
                                params={"n_rows": rows, "n_features": RCV1_FEATURES, "nnz_mean": RCV1_NNZ_MEAN,
                                        "seed": seed}),
                  scheme="hogwild", threads=1, epochs=epochs, step=0.5, schedule="backoff", beta=0.9,
                  order="epoch-shuffle", dtype="float64", write_mode="rmw", seed=seed)
    a8a_path = Path(a8a) if a8a is not None else DEFAULT_A8A
    # a8a: logistic regression, whose x* L-BFGS finds in seconds (liblinear's SVM dual does not
    # converge on a8a within minutes); rows hold 14 ones, so a smaller step than RCV1's.
    dense = RunSpec(problem="logistic", problem_params={"lam": 1e-4, "reg": "hogwild"},
                    data=DataSpec(source="svmlight", path=str(a8a_path.resolve()), params={"n_features": 123}),
                    scheme="hogwild", threads=1, epochs=epochs, step=0.05, schedule="backoff", beta=0.9,
                    order="epoch-shuffle", dtype="float64", write_mode="rmw", seed=seed)
    return StudySpec(name="default", run=run, threads=tuple(threads) if threads else thread_counts(cores),
                     repeats=repeats, dense=dense, budget_s=float(budget_s), regime_rows=max(rows, RCV1_ROWS))


# ----------------------------------------------------------------------------------------
# Hashes
# ----------------------------------------------------------------------------------------
def table_sha256(df: pd.DataFrame) -> str:
    """SHA-256 of a table's content: column names, dtypes and values in row order.

    Independent of the file format and its metadata, so equal content hashes equal.
    """
    h = hashlib.sha256()
    h.update(f"{df.shape}".encode())
    for col in df.columns:
        s = df[col]
        h.update(f"\x00{col}\x00{s.dtype}\x00".encode())
        values = s.to_numpy()
        if values.dtype.kind in "biufcmM":
            h.update(np.ascontiguousarray(values).tobytes())
        else:
            h.update("\x1f".join("<NA>" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(v)
                                 for v in values).encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------
# Running a study
# ----------------------------------------------------------------------------------------
@dataclass
class SectionResult:
    name: str
    title: str
    status: str = "not run"
    reason: str = ""
    seconds: float = 0.0


@dataclass
class Section:
    name: str
    title: str
    fn: Callable[["Study"], None]
    units: Callable[[StudySpec], int] = lambda spec: 1


class Study:
    """A running study: the spec, the output folder, tables written so far, the clock."""

    def __init__(self, spec: StudySpec, out: str | Path, *, progress: bool | None = None,
                 command: str | None = None, rerun_of: str | None = None, clock=time.monotonic):
        self.spec = spec
        self.out = Path(out)
        self.clock = clock
        self.t0 = clock()
        self.deadline = self.t0 + float(spec.budget_s)
        self.tables: dict[str, pd.DataFrame] = {}
        self.table_meta: dict[str, dict] = {}
        self.models: dict[str, str] = {}
        self.data_hashes: dict[str, str] = {}
        self.data_files: list[str] = []
        self.state: dict[str, Any] = {}
        self.sections: list[SectionResult] = []
        self.command = command or default_command()
        self.rerun_of = rerun_of
        self.started_utc = _utcnow()
        self.progress = progress
        self.bar = None

    # --- time ---------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.clock() - self.t0

    def remaining(self) -> float:
        return self.deadline - self.clock()

    def check_budget(self, what: str, need_s: float = 0.0) -> None:
        if self.remaining() < need_s:
            raise BudgetExhausted(f"time budget of {self.spec.budget_s:.0f} s exhausted before {what} "
                                  f"({self.elapsed():.0f} s elapsed); raise [study] budget_s or lower the rows")

    # --- tables -------------------------------------------------------------------------
    def put(self, name: str, df: pd.DataFrame, *, kind: str, section: str, complete: bool = True,
            note: str = "") -> None:
        """Write ``data/<name>.parquet`` atomically and record it in the manifest."""
        if kind not in ("simulated", "computed", "measured"):
            raise ValueError(f"table kind {kind!r}: use simulated, computed or measured")
        df = df.reset_index(drop=True)
        path = write_table(df, self.out / "data" / f"{name}.parquet")
        self.tables[name] = df
        self.table_meta[name] = {"file": str(path.relative_to(self.out)), "kind": kind, "section": section,
                                 "rows": int(len(df)), "sha256": table_sha256(df), "complete": bool(complete),
                                 "note": note}

    def get(self, name: str) -> pd.DataFrame:
        if name not in self.tables:
            owner = {"sparsity": "workload", "real_runs": "real", "real_history": "real", "real_tau": "real",
                     "calibration": "calibrate", "prediction": "predict", "sim_history": "predict",
                     "sim_tau": "predict"}.get(name, "dense" if name.startswith("dense_") else "an earlier section")
            status = next((s for s in self.sections if s.name == owner), None)
            why = f"{status.status}: {status.reason}" if status and status.reason else (status.status if status else "")
            raise Unavailable(f"needs table {name!r} from section {owner!r}" + (f" ({why})" if why else ""))
        return self.tables[name]

    def tick(self, n: int = 1, note: str | None = None) -> None:
        if self.bar is not None:
            if note:
                self.bar.set_postfix_str(note, refresh=False)
            self.bar.update(n)

    # --- manifest -----------------------------------------------------------------------
    def manifest(self, state: str) -> dict:
        return {
            "wildcheck_report": MANIFEST_VERSION,
            "study": self.spec.name,
            "state": state,
            "command": self.command,
            "regenerate": f"wildcheck rerun {self.out}",
            "rerun_of": self.rerun_of,
            "started_utc": self.started_utc,
            "updated_utc": _utcnow(),
            "wall_seconds": round(self.elapsed(), 3),
            "budget_s": self.spec.budget_s,
            "sections": [dataclasses.asdict(s) for s in self.sections],
            "tables": self.table_meta,
            "models": self.models,
            "data_sha256": self.data_hashes,
        }

    def write_manifest(self, state: str) -> None:
        atomic_write_bytes(self.out / "manifest.json", (json.dumps(self.manifest(state), indent=1) + "\n").encode())


def default_command(argv: Sequence[str] | None = None) -> str:
    import shlex

    argv = list(sys.argv if argv is None else argv)
    prog = Path(argv[0]).name if argv else "wildcheck"
    if prog in ("__main__.py", "cli.py", "pytest", "-c") or not prog:
        prog = "wildcheck"
    return " ".join([prog] + [shlex.quote(a) for a in argv[1:]])


def _utcnow() -> str:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _toml_safe(v):
    """Drop None values (TOML has no null) and make tuples lists, recursively."""
    if isinstance(v, Mapping):
        return {str(k): _toml_safe(x) for k, x in v.items() if x is not None}
    if isinstance(v, (list, tuple)):
        return [_toml_safe(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


# ----------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------
WORKLOAD = "rcv1-shaped"
DENSE = "a8a"


def _problem(study: Study, key: str, spec: RunSpec):
    """Build (once) the problem a spec names; record the data's hash."""
    cache = study.state.setdefault("problems", {})
    if key not in cache:
        need("workload.data", "load_data")
        from workload.build import build_problem

        if spec.data.path:
            p = Path(spec.data.path)
            if not p.is_file():
                raise Unavailable(f"data file {p} not found (pass --a8a PATH, or put a8a.gz in ../shared/data)")
            study.data_files.append(str(p))
            study.data_hashes[f"{key}:{p.name}"] = environment.sha256_file(p)
        problem = build_problem(spec)
        t = problem.terms
        study.data_hashes[f"{key}:terms"] = environment.sha256_arrays(t.indptr, t.indices, t.values, t.y)
        cache[key] = problem
    return cache[key]


def sparsity_row(workload: str, terms, *, seed: int = 0) -> dict:
    """n, N, nnz and Ω, ρ, Δ, Δ̄_C of ``terms`` (:func:`workload.stats.sparsity_stats`:
    exact where affordable, else its seeded estimator with bounds / an interval)."""
    stats = need("workload.stats", "sparsity_stats")
    s = stats(terms, seed=seed)
    return {"workload": workload, "N": int(terms.N), "n": int(terms.n), "nnz": int(terms.nnz),
            "nnz_mean": terms.nnz / max(1, terms.N), "Omega": int(s.omega), "rho": float(s.rho),
            "rho_low": float(s.rho_low), "rho_high": float(s.rho_high), "Delta": float(s.delta),
            "Delta_C": float(s.conflict_degree), "Delta_C_low": float(s.conflict_degree_low),
            "Delta_C_high": float(s.conflict_degree_high), "exact": bool(s.rho_exact and s.conflict_degree_exact),
            "method": str(s.method)}


def section_workload(study: Study) -> None:
    spec = study.spec
    problem = _problem(study, WORKLOAD, spec.run)
    study.tick(note="sparsity")
    rows = [sparsity_row(WORKLOAD, problem.terms, seed=spec.run.seed)]
    if spec.dense is not None:
        try:
            dense = _problem(study, DENSE, spec.dense)
            rows.append(sparsity_row(DENSE, dense.terms, seed=spec.dense.seed))
        except Unavailable as exc:
            study.state["dense_unavailable"] = str(exc)
    study.put("sparsity", pd.DataFrame(rows), kind="computed", section="workload")


def _real_configs(schemes, threads) -> list[tuple[str, int]]:
    return [(s, t) for s in schemes for t in threads if not (s == "serial" and t != 1)]


def _tau_hist(samples: pd.DataFrame | None) -> pd.DataFrame:
    """τ value -> count for a sample trace (empty when the trace has no counters)."""
    if samples is None or len(samples) == 0 or (samples["finished_at_start"] < 0).all():
        return pd.DataFrame({"tau": pd.Series([], dtype="int64"), "count": pd.Series([], dtype="int64")})
    vals, counts = np.unique(tau_overlap(samples), return_counts=True)
    return pd.DataFrame({"tau": vals.astype(np.int64), "count": counts.astype(np.int64)})


def _label(df: pd.DataFrame, **cols) -> pd.DataFrame:
    df = df.copy()
    for i, (k, v) in enumerate(cols.items()):
        df.insert(i, k, v)
    return df


def _coherence_probe(study: Study, when: str, probes: list) -> None:
    """Append one :func:`analysis.calibrate.probe_coherence` to ``probes``; where the
    microbenchmarks cannot run (one CPU, no realrun), say so once and take no more."""
    if study.state.get("probes_unavailable"):
        return
    try:
        probes.append(need("analysis.calibrate", "probe_coherence")(when))
    except (Unavailable, ImportError, RuntimeError, ValueError, OSError) as exc:
        study.state["probes_unavailable"] = f"coherence probes not taken: {exc}"


def _real_runs(study: Study, workload: str, base: RunSpec, schemes, section: str, prefix: str,
               probe: bool = False) -> None:
    """Every (scheme, threads) ``repeats`` times, repeat-major so a budget cut keeps one of
    each; then, for ``hogwild`` at more than one thread, one extra run through realrun's
    lost-update probe (``options.count_lost``: slower, so not used for throughput).

    ``probe``: take the coherence microbenchmarks (:func:`_coherence_probe`) before the
    first repeat and after each one, so the calibration uses figures measured alongside the
    runs it explains (their median) and the report can say whether the machine drifted."""
    realrun = need("realrun", "run")
    spec = study.spec
    problem = _problem(study, workload, base)
    configs = _real_configs(schemes, spec.threads)
    rows, hist, taus, lost = [], [], [], []
    keep = study.state.setdefault("real_results", {})
    probes = study.state.setdefault("coherence_probes", []) if probe else None
    complete = False
    try:
        if probe:
            _coherence_probe(study, "before repeat 0", probes)
        for rep in range(spec.repeats):
            for scheme, threads in configs:
                study.check_budget(f"{workload} {scheme} x{threads} repeat {rep}")
                res = realrun(base.replace(scheme=scheme, threads=threads), problem=problem)
                n = int(sum(res.history["samples"].diff().dropna())) if len(res.history) > 1 else 0
                rows.append({"workload": workload, "scheme": scheme, "threads": threads, "repeat": rep,
                             "samples_per_s": float(res.samples_per_s), "seconds": float(np.sum(res.epoch_seconds)),
                             "samples": n, "jit_seconds": float(res.jit_seconds),
                             "lost_updates": math.nan if res.lost_updates is None else float(res.lost_updates),
                             "lost_per_sample": math.nan if res.lost_updates is None else
                             float(res.lost_updates) / max(n, 1),
                             "final_objective": float(res.history["objective"].iloc[-1]),
                             "cores": ",".join(str(c) for c in res.cores), "interrupted": bool(res.interrupted),
                             "model_sha256": environment.sha256_arrays(np.asarray(res.x))})
                hist.append(_label(res.history, workload=workload, scheme=scheme, threads=threads, repeat=rep))
                if rep == 0:
                    taus.append(_label(_tau_hist(res.samples), workload=workload, scheme=scheme, threads=threads))
                    keep[(workload, scheme, threads)] = res
                study.tick(note=f"{workload} {scheme} x{threads} #{rep}")
                if res.interrupted:
                    raise KeyboardInterrupt
            if probe:
                _coherence_probe(study, f"after repeat {rep}", probes)
        for scheme, threads in configs:
            if scheme != "hogwild" or threads < 2:
                continue
            study.check_budget(f"{workload} lost-update probe x{threads}")
            res = realrun(base.replace(scheme=scheme, threads=threads,
                                       options={**dict(base.options), "count_lost": True}),
                          problem=problem, instrument=False)
            n = int(res.history["samples"].iloc[-1])
            lost.append({"workload": workload, "scheme": scheme, "threads": threads, "samples": n,
                         "lost_updates": float(res.lost_updates if res.lost_updates is not None else math.nan),
                         "probe_samples_per_s": float(res.samples_per_s)})
        complete = True
    finally:
        if rows:
            runs = pd.DataFrame(rows)
            for r in lost:  # the probe's rate stands for every repeat of that config
                sel = (runs["workload"] == r["workload"]) & (runs["scheme"] == r["scheme"]) & \
                      (runs["threads"] == r["threads"])
                runs.loc[sel, "lost_per_sample"] = r["lost_updates"] / max(r["samples"], 1)
            study.put(f"{prefix}runs", runs, kind="measured", section=section, complete=complete)
            study.put(f"{prefix}history", pd.concat(hist, ignore_index=True), kind="measured", section=section,
                      complete=complete)
            study.put(f"{prefix}tau", pd.concat(taus, ignore_index=True), kind="measured", section=section,
                      complete=complete)
        if lost:
            study.put(f"{prefix}lost", pd.DataFrame(lost), kind="measured", section=section, complete=complete)
        if probes:
            cal_mod = need("analysis.calibrate")
            table = cal_mod.probe_table(probes)
            study.put("coherence_probes", table, kind="measured", section=section, complete=complete)
            study.put("coherence_drift", cal_mod.coherence_drift(table), kind="measured", section=section,
                      complete=complete)


def section_real(study: Study) -> None:
    _real_runs(study, WORKLOAD, study.spec.run, study.spec.schemes, "real", "real_", probe=True)


def section_calibrate(study: Study) -> None:
    """Fit the simulated machine to the 1-thread hogwild run (+ the coherence probes, the
    1-thread hogwild-atomic run for what a locked store takes and the 1-thread lock-coord
    run for what a lock costs), or pin one."""
    spec = study.spec
    cal_mod = need("analysis.calibrate", "calibrate")
    Machine = need("hwsim", "Machine")
    from analysis.calibrate import Calibration

    if spec.machine is not None:
        cal = Calibration(machine=Machine.from_dict(dict(spec.machine)), table=pd.DataFrame(),
                          provenance=dict(spec.machine_provenance or {}))
        study.state["calibration"] = cal
        study.state["machine_source"] = "pinned by the study spec ([machine]), as calibrated by the original report"
        _write_machine(study, cal)
        return
    res = study.state.get("real_results", {}).get((WORKLOAD, "hogwild", 1))
    if res is None:
        raise Unavailable("needs the 1-thread hogwild real run (section 'real' did not produce it)")
    problem = _problem(study, WORKLOAD, spec.run)
    pingpong, overlap, how = None, None, "coherence cost from realrun.pingpong"
    probes = study.state.get("coherence_probes") or []
    state_note = ""
    if probes:  # taken alongside the real runs: the medians of those around the repeats of one state
        probes, state_note = _steady_probes(study, probes)
        pingpong, overlap = need("analysis.calibrate", "pooled_probes")(probes)
    else:
        try:
            pingpong = need("realrun", "pingpong")()
        except (Unavailable, RuntimeError) as exc:
            how = f"coherence cost off: {exc}"
            study.state.setdefault("partial", {})["calibrate"] = how
    calm = need("analysis.calibrate")
    f0 = calm.fit(res.samples, problem=problem, epoch_seconds=res.epoch_seconds)
    kw, atomic_note = {"fitted": f0}, ""
    # what a locked store and a lock take: the 1-thread hogwild-atomic / lock-coord runs against the plain one
    for scheme, estimate, field, what, otherwise in (
            ("hogwild-atomic", calm.atomic_write_ns, "atomic_write", "an atomic-instruction store takes",
             "atomic-instruction stores take write_cost"),
            ("lock-coord", calm.lock_ns, "lock", "a lock costs", "locks cost nothing")):
        run = study.state.get("real_results", {}).get((WORKLOAD, scheme, 1))
        if run is None:
            continue
        try:
            ns, src = estimate(run, f0, problem=problem)
            kw.update({f"{field}_cost": ns, f"{field}_source": src})
            atomic_note += f"; {what} {ns:.3g} ns (the 1-thread {scheme} run)"
        except ValueError as exc:
            atomic_note += f"; {otherwise} ({exc})"
    if pingpong is not None:
        cal, how = need("analysis.calibrate", "calibrate_split")(res, problem=problem, pingpong=pingpong,
                                                                 spec=res.spec, overlap=overlap, **kw)
        how += atomic_note
        if probes:
            how += (f"; median of {len(probes)} coherence probes taken before and between the real runs' repeats "
                    f"(table coherence_probes){state_note}")
        elif study.state.get("probes_unavailable"):
            how += f"; {study.state['probes_unavailable']}"
    else:
        cal = cal_mod(res, problem=problem, **kw)
        how += atomic_note
    study.state["calibration"] = cal
    study.state["machine_source"] = f"calibrated on the 1-thread hogwild run; {how}"
    _write_machine(study, cal)
    if cal.table is not None and len(cal.table):
        study.put("calibration", pd.DataFrame(cal.table), kind="measured", section="calibrate")


def _steady_probes(study: Study, probes: list) -> tuple[list, str]:
    """The probes to calibrate on, and a phrase saying which.  The host can move the vCPUs
    while the real runs are measured (:func:`analysis.calibrate.probe_states`): the
    calibration then takes the probes around the repeats of the state most repeats ran in
    (ties: the lower ping-pong), and the comparison uses those repeats only
    (``study.state["state_repeats"]``; table ``coherence_states``).  With fewer than two
    probes, or no steady repeat, every probe is used."""
    cal_mod = need("analysis.calibrate")
    if len(probes) < 2:
        return probes, ""
    states = cal_mod.probe_states(cal_mod.probe_table(probes))
    reps = _main_state(states)
    if reps is None:
        study.put("coherence_states", states.assign(used=True), kind="measured", section="calibrate")
        return probes, "; no repeat had steady probes on both sides, so all are pooled"
    study.put("coherence_states", states.assign(used=states["repeat"].isin(reps)), kind="measured",
              section="calibrate")
    if len(reps) == len(states):
        return probes, ""
    study.state["state_repeats"] = reps
    left = [int(r) for r in states["repeat"] if int(r) not in reps]
    pp = float(np.median([states.loc[r, "pingpong_lo"] for r in reps]))
    return _around(probes, reps), (
        f"; the host moved the vCPUs while the runs were measured: calibrated on the probes around repeats {reps} "
        f"(one state, ping-pong about {pp:.3g} ns), and the comparison uses those repeats only (repeats {left} "
        "ran in another state or while the host moved: table coherence_states)")


def _main_state(states: pd.DataFrame) -> list[int] | None:
    """The repeats of the host state most repeats ran in (ties: the lower-numbered state, i.e.
    the lower ping-pong) from :func:`analysis.calibrate.probe_states`' table; None when no
    repeat was steady."""
    steady = states[states["state"] >= 0]
    if steady.empty:
        return None
    counts = steady.groupby("state").size()
    best = int(counts[counts == counts.max()].index.min())
    return sorted(int(r) for r in states.loc[states["state"] == best, "repeat"])


def _around(probes: list, reps: list[int]) -> list:
    """The probes taken around the given repeats (repeat r ran between probes r and r + 1)."""
    return [probes[i] for i in sorted({i for r in reps for i in (r, r + 1)})]


def _write_machine(study: Study, cal) -> None:
    atomic_write_bytes(study.out / "machine.toml", cal.to_toml().encode())


def _calibration(study: Study):
    if "calibration" not in study.state:
        raise Unavailable("needs a calibrated machine (section 'calibrate' did not produce one)")
    return study.state["calibration"]


def _predict(study: Study, workload: str, base: RunSpec, schemes, section: str, prefix: str) -> None:
    """Simulate every scheme with the calibrated machine: full runs at the measured thread
    counts (for the convergence and τ comparisons), then the other core counts of
    ``predict_cores`` (``analysis.predict``'s reduced runs where large)."""
    predict_detail = need("analysis.predict", "predict_detail")
    need("hwsim", "simulate")
    cal = _calibration(study)
    problem = _problem(study, workload, base)
    measured = sorted(set(study.spec.threads))
    summary, hist, taus = [], [], []
    complete = False
    try:
        for scheme in schemes:
            if scheme == "serial":
                parts = [((1,), None)]
            else:
                more = sorted(set(study.spec.predict_cores) - set(measured)) if prefix == "" else []
                parts = [(tuple(measured), None)] + ([(tuple(more), "default")] if more else [])
            for cores, limit in parts:
                study.check_budget(f"simulating {workload} {scheme} at {list(cores)} cores")
                kw = {} if limit == "default" else {"max_samples": None}
                try:
                    d = predict_detail(base.replace(scheme=scheme, threads=1), cal, cores=cores, problem=problem,
                                       engine=study.spec.sim_engine, **kw)
                except NotImplementedError as exc:
                    part = study.state.setdefault("partial", {})
                    part[section] = (part[section] + "; " if part.get(section) else "") + \
                        f"hwsim cannot simulate {scheme}: {exc}"
                    break
                summary.append(_label(d.summary, workload=workload, scheme=scheme))
                if len(d.history):
                    hist.append(_label(d.history, workload=workload, scheme=scheme))
                if len(d.tau):
                    taus.append(_label(d.tau, workload=workload, scheme=scheme))
                study.tick(len(cores), note=f"sim {workload} {scheme} x{','.join(map(str, cores))}")
        complete = True
    finally:
        if summary:
            sm = pd.concat(summary, ignore_index=True)
            # speedup over each scheme's own 1-core point (the calls above each had their own base)
            base_sps = sm[sm["threads"] == 1].set_index(["workload", "scheme"])["samples_per_s"]
            keys = list(zip(sm["workload"], sm["scheme"]))
            sm["speedup"] = [sps / base_sps.get(k, math.nan) for sps, k in zip(sm["samples_per_s"], keys)]
            sm["speedup_base_threads"] = 1
            study.put(f"{prefix}prediction", sm, kind="simulated", section=section, complete=complete)
        if hist:
            study.put(f"{prefix}sim_history", pd.concat(hist, ignore_index=True), kind="simulated", section=section,
                      complete=complete)
        if taus:
            study.put(f"{prefix}sim_tau", pd.concat(taus, ignore_index=True), kind="simulated", section=section,
                      complete=complete)


def section_predict(study: Study) -> None:
    _predict(study, WORKLOAD, study.spec.run, study.spec.schemes, "predict", "")


#: Issue 13's two regimes: how realrun's hogwild kernel reaches its rows (its
#: ``options.prefetch``; None: realrun's default).  ``cache-friendly`` prefetches each row
#: ahead, so what limits two threads is the hot features' cache lines moving between the
#: cores; ``latency-bound`` does not prefetch, each random row is a run of cache misses, and
#: two cores overlap them.
REGIMES: tuple[tuple[str, int | None], ...] = (("cache-friendly", None), ("latency-bound", 0))


def _regime(study: Study, run: RunSpec, name: str, prefetch: int | None, problem) -> dict:
    """One regime: hogwild at 1 and 2 threads, ``repeats`` times interleaved with coherence
    probes around them; calibrate on the median 1-thread run, the probes of the state most
    repeats ran in and the 1-thread microbenchmarks (:func:`analysis.calibrate.calibrate_split`,
    nothing from a 2-thread run); predict 1 and 2 cores on the full epoch; compare the
    speedup with that state's 2-thread runs."""
    realrun = need("realrun", "run")
    cal_mod = need("analysis.calibrate")
    pred = need("analysis.predict")
    cmp = need("analysis.compare", "compare")
    spec = study.spec
    if prefetch is None:
        prefetch = need("realrun.engine", "DEFAULT_PREFETCH")
    base = run.replace(scheme="hogwild", threads=1, options={**dict(run.options), "prefetch": int(prefetch)})
    for t in (1, 2):  # warm-up: compiles this kernel variant outside the measurements
        realrun(base.replace(threads=t, epochs=1), problem=problem)
    ones, twos, probes = [], [], []
    _coherence_probe(study, f"{name}: before repeat 0", probes)
    for rep in range(spec.repeats):
        study.check_budget(f"regime {name} repeat {rep}")
        for runs, threads in ((ones, 1), (twos, 2)):
            runs.append(realrun(base.replace(threads=threads), problem=problem))
            if runs[-1].interrupted:  # Ctrl-C inside realrun: the study keeps what it has and says so
                raise KeyboardInterrupt
        _coherence_probe(study, f"{name}: after repeat {rep}", probes)
        study.tick(note=f"regime {name} #{rep}")
    reps, note = list(range(len(twos))), ""
    if len(probes) == len(twos) + 1:
        main = _main_state(cal_mod.probe_states(cal_mod.probe_table(probes)))
        if main is None:
            note = "no repeat had steady probes on both sides: all pooled"
        else:
            reps = main
            if len(reps) < len(twos):
                note = f"host moved: compared with repeats {reps} (one state)"
        probes = _around(probes, reps)
    order = np.argsort([r.samples_per_s for r in ones])
    calib_run = ones[int(order[len(order) // 2])]
    if probes:
        pingpong, overlap = cal_mod.pooled_probes(probes)
    else:
        pingpong, overlap = need("realrun", "pingpong")(), None
    cal, how = cal_mod.calibrate_split(calib_run, problem=problem, pingpong=pingpong, spec=base, overlap=overlap)
    p = pred.predict_detail(base, cal, cores=(1, 2), problem=problem, engine=spec.sim_engine, max_samples=None)
    meas = pred.measured(ones + [twos[r] for r in reps])
    table = cmp(meas, p)
    row = table[(table["threads"] == 2) & (table["figure"] == "speedup")].iloc[0]
    tau0 = need("analysis.compare", "tau0_share")
    m1 = np.array([r.samples_per_s for r in ones])
    m2 = np.array([twos[r].samples_per_s for r in reps])
    hw = cal.machine
    return {"workload": WORKLOAD, "regime": name, "prefetch": int(prefetch), "rows": int(problem.N),
            "epochs": int(base.epochs), "scheme": "hogwild",
            "threads": 2, "figure": "speedup", "measured": float(row["measured"]),
            "measured_lo": float(m2.min() / np.median(m1)), "measured_hi": float(m2.max() / np.median(m1)),
            "predicted": float(row["predicted"]), "observed": float(row["observed"]), "bound": float(row["bound"]),
            "relation": row["relation"], "verdict": row["verdict"], "threshold_name": row["threshold_name"],
            "repeats_compared": len(reps), "pingpong_ns": float(cal_mod.coherence_ns(pingpong)),
            "read_miss_ns": int(hw.coherence_cost), "store_miss_ns": int(hw.store_miss_cost),
            "miss_overlap_ns": int(hw.miss_overlap), "one_thread_samples_per_s": float(np.median(m1)),
            "tau0_measured": tau0(meas.tau[meas.tau["threads"] == 2]),
            "tau0_predicted": tau0(p.tau[p.tau["threads"] == 2]),
            "calibration": how,
            "note": "; ".join(x for x in (note, str(row["note"]) if row["verdict"] == "not applicable" else "") if x)}


def section_regimes(study: Study) -> None:
    """Issue 13's out-of-sample test in its two regimes (:data:`REGIMES`): table ``regimes``."""
    spec = study.spec
    if "hogwild" not in spec.schemes or 2 not in spec.threads:
        raise Unavailable("needs hogwild among the study's schemes and 2 among its thread counts")
    need("realrun", "run")
    run = spec.run
    if spec.regime_rows is not None and spec.regime_rows != run.data.params.get("n_rows"):
        run = run.replace(data=dataclasses.replace(run.data, params={**dict(run.data.params),
                                                                     "n_rows": int(spec.regime_rows)}))
    problem = _problem(study, f"{WORKLOAD}-regimes", run)
    rows = []
    complete = False
    try:
        for name, prefetch in REGIMES:
            rows.append(_regime(study, run, name, prefetch, problem))
        complete = True
    finally:
        if rows:
            study.put("regimes", pd.DataFrame(rows), kind="measured", section="regimes", complete=complete)


def _compare(study: Study, prefix: str, section: str) -> None:
    fn = need("analysis.compare", "compare")
    real = "dense_real_" if prefix else "real_"
    runs = study.get(f"{real}runs")
    reps = study.state.get("state_repeats")
    if not prefix and reps is not None:  # the repeats that ran in the calibration's state (_steady_probes)
        runs = runs[runs["repeat"].isin(reps)]
    df = fn(runs, study.get(f"{prefix}prediction"),
            measured_history=study.tables.get(f"{real}history"),
            predicted_history=study.tables.get(f"{prefix}sim_history"),
            measured_tau=study.tables.get(f"{real}tau"), predicted_tau=study.tables.get(f"{prefix}sim_tau"))
    study.put(f"{prefix}comparison", pd.DataFrame(df), kind="measured", section=section)


def _implied_coherence(study: Study, prefix: str, workload: str, base: RunSpec, section: str) -> None:
    """Per scheme and measured thread count > 1: the coherence cost at which hwsim, with
    every other parameter as calibrated, reproduces the measured speedup
    (:func:`analysis.calibrate.implied_coherence`). Fitted to the run it explains: an
    in-sample diagnostic of the calibrated cost, never a prediction, so no verdict."""
    fn = need("analysis.calibrate", "implied_coherence")
    cmp = study.tables.get(f"{prefix}comparison")
    if cmp is None or not len(cmp):
        return
    cal = _calibration(study)
    problem = _problem(study, workload, base)
    sp = cmp[(cmp["figure"] == "speedup") & (cmp["threads"] > 1)]
    rows = []
    try:
        for r in sp.itertuples():
            measured = float(r.measured)
            if not (math.isfinite(measured) and measured > 0):
                continue
            try:
                study.check_budget(f"implied coherence cost, {workload} {r.scheme} x{r.threads}")
            except BudgetExhausted as exc:  # the comparison itself is done: only the diagnostic stops short
                part = study.state.setdefault("partial", {})
                part[section] = (part[section] + "; " if part.get(section) else "") + \
                    f"implied coherence costs for {len(rows)} of {len(sp)} points: {exc}"
                break
            d = fn(base.replace(scheme=r.scheme, threads=1), cal, measured, threads=int(r.threads), problem=problem,
                   engine=study.spec.sim_engine)
            rows.append({"workload": workload, "scheme": r.scheme, "threads": int(r.threads),
                         "measured_speedup": measured, "implied_coherence_cost": d["implied"],
                         "calibrated_coherence_cost": d["calibrated"], "atomic_store_cost_fixed": d["atomic_fixed"],
                         "plain_store_cost_fixed": d.get("store_fixed"),
                         "speedup_at_zero_cost": d["speedup_at_zero"],
                         "note": d["note"]})
            study.tick(note=f"implied coherence {workload} {r.scheme}")
    finally:
        if rows:
            df = pd.DataFrame(rows)
            for c in ("implied_coherence_cost", "atomic_store_cost_fixed", "plain_store_cost_fixed"):
                df[c] = df[c].astype("Float64")
            study.put(f"{prefix}coherence_implied", df, kind="measured", section=section)


def section_compare(study: Study) -> None:
    _compare(study, "", "compare")
    _implied_coherence(study, "", WORKLOAD, study.spec.run, "compare")


NOISE_ROWS = 5_000  # rows of the subset on which the coordinate-level noise terms are simulated


def section_noise(study: Study) -> None:
    """Measured perturbed-iterate noise terms: hogwild at the largest thread count on the
    calibrated machine with the coordinate trace, one epoch over NOISE_ROWS rows (a seeded
    subset; per-sample quantities keep the full problem's supports), with atomic writes --
    the model of Mania et al.'s analysis, in which x̂_k − x_k is exactly a sum over
    overlapping samples (lost updates, which break that, are measured separately) -- and in
    hwsim's exact fixed-point mode, so a sample nothing overlapped has x̂_k − x_k = 0 exactly
    rather than a float rounding residue that a zero bound would call a violation."""
    fn = need("hwsim.checks", "noise")
    simulate = need("hwsim", "simulate")
    subsample = need("analysis.predict", "subsample_problem")
    cal = _calibration(study)
    problem = _problem(study, WORKLOAD, study.spec.run)
    sub = problem if problem.N <= NOISE_ROWS else subsample(problem, NOISE_ROWS, study.spec.run.seed)
    t = max(study.spec.threads)
    spec = study.spec.run.replace(scheme="hogwild", threads=t, epochs=1, write_mode="atomic", dtype="fixed")
    res = simulate(spec, dataclasses.replace(cal.machine, cores=t), problem=sub, engine=study.spec.sim_engine,
                   coord_trace=True)
    raw = pd.DataFrame(fn(res, problem=sub))
    # hwsim.checks.noise gives dist2 = ‖x̂_k − x_k‖² and inner = ⟨x_k − x̂_k, g_k⟩; the theory's
    # noise table wants noise_inner = ⟨x̂_k − x_k, g_k⟩ (Mania et al.'s R1), the opposite sign.
    table = pd.DataFrame({"sample": raw["sample"].to_numpy(), "noise_sq": raw["dist2"].to_numpy(),
                          "noise_inner": -raw["inner"].to_numpy()})
    tau = tau_overlap(res.samples.set_index("sample").loc[table["sample"]].reset_index())
    table["tau"] = tau.astype(np.int64)
    table["step"] = res.samples.set_index("sample").loc[table["sample"], "step"].to_numpy()
    study.state.setdefault("noise", {})[WORKLOAD] = {"table": table, "samples": res.samples,
                                                      "lost_updates": int(res.lost_updates)}
    study.put("noise", _label(table, workload=WORKLOAD, threads=t, rows=sub.N), kind="simulated", section="noise")
    study.tick(note="noise terms")


def _trace_for_theory(study: Study, workload: str, schemes) -> tuple:
    """(samples, history, lost_updates, source) of the most parallel hogwild-like run:
    measured (realrun's τ counters: what the hardware did), or nothing."""
    tmax = max(study.spec.threads)
    for scheme in [s for s in ("hogwild", "hogwild-atomic") if s in schemes]:
        res = study.state.get("real_results", {}).get((workload, scheme, tmax))
        if res is not None and res.samples is not None and len(res.samples):
            return res.samples, res.history, int(res.lost_updates or 0), f"measured {scheme} x{tmax}"
    return None, None, 0, "no trace (τ unknown)"


def _theory_table(study: Study, workload: str, base: RunSpec, schemes) -> tuple[pd.DataFrame, str]:
    theory = need("analysis.theory", "check_all")
    inputs_fn = need("analysis.theory", "theory_inputs")
    problem = _problem(study, workload, base)
    sp = study.get("sparsity")
    row = sp[sp["workload"] == workload]
    if len(row) == 0:
        raise Unavailable(f"no sparsity statistics for {workload}")
    stats = {k: float(row.iloc[0][k]) for k in ("Omega", "rho", "Delta", "Delta_C")}
    samples, history, lost, source = _trace_for_theory(study, workload, schemes)
    study.check_budget(f"theory checks on {workload} (needs x⋆)")
    inputs = inputs_fn(problem, samples=samples, stats=stats, seed=base.seed)
    noise = study.state.get("noise", {}).get(workload)
    df = theory(inputs, epsilon=study.spec.epsilon, history=history, step=float(base.step),
                noise=None if noise is None else noise["table"],
                samples=None if noise is None else noise["samples"],
                lost_updates=lost if noise is None else noise["lost_updates"])
    df = _label(pd.DataFrame(df), workload=workload)
    df["tau_source"] = source
    return df, ("measured" if source.startswith("measured") else "computed")


def section_theory(study: Study) -> None:
    df, kind = _theory_table(study, WORKLOAD, study.spec.run, study.spec.schemes)
    study.put("theory", df, kind=kind, section="theory")
    study.tick(note="theory")


def section_dense(study: Study) -> None:
    """a8a: real runs, simulation at the measured thread counts, comparison, theory."""
    spec = study.spec
    if spec.dense is None:
        raise Unavailable("the study spec has no [dense.run] (dense-conflict case not requested)")
    if "dense_unavailable" in study.state:
        raise Unavailable(study.state["dense_unavailable"])
    _problem(study, DENSE, spec.dense)
    notes = []
    steps = (("real runs", lambda: _real_runs(study, DENSE, spec.dense, spec.dense_schemes, "dense", "dense_real_")),
             ("simulation", lambda: _predict(study, DENSE, spec.dense, spec.dense_schemes, "dense", "dense_")),
             ("comparison", lambda: _compare(study, "dense_", "dense")),
             ("theory checks", lambda: _dense_theory(study)))
    for what, fn in steps:
        try:
            fn()
        except Unavailable as exc:
            notes.append(f"{what} not available: {exc}")
    if notes:
        part = study.state.setdefault("partial", {})
        part["dense"] = "; ".join(([part["dense"]] if part.get("dense") else []) + notes)


def _dense_theory(study: Study) -> None:
    df, kind = _theory_table(study, DENSE, study.spec.dense, study.spec.dense_schemes)
    study.put("dense_theory", df, kind=kind, section="dense")


STRAGGLER_NS = (10, 100, 1000, 10000)  # simulated workers in the iteration-time study (issue 10)
STRAGGLER_CORES = (1, 2, 4, 8, 16)  # simulated cores for time-to-accuracy, sync vs async


def section_stragglers(study: Study) -> None:
    """Synchronous minibatch SGD under stragglers (X = c + Exp(λ) per worker step): the
    iteration time against the order-statistics prediction c + H_n/λ, and time to accuracy
    of minibatch-sync vs hogwild under the same delays (hwsim; only when minibatch-sync is
    among the study's schemes)."""
    if "minibatch-sync" not in study.spec.schemes:
        raise NotRequested("minibatch-sync is not among the study's schemes (add it to [study] schemes)")
    import hwsim
    from .stragglers import iteration_time_table, sync_vs_async, time_to_accuracy

    delay = hwsim.ShiftedExponential(1000, 1.0 / 2000.0)  # 1 + Exp(λ = 0.5) in units of 1000 ticks
    study.check_budget("the straggler study", 5.0)
    study.put("straggler_iterations", iteration_time_table(delay, STRAGGLER_NS, seed=study.spec.run.seed).assign(
        shift=delay.shift, rate=delay.rate), kind="simulated", section="stragglers")
    spec = study.spec.run.replace(epochs=max(3, study.spec.run.epochs))
    problem = _problem(study, WORKLOAD, spec)
    machine = hwsim.Machine(cores=max(STRAGGLER_CORES), read_cost=1, write_cost=1, delay=delay)
    hist = sync_vs_async(spec, machine, STRAGGLER_CORES, problem=problem)
    study.put("straggler_histories", hist, kind="simulated", section="stragglers")
    f_ref = float(hist["objective"].min())
    study.put("straggler_tta", time_to_accuracy(hist, f_ref=f_ref, epsilon=0.05), kind="simulated",
              section="stragglers")


# --- Buckwild! (issue 8) -------------------------------------------------------------------
#: (variant, scheme, bits, rounding): float64 Hogwild! and Buckwild! at int16 / int8 with
#: unbiased rounding, and int8 with biased (nearest) rounding, on the study's workload.
BUCKWILD_VARIANTS = (("float64", "hogwild", 64, None), ("int16", "buckwild", 16, "stochastic"),
                     ("int8", "buckwild", 8, "stochastic"), ("int8-nearest", "buckwild", 8, "nearest"))
BUCKWILD_THREADS = (1, 2)  # measured thread counts, where the study's threads include them
BUCKWILD_CHECK_ROWS = 5_000  # rows of the subset for hwsim vs realrun and the bound (x̃⋆ per variant)


def _buckwild_units(spec: StudySpec) -> int:
    if not spec.buckwild:
        return 0
    threads = [t for t in BUCKWILD_THREADS if t in spec.threads] or [1]
    return len(BUCKWILD_VARIANTS) * len(threads) * spec.repeats + len(BUCKWILD_VARIANTS) - 1


def buckwild_spec(base: RunSpec, variant: str, model_exp: Mapping[int, int], threads: int = 1) -> RunSpec:
    """``base`` as one of :data:`BUCKWILD_VARIANTS`: float64 Hogwild!, or Buckwild! with data
    and model at ``bits`` bits, the model scale ``model_exp[bits]`` and the variant's rounding."""
    _, scheme, bits, rounding = next(v for v in BUCKWILD_VARIANTS if v[0] == variant)
    if scheme != "buckwild":
        return base.replace(scheme=scheme, dtype="float64", threads=threads)
    return base.replace(scheme="buckwild", threads=threads,
                        options={"model_bits": bits, "data_bits": bits, "model_exp": int(model_exp[bits]),
                                 "rounding": rounding})


def section_buckwild(study: Study) -> None:
    """Buckwild! against float64 on the study's workload (De Sa et al., NIPS 2015, §4):

    * real runs of every :data:`BUCKWILD_VARIANTS` at 1 and 2 threads (those of the study's
      threads), repeated, without instrumentation (throughput: *measured*); the final
      objective of each against float64's at 1 thread (the accuracy loss; one thread is
      deterministic).  Each model's scale is picked from the float64 run
      (:func:`analysis.buckwild.model_exp_for`);
    * on a seeded subset of :data:`BUCKWILD_CHECK_ROWS` rows: each Buckwild! variant at one
      worker in hwsim and in realrun, and whether the two integer models are equal bit for
      bit (*simulated*); and the rounding-variance bound's check of that run
      (:func:`analysis.buckwild.bound_check_rows`: x̃⋆ of the quantised subset is cheap
      where the full problem's is not).
    """
    spec = study.spec
    if not spec.buckwild:
        raise NotRequested("Buckwild! is off by default (about 30 s on the default workload); pass --buckwild or "
                           "set [study] buckwild = true")
    realrun = need("realrun", "run")
    simulate = need("hwsim", "simulate")
    losses = need("workload.buckwild", "LOSSES")
    if spec.run.problem not in losses:
        raise Unavailable(f"Buckwild! runs the linear problems ({', '.join(losses)}); the workload's problem is "
                          f"{spec.run.problem!r}")
    from .buckwild import accuracy_loss, bound_check_rows, model_exp_for, saturated_count

    problem = _problem(study, WORKLOAD, spec.run)
    threads = [t for t in BUCKWILD_THREADS if t in spec.threads] or [1]
    names = [v[0] for v in BUCKWILD_VARIANTS]  # float64 first: its 1-thread run sets the models' scale
    rows, hist, model_exp, first = [], [], {}, {}
    complete = False
    try:
        for rep in range(spec.repeats):
            for name in names:
                for t in threads:
                    study.check_budget(f"Buckwild! {name} x{t} repeat {rep}")
                    run_spec = buckwild_spec(spec.run, name, model_exp, t)
                    res = realrun(run_spec, problem=problem, instrument=False)
                    cfg = res.info["config"] if run_spec.scheme == "buckwild" else None
                    if name == "float64" and t == 1 and rep == 0:
                        model_exp.update({bits: model_exp_for(res.x, bits) for _, s, bits, _ in BUCKWILD_VARIANTS
                                          if s == "buckwild"})
                    _, scheme, bits, rounding = BUCKWILD_VARIANTS[names.index(name)]
                    rows.append({"workload": WORKLOAD, "variant": name, "scheme": scheme, "bits": bits,
                                 "rounding": rounding or "", "model_exp": float(cfg.model_exp) if cfg else math.nan,
                                 "threads": t, "repeat": rep, "samples_per_s": float(res.samples_per_s),
                                 "seconds": float(np.sum(res.epoch_seconds)), "jit_seconds": float(res.jit_seconds),
                                 "final_objective": float(res.history["objective"].iloc[-1]),
                                 "saturated": float(saturated_count(res.x, cfg)) if cfg else math.nan,
                                 "model_sha256": environment.sha256_arrays(np.asarray(res.x))})
                    if rep == 0:
                        hist.append(_label(res.history, workload=WORKLOAD, variant=name, threads=t))
                        first[(name, t)] = res
                    study.tick(note=f"buckwild {name} x{t} #{rep}")
        complete = True
    finally:
        if rows:
            study.put("buckwild_runs", pd.DataFrame(rows), kind="measured", section="buckwild", complete=complete)
            study.put("buckwild_history", pd.concat(hist, ignore_index=True), kind="measured", section="buckwild",
                      complete=complete)
    full = first[("float64", 1)]
    acc = []
    for name in names[1:]:
        loss = accuracy_loss(first[(name, 1)].history, full.history).iloc[-1]
        r = next(x for x in rows if x["variant"] == name and x["threads"] == 1)
        acc.append({"workload": WORKLOAD, "variant": name, "bits": r["bits"], "rounding": r["rounding"],
                    "model_exp": r["model_exp"], "objective": float(loss["objective_low"]),
                    "objective_float64": float(loss["objective_full"]), "loss": float(loss["loss"]),
                    "relative": float(loss["relative"]), "saturated": r["saturated"]})
    study.put("buckwild_accuracy", pd.DataFrame(acc), kind="measured", section="buckwild",
              note="one thread: deterministic runs")

    # hwsim vs realrun at one worker, and the bound, on a seeded subset
    subsample = need("analysis.predict", "subsample_problem")
    sub = problem if problem.N <= BUCKWILD_CHECK_ROWS else subsample(problem, BUCKWILD_CHECK_ROWS, spec.run.seed)
    cal = study.state.get("calibration")
    if cal is not None:
        machine, machine_name = dataclasses.replace(cal.machine, cores=1), "calibrated, 1 core"
    else:
        machine, machine_name = need("hwsim", "Machine")(cores=1), "hwsim.Machine(cores=1) (no calibration)"
    sims, checks = [], []
    for name in names[1:]:
        study.check_budget(f"Buckwild! {name} in hwsim")
        one = buckwild_spec(spec.run, name, model_exp, 1)
        real = realrun(one, problem=sub, instrument=False)
        sim = simulate(one, machine, problem=sub, engine=spec.sim_engine, coord_trace=False)
        same = bool(real.x.dtype == sim.x.dtype and np.array_equal(real.x, sim.x))
        sims.append({"workload": WORKLOAD, "variant": name, "rows": int(sub.N), "epochs": int(one.epochs),
                     "machine": machine_name, "engine": str(sim.engine),
                     "sim_final_objective": float(sim.history["objective"].iloc[-1]),
                     "real_final_objective": float(real.history["objective"].iloc[-1]),
                     "model_sha256": environment.sha256_arrays(np.asarray(sim.x)), "bit_for_bit": same,
                     "verdict": "identical" if same else "differs"})
        for row in bound_check_rows(one, sub, real.x):
            checks.append({"workload": WORKLOAD, "variant": name, "rows": int(sub.N), **row})
        study.tick(note=f"buckwild {name} hwsim")
    study.put("buckwild_sim", pd.DataFrame(sims), kind="simulated", section="buckwild")
    # "measured", not "computed": x̃⋆ comes from the problem's solver (for svm liblinear, whose
    # coordinate order is drawn from an unseeded generator), so its last digits vary between solves
    study.put("buckwild_bound", pd.DataFrame(checks), kind="measured", section="buckwild",
              note="one-worker realrun (deterministic) against x̃⋆ of the quantised rows (solver: last digits vary)")


# --- A parameter sweep (issue 12) ----------------------------------------------------------
SWEEP_FOLDER = "sweep"  # where a grid given to the study runs, inside the report folder


def section_sweep(study: Study) -> None:
    """Summarise a parameter sweep (:mod:`analysis.sweep`): points done / failed / pending,
    the verdicts across the grid (its ``[checks]``), the failures, and the results table the
    report plots over the axes.

    ``[study] sweep`` names a sweep folder (read as it is: a partial one is summarised as
    partial) or a grid ``.toml``, run here into ``<report>/sweep/`` in this process (so a
    rerun runs it again and its simulated points must regenerate bit for bit).  Tables are
    *simulated* when every point is a simulation, *measured* when some are real runs.
    """
    src = study.spec.sweep
    if src is None:
        raise NotRequested("no sweep given (pass --sweep DIR_OR_GRID, or set [study] sweep)")
    sw = need("analysis.sweep")
    try:
        kind, path = sw.sweep_source(src)
    except FileNotFoundError as exc:
        raise Unavailable(str(exc)) from None
    interrupted = False
    if kind == "grid":
        grid = sw.load_grid(path)
        study.check_budget(f"the sweep {path} ({len(grid)} points)")
        folder = study.out / SWEEP_FOLDER
        try:
            sw.run_sweep(grid, folder, workers=1, progress=False)
        except KeyboardInterrupt:  # run_sweep committed what finished: summarise it, then stop
            interrupted = True
        checks = dict(grid.checks)
        how = f"grid {path} run into {SWEEP_FOLDER}/ (a rerun runs it again)"
    else:
        folder = path
        checks = sw.read_checks(folder)
        how = f"sweep folder {path} read as it is (a rerun reads it again)"
    results = sw.load_results(folder)
    counts = sw.sweep_counts(results)
    kind_of = "measured" if (results["kind"] == "real").any() else "simulated"
    summary = sw.summarise_sweep(results, checks)
    status = {"source": str(src), "source_kind": kind, **counts,
              "checks": ", ".join(c for c in dict.fromkeys(summary["check"]) if c != "completed")}
    complete = not counts["partial"]
    study.put("sweep_status", pd.DataFrame([status]), kind=kind_of, section="sweep", note=how)
    points = results.drop(columns=[c for c in sw.NONDETERMINISTIC_COLUMNS if c in results.columns])
    study.put("sweep_points", points, kind=kind_of, section="sweep", complete=complete,
              note=f"{how}; wall_s / cpu_s / worker (vary run to run) in {folder}/results.parquet")
    study.put("sweep_checks", summary, kind=kind_of, section="sweep", complete=complete)
    study.put("sweep_verdicts", sw.verdict_grid(summary), kind=kind_of, section="sweep", complete=complete)
    failed = results[results["status"] == "failed"]
    if len(failed):
        cols = ["index", "point_id", "kind", *sw.axis_columns(results), "error_type", "error_message"]
        study.put("sweep_failures", failed[cols], kind=kind_of, section="sweep",
                  note=f"tracebacks in {folder}/failures/<point_id>.json")
    study.tick(note="sweep")
    if counts["partial"]:
        part = study.state.setdefault("partial", {})
        part["sweep"] = (f"partial sweep: {counts['done']} of {counts['points']} points done, {counts['failed']} "
                         f"failed, {counts['pending']} not run")
    if interrupted:
        raise KeyboardInterrupt


def _n_sim(schemes, threads, cores) -> int:
    return sum(1 if s == "serial" else len(set(threads) | set(cores)) for s in schemes)


SECTIONS: tuple[Section, ...] = (
    Section("workload", "Workload and sparsity statistics", section_workload),
    Section("real", "Real runs (measured)", section_real,
            lambda s: len(_real_configs(s.schemes, s.threads)) * s.repeats),
    Section("calibrate", "Calibration of the simulated machine", section_calibrate),
    Section("predict", "Simulation and prediction to 64 cores", section_predict,
            lambda s: _n_sim(s.schemes, s.threads, s.predict_cores)),
    Section("compare", "Measured vs predicted", section_compare,  # + one implied-coherence fit per parallel point
            lambda s: max(1, sum(sc != "serial" for sc in s.schemes) * sum(t > 1 for t in s.threads))),
    Section("regimes", "Two row-visit regimes: cache-friendly and latency-bound (hogwild, 1 -> 2 threads)",
            section_regimes, lambda s: len(REGIMES) * s.repeats),
    Section("noise", "Noise terms of the perturbed iterate (hwsim)", section_noise),
    Section("theory", "Theory checks", section_theory),
    Section("stragglers", "Synchronous minibatch SGD under stragglers (hwsim)", section_stragglers),
    Section("buckwild", "Buckwild!: int16 / int8 against float64", section_buckwild, _buckwild_units),
    Section("sweep", "Parameter sweep", section_sweep),
    Section("dense", "Dense-conflict case (a8a)", section_dense,
            lambda s: 0 if s.dense is None else len(_real_configs(s.dense_schemes, s.threads)) * s.repeats
            + _n_sim(s.dense_schemes, s.threads, ())),
)


@dataclass
class StudyOutcome:
    out: Path
    state: str  # complete | incomplete | interrupted
    sections: list[SectionResult]
    wall_seconds: float

    @property
    def failed(self) -> list[SectionResult]:
        return [s for s in self.sections if s.status == "failed"]


def run_study(spec: StudySpec, out: str | Path, *, progress: bool | None = None, command: str | None = None,
              rerun_of: str | None = None, sections: Sequence[Section] = SECTIONS, render: bool = True,
              with_numba_sysinfo: bool = True) -> StudyOutcome:
    """Run every section, writing tables, ``spec.toml``, ``environment.json``,
    ``manifest.json`` and (``render``) ``index.html`` / ``report.md`` into ``out``.

    Ctrl-C ends the current section as ``interrupted``; the report is still rendered from
    what finished and :class:`KeyboardInterrupt` is re-raised afterwards.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    study = Study(spec, out, progress=progress, command=command, rerun_of=rerun_of)
    atomic_write_bytes(out / "spec.toml", spec.to_toml().encode())
    study.sections = [SectionResult(s.name, s.title) for s in sections]
    _write_environment(study, with_numba_sysinfo)
    study.write_manifest("running")
    interrupted = False
    try:
        from tqdm.auto import tqdm

        total = sum(s.units(spec) for s in sections)
        study.bar = tqdm(total=total, desc=f"wildcheck {spec.name}", unit="step", file=sys.stderr,
                         disable=(None if progress is None else not progress), dynamic_ncols=True, leave=False)
    except ImportError:  # tqdm is a dependency; progress is a convenience only
        study.bar = None
    try:
        for sec, res in zip(sections, study.sections):
            if interrupted:
                res.status, res.reason = "not run", "study interrupted (Ctrl-C) before this section"
                continue
            t = time.monotonic()
            try:
                if study.remaining() <= 0:
                    raise BudgetExhausted(f"time budget of {spec.budget_s:.0f} s exhausted before this section")
                log.info("section %s", sec.name)
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    try:
                        sec.fn(study)
                    finally:
                        _note_warnings(study, sec.name, caught)
                res.status = "done"
                res.reason = study.state.get("partial", {}).get(sec.name, "")
            except NotRequested as exc:
                res.status, res.reason = "not requested", str(exc)
            except Unavailable as exc:
                res.status, res.reason = "not available", str(exc)
            except BudgetExhausted as exc:
                res.status, res.reason = "skipped", str(exc)
            except KeyboardInterrupt:
                res.status, res.reason = "interrupted", "Ctrl-C during this section; its finished runs are kept"
                interrupted = True
            except Exception as exc:  # a failing section must not lose the others' results
                tb = traceback.format_exc()
                atomic_write_bytes(out / "errors" / f"{sec.name}.txt", tb.encode())
                res.status = "failed"
                res.reason = f"{type(exc).__name__}: {exc} (traceback in errors/{sec.name}.txt)"
                log.error("section %s failed: %s", sec.name, res.reason)
            res.seconds = round(time.monotonic() - t, 3)
            if res.status != "done" and study.state.get("partial", {}).get(sec.name):
                res.reason = f"{res.reason}; {study.state['partial'][sec.name]}"
            study.write_manifest("running")
    finally:
        if study.bar is not None:
            study.bar.close()
        state = "interrupted" if interrupted else (
            "complete" if all(s.status in ("done", "not requested") for s in study.sections) else "incomplete")
        _write_environment(study, with_numba_sysinfo)
        study.write_manifest(state)
        if render:
            from .report import render_report

            render_report(out)
    outcome = StudyOutcome(out, state, study.sections, study.elapsed())
    if interrupted:
        raise StudyInterrupted(outcome)
    return outcome


def _note_warnings(study: Study, section: str, caught) -> None:
    """Record a section's warnings (each distinct message once) next to its status."""
    msgs = list(dict.fromkeys(f"{w.category.__name__}: {str(w.message).splitlines()[0][:160]}" for w in caught))
    if not msgs:
        return
    for m in msgs:
        log.warning("section %s: %s", section, m)
    part = study.state.setdefault("partial", {})
    text = "warnings: " + " | ".join(msgs[:3]) + (f" (+{len(msgs) - 3} more)" if len(msgs) > 3 else "")
    part[section] = f"{part[section]}; {text}" if part.get(section) else text


class StudyInterrupted(KeyboardInterrupt):
    """Ctrl-C ended a study; ``outcome`` says what was kept."""

    def __init__(self, outcome: StudyOutcome):
        super().__init__("study interrupted")
        self.outcome = outcome


def _write_environment(study: Study, with_numba: bool) -> None:
    files = list(dict.fromkeys(study.data_files))
    if study.spec.dense is not None and study.spec.dense.data.path:
        files.append(study.spec.dense.data.path)
    cached = study.state.get("numba_sysinfo")
    env = environment.collect(seeds=study.spec.seeds(), data_files=list(dict.fromkeys(files)),
                              data_hashes=study.data_hashes, with_numba=with_numba and cached is None)
    if cached is not None:
        env["numba_sysinfo"] = cached
    else:
        study.state["numba_sysinfo"] = env["numba_sysinfo"]
    env["machine_source"] = study.state.get("machine_source")
    atomic_write_bytes(study.out / "environment.json", (json.dumps(env, indent=1, default=str) + "\n").encode())


# ----------------------------------------------------------------------------------------
# Reading a report folder back, and comparing a rerun with its original
# ----------------------------------------------------------------------------------------
def load_manifest(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / "manifest.json"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such report folder; give a folder written by `wildcheck report`")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a wildcheck report (no manifest.json); "
                                "give a folder written by `wildcheck report`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: manifest is not valid JSON ({exc}); the report folder is damaged") from None


def load_tables(folder: str | Path, manifest: Mapping | None = None) -> dict[str, pd.DataFrame]:
    folder = Path(folder)
    manifest = load_manifest(folder) if manifest is None else manifest
    out = {}
    for name, meta in manifest.get("tables", {}).items():
        p = folder / meta["file"]
        if p.is_file():
            out[name] = pd.read_parquet(p)
    return out


def rerun_spec(folder: str | Path) -> StudySpec:
    """The original study spec with its simulated machine pinned (``machine.toml``)."""
    folder = Path(folder)
    spec = StudySpec.from_toml(folder / "spec.toml")
    mpath = folder / "machine.toml"
    if spec.machine is None and mpath.is_file():
        doc = tomllib.loads(mpath.read_text())
        spec = spec.replace(machine=doc["machine"], machine_provenance=doc.get("provenance", {}))
    if spec.dense is not None and spec.dense.data.path and not Path(spec.dense.data.path).is_file():
        # the report came from another checkout: use this one's copy if it is the same file
        try:
            recorded = json.loads((folder / "environment.json").read_text()).get("data_sha256", {})
        except (OSError, json.JSONDecodeError):
            recorded = {}
        want = recorded.get(f"{DENSE}:{Path(spec.dense.data.path).name}")
        if want and DEFAULT_A8A.is_file() and environment.sha256_file(DEFAULT_A8A) == want:
            data = spec.dense.data
            spec = spec.replace(dense=spec.dense.replace(
                data=DataSpec(source=data.source, path=str(DEFAULT_A8A.resolve()), params=dict(data.params))))
    return spec


MEASURED_KEYS = {
    "real_runs": (("workload", "scheme", "threads"), ("samples_per_s", "final_objective")),
    "dense_real_runs": (("workload", "scheme", "threads"), ("samples_per_s", "final_objective")),
    "buckwild_runs": (("workload", "variant", "threads"), ("samples_per_s", "final_objective")),
}


def compare_reports(original: str | Path, rerun: str | Path) -> pd.DataFrame:
    """One row per figure: simulated/computed tables and models (bit for bit), measured
    figures (within the original's run-to-run spread).

    Columns: figure, kind, original, rerun, tolerance, verdict (``identical`` / ``differs``
    / ``within spread`` / ``outside spread`` / ``no spread measured`` / ``missing``).
    """
    mo, mr = load_manifest(original), load_manifest(rerun)
    rows = []
    for name, meta in sorted(mo.get("tables", {}).items()):
        new = mr.get("tables", {}).get(name)
        if meta["kind"] in ("simulated", "computed"):
            if new is None:
                rows.append({"figure": name, "kind": meta["kind"], "original": meta["sha256"][:16], "rerun": "",
                             "tolerance": "bit for bit", "verdict": "missing"})
            else:
                same = new["sha256"] == meta["sha256"]
                rows.append({"figure": name, "kind": meta["kind"], "original": meta["sha256"][:16],
                             "rerun": new["sha256"][:16], "tolerance": "bit for bit",
                             "verdict": "identical" if same else "differs"})
    for key, sha in sorted(mo.get("models", {}).items()):
        new = mr.get("models", {}).get(key)
        rows.append({"figure": f"model {key}", "kind": "simulated", "original": sha[:16],
                     "rerun": (new or "")[:16], "tolerance": "bit for bit",
                     "verdict": "missing" if new is None else ("identical" if new == sha else "differs")})
    to, tr = load_tables(original, mo), load_tables(rerun, mr)
    for name, (keys, _) in MEASURED_KEYS.items():
        # runs whose every original repeat left the same model (serial, round-robin, ...) must again
        a, b = to.get(name), tr.get(name)
        if a is None or "model_sha256" not in a.columns:
            continue
        for key, grp in a.groupby(list(keys), sort=True):
            shas = set(grp["model_sha256"])
            if len(shas) != 1 or len(grp) < 2:
                continue
            sha = shas.pop()
            sel = b
            if sel is not None:
                for k, v in zip(keys, key):
                    sel = sel[sel[k] == v]
            new = set() if sel is None else set(sel["model_sha256"])
            rows.append({"figure": f"{name} {'/'.join(str(k) for k in key)} model", "kind": "measured",
                         "original": sha[:16], "rerun": ",".join(x[:16] for x in sorted(new)),
                         "tolerance": f"bit for bit (all {len(grp)} original repeats identical)",
                         "verdict": "missing" if not new else ("identical" if new == {sha} else "differs")})
    for name, (keys, metrics) in MEASURED_KEYS.items():
        if name not in to:
            continue
        a = to[name]
        b = tr.get(name)
        for key, grp in a.groupby(list(keys), sort=True):
            label = "/".join(str(k) for k in key)
            for metric in metrics:
                vals = grp[metric].to_numpy(dtype=float)
                med, spread = float(np.median(vals)), float(vals.max() - vals.min())
                tol = SPREAD_FACTOR * spread
                row = {"figure": f"{name} {label} {metric}", "kind": "measured", "original": f"{med:.6g}",
                       "tolerance": f"±{tol:.3g} ({len(vals)} repeats: max-min)"}
                sel = None if b is None else b
                if sel is not None:
                    for k, v in zip(keys, key):
                        sel = sel[sel[k] == v]
                if sel is None or len(sel) == 0:
                    row.update(rerun="", verdict="missing")
                else:
                    new = float(np.median(sel[metric].to_numpy(dtype=float)))
                    row["rerun"] = f"{new:.6g}"
                    if len(vals) < 2:
                        row["verdict"] = "no spread measured"
                    else:
                        row["verdict"] = "within spread" if abs(new - med) <= tol else "outside spread"
                rows.append(row)
    return pd.DataFrame(rows, columns=["figure", "kind", "original", "rerun", "tolerance", "verdict"])
