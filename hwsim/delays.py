"""Compute-delay models: how many ticks a core spends computing one sample's update.

Each model is a small frozen dataclass with

* ``sample(rng, size) -> int64 array`` of ticks (>= 0), drawn only from ``rng``;
* ``bounds() -> (lo, hi)`` in ticks (``hi = inf`` when unbounded), bounds of what
  ``sample`` can return (after rounding);
* ``mean()`` of the continuous model before rounding to whole ticks (rounding to the
  nearest tick moves it by less than half a tick);
* ``to_dict()`` (TOML-able, with a ``kind`` key) and :func:`delay_from_dict`.

``for_core(core)`` returns the model a given core uses (the identity except for
:class:`StragglerMixture` with ``slow_cores``).

Draws are made per core from ``workload.spec.stream(spec.seed, STREAM_CORE, core)`` in
blocks of :data:`DELAY_BLOCK` (``model.sample(rng, DELAY_BLOCK)``) consumed in order, by
both engines (:class:`DelayStream`), so the k-th delay a core uses is the same whatever
engine runs and however the blocks are fetched.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from workload.spec import STREAM_CORE, stream

#: Delays are drawn per core in blocks of this many values (both engines).
DELAY_BLOCK = 4096


class DelayError(ValueError):
    """A delay model parameter is out of range; the message names it, the value and the fix."""

    def __init__(self, model: str, name: str, value: Any, allowed: str, fix: str):
        self.field = name
        self.value = value
        super().__init__(f"{model}.{name} = {value!r}: {allowed}; {fix}")


def _real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def _check_nonneg(model, name, v, example):
    if not _real(v) or v < 0:
        raise DelayError(model, name, v, "must be a finite number >= 0", f"set {name}, e.g. {example}")


def _check_pos(model, name, v, example):
    if not _real(v) or v <= 0:
        raise DelayError(model, name, v, "must be a finite number > 0", f"set {name}, e.g. {example}")


def _ticks(a: np.ndarray) -> np.ndarray:
    """Round non-negative float durations to whole ticks (int64)."""
    return np.rint(a).astype(np.int64)


class DelayModel:
    """Base class (protocol) of the delay models."""

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def bounds(self) -> tuple[float, float]:  # pragma: no cover - interface
        raise NotImplementedError

    def mean(self) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def to_dict(self) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    def for_core(self, core: int) -> "DelayModel":
        """The model core ``core`` draws from (itself unless the model depends on the core)."""
        return self


@dataclass(frozen=True, kw_only=False)
class Constant(DelayModel):
    """Every sample takes exactly ``ticks`` ticks."""

    ticks: int

    def __post_init__(self):
        if not isinstance(self.ticks, (int, np.integer)) or isinstance(self.ticks, bool) or self.ticks < 0:
            raise DelayError("Constant", "ticks", self.ticks, "must be an integer >= 0", "e.g. Constant(100)")

    def sample(self, rng, size):
        return np.full(int(size), int(self.ticks), dtype=np.int64)

    def bounds(self):
        return (float(self.ticks), float(self.ticks))

    def mean(self):
        return float(self.ticks)

    def to_dict(self):
        return {"kind": "constant", "ticks": int(self.ticks)}


@dataclass(frozen=True)
class Exponential(DelayModel):
    """rint(Exp(mean)): memoryless delays."""

    mean_ticks: float

    def __post_init__(self):
        _check_pos("Exponential", "mean_ticks", self.mean_ticks, "Exponential(100.0)")

    def sample(self, rng, size):
        return _ticks(rng.exponential(float(self.mean_ticks), int(size)))

    def bounds(self):
        return (0.0, math.inf)

    def mean(self):
        return float(self.mean_ticks)

    def to_dict(self):
        return {"kind": "exponential", "mean_ticks": float(self.mean_ticks)}


@dataclass(frozen=True)
class ShiftedExponential(DelayModel):
    """rint(shift + Exp(rate)): c + Exp(λ), the straggler model (mean shift + 1/rate)."""

    shift: float
    rate: float

    def __post_init__(self):
        _check_nonneg("ShiftedExponential", "shift", self.shift, "ShiftedExponential(shift=50, rate=0.02)")
        _check_pos("ShiftedExponential", "rate", self.rate, "ShiftedExponential(shift=50, rate=0.02)")

    def sample(self, rng, size):
        return _ticks(float(self.shift) + rng.exponential(1.0 / float(self.rate), int(size)))

    def bounds(self):
        return (float(np.rint(self.shift)), math.inf)

    def mean(self):
        return float(self.shift) + 1.0 / float(self.rate)

    def to_dict(self):
        return {"kind": "shifted-exponential", "shift": float(self.shift), "rate": float(self.rate)}


@dataclass(frozen=True)
class LogNormal(DelayModel):
    """rint(shift + exp(N(mu, sigma²))): heavy-ish right tail, as measured compute times."""

    mu: float
    sigma: float
    shift: float = 0.0

    def __post_init__(self):
        if not _real(self.mu):
            raise DelayError("LogNormal", "mu", self.mu, "must be a finite number", "e.g. LogNormal(mu=4.0, sigma=0.5)")
        _check_nonneg("LogNormal", "sigma", self.sigma, "LogNormal(mu=4.0, sigma=0.5)")
        _check_nonneg("LogNormal", "shift", self.shift, "LogNormal(mu=4.0, sigma=0.5, shift=0)")

    def sample(self, rng, size):
        return _ticks(float(self.shift) + rng.lognormal(float(self.mu), float(self.sigma), int(size)))

    def bounds(self):
        return (float(np.rint(self.shift)), math.inf if self.sigma > 0 else float(np.rint(self.shift + math.exp(self.mu))))

    def mean(self):
        return float(self.shift) + math.exp(float(self.mu) + float(self.sigma) ** 2 / 2.0)

    def to_dict(self):
        return {"kind": "lognormal", "mu": float(self.mu), "sigma": float(self.sigma), "shift": float(self.shift)}


@dataclass(frozen=True, eq=False)
class Empirical(DelayModel):
    """Resample measured durations (ticks) uniformly with replacement (e.g. from a realrun trace)."""

    values: Any

    def __post_init__(self):
        v = np.asarray(self.values)
        if v.ndim != 1 or v.size == 0:
            raise DelayError("Empirical", "values", self.values, "must be a non-empty 1-d sequence of durations",
                             "pass the measured per-sample compute times in ticks (ns)")
        if not np.issubdtype(v.dtype, np.number) or not np.all(np.isfinite(v)) or np.any(v < 0):
            raise DelayError("Empirical", "values", self.values, "must be finite numbers >= 0",
                             "drop negative or missing measurements")
        object.__setattr__(self, "values", np.ascontiguousarray(_ticks(v.astype(np.float64))))
        self.values.setflags(write=False)

    def __eq__(self, other):
        return isinstance(other, Empirical) and np.array_equal(self.values, other.values)

    def __hash__(self):
        return hash(self.values.tobytes())

    def sample(self, rng, size):
        return self.values[rng.integers(0, self.values.size, int(size))]

    def bounds(self):
        return (float(self.values.min()), float(self.values.max()))

    def mean(self):
        return float(self.values.mean())

    def to_dict(self):
        return {"kind": "empirical", "values": [int(v) for v in self.values]}


@dataclass(frozen=True, eq=False)
class StragglerMixture(DelayModel):
    """``base`` delays, some of them slowed by ``factor``: rint(factor · d).

    Each sample is slow with probability ``p`` (one uniform draw per sample, taken after
    the base block); the cores listed in ``slow_cores`` are always slow (``for_core``).
    """

    base: DelayModel
    factor: float
    p: float = 0.0
    slow_cores: tuple = ()

    def __post_init__(self):
        if not isinstance(self.base, DelayModel):
            raise DelayError("StragglerMixture", "base", self.base, "must be a delay model",
                             "e.g. StragglerMixture(Constant(100), factor=10, p=0.01)")
        _check_pos("StragglerMixture", "factor", self.factor, "10")
        if not _real(self.p) or not (0.0 <= self.p <= 1.0):
            raise DelayError("StragglerMixture", "p", self.p, "must be a probability in [0, 1]", "e.g. p=0.01")
        cores = tuple(self.slow_cores)
        if any(not isinstance(c, (int, np.integer)) or isinstance(c, bool) or c < 0 for c in cores):
            raise DelayError("StragglerMixture", "slow_cores", self.slow_cores, "must be core ids (integers >= 0)",
                             "e.g. slow_cores=(0,)")
        object.__setattr__(self, "slow_cores", tuple(int(c) for c in cores))

    def __eq__(self, other):
        return isinstance(other, StragglerMixture) and self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash(repr(self.to_dict()))

    def for_core(self, core):
        if core in self.slow_cores:
            return StragglerMixture(self.base.for_core(core), self.factor, p=1.0)
        return StragglerMixture(self.base.for_core(core), self.factor, p=self.p)

    def sample(self, rng, size):
        d = self.base.sample(rng, size)
        if self.p >= 1.0:
            return _ticks(d * float(self.factor))
        if self.p <= 0.0:
            return d
        slow = rng.random(int(size)) < self.p
        d = d.copy()
        d[slow] = _ticks(d[slow] * float(self.factor))
        return d

    def bounds(self):
        lo, hi = self.base.bounds()
        f = float(self.factor)
        slow_possible = self.p > 0 or bool(self.slow_cores)
        fast_possible = self.p < 1 or bool(self.slow_cores)
        los, his = [], []
        if fast_possible:
            los.append(lo)
            his.append(hi)
        if slow_possible:
            los.append(float(np.rint(lo * f)))
            his.append(math.inf if math.isinf(hi) else float(np.rint(hi * f)))
        return (min(los), max(his))

    def mean(self):
        return self.base.mean() * (1.0 + self.p * (float(self.factor) - 1.0))

    def to_dict(self):
        return {"kind": "straggler-mixture", "base": self.base.to_dict(), "factor": float(self.factor),
                "p": float(self.p), "slow_cores": list(self.slow_cores)}


_KINDS = {
    "constant": lambda d: Constant(int(d["ticks"])),
    "exponential": lambda d: Exponential(d["mean_ticks"]),
    "shifted-exponential": lambda d: ShiftedExponential(d["shift"], d["rate"]),
    "lognormal": lambda d: LogNormal(d["mu"], d["sigma"], d.get("shift", 0.0)),
    "empirical": lambda d: Empirical(np.asarray(d["values"])),
    "straggler-mixture": lambda d: StragglerMixture(delay_from_dict(d["base"]), d["factor"], p=d.get("p", 0.0),
                                                    slow_cores=tuple(d.get("slow_cores", ()))),
}


def delay_from_dict(d: Mapping[str, Any]) -> DelayModel:
    """The delay model a ``to_dict()`` mapping describes."""
    if not isinstance(d, Mapping) or "kind" not in d:
        raise DelayError("delay", "kind", d, "a delay table needs a 'kind' key",
                         f"write kind = one of {', '.join(_KINDS)}")
    kind = d["kind"]
    if kind not in _KINDS:
        raise DelayError("delay", "kind", kind, f"must be one of {', '.join(_KINDS)}", "fix the spelling")
    try:
        return _KINDS[kind](d)
    except KeyError as exc:
        raise DelayError(kind, str(exc.args[0]), None, "missing parameter", f"add {exc.args[0]} to the delay table") from exc


class DelayStream:
    """The delays one core uses, in order: blocks of :data:`DELAY_BLOCK` from its stream.

    ``next()`` returns the next delay (int).  ``refill()`` draws the next block (used by
    the fast engine, which consumes a block inside its jitted loop).
    """

    def __init__(self, model: DelayModel, seed: int, core: int, block: int = DELAY_BLOCK):
        self.model = model.for_core(core)
        self.rng = stream(seed, STREAM_CORE, core)
        self.block_size = int(block)
        self.block = np.empty(0, dtype=np.int64)
        self.pos = 0

    def refill(self) -> np.ndarray:
        b = np.ascontiguousarray(self.model.sample(self.rng, self.block_size), dtype=np.int64)
        if b.shape != (self.block_size,) or (b.size and b.min() < 0):
            raise RuntimeError(f"delay model {self.model!r} returned {b.shape} / negative ticks for a block of "
                               f"{self.block_size}; sample(rng, size) must return `size` int64 ticks >= 0")
        self.block = b
        self.pos = 0
        return b

    def next(self) -> int:
        if self.pos >= self.block.size:
            self.refill()
        v = int(self.block[self.pos])
        self.pos += 1
        return v
