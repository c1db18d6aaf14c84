"""The run spec: one frozen description of a run, shared by hwsim and realrun.

Validation lives in exactly one place, :func:`validate`, called from
``RunSpec.__post_init__``; every error names the field, the value received, what is
allowed and how to fix it.  Randomness is derived from the single root ``seed`` through
:func:`stream`, a pure function of ``(seed, purpose, *key)`` built on
``numpy.random.SeedSequence`` spawn keys, so a simulated and a measured run of one spec
draw the same visit orders, the same initial point and the same per-worker streams.
"""
from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

SCHEMES = (
    "serial",
    "hogwild",
    "hogwild-atomic",
    "lock-global",
    "lock-coord",
    "round-robin",
    "minibatch-sync",
    "buckwild",
    "cyclades",
    "decentralized",
)
PROBLEMS = ("svm", "logistic", "least-squares", "matrix-completion", "multiway-cut")
SCHEDULES = ("constant", "backoff", "inv-k")
ORDERS = ("fixed-shuffle", "epoch-shuffle", "with-replacement")
DTYPES = ("float64", "float32", "fixed")
WRITE_MODES = ("atomic", "rmw")
DATA_SOURCES = (
    "synthetic-classification",
    "synthetic-regression",
    "synthetic-ratings",
    "grid-graph",
    "random-graph",
    "svmlight",
    "matrix-market",
    "ratings",
)

# Purposes of the random streams derived from the root seed (first spawn-key entry).
STREAM_ORDER = 0  # visit order of an epoch: key (epoch,) or (epoch, worker)
STREAM_WORKER = 1  # per-worker stream for scheme-internal randomness: key (worker,)
STREAM_CORE = 2  # hwsim per-core delay model: key (core,)
STREAM_DATA = 3  # synthetic data generation
STREAM_INIT = 4  # initial point
STREAM_ROUNDING = 5  # stochastic rounding (Buckwild!): key (worker,)


class SpecError(ValueError):
    """A run spec field holds a value that is not allowed.

    The message names the field, the value, what is allowed and the fix.
    """

    def __init__(self, field_name: str, value: Any, allowed: str, fix: str, where: str = "RunSpec"):
        self.field = field_name
        self.value = value
        super().__init__(f"{where}.{field_name} = {value!r}: {allowed}; {fix}")


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """Where the terms come from.

    ``source`` is a generator (``synthetic-*``, ``*-graph``) or a loader (``svmlight``,
    ``matrix-market``, ``ratings``); ``path`` is the file for loaders; ``params`` are the
    generator's or loader's keyword arguments (e.g. ``n_rows``, ``n_features``).
    """

    source: str = "synthetic-classification"
    path: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """Everything that decides a run, for both engines.

    Fields are stored as given (keyword-only) and validated once by :func:`validate`.

    problem, problem_params
        Which objective (``workload.problems``) and its parameters, e.g. ``{"lam": 1e-4,
        "reg": "hogwild"}``.
    data
        A :class:`DataSpec`.
    scheme
        One of :data:`SCHEMES`.
    threads
        Worker threads (realrun) / simulated cores' workers (hwsim).
    epochs
        Passes over the data (with-replacement: ``N`` samples per epoch).
    step, schedule, beta, step_t0
        Step size γ_0 and its schedule: ``constant``; ``backoff`` γ_0·β^epoch (Hogwild!'s
        per-epoch step decay, Niu et al. 2011 §5); ``inv-k`` γ_0 / (1 + t / t0) where t is
        the sample's global sequence number ``position_in_worker * threads + worker`` (the
        serial k for one thread) and t0 = ``step_t0`` (0 means N).
    order
        ``fixed-shuffle`` (one permutation, the same every epoch, split in contiguous
        chunks across workers), ``epoch-shuffle`` (a fresh permutation per epoch, split
        across workers: the Hogwild! code's reshuffle), ``with-replacement`` (each worker
        samples uniformly from its own stream: the theory's model).
    dtype, fixed_point_bits
        Model state: float64, float32, or ``fixed`` (int64 with scale 2**fixed_point_bits,
        where addition is associative: the perturbed-iterate identity holds with ``==``).
    write_mode
        How ``hogwild`` writes a coordinate: ``atomic`` add, or a non-atomic ``rmw``
        (read-modify-write; lost updates possible).
    seed
        The root seed of every random stream.
    options
        Scheme-specific settings (e.g. ``batch_size`` for cyclades and minibatch-sync).
    """

    problem: str = "svm"
    problem_params: Mapping[str, Any] = field(default_factory=dict)
    data: DataSpec = field(default_factory=DataSpec)
    scheme: str = "hogwild"
    threads: int = 1
    epochs: int = 1
    step: float = 0.1
    schedule: str = "constant"
    beta: float = 0.9
    step_t0: float = 0.0
    order: str = "epoch-shuffle"
    dtype: str = "float64"
    fixed_point_bits: int = 32
    write_mode: str = "rmw"
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        validate(self)

    def replace(self, **changes) -> "RunSpec":
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    # --- TOML -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["data"] = {k: v for k, v in d["data"].items() if v is not None}
        d["problem_params"] = dict(self.problem_params)
        d["options"] = dict(self.options)
        return d

    def to_toml(self) -> str:
        import tomli_w

        return tomli_w.dumps({"run": self.to_dict()})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "RunSpec") -> "RunSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpecError(unknown[0], d[unknown[0]], f"not a RunSpec field (fields: {', '.join(sorted(known))})",
                            "remove it or fix its spelling", where=where)
        d = dict(d)
        if "data" in d:
            data = d["data"]
            if not isinstance(data, Mapping):
                raise SpecError("data", data, "must be a table", "write it as [run.data]", where=where)
            dknown = {f.name for f in dataclasses.fields(DataSpec)}
            bad = sorted(set(data) - dknown)
            if bad:
                raise SpecError(f"data.{bad[0]}", data[bad[0]], f"not a DataSpec field ({', '.join(sorted(dknown))})",
                                "remove it or fix its spelling", where=where)
            d["data"] = DataSpec(**data)
        return cls(**d)

    @classmethod
    def from_toml(cls, text_or_path: str | Path) -> "RunSpec":
        """Read a spec from TOML text or a ``.toml`` file (table ``[run]``)."""
        where = "RunSpec"
        if isinstance(text_or_path, Path) or (isinstance(text_or_path, str) and text_or_path.endswith(".toml")
                                               and "\n" not in text_or_path):
            path = Path(text_or_path)
            if not path.exists():
                raise FileNotFoundError(f"{path}: spec file not found; give the path of an existing .toml spec")
            text = path.read_text()
            where = str(path)
        else:
            text = str(text_or_path)
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SpecError("toml", None, f"not valid TOML ({exc})", "fix the syntax at the position named",
                            where=where) from exc
        if "run" not in doc:
            raise SpecError("run", None, "the TOML has no [run] table", "put the spec fields under [run]", where=where)
        return cls.from_dict(doc["run"], where=f"{where} [run]")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def validate(spec: RunSpec) -> None:
    """The one place where a run spec is checked."""

    def one_of(name, value, allowed):
        if value not in allowed:
            raise SpecError(name, value, f"must be one of {', '.join(allowed)}", f"set {name} to one of those")

    one_of("problem", spec.problem, PROBLEMS)
    one_of("scheme", spec.scheme, SCHEMES)
    one_of("schedule", spec.schedule, SCHEDULES)
    one_of("order", spec.order, ORDERS)
    one_of("dtype", spec.dtype, DTYPES)
    one_of("write_mode", spec.write_mode, WRITE_MODES)
    if not isinstance(spec.data, DataSpec):
        raise SpecError("data", spec.data, "must be a DataSpec", "build it with workload.spec.DataSpec(...)")
    one_of("data.source", spec.data.source, DATA_SOURCES)
    if spec.data.source in ("svmlight", "matrix-market", "ratings") and not spec.data.path:
        raise SpecError("data.path", spec.data.path, f"a file is required for source {spec.data.source!r}",
                        "set data.path to the data file")
    for name in ("threads", "epochs"):
        v = getattr(spec, name)
        if not _is_int(v) or v < 1:
            raise SpecError(name, v, "must be an integer >= 1", f"set {name} to a positive integer, e.g. 1")
    if spec.scheme == "serial" and spec.threads != 1:
        raise SpecError("threads", spec.threads, "scheme 'serial' runs exactly 1 thread",
                        "set threads = 1 or pick a parallel scheme such as 'hogwild'")
    if not _is_real(spec.step) or not math.isfinite(spec.step) or spec.step <= 0:
        raise SpecError("step", spec.step, "must be a finite number > 0", "set step to a positive step size, e.g. 0.1")
    if not _is_real(spec.beta) or not (0 < spec.beta <= 1):
        raise SpecError("beta", spec.beta, "must be in (0, 1]", "set beta to the per-epoch step decay, e.g. 0.9")
    if not _is_real(spec.step_t0) or not math.isfinite(spec.step_t0) or spec.step_t0 < 0:
        raise SpecError("step_t0", spec.step_t0, "must be a finite number >= 0 (0 means N)",
                        "set step_t0 = 0 or a positive sample count")
    if not _is_int(spec.fixed_point_bits) or not (8 <= spec.fixed_point_bits <= 52):
        raise SpecError("fixed_point_bits", spec.fixed_point_bits, "must be an integer in [8, 52]",
                        "use e.g. 32 (scale 2**32; |x| must stay below 2**(63-bits))")
    if not _is_int(spec.seed) or spec.seed < 0:
        raise SpecError("seed", spec.seed, "must be an integer >= 0", "set seed to a non-negative integer")
    for name in ("problem_params", "options"):
        if not isinstance(getattr(spec, name), Mapping):
            raise SpecError(name, getattr(spec, name), "must be a mapping", f"write {name} as a TOML table / dict")
    if not isinstance(spec.data.params, Mapping):
        raise SpecError("data.params", spec.data.params, "must be a mapping", "write it as a TOML table / dict")


def stream(seed: int, purpose: int, *key: int) -> np.random.Generator:
    """The random generator for ``purpose`` (``STREAM_*``) and ``key`` under root ``seed``.

    A pure function: the same arguments always give the same stream, independent of how
    many other streams were drawn (spawn keys of ``numpy.random.SeedSequence``).
    """
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=(int(purpose),) + tuple(int(k) for k in key))
    return np.random.Generator(np.random.PCG64(ss))


def seed_words(seed: int, purpose: int, *key: int, n: int = 2) -> np.ndarray:
    """``n`` uint64 words from the stream's seed sequence, for seeding jitted generators."""
    ss = np.random.SeedSequence(entropy=int(seed), spawn_key=(int(purpose),) + tuple(int(k) for k in key))
    return ss.generate_state(n, dtype=np.uint64)
