"""Calibrate the simulated machine (an ``hwsim.Machine``) from a realrun trace.

hwsim's core spends, on a sample with support size s (DESIGN.md, "hwsim's machine model"),

    s · read_cost + compute delay + s · write_cost   (+ coherence misses, none on 1 core),

so a 1-thread realrun trace determines the per-coordinate costs and the delay:

1. **Per-sample time.** ``cycle`` = t_start of the worker's next sample − t_start of this
   one (its duration plus the loop and instrumentation overhead up to the next sample, which
   hwsim has no other place for); the last sample of a worker's epoch gets its duration plus
   the worker's median gap. When only every k-th sample was recorded (realrun's
   ``options.trace_every``), a sample's cycle is its duration plus the mean gap implied by
   the recorded span (span / samples in it − mean duration). Epoch-level overhead (reshuffle, barrier, between
   ``epoch_seconds`` and the samples' span) is not per sample: it is reported as
   ``epoch_overhead_ns`` and added per epoch by :mod:`analysis.predict`.
2. **Costs regressed on support size.** The slope of the median time against s, fitted by
   least squares on the per-s medians weighted by their counts (robust to OS interrupts,
   which add to single samples, not to the slope). With the phases recorded
   (t_read_done, t_write_start), ``read_cost`` is the slope of the read phase and
   ``write_cost`` that of the write phase; without them, the cycle's slope is split evenly
   (an assumption the report states). Costs are whole ticks >= 1 (hwsim's rule; 1 tick =
   1 ns); the rounding remainder stays in the delay, so the mean time per sample is kept.
3. **Compute delay.** The residual δ_k = cycle_k − s_k (read_cost + write_cost): its
   empirical distribution (compressed to :data:`EMPIRICAL_POINTS` equal-count bin means,
   which keeps the mean exactly and the CDF within 1/EMPIRICAL_POINTS), and maximum
   likelihood fits of a shifted exponential (c + Exp(λ): c = min δ, 1/λ = mean δ − c)
   and a log-normal (on δ > 0: μ, σ of log δ), each with its Kolmogorov–Smirnov statistic
   against the residuals (the goodness-of-fit figure). Negative residuals (a sample faster
   than the fitted line) are clipped to 0 for the models, and the report says how many and
   how much time that moved.
4. **Coherence cost** from ``realrun.pingpong`` (core-to-core cache-line transfer time):
   the extra ticks of touching a line another core wrote.
5. **Hidden misses** (``hwsim.Machine.miss_overlap``, optional): the miss time a sample can
   hide under its own memory stalls, measured on one thread as the trace's mean cycle minus
   what the same kernel takes per sample on cache-resident rows (:func:`memory_stall_ns`,
   from ``realrun.calibrate.visit_rates``' ``resident`` order): an out-of-order core
   overlaps the model lines' transfers with the row's own misses, so a latency-bound visit
   hides them, a cache-friendly one does not.

The fitted machine is a template with ``cores = 1``; :mod:`analysis.predict` sets the core
count. Honest prediction: :attr:`Calibration.provenance` records the thread counts of the
runs it was fitted on (``fitted_on_threads``) and a hash of the trace, and
:mod:`analysis.compare` refuses to call a prediction for p threads out of sample when the
machine was fitted on a p-thread run.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy import stats as sstats

from workload.trace import SAMPLE_SCHEMA

log = logging.getLogger(__name__)

EMPIRICAL_POINTS = 1024
DELAY_MODELS = ("empirical", "shifted-exponential", "lognormal")
LINE_COORDS = 8


@dataclass(frozen=True, eq=False)
class Fit:
    """What the trace says, before it becomes a machine (all times in ns = ticks)."""

    read_cost: int
    write_cost: int
    read_slope: float  # fitted, before rounding
    write_slope: float
    phases: bool  # whether read/write phases were recorded (else the slope was split evenly)
    residuals: np.ndarray  # δ_k, float64, unclipped
    delays: pd.DataFrame  # one row per delay model (fit_delays)
    costs: pd.DataFrame  # one row per regression (fit_costs)
    epoch_overhead_ns: float
    mean_cycle_ns: float
    mean_support: float
    n_samples: int
    fitted_on_threads: tuple[int, ...]
    trace_sha256: str


@dataclass(frozen=True, eq=False)
class Calibration:
    """A calibrated machine, the fit report (``table``), and where it came from."""

    machine: Any  # hwsim.Machine, cores = 1
    table: pd.DataFrame
    provenance: dict = field(default_factory=dict)
    fit: Fit | None = None

    def to_toml(self) -> str:
        """``[machine]`` (``Machine.to_dict()``) and ``[provenance]``."""
        import tomli_w

        return tomli_w.dumps({"machine": _toml_safe(self.machine.to_dict()),
                              "provenance": _toml_safe(self.provenance)})

    def save(self, path) -> None:
        from workload.trace import atomic_write_bytes

        atomic_write_bytes(path, self.to_toml().encode())


def load_calibration(path) -> Calibration:
    """Read a file written by :meth:`Calibration.save` (the fit table is not stored there)."""
    import tomllib
    from pathlib import Path

    doc = tomllib.loads(Path(path).read_text())
    if "machine" not in doc:
        raise ValueError(f"{path}: no [machine] table; give a file written by Calibration.save")
    return Calibration(machine=machine_class().from_dict(doc["machine"]), table=pd.DataFrame(),
                       provenance=dict(doc.get("provenance", {})))


def machine_class():
    """``hwsim.Machine`` (the contract), from ``hwsim.machine`` while the package is assembled."""
    import hwsim

    cls = getattr(hwsim, "Machine", None)
    if cls is None:
        from hwsim.machine import Machine as cls
    return cls


def _toml_safe(v):
    if isinstance(v, Mapping):
        return {str(k): _toml_safe(x) for k, x in v.items() if x is not None}
    if isinstance(v, (list, tuple)):
        return [_toml_safe(x) for x in v]
    if isinstance(v, np.ndarray):
        return [_toml_safe(x) for x in v.tolist()]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


# --- per-sample timings ---------------------------------------------------------------------

def trace_sha256(samples: pd.DataFrame) -> str:
    """SHA-256 of the trace's columns (schema order), to identify the run a fit used."""
    h = hashlib.sha256()
    for c in SAMPLE_SCHEMA:
        if c in samples.columns:
            h.update(c.encode())
            h.update(np.ascontiguousarray(samples[c].to_numpy()).tobytes())
    return h.hexdigest()


def sample_timings(samples: pd.DataFrame, support_sizes: np.ndarray) -> pd.DataFrame:
    """Per-sample ``sample, worker, epoch, term, support, duration, cycle, read, compute,
    write`` (ns; the phase columns NaN where not recorded). Samples with no timestamps are
    dropped (a trace may time a documented subset)."""
    timed = samples[(samples["t_start"] >= 0) & (samples["t_end"] >= 0)]
    if timed.empty:
        raise ValueError("calibrate: the trace has no timed samples (t_start/t_end are -1); run realrun with "
                         "instrument=True")
    df = timed.sort_values(["worker", "epoch", "t_start"], kind="stable")
    sizes = np.asarray(support_sizes)
    out = pd.DataFrame({"sample": df["sample"].to_numpy(), "worker": df["worker"].to_numpy(),
                        "epoch": df["epoch"].to_numpy(), "term": df["term"].to_numpy(),
                        "support": sizes[df["term"].to_numpy()].astype(np.int64)})
    ts = df["t_start"].to_numpy(np.int64)
    te = df["t_end"].to_numpy(np.int64)
    pos = df["position"].to_numpy(np.int64)
    dur = (te - ts).astype(np.float64)
    key = df["worker"].to_numpy().astype(np.int64) * 1_000_003 + df["epoch"].to_numpy()
    # consecutive: the worker's next sample in the same epoch is recorded too
    same = np.zeros(ts.size, bool)
    same[:-1] = (key[1:] == key[:-1]) & (pos[1:] == pos[:-1] + 1)
    nxt = np.append(ts[1:], -1)
    cycle = np.where(same, nxt - ts, np.nan).astype(np.float64)
    gaps = np.where(same, nxt - te, np.nan)
    workers = df["worker"].to_numpy()
    for w in np.unique(workers):
        m = workers == w
        g = gaps[m & same]
        if g.size:  # the last sample of each epoch: its duration plus the median gap
            cycle[m & ~same] = dur[m & ~same] + float(np.median(g))
            continue
        # a sparse trace (options.trace_every > 1): the mean gap from the recorded span
        for k in np.unique(key[m]):
            mk = m & (key == k)
            span = float(te[mk].max() - ts[mk].min())
            n_between = float(pos[mk].max() - pos[mk].min() + 1)
            mean_gap = max(span / n_between - float(dur[mk].mean()), 0.0) if n_between > 1 else 0.0
            cycle[mk] = dur[mk] + mean_gap
    out["duration"] = dur
    out["cycle"] = cycle
    rd = df["t_read_done"].to_numpy(np.int64)
    ws = df["t_write_start"].to_numpy(np.int64)
    phases = (rd >= 0) & (ws >= 0)
    out["read"] = np.where(phases, rd - ts, np.nan).astype(np.float64)
    out["compute"] = np.where(phases, ws - rd, np.nan).astype(np.float64)
    out["write"] = np.where(phases, te - ws, np.nan).astype(np.float64)
    return out.reset_index(drop=True)


def _robust_line(s: np.ndarray, y: np.ndarray) -> dict:
    """Least squares of the per-support-size medians of y on s, weighted by their counts."""
    ok = ~np.isnan(y)
    s, y = s[ok], y[ok]
    if s.size == 0:
        return {"slope": math.nan, "intercept": math.nan, "r2": math.nan, "n": 0, "sizes": 0, "ols_slope": math.nan}
    uniq, inv, counts = np.unique(s, return_inverse=True, return_counts=True)
    med = np.array([np.median(y[inv == i]) for i in range(uniq.size)]) if uniq.size < 5000 else None
    if med is None:  # pathological: many distinct sizes; fall back to ordinary least squares
        med, uniq, counts = y, s, np.ones(s.size)
    w = counts.astype(np.float64)
    xm = np.average(uniq, weights=w)
    ym = np.average(med, weights=w)
    sxx = np.sum(w * (uniq - xm) ** 2)
    if sxx <= 0:
        slope = math.nan
        intercept = float(ym)
    else:
        slope = float(np.sum(w * (uniq - xm) * (med - ym)) / sxx)
        intercept = float(ym - slope * xm)
    # ordinary least squares on all samples, for comparison, with its R²
    if np.var(s) > 0:
        b, a = np.polyfit(s.astype(np.float64), y, 1)
        pred = a + b * s
        r2 = 1.0 - float(np.sum((y - pred) ** 2) / max(np.sum((y - y.mean()) ** 2), 1e-300))
    else:
        b, r2 = math.nan, math.nan
    return {"slope": slope, "intercept": intercept, "r2": r2, "n": int(s.size), "sizes": int(uniq.size),
            "ols_slope": float(b)}


def fit_costs(timings: pd.DataFrame) -> pd.DataFrame:
    """Regressions of ``cycle``, ``read`` and ``write`` time on support size (module docstring):
    ``target, slope, intercept, r2 (OLS), ols_slope, n, sizes`` (ns, ns per coordinate)."""
    s = timings["support"].to_numpy(np.int64)
    rows = []
    for target in ("cycle", "read", "write"):
        rows.append({"target": target, **_robust_line(s, timings[target].to_numpy(np.float64))})
    return pd.DataFrame(rows)


# --- delay models ----------------------------------------------------------------------------

def empirical_points(delays: np.ndarray, points: int = EMPIRICAL_POINTS) -> np.ndarray:
    """``points`` equal-count bin means of the sorted delays (int64 ticks): the mean is kept
    (up to rounding) and the CDF moves by at most 1/points."""
    v = np.sort(np.asarray(delays, dtype=np.float64))
    if v.size == 0:
        raise ValueError("empirical_points: no delays to compress")
    k = min(points, v.size)
    edges = np.linspace(0, v.size, k + 1).round().astype(np.int64)
    sums = np.add.reduceat(v, edges[:-1])
    means = sums / np.diff(edges)
    return np.rint(means).astype(np.int64)


def _ks_discrete(x: np.ndarray, support: np.ndarray) -> float:
    """KS distance between the sample x and the uniform distribution on ``support`` values."""
    x = np.sort(x)
    sp = np.sort(support)
    grid = np.union1d(x, sp)
    fx = np.searchsorted(x, grid, side="right") / x.size
    fs = np.searchsorted(sp, grid, side="right") / sp.size
    return float(np.max(np.abs(fx - fs)))


def fit_delays(residuals: np.ndarray, points: int = EMPIRICAL_POINTS) -> pd.DataFrame:
    """Fit the delay models to the residuals (ns): ``model, loc, rate, mu, sigma, mean,
    ks, ks_pvalue, n, clipped, clipped_ns``. Negative residuals are clipped to 0 first."""
    r = np.asarray(residuals, dtype=np.float64)
    neg = r < 0
    d = np.where(neg, 0.0, r)
    n = d.size
    base = {"n": n, "clipped": int(neg.sum()), "clipped_ns": float(-r[neg].sum() / max(n, 1))}
    rows = []
    pts = empirical_points(d, points)
    rows.append({"model": "empirical", "loc": math.nan, "rate": math.nan, "mu": math.nan, "sigma": math.nan,
                 "mean": float(pts.mean()), "ks": _ks_discrete(d, pts), "ks_pvalue": math.nan, "points": pts.size,
                 **base})
    c = float(d.min())
    scale = float(d.mean() - c)
    if scale > 0:
        ks = sstats.kstest(d, "expon", args=(c, scale))
        rows.append({"model": "shifted-exponential", "loc": c, "rate": 1.0 / scale, "mu": math.nan,
                     "sigma": math.nan, "mean": c + scale, "ks": float(ks.statistic), "ks_pvalue": float(ks.pvalue),
                     "points": 0, **base})
    else:
        rows.append({"model": "shifted-exponential", "loc": c, "rate": math.inf, "mu": math.nan, "sigma": math.nan,
                     "mean": c, "ks": 0.0, "ks_pvalue": 1.0, "points": 0, **base})
    pos = d[d > 0]
    if pos.size >= 2:
        lg = np.log(pos)
        mu, sigma = float(lg.mean()), float(lg.std())
        if sigma > 0:
            ks = sstats.kstest(d, "lognorm", args=(sigma, 0.0, math.exp(mu)))
            ks_stat, ks_p = float(ks.statistic), float(ks.pvalue)
        else:
            ks_stat, ks_p = math.nan, math.nan
        rows.append({"model": "lognormal", "loc": 0.0, "rate": math.nan, "mu": mu, "sigma": sigma,
                     "mean": math.exp(mu + sigma**2 / 2), "ks": ks_stat, "ks_pvalue": ks_p, "points": 0, **base})
    else:
        rows.append({"model": "lognormal", "loc": 0.0, "rate": math.nan, "mu": math.nan, "sigma": math.nan,
                     "mean": math.nan, "ks": math.nan, "ks_pvalue": math.nan, "points": 0, **base})
    return pd.DataFrame(rows)


def delay_quantiles(residuals: np.ndarray, delays: pd.DataFrame,
                    levels=(0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999)) -> pd.DataFrame:
    """Measured vs fitted quantiles (the Q–Q table behind the goodness-of-fit figure):
    ``level, measured, empirical, shifted-exponential, lognormal`` (ns)."""
    d = np.maximum(np.asarray(residuals, dtype=np.float64), 0.0)
    lv = np.asarray(levels)
    out = {"level": lv, "measured": np.quantile(d, lv)}
    pts = empirical_points(d)
    out["empirical"] = np.quantile(pts, lv)
    se = delays[delays["model"] == "shifted-exponential"].iloc[0]
    out["shifted-exponential"] = se["loc"] - np.log1p(-lv) / se["rate"] if math.isfinite(se["rate"]) else se["loc"]
    ln = delays[delays["model"] == "lognormal"].iloc[0]
    out["lognormal"] = np.exp(ln["mu"] + ln["sigma"] * sstats.norm.ppf(lv))
    return pd.DataFrame(out)


# --- the fit and the machine ----------------------------------------------------------------

def _support_sizes(problem=None, terms=None) -> np.ndarray:
    if terms is None and problem is not None:
        terms = problem.terms
    if terms is None:
        raise ValueError("calibrate: give problem= or terms= (the support sizes of the terms the trace processed)")
    return np.asarray(terms.support_sizes(), dtype=np.int64)


def _epoch_overhead(samples: pd.DataFrame, epoch_seconds) -> float:
    if epoch_seconds is None:
        return 0.0
    es = np.asarray(epoch_seconds, dtype=np.float64)
    spans = samples.groupby("epoch").agg(lo=("t_start", "min"), hi=("t_end", "max"))
    spans = spans[spans["lo"] >= 0]
    k = min(len(spans), es.size)
    if k == 0:
        return 0.0
    over = es[:k] * 1e9 - (spans["hi"].to_numpy()[:k] - spans["lo"].to_numpy()[:k])
    return float(max(np.median(over), 0.0))


def fit(samples: pd.DataFrame, *, problem=None, terms=None, epoch_seconds=None,
        points: int = EMPIRICAL_POINTS) -> Fit:
    """Everything the trace says about the machine (module docstring, steps 1–3)."""
    sizes = _support_sizes(problem, terms)
    tm = sample_timings(samples, sizes)
    costs = fit_costs(tm)
    by = costs.set_index("target")
    phases = bool(tm["read"].notna().all() and tm["write"].notna().all())
    if phases:
        rs, ws = float(by.loc["read", "slope"]), float(by.loc["write", "slope"])
    else:
        cs = float(by.loc["cycle", "slope"])
        rs = ws = cs / 2.0
    rs = 0.0 if not math.isfinite(rs) else rs
    ws = 0.0 if not math.isfinite(ws) else ws
    rc, wc = max(int(round(rs)), 1), max(int(round(ws)), 1)  # hwsim's costs are whole ticks >= 1
    s = tm["support"].to_numpy(np.float64)
    resid = tm["cycle"].to_numpy(np.float64) - s * (rc + wc)
    delays = fit_delays(resid, points)
    threads = tuple(sorted({int(samples["worker"].nunique())}))
    return Fit(read_cost=rc, write_cost=wc, read_slope=rs, write_slope=ws, phases=phases, residuals=resid,
               delays=delays, costs=costs, epoch_overhead_ns=_epoch_overhead(samples, epoch_seconds),
               mean_cycle_ns=float(np.mean(tm["cycle"])), mean_support=float(s.mean()), n_samples=len(tm),
               fitted_on_threads=threads, trace_sha256=trace_sha256(samples))


def coherence_ns(pingpong) -> float:
    """The cache-line transfer time (ns) from what ``realrun.pingpong`` returned: a number, a
    mapping or object with a ``ns``-like field, or a table with such a column (median)."""
    if pingpong is None:
        return math.nan
    if isinstance(pingpong, (int, float, np.integer, np.floating)):
        return float(pingpong)
    names = ("transfer_ns", "one_way_ns", "ns", "median_ns", "latency_ns", "coherence_ns")
    if isinstance(pingpong, pd.DataFrame):
        for c in names:
            if c in pingpong.columns:
                return float(np.median(pingpong[c].to_numpy(np.float64)))
    if isinstance(pingpong, Mapping):
        for c in names:
            if c in pingpong:
                return coherence_ns(pingpong[c])
    for c in names:
        if hasattr(pingpong, c):
            return coherence_ns(getattr(pingpong, c))
    raise ValueError(f"calibrate: cannot read a transfer time (ns) from pingpong={pingpong!r}; pass "
                     "coherence_cost=<ns> instead")


def delay_model(f: Fit, kind: str = "empirical"):
    """The ``hwsim.delays`` object for the fitted delay ``kind`` (one of DELAY_MODELS)."""
    from hwsim import delays as hd

    if kind not in DELAY_MODELS:
        raise ValueError(f"delay = {kind!r}: must be one of {', '.join(DELAY_MODELS)}")
    row = f.delays[f.delays["model"] == kind].iloc[0]
    if kind == "empirical":
        return hd.Empirical(empirical_points(np.maximum(f.residuals, 0.0)))
    if kind == "shifted-exponential":
        return hd.ShiftedExponential(shift=float(row["loc"]), rate=float(row["rate"]))
    return hd.LogNormal(mu=float(row["mu"]), sigma=float(row["sigma"]))


def calibrate(samples, *, problem=None, terms=None, pingpong=None, coherence_cost: float | None = None,
              atomic_coherence_cost: float | None = None, coherence_source: str | None = None,
              delay: str = "empirical", line_coords: int = LINE_COORDS, epoch_seconds=None,
              spec=None, layout: str | None = None, miss_overlap: float | None = None,
              miss_overlap_source: str | None = None, store_coherence_cost: float | None = None,
              store_coherence_source: str | None = None, atomic_write_cost: float | None = None,
              atomic_write_source: str | None = None, lock_cost: float | None = None,
              lock_source: str | None = None, fitted: Fit | None = None) -> Calibration:
    """Fit an ``hwsim.Machine`` to a realrun trace (module docstring).

    ``samples``: a SAMPLE_SCHEMA trace, or a ``realrun.RealResult`` (its samples,
    ``epoch_seconds`` and spec are then used). ``problem``/``terms``: the terms it processed.
    ``pingpong`` (``realrun.pingpong()``'s result) or ``coherence_cost`` (ns): the
    coherence cost; neither → 0 (off), and the report says so. ``atomic_coherence_cost``
    (ns): the miss cost of an atomic-instruction store (``hwsim.Machine``'s field of that
    name; None: the same as the coherence cost) -- a locked instruction waits for its line
    alone, so the lone transfer of the ping-pong, while ``coherence_cost`` may then be the
    overlapped cost of :func:`coherence_in_flight`. ``coherence_source``: how a given
    ``coherence_cost`` was measured (for the table and the provenance). ``delay``: which fitted
    model the machine uses. ``layout``: the coordinate numbering the run used
    (``"by-degree"`` when realrun renumbered, ``"as-given"``); by default read from a
    RealResult's ``info["relabel"]``, else ``"as-given"``; recorded as the provenance's
    ``memory_layout`` so :mod:`analysis.predict` simulates the same cache lines.
    ``miss_overlap`` (ns per sample; None: 0): the machine's hidden-miss budget, e.g.
    :func:`memory_stall_ns` of this fit; ``miss_overlap_source`` says how it was measured.
    ``store_coherence_cost`` (ns; None: the same as the coherence cost): the miss cost of a
    plain store (``hwsim.Machine``'s field; 0 with :data:`WRITE_MISSES_OFF_PATH`, the
    default of :func:`calibrate_split`); ``store_coherence_source`` says why.
    ``atomic_write_cost`` (ns; None: ``write_cost``): what an atomic-instruction store takes
    (``hwsim.Machine``'s field), e.g. :func:`atomic_write_ns` of a 1-thread ``hogwild-atomic``
    run; ``atomic_write_source`` says where it came from.  ``lock_cost`` (ns; None: free
    locks): what taking one lock costs (``hwsim.Machine.lock_cost``), e.g. :func:`lock_ns` of
    a 1-thread ``lock-coord`` run; ``lock_source`` says where it came from.
    ``fitted``: the :func:`fit` of this same trace, already computed (a calibration's
    ``.fit``), so calibrating one trace several ways fits it once.
    """
    if layout is None:
        info = getattr(samples, "info", None) if not isinstance(samples, pd.DataFrame) else None
        layout = "by-degree" if isinstance(info, Mapping) and info.get("relabel") else "as-given"
    if layout not in ("as-given", "by-degree"):
        raise ValueError(f"calibrate: layout = {layout!r}: must be 'as-given' or 'by-degree' (realrun's "
                         "options.relabel); leave it None to read it from the RealResult")
    if not isinstance(samples, pd.DataFrame):
        res = samples
        samples = res.samples
        epoch_seconds = getattr(res, "epoch_seconds", None) if epoch_seconds is None else epoch_seconds
        spec = getattr(res, "spec", None) if spec is None else spec
    if delay not in DELAY_MODELS:
        raise ValueError(f"delay = {delay!r}: must be one of {', '.join(DELAY_MODELS)}")
    f = fitted if fitted is not None else fit(samples, problem=problem, terms=terms, epoch_seconds=epoch_seconds)
    if coherence_cost is not None:
        cc, cc_src = float(coherence_cost), coherence_source or "given (coherence_cost=)"
    elif pingpong is not None:
        cc, cc_src = coherence_ns(pingpong), "realrun.pingpong"
    else:
        cc, cc_src = 0.0, "none given: coherence off"
    ac = _ticks("atomic_coherence_cost", atomic_coherence_cost, ">= 0, or None for the same cost as coherence_cost")
    hide = _ticks("miss_overlap", miss_overlap, ">= 0 (e.g. memory_stall_ns(...)), or None for no hidden misses") or 0
    sc = _ticks("store_coherence_cost", store_coherence_cost,
                ">= 0 (0: write misses off the critical path), or None for the same cost as coherence_cost")
    aw = _ticks("atomic_write_cost", atomic_write_cost,
                "> 0 (e.g. atomic_write_ns(...) of a 1-thread hogwild-atomic run), or None for write_cost", lowest=1)
    lk = _ticks("lock_cost", lock_cost, ">= 0 (e.g. lock_ns(...) of a 1-thread lock-coord run), or None for free locks")
    machine = machine_class()(cores=1, read_cost=f.read_cost, write_cost=f.write_cost, delay=delay_model(f, delay),
                            coherence_cost=max(int(round(cc)), 0), atomic_coherence_cost=ac,
                            store_coherence_cost=sc, atomic_write_cost=aw, lock_cost=lk or 0, miss_overlap=hide,
                            line_coords=int(line_coords))
    provenance = {"fitted_on_threads": list(f.fitted_on_threads), "trace_sha256": f.trace_sha256,
                  "samples": f.n_samples, "delay_model": delay, "coherence_source": cc_src,
                  "coherence_ns": cc, "epoch_overhead_ns": f.epoch_overhead_ns, "memory_layout": layout,
                  "spec": json.dumps(spec.to_dict(), sort_keys=True, default=str) if spec is not None else ""}
    if ac is not None:
        provenance["atomic_coherence_ns"] = float(atomic_coherence_cost)

    def given(key: str, ns, source: str | None, field: str) -> tuple[float, str] | None:
        """(ns, how it was obtained) of an optional cost, recorded as ``<key>_ns`` / ``<key>_source``."""
        if ns is None:
            return None
        pair = (float(ns), source or f"given ({field}=)")
        provenance[f"{key}_ns"], provenance[f"{key}_source"] = pair
        return pair

    hidden = given("miss_overlap", miss_overlap, miss_overlap_source, "miss_overlap")
    awrite = given("atomic_write", atomic_write_cost, atomic_write_source, "atomic_write_cost")
    locks = given("lock", lock_cost, lock_source, "lock_cost")
    store = given("store_coherence", store_coherence_cost, store_coherence_source, "store_coherence_cost")
    return Calibration(machine=machine, table=report_table(f, cc, cc_src, delay, atomic=atomic_coherence_cost,
                                                           hidden=hidden, store=store, atomic_write=awrite,
                                                           locks=locks),
                       provenance=provenance, fit=f)


def _ticks(name: str, ns, allowed: str, *, lowest: int = 0) -> int | None:
    """A calibrate() cost given in ns, as whole ticks (at least ``lowest``), or None; anything
    but a finite number >= 0 (> 0 when ``lowest`` > 0) is refused with ``allowed`` named."""
    if ns is None:
        return None
    if not (isinstance(ns, (int, float, np.integer, np.floating)) and not isinstance(ns, bool) and math.isfinite(ns)
            and (ns > 0 if lowest > 0 else ns >= 0)):
        raise ValueError(f"calibrate: {name} = {ns!r}: must be a number of ns {allowed}")
    return max(int(round(float(ns))), lowest)


def _given_row(item: str, given: tuple[float, str] | None, unit: str, note: str) -> list[dict]:
    """The fit table's row of an optional cost (``given`` = (value, how it was obtained)), or none."""
    if given is None:
        return []
    return [{"item": item, "model": "", "value": float(given[0]), "unit": unit, "method": given[1], "n": math.nan,
             "note": note}]


def report_table(f: Fit, coherence: float, coherence_source: str, chosen: str,
                 atomic: float | None = None, hidden: tuple[float, str] | None = None,
                 store: tuple[float, str] | None = None,
                 atomic_write: tuple[float, str] | None = None,
                 locks: tuple[float, str] | None = None) -> pd.DataFrame:
    """The fit report: one row per fitted quantity (``item, model, value, unit, method, ks,
    ks_pvalue, r2, n, chosen, note``); ``hidden``: (miss_overlap ns, how it was measured);
    ``store``: (store_coherence_cost ns, why); ``atomic_write``: (atomic_write_cost ns, how
    it was measured); ``locks``: (lock_cost ns, how it was measured)."""
    by = f.costs.set_index("target")
    split = "" if f.phases else "phases not recorded: the cycle's slope split evenly between read and write"
    rows = [
        {"item": "read_cost", "model": "", "value": f.read_cost, "unit": "ns/coordinate",
         "method": "slope of the median read-phase time on support size" if f.phases else
         "half the slope of the median cycle time on support size", "r2": by.loc["read" if f.phases else "cycle", "r2"],
         "n": f.n_samples, "note": f"fitted {f.read_slope:.4g}, rounded to whole ticks; " + split},
        {"item": "write_cost", "model": "", "value": f.write_cost, "unit": "ns/coordinate",
         "method": "slope of the median write-phase time on support size" if f.phases else
         "half the slope of the median cycle time on support size",
         "r2": by.loc["write" if f.phases else "cycle", "r2"], "n": f.n_samples,
         "note": f"fitted {f.write_slope:.4g}, rounded to whole ticks"},
        *_given_row("atomic_write_cost", atomic_write, "ns/coordinate",
                    "atomic-instruction stores (hogwild-atomic; hogwild with write_mode atomic); rounded to "
                    "whole ticks"),
        *_given_row("lock_cost", locks, "ns/lock", "per lock a sample takes (lock-coord: one per coordinate; "
                                                   "lock-global: one), on its first read; rounded to whole ticks"),
        {"item": "cycle", "model": "", "value": f.mean_cycle_ns, "unit": "ns/sample",
         "method": "mean time from a sample's start to the worker's next start", "r2": by.loc["cycle", "r2"],
         "n": f.n_samples, "note": f"mean support {f.mean_support:.4g}"},
    ]
    for _, d in f.delays.iterrows():
        params = {"empirical": f"{int(d['points'])} equal-count bin means",
                  "shifted-exponential": f"c = {d['loc']:.4g} ns, λ = {d['rate']:.4g} /ns",
                  "lognormal": f"μ = {d['mu']:.4g}, σ = {d['sigma']:.4g} (of log ns)"}[d["model"]]
        rows.append({"item": "delay", "model": d["model"], "value": d["mean"], "unit": "ns (mean)",
                     "method": "maximum likelihood" if d["model"] != "empirical" else "resampling the residuals",
                     "ks": d["ks"], "ks_pvalue": d["ks_pvalue"], "n": d["n"], "chosen": d["model"] == chosen,
                     "note": f"{params}; {d['clipped']} negative residuals clipped to 0 "
                             f"({d['clipped_ns']:.3g} ns/sample)"})
    rows.append({"item": "coherence_cost", "model": "", "value": coherence, "unit": "ns/line transfer",
                 "method": coherence_source, "n": math.nan,
                 "note": ", ".join(w for w, given in (("reads", True), ("plain stores", store is None),
                                                       ("atomic-instruction stores", atomic is None)) if given)})
    if atomic is not None:
        rows.append({"item": "atomic_coherence_cost", "model": "", "value": float(atomic), "unit": "ns/line transfer",
                     "method": "given (atomic_coherence_cost=)", "n": math.nan,
                     "note": "atomic-instruction stores (hogwild-atomic; hogwild with write_mode atomic)"})
    rows += _given_row("store_coherence_cost", store, "ns/line transfer",
                       "plain stores (with rmw writes: the write's load and store)")
    rows += _given_row("miss_overlap", hidden, "ns/sample",
                       "coherence-miss time a sample hides under its own memory stalls (hwsim.model)")
    rows.append({"item": "epoch_overhead", "model": "", "value": f.epoch_overhead_ns, "unit": "ns/epoch",
                 "method": "median of epoch wall time minus the samples' span", "n": math.nan,
                 "note": "added per epoch by analysis.predict"})
    df = pd.DataFrame(rows)
    for c in ("ks", "ks_pvalue", "r2"):
        df[c] = df[c].astype(float) if c in df.columns else math.nan
    df["chosen"] = df["chosen"].fillna(False).astype(bool) if "chosen" in df.columns else False
    df["fitted_on_threads"] = ",".join(str(t) for t in f.fitted_on_threads)
    return df


def _one_thread_fit(who: str, samples, right, wanted: str, *, spec, problem, terms, epoch_seconds) -> Fit:
    """The :func:`fit` of a 1-thread run of another scheme (a realrun result, or its sample
    trace with the run's ``spec`` if known), whose spec ``right`` must accept, for
    :func:`atomic_write_ns` and :func:`lock_ns`; ``who`` and ``wanted`` word their errors."""
    if not isinstance(samples, pd.DataFrame):
        spec = getattr(samples, "spec", None) if spec is None else spec
        epoch_seconds = getattr(samples, "epoch_seconds", None) if epoch_seconds is None else epoch_seconds
        samples = samples.samples
    if spec is not None and (spec.threads != 1 or not right(spec)):
        raise ValueError(f"{who}: a run of {spec.scheme} (write_mode {spec.write_mode}) on {spec.threads} threads: "
                         f"give a 1-thread run of {wanted}")
    f = fit(samples, problem=problem, terms=terms, epoch_seconds=epoch_seconds)
    if f.fitted_on_threads != (1,):
        raise ValueError(f"{who}: the trace ran on threads {f.fitted_on_threads}: give a 1-thread run")
    return f


def _extra_ns(f: Fit, fitted: Fit) -> float:
    """How much longer ``f``'s mean cycle is than ``fitted``'s, per coordinate of ``f``'s mean support."""
    return (f.mean_cycle_ns - fitted.mean_cycle_ns) / max(f.mean_support, 1e-12)


def atomic_write_ns(samples, fitted: Fit, *, spec=None, problem=None, terms=None,
                    epoch_seconds=None) -> tuple[float, str]:
    """What one atomic-instruction store takes (ns), from a 1-thread run whose stores are
    atomic instructions (``hogwild-atomic``, or ``hogwild`` with ``write_mode = "atomic"``; a
    realrun result or its sample trace) and ``fitted``, the :func:`fit` of the plain hogwild
    run the machine is calibrated on: that fit's (whole-tick) ``write_cost`` plus how much
    longer the atomic run's mean cycle is, per coordinate of its mean support -- so hwsim's
    1-thread run of the scheme takes the measured time.  One thread, so no line ever moves:
    what is left is the locked instructions' own cost.  Returns (ns, a sentence for the fit
    table).  Raises ValueError for another scheme or thread count (``spec``: the run's, when
    ``samples`` is a bare trace)."""
    f = _one_thread_fit("atomic_write_ns", samples, _atomic_spec,
                        "hogwild-atomic, or of hogwild with write_mode = 'atomic' (stores that are atomic "
                        "instructions)", spec=spec, problem=problem, terms=terms, epoch_seconds=epoch_seconds)
    ns = max(fitted.write_cost + _extra_ns(f, fitted), 1.0)
    return ns, (f"write_cost {fitted.write_cost} ns plus the mean cycle of a 1-thread run with atomic-instruction "
                f"stores ({f.mean_cycle_ns:.4g} ns) beyond the calibration run's ({fitted.mean_cycle_ns:.4g}), per "
                f"coordinate of the mean support ({f.mean_support:.4g})")


def lock_ns(samples, fitted: Fit, *, spec=None, problem=None, terms=None, epoch_seconds=None) -> tuple[float, str]:
    """What taking one lock costs (ns): how much longer a sample's mean cycle is in a 1-thread
    ``lock-coord`` run (one lock per coordinate; a realrun result or its sample trace) than
    in ``fitted``, the :func:`fit` of the plain hogwild run the machine is calibrated on (the
    same kernel without the locks), per coordinate of the mean support; clipped at 0.  The
    mean, not a slope: realrun takes a sample's locks before its ``t_start``, so their time
    falls in the previous sample's cycle.  Returns (ns, a sentence for the fit table).
    Raises ValueError for another scheme or thread count (``spec``: the run's, when
    ``samples`` is a bare trace)."""
    f = _one_thread_fit("lock_ns", samples, lambda sp: sp.scheme == "lock-coord",
                        "lock-coord (one lock per coordinate)", spec=spec, problem=problem, terms=terms,
                        epoch_seconds=epoch_seconds)
    return max(_extra_ns(f, fitted), 0.0), (
        f"mean cycle of a 1-thread lock-coord run ({f.mean_cycle_ns:.4g} ns) minus the calibration run's "
        f"({fitted.mean_cycle_ns:.4g}), per coordinate of the mean support ({f.mean_support:.4g}): one lock per "
        "coordinate")


def _atomic_spec(spec) -> bool:
    from hwsim.model import atomic_stores

    return atomic_stores(spec)


# --- hidden misses: the memory stall a sample overlaps transfers with -------------------------------

def memory_stall_ns(f: Fit, resident_samples_per_s: float, resident_support: float) -> float:
    """The memory stall of one sample on one thread (ns): the fit's mean cycle minus what the
    same kernel takes for a sample of the same mean support when its rows are cache
    resident (``resident_samples_per_s`` over samples of mean support ``resident_support``:
    ``realrun.calibrate.visit_rates``' ``resident`` row), clipped at 0.  Use it as
    ``hwsim.Machine.miss_overlap``: the core overlaps line transfers with these stalls."""
    for name, v in (("resident_samples_per_s", resident_samples_per_s), ("resident_support", resident_support)):
        if not (isinstance(v, (int, float, np.integer, np.floating)) and math.isfinite(v) and v > 0):
            raise ValueError(f"memory_stall_ns: {name} = {v!r}: must be a positive number (from "
                             "realrun.calibrate.visit_rates(..., orders=('resident',)))")
    per_coord = 1e9 / float(resident_samples_per_s) / float(resident_support)
    return max(float(f.mean_cycle_ns) - per_coord * float(f.mean_support), 0.0)


def measure_memory_stall(f: Fit, problem, *, prefetch: int | None = None, repeats: int = 5) -> dict:
    """:func:`memory_stall_ns` with the resident rate measured now on one thread
    (``realrun.calibrate.visit_rates``, ``prefetch``: the run's ``options.prefetch``).
    Returns ``{"ns", "resident_samples_per_s", "resident_support", "source"}``."""
    from realrun.calibrate import visit_rates

    row = visit_rates(problem, repeats=repeats, prefetch=prefetch, orders=("resident",)).iloc[0]
    ns = memory_stall_ns(f, float(row["samples_per_s"]), float(row["support_mean"]))
    src = (f"1-thread cycle {f.mean_cycle_ns:.4g} ns minus the kernel on cache-resident rows "
           f"({1e9 / row['samples_per_s'] / row['support_mean']:.3g} ns/coordinate x {f.mean_support:.4g}; "
           "realrun.calibrate.visit_rates)")
    return {"ns": ns, "resident_samples_per_s": float(row["samples_per_s"]),
            "resident_support": float(row["support_mean"]), "source": src}


# --- coherence from the k-lines ping-pong (lines in flight) ----------------------------------------

def coherence_in_flight(fit, lines: float) -> float:
    """The cost (ns) of one cache-line transfer when ``lines`` of them are in flight at
    once, from :func:`realrun.coherence.overlap_fit`'s line ``half round = a + b·k``: the
    per-line share ``a/k + b`` at ``k = lines`` (at k = 1, the lone transfer ``a + b``).

    Choose ``lines`` as the transfers one sample's read phase issues together: half of
    the workload's :func:`misses_per_sample` (which counts reads and writes), as a sample
    reads its support with independent loads and the core overlaps their misses."""
    if not (isinstance(lines, (int, float, np.integer, np.floating)) and math.isfinite(lines) and lines >= 1):
        raise ValueError(f"coherence_in_flight: lines = {lines!r}: must be a number >= 1 (transfers in flight)")
    return float(fit.latency_ns) / float(lines) + float(fit.marginal_ns)


def in_flight_cost(spec, machine, problem, *, layout: str = "as-given", overlap=None) -> dict:
    """The plain-access coherence cost (ns) for ``spec`` on the calibrated ``machine``:
    :func:`coherence_in_flight` of the k-lines ping-pong (``overlap``: a
    :func:`realrun.coherence.overlap_fit` result, measured now when None) at half the
    sample's simulated :func:`misses_per_sample` (the lines one phase has in flight).
    Returns ``{"ns", "lines", "overlap", "source"}`` (``source``: a sentence for the fit
    table). Pair it with the ping-pong's lone transfer as ``atomic_coherence_cost``: a
    locked instruction waits for its line alone."""
    if overlap is None:
        from realrun.coherence import overlap_fit

        overlap = overlap_fit()
    lines = max(misses_per_sample(spec, machine, problem, layout=layout) / 2.0, 1.0)
    ns = coherence_in_flight(overlap, lines)
    src = (f"k-lines ping-pong (realrun.coherence): {overlap.latency_ns:.3g} + {overlap.marginal_ns:.3g}·k ns per "
           f"half round, per line at k = {lines:.3g} lines in flight (half a sample's simulated misses)")
    return {"ns": ns, "lines": lines, "overlap": overlap, "source": src}


#: the write-miss rule :func:`calibrate_split` applies by default: a write's miss costs the
#: core nothing (``hwsim.Machine.store_coherence_cost = 0``)
WRITE_MISSES_OFF_PATH = ("0: a write's miss is off the core's critical path -- nothing later in the thread waits "
                         "for a plain store (it retires into the store buffer) or for an rmw write's load (it feeds "
                         "only its store), so an out-of-order core runs on while the line arrives; the line still "
                         "changes hands (hwsim.Machine.store_coherence_cost)")
WRITE_MISS_RULES = ("off-path", "charged")


def calibrate_split(samples, *, problem, pingpong, spec, overlap=None, hidden: bool = True,
                    write_misses: str = "off-path", fitted: Fit | None = None, **kw) -> tuple[Calibration, str]:
    """:func:`calibrate` with the coherence split: reads at :func:`in_flight_cost` (``spec``'s
    hogwild run, the sample's misses in flight; ``overlap``: a k-lines fit already taken,
    e.g. :func:`pooled_probes`'s, else one measured now), atomic-instruction stores at the
    ping-pong's lone transfer, plain stores at 0 (``write_misses = "off-path"``, the
    default: :data:`WRITE_MISSES_OFF_PATH`) or at the reads' cost (``"charged"``); with
    ``hidden`` (default), the sample hides misses under its 1-thread memory stall
    (:func:`measure_memory_stall` with the run's ``options.prefetch``:
    ``hwsim.Machine.miss_overlap``).  ``kw`` go to :func:`calibrate` (``epoch_seconds``,
    ``layout``, ``delay``, ...); ``fitted``: the trace's :func:`fit`, already computed.  Falls
    back to the ping-pong for reads (and charged writes) when the k-lines microbenchmark
    cannot run, and to no hidden misses when the resident-rows microbenchmark cannot.
    Returns the calibration and a sentence saying which costs it used."""
    if write_misses not in WRITE_MISS_RULES:
        raise ValueError(f"calibrate_split: write_misses = {write_misses!r}: must be one of "
                         f"{', '.join(WRITE_MISS_RULES)} ('off-path': a write's miss costs the core nothing; "
                         "'charged': it costs what a read's does)")
    cal = calibrate(samples, problem=problem, pingpong=pingpong, spec=spec, fitted=fitted, **kw)
    pp = coherence_ns(pingpong)
    notes = []
    extra = {}
    if write_misses == "off-path":
        extra = {"store_coherence_cost": 0.0, "store_coherence_source": WRITE_MISSES_OFF_PATH}
        notes.append("plain stores' misses off the critical path (0 ns)")
    if hidden:
        try:
            stall = measure_memory_stall(cal.fit, problem, prefetch=dict(spec.options or {}).get("prefetch"))
            extra.update(miss_overlap=stall["ns"], miss_overlap_source=stall["source"])
            notes.append(f"misses hidden under the 1-thread memory stall, {stall['ns']:.3g} ns per sample")
        except (ImportError, ValueError, RuntimeError, OSError) as exc:
            notes.append(f"no hidden misses (the resident-rows microbenchmark failed: {exc})")
    plain = "reads" if write_misses == "off-path" else "reads and plain stores"
    try:
        fl = in_flight_cost(spec.replace(scheme="hogwild", threads=1), cal.machine, problem,
                            layout=cal.provenance["memory_layout"], overlap=overlap)
    except (ImportError, ValueError, RuntimeError, OSError) as exc:
        out = calibrate(samples, problem=problem, pingpong=pingpong, spec=spec, fitted=cal.fit, **extra,
                        **kw) if extra else cal
        return out, "; ".join([f"coherence cost {pp:.3g} ns for {plain} and atomic-instruction stores "
                               f"(realrun.pingpong; the k-lines ping-pong failed: {exc})"] + notes)
    split = calibrate(samples, problem=problem, coherence_cost=fl["ns"], coherence_source=fl["source"],
                      atomic_coherence_cost=pp, spec=spec, fitted=cal.fit, **extra, **kw)
    split.provenance["coherence_pingpong_ns"] = pp
    return split, "; ".join([f"coherence cost {fl['ns']:.3g} ns for {plain} (k-lines ping-pong at "
                             f"{fl['lines']:.3g} lines in flight), {pp:.3g} ns for atomic-instruction stores "
                             "(realrun.pingpong)"] + notes)


# --- coherence probes taken alongside the runs --------------------------------------------------
#: The host's coherence figures can move while a study measures (other tenants' load, the
#: vCPUs placed elsewhere: this project's 2-vCPU VMs read a one-line ping-pong of 14.5 ns
#: and 34 ns within an hour).  The study probes before and between its repeats; a spread
#: (max − min) / median above this over the probes says the calibration was taken on an
#: unsteady machine (:func:`coherence_drift`).
COHERENCE_DRIFT_MAX = 0.25
DRIFT_FIGURES = ("pingpong_ns", "kline_marginal_ns")


def probe_coherence(when: str) -> dict:
    """One coherence probe now: ``realrun.pingpong()`` and the k-lines
    ``realrun.coherence.overlap_fit()`` (about a tenth of a second together); ``when``
    labels it (e.g. ``"before repeat 0"``)."""
    from realrun import pingpong
    from realrun.coherence import overlap_fit

    return {"when": str(when), "pingpong": pingpong(), "overlap": overlap_fit()}


def probe_table(probes) -> pd.DataFrame:
    """One row per :func:`probe_coherence` result: the ping-pong and the k-lines line."""
    return pd.DataFrame([{"probe": i, "when": p["when"], "pingpong_ns": coherence_ns(p["pingpong"]),
                          "kline_latency_ns": float(p["overlap"].latency_ns),
                          "kline_marginal_ns": float(p["overlap"].marginal_ns),
                          "kline_lone_ns": float(p["overlap"].lone_ns)} for i, p in enumerate(probes)],
                        columns=["probe", "when", "pingpong_ns", "kline_latency_ns", "kline_marginal_ns",
                                 "kline_lone_ns"])


def pooled_probes(probes) -> tuple[float, Any]:
    """The probes as one calibration input: the median ping-pong (ns) and
    ``realrun.coherence.pooled_fit`` of their k-lines fits (per k, the median half round)."""
    from realrun.coherence import pooled_fit

    if not probes:
        raise ValueError("pooled_probes: no probes: take at least one with probe_coherence()")
    return (float(np.median([coherence_ns(p["pingpong"]) for p in probes])),
            pooled_fit([p["overlap"] for p in probes]))


def coherence_drift(table: pd.DataFrame, max_spread: float = COHERENCE_DRIFT_MAX) -> pd.DataFrame:
    """Did the machine hold still while it was measured?  Per figure of :func:`probe_table`
    (:data:`DRIFT_FIGURES`): the probes' median, min and max, and the check spread =
    (max − min) / median ``<=`` ``max_spread`` (verdict ``holds`` / ``violated``; not
    applicable with fewer than two probes)."""
    from .verdicts import check_row

    rows = []
    for fig in DRIFT_FIGURES:
        v = table[fig].to_numpy(np.float64) if fig in table.columns else np.zeros(0)
        v = v[np.isfinite(v)]
        med = float(np.median(v)) if v.size else math.nan
        spread = float((v.max() - v.min()) / med) if v.size and med > 0 else math.nan
        rows.append({"figure": fig, "probes": int(v.size), "median": med,
                     "min": float(v.min()) if v.size else math.nan, "max": float(v.max()) if v.size else math.nan,
                     **check_row(spread, max_spread, "<=", note="(max - min) / median over the probes",
                                 not_applicable="fewer than two probes" if v.size < 2 else None)})
    return pd.DataFrame(rows)


def probe_states(table: pd.DataFrame, max_spread: float = COHERENCE_DRIFT_MAX) -> pd.DataFrame:
    """Which machine state each repeat ran in, from the probes around it.

    ``table``: :func:`probe_table` of probes taken before repeat 0 and after each repeat, so
    repeat r lies between probes r and r + 1.  A virtual machine's vCPUs can be moved
    between host cores mid-measurement (this project's 2-vCPU VMs read a one-line ping-pong
    of 23 ns and of 200 ns minutes apart, and a 2-thread Hogwild! run's throughput moves
    3x with it), so a comparison is only honest among repeats that ran in one state.
    Repeat r is *steady* when its two probes' ping-pongs agree: (max - min) / min <=
    ``max_spread``.  Steady repeats are grouped, in order of their ping-pong (the mean of
    the two), into states: a repeat joins the current state while its ping-pong is within
    ``max_spread`` of the state's first (lowest), else opens the next.  Returns one row per
    repeat: ``repeat, pingpong_lo, pingpong_hi, steady, state`` (0, 1, ... in order of
    ping-pong; -1 when not steady)."""
    pp = table["pingpong_ns"].to_numpy(np.float64)
    if pp.size < 2:
        raise ValueError(f"probe_states: {pp.size} probe(s): need one before the first repeat and one after each")
    lo, hi = np.minimum(pp[:-1], pp[1:]), np.maximum(pp[:-1], pp[1:])
    steady = (lo > 0) & ((hi - lo) <= max_spread * lo)
    state = np.full(lo.size, -1, dtype=np.int64)
    mid = (lo + hi) / 2.0
    first, k = None, -1
    for r in sorted(np.flatnonzero(steady), key=lambda r: (mid[r], r)):
        if first is None or mid[r] > first * (1.0 + max_spread):
            first, k = mid[r], k + 1
        state[r] = k
    return pd.DataFrame({"repeat": np.arange(lo.size), "pingpong_lo": lo, "pingpong_hi": hi, "steady": steady,
                         "state": state})


# --- coherence from a contention microbenchmark -------------------------------------------------

def contention_problem(lines: int, *, rows: int = 20_000, line_coords: int = LINE_COORDS):
    """The microbenchmark's workload: every row holds the same ``lines`` coordinates, one per
    cache line (coordinate i·line_coords), so two threads bounce exactly those lines."""
    import scipy.sparse as sp

    from workload.problems import Terms, make_problem

    if lines < 1 or rows < 2:
        raise ValueError(f"contention_problem: lines = {lines}, rows = {rows}: need lines >= 1 and rows >= 2")
    cols = np.arange(lines, dtype=np.int64) * line_coords
    indptr = np.arange(rows + 1, dtype=np.int64) * lines
    A = sp.csr_matrix((np.full(rows * lines, 1.0 / math.sqrt(lines)), np.tile(cols, rows), indptr),
                      shape=(rows, lines * line_coords))
    y = np.where(np.arange(rows) % 2 == 0, 1.0, -1.0)
    return make_problem("svm", Terms.from_csr(A, y), lam=1e-4)


def misses_per_sample(spec, machine, problem, *, threads: int = 2, probe: int = 1, engine: str = "fast",
                      max_samples: int | None = 100_000, layout: str = "as-given") -> float:
    """How many coherence misses per sample hwsim sees on ``problem`` at ``threads`` cores:
    (simulated time at coherence cost ``probe`` − at 0) / probe, per sample, per core (one
    epoch; on a row subset of ``max_samples`` rows when larger), in the coordinate numbering
    ``layout`` (:func:`analysis.predict.simulated_problem`).  Every access counts -- reads
    and stores of every kind, none hidden: the machine's ``atomic_coherence_cost``,
    ``store_coherence_cost`` and ``miss_overlap`` are set aside."""
    import hwsim

    from .predict import simulated_problem, subsample_problem

    problem = simulated_problem(problem, layout)

    if max_samples is not None and problem.N > max_samples:
        problem = subsample_problem(problem, max_samples, spec.seed)
    s = spec.replace(threads=threads, epochs=1)
    t = []
    for h in (0, probe):
        m = machine.replace(cores=threads, coherence_cost=h, atomic_coherence_cost=None, store_coherence_cost=None,
                            miss_overlap=0)
        r = hwsim.simulate(s, m, problem=problem, engine=engine, coord_trace=False)
        t.append(r.ticks)
    return (t[1] - t[0]) * threads / (probe * problem.N)


def fit_coherence(spec, *, lines: int, rows: int = 20_000, epochs: int = 3, repeats: int = 3, delay: str = "empirical",
                  engine: str = "fast", h_max: int = 2000) -> tuple[int, pd.DataFrame]:
    """The coherence cost that makes hwsim reproduce a contention microbenchmark.

    realrun's own kernel (``spec``'s scheme and options) runs :func:`contention_problem`
    (``lines`` shared cache lines per sample) at 1 and 2 threads, ``repeats`` times each
    (median samples/s); a machine is calibrated on the 1-thread trace of the
    microbenchmark, and its ``coherence_cost`` H is found by bisection so that hwsim's
    2-thread samples/s matches the measured one. Unlike the ping-pong, which times one
    dependent transfer, this includes what the core overlaps (many lines in flight at
    once). Choose ``lines`` as the workload's :func:`misses_per_sample` so the
    microbenchmark's contention matches the workload's. The workload's own multi-thread
    runs are not used. Returns (H, table of the measurements: per thread count the median
    and every run's samples/s, the fitted H, ``at_bound`` (why H is not identified, when it
    is not) and ``tau0_fraction``, the share of samples that overlapped no other: near 0
    when the two threads really ran at once).
    """
    import realrun

    prob = contention_problem(lines, rows=rows)
    # the problem's layout (one coordinate per line) is the point of the benchmark: realrun
    # must not renumber it (its default packs equal-degree coordinates into shared lines)
    base = spec.replace(epochs=epochs, threads=1, schedule="constant",
                        options={**dict(spec.options or {}), "relabel": False})
    realrun.run(base.replace(epochs=1), problem=prob)
    realrun.run(base.replace(epochs=1, threads=2), problem=prob)
    runs = {1: [], 2: []}
    for _ in range(repeats):
        for p in (1, 2):
            runs[p].append(realrun.run(base.replace(threads=p), problem=prob))
    med = {p: float(np.median([r.samples_per_s for r in rs])) for p, rs in runs.items()}
    one = sorted(runs[1], key=lambda r: r.samples_per_s)[len(runs[1]) // 2]
    cal = calibrate(one, problem=prob, coherence_cost=0, delay=delay, layout="as-given")
    sim_spec = base.replace(epochs=1)
    overhead = cal.provenance["epoch_overhead_ns"]

    def rate(h: int) -> float:  # as realrun counts it: the epoch's overhead included
        import hwsim

        r = hwsim.simulate(sim_spec.replace(threads=2), cal.machine.replace(cores=2, coherence_cost=int(h)),
                           problem=prob, engine=engine, coord_trace=False)
        return prob.N / ((r.ticks + overhead) * 1e-9)

    lo, hi = 0, h_max
    at_bound = ""
    if rate(lo) <= med[2]:
        h, at_bound = 0, "the 2-thread microbenchmark is slower than hwsim without coherence costs"
    elif rate(hi) >= med[2]:
        h, at_bound = hi, (f"the 2-thread microbenchmark is slower than hwsim even at H = h_max = {h_max}: "
                           "not identifiable (were both threads running? see the τ of its runs)")
        log.warning("fit_coherence: %s", at_bound)
    else:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if rate(mid) > med[2]:
                lo = mid
            else:
                hi = mid
        h = lo if abs(rate(lo) - med[2]) <= abs(rate(hi) - med[2]) else hi
    table = pd.DataFrame([{"lines": lines, "rows": rows, "threads": p, "samples_per_s_median": med[p],
                           "samples_per_s_runs": ",".join(f"{r.samples_per_s:.6g}" for r in runs[p]),
                           "fitted_coherence_cost": h, "at_bound": at_bound,
                           "tau0_fraction": float(np.mean([np.mean(r.tau() == 0) for r in runs[p]]))}
                          for p in (1, 2)])
    return h, table


# --- the coherence cost a measurement implies (a diagnostic, never a prediction) ----------------

def implied_coherence(spec, machine, measured_speedup: float, *, threads: int = 2, problem=None,
                      engine: str = "fast", max_samples: int | None = 100_000, layout: str | None = None,
                      h_max: int = 2000) -> dict:
    """The coherence cost H (ticks) at which hwsim's ``threads``-core speedup over 1 core,
    for ``spec`` on ``machine`` with every other parameter as calibrated, equals
    ``measured_speedup``: an *in-sample* diagnostic that says how far the calibrated cost
    (a microbenchmark's) is from the one the workload behaves as if it paid. It is fitted
    to the very run it explains, so it is never a prediction and carries no verdict.

    With the machine's ``atomic_coherence_cost`` (``store_coherence_cost``) set, the
    atomic-instruction (plain) stores keep their cost and H varies for the other accesses;
    unset, they follow H.

    The simulated speedup falls as H grows; H is found by bisection on whole ticks in
    [0, ``h_max``] (``analysis.predict.predict_detail`` at 1 and ``threads`` cores, the same
    layout, subsample and epoch overhead as a prediction). Returns a dict: ``implied``
    (the H; None when out of range), ``calibrated`` (the machine's own H),
    ``atomic_fixed`` (the atomic-instruction stores' cost held fixed, None when they follow H),
    ``store_fixed`` (the same for plain stores),
    ``speedup_at_zero`` / ``speedup_at_max`` (hwsim's speedup with free / ``h_max``
    coherence), ``measured``, ``threads`` and ``note`` (why no H fits, when none does).
    """
    from hwsim.model import atomic_stores

    from .predict import _machine_and_provenance, predict_detail

    if not (isinstance(measured_speedup, (int, float, np.integer, np.floating)) and math.isfinite(measured_speedup)
            and measured_speedup > 0):
        raise ValueError(f"implied_coherence: measured_speedup = {measured_speedup!r}: must be a finite number > 0")
    if not isinstance(threads, (int, np.integer)) or threads < 2:
        raise ValueError(f"implied_coherence: threads = {threads!r}: must be an integer >= 2 (coherence costs "
                         "nothing on one core)")
    hw, _ = _machine_and_provenance(machine)

    def sps(cores: int, h: int | None) -> float:
        m = machine
        if h is not None:  # the same machine (and a Calibration's provenance: layout, overhead) at H = h
            m = (replace(machine, machine=hw.replace(coherence_cost=int(h))) if isinstance(machine, Calibration)
                 else hw.replace(coherence_cost=int(h)))
        d = predict_detail(spec.replace(threads=1), m, cores=(cores,), problem=problem, engine=engine,
                           max_samples=max_samples, layout=layout)
        return float(d.summary["samples_per_s"].iloc[0])

    one = sps(1, None)

    def speedup(h: int) -> float:
        return sps(threads, h) / one

    fixed = hw.atomic_coherence_cost is not None and atomic_stores(spec)
    out = {"threads": int(threads), "measured": float(measured_speedup), "calibrated": int(hw.coherence_cost),
           "atomic_fixed": int(hw.atomic_coherence_cost) if fixed else None,
           "store_fixed": (int(hw.store_coherence_cost) if hw.store_coherence_cost is not None
                           and not atomic_stores(spec) else None), "implied": None,
           "speedup_at_zero": speedup(0), "speedup_at_max": math.nan, "note": ""}
    if measured_speedup > out["speedup_at_zero"]:
        out["note"] = (f"measured {measured_speedup:.3g} is faster than hwsim with free coherence "
                       f"({out['speedup_at_zero']:.3g}): the other parameters (delay, costs) already predict too slow")
        return out
    out["speedup_at_max"] = speedup(h_max)
    if measured_speedup < out["speedup_at_max"]:
        out["note"] = (f"measured {measured_speedup:.3g} is slower than hwsim even at H = h_max = {h_max} "
                       f"({out['speedup_at_max']:.3g}): were the threads time-shared?")
        return out
    lo, hi = 0, h_max  # speedup(lo) >= measured >= speedup(hi)
    s_lo, s_hi = out["speedup_at_zero"], out["speedup_at_max"]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        s = speedup(mid)
        if s >= measured_speedup:
            lo, s_lo = mid, s
        else:
            hi, s_hi = mid, s
    out["implied"] = lo if abs(s_lo - measured_speedup) <= abs(s_hi - measured_speedup) else hi
    return out
