"""Stragglers: synchronous minibatch SGD against Hogwild!, on equal terms.

Two questions, each a DataFrame → DataFrame (or spec → DataFrame) function and a figure:

1. **Iteration time vs n.**  A synchronous step waits for the slowest of n workers.  With
   per-worker step time X = c + Exp(λ), E[max_{i≤n} X_i] = c + H_n/λ (Rényi: the k-th
   spacing of n exponential order statistics is Exp((n−k+1)λ); Dutta et al. 2018, §3), and
   the whole distribution is P(max ≤ t) = (1 − e^{−λ(t−c)})^n.
   :func:`iteration_time_table` simulates it with :func:`hwsim.sync.straggler_study` (the
   delay models and per-core streams of every hwsim run, up to 10,000+ workers) and sets
   the mean against the closed form with a confidence interval, and the distribution
   against the exact CDF with a Kolmogorov–Smirnov distance.
2. **Time to accuracy, sync vs async.**  :func:`sync_vs_async` simulates ``minibatch-sync``
   and ``hogwild`` in hwsim on the same machine (same delay model, same per-coordinate
   costs), with the same data, seed, epochs -- so the same number of gradient evaluations,
   N per epoch -- and the same step per gradient evaluation (``combine = "sum"``: the
   linear step-scaling rule, Goyal et al. 2017, §2.1).  :func:`time_to_accuracy` reads
   off the first checkpoint (epoch end) whose objective is within ε of the optimum,
   relative to the start: (f − f_ref) ≤ ε (f_0 − f_ref).  Resolution: one epoch.

Confidence interval (the one :func:`iteration_time_table` reports)
    Iterations are independent (each worker's draws are independent across iterations and
    workers), so by the central limit theorem the mean of K iteration times is
    approximately normal: CI = mean ± z·s/√K with s the sample standard deviation and
    z = Φ⁻¹(1 − (1 − level)/2) (level 0.999: z = 3.29).  Agreement with the closed form
    additionally allows :data:`ROUNDING_TICKS`: hwsim rounds every delay to whole ticks
    (``rint``, monotone, so the rounded maximum is the maximum rounded: moved by at most
    half a tick).

Measured runs (realrun) give the same per-step table (``RealResult.info["iterations"]``);
:func:`iteration_durations` turns either engine's table into step / compute / combine
durations.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Sequence

import numpy as np
import pandas as pd

#: Rounding to whole ticks moves each maximum by at most this (ticks).
ROUNDING_TICKS = 0.5
DEFAULT_LEVEL = 0.999
DEFAULT_NS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


# --------------------------------------------------------------------------------------------
# Closed forms
# --------------------------------------------------------------------------------------------
def harmonic(n: int) -> float:
    """H_n = Σ_{k=1}^n 1/k."""
    from hwsim.sync import harmonic as h

    return h(n)


def closed_form(delay, n: int, *, fixed_ticks: float = 0.0, combine_ticks: float = 0.0) -> float:
    """E[max of n] step times + ``combine_ticks`` for delay models with a closed form
    (Constant; Exponential: H_n·mean; ShiftedExponential: c + H_n/λ), else NaN."""
    from hwsim.delays import Constant, Exponential, ShiftedExponential

    if isinstance(delay, ShiftedExponential):
        m = float(delay.shift) + harmonic(n) / float(delay.rate)
    elif isinstance(delay, Exponential):
        m = harmonic(n) * float(delay.mean_ticks)
    elif isinstance(delay, Constant):
        m = float(delay.ticks)
    else:
        return float("nan")
    return m + float(fixed_ticks) + float(combine_ticks)


def max_cdf(t: np.ndarray, delay, n: int) -> np.ndarray:
    """P(max of n ≤ t) for Exponential / ShiftedExponential delays (continuous model)."""
    from hwsim.delays import Exponential, ShiftedExponential

    if isinstance(delay, ShiftedExponential):
        c, lam = float(delay.shift), float(delay.rate)
    elif isinstance(delay, Exponential):
        c, lam = 0.0, 1.0 / float(delay.mean_ticks)
    else:
        raise ValueError(f"max_cdf: no closed form for {delay!r}; use Exponential or ShiftedExponential")
    z = np.clip(np.asarray(t, dtype=np.float64) - c, 0.0, None)
    return (-np.expm1(-lam * z)) ** n


# --------------------------------------------------------------------------------------------
# 1. Iteration time vs n
# --------------------------------------------------------------------------------------------
def mean_ci(values: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[float, float, float]:
    """(mean, lower, upper): the normal-approximation CI of the mean at ``level``."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        raise ValueError(f"mean_ci: {v.size} value(s); a confidence interval needs at least 2")
    if not (0.0 < level < 1.0):
        raise ValueError(f"mean_ci: level = {level!r}: must be in (0, 1), e.g. 0.999")
    m = float(v.mean())
    half = NormalDist().inv_cdf(1.0 - (1.0 - level) / 2.0) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return m, m - half, m + half


def iteration_time_table(delay, ns: Sequence[int] = DEFAULT_NS, n_iterations: int = 2000, seed: int = 0, *,
                         level: float = DEFAULT_LEVEL, samples_per_step: int = 1, fixed_ticks: int = 0,
                         combine_ticks: int = 0) -> pd.DataFrame:
    """Simulated iteration times for each n in ``ns`` against the order-statistics prediction.

    Columns: n, iterations, mean, sd, ci_lo, ci_hi, level, predicted (NaN without a closed
    form or with ``samples_per_step`` > 1), worker_mean (mean single-worker step time),
    slowdown (mean / worker_mean: the price of waiting for the slowest), ks_D (sup
    distance between the empirical and exact distribution of the maximum; NaN without a
    closed form), agrees (|mean − predicted| ≤ CI half-width + ROUNDING_TICKS), seconds (wall
    time of the simulation of that n).
    """
    import time

    from hwsim.sync import straggler_study

    rows = []
    for n in ns:
        t0 = time.perf_counter()
        r = straggler_study(delay, int(n), int(n_iterations), int(seed), samples_per_step=samples_per_step,
                            fixed_ticks=fixed_ticks, combine_ticks=combine_ticks)
        seconds = time.perf_counter() - t0
        m, lo, hi = mean_ci(r.ticks, level)
        pred = closed_form(delay, int(n), fixed_ticks=fixed_ticks, combine_ticks=combine_ticks) \
            if samples_per_step == 1 else float("nan")
        ks = float("nan")
        if samples_per_step == 1 and fixed_ticks == 0 and combine_ticks == 0:
            try:
                ks = ks_distance(r.ticks, delay, int(n))
            except ValueError:
                ks = float("nan")
        rows.append({"n": int(n), "iterations": int(n_iterations), "mean": m, "sd": float(np.std(r.ticks, ddof=1)),
                     "ci_lo": lo, "ci_hi": hi, "level": float(level), "predicted": pred,
                     "worker_mean": r.worker_mean, "slowdown": m / r.worker_mean, "ks_D": ks,
                     "agrees": bool(abs(m - pred) <= (hi - lo) / 2.0 + ROUNDING_TICKS) if math.isfinite(pred)
                     else False, "seconds": seconds})
    return pd.DataFrame(rows)


def ks_distance(times: np.ndarray, delay, n: int) -> float:
    """Kolmogorov–Smirnov distance sup_t |F_emp(t) − P(max of n ≤ t)| of simulated maxima.

    The simulated times are whole ticks; the continuous CDF is evaluated at t + 0.5 (what
    rounds down to t), so rounding adds nothing to the distance.
    """
    v = np.sort(np.asarray(times, dtype=np.float64))
    k = v.size
    F = max_cdf(v + 0.5, delay, n)
    upper = np.arange(1, k + 1) / k
    return float(max(np.max(upper - F), np.max(F - (upper - 1.0 / k))))


def iteration_durations(iterations: pd.DataFrame) -> pd.DataFrame:
    """Per step: ``step`` (t_end − t_begin), ``compute`` (last arrival − t_begin: the wait
    for the slowest), ``combine`` (t_end − last arrival), ``spread`` (last − first arrival)
    -- from hwsim's ``SyncResult.iterations`` (ticks) or realrun's ``info["iterations"]`` (ns)."""
    need = ("epoch", "step", "batch", "t_begin", "t_first_arrival", "t_last_arrival", "t_end")
    missing = [c for c in need if c not in iterations.columns]
    if missing:
        raise ValueError(f"iteration_durations: columns {missing} missing; pass SyncResult.iterations or "
                         "RealResult.info['iterations']")
    it = iterations
    return pd.DataFrame({"epoch": it["epoch"], "step": it["step"], "batch": it["batch"],
                         "step_time": it["t_end"] - it["t_begin"], "compute": it["t_last_arrival"] - it["t_begin"],
                         "combine": it["t_end"] - it["t_last_arrival"],
                         "spread": it["t_last_arrival"] - it["t_first_arrival"]})


# --------------------------------------------------------------------------------------------
# 2. Time to accuracy, sync vs async
# --------------------------------------------------------------------------------------------
def sync_vs_async(spec, machine, cores: Sequence[int], *, per_worker: int = 1, problem=None,
                  engine: str = "fast") -> pd.DataFrame:
    """hwsim histories of ``minibatch-sync`` (batch = per_worker·p, combine = sum) and
    ``hogwild`` at each p in ``cores``, everything else as in ``spec`` (module docstring).

    Returns HISTORY_SCHEMA rows plus scheme, cores, batch_size and ticks (the run's length).
    """
    import hwsim

    if problem is None:
        from workload.build import build_problem

        problem = build_problem(spec)
    if isinstance(per_worker, bool) or not isinstance(per_worker, (int, np.integer)) or per_worker < 1:
        raise ValueError(f"sync_vs_async: per_worker = {per_worker!r}: must be an integer >= 1 (terms per worker "
                         "per step); e.g. 1")
    frames = []
    for p in cores:
        b = min(problem.N, int(per_worker) * int(p))
        runs = (("hogwild", spec.replace(scheme="hogwild", threads=int(p), options={}), 0),
                ("minibatch-sync", spec.replace(scheme="minibatch-sync", threads=int(p),
                                                options={"batch_size": b, "combine": "sum"}), b))
        for scheme, s, bs in runs:
            res = hwsim.simulate(s, machine, problem=problem, engine=engine, coord_trace=False)
            h = res.history.copy()
            h.insert(0, "scheme", scheme)
            h.insert(1, "cores", int(p))
            h.insert(2, "batch_size", bs)
            h["ticks"] = res.ticks
            frames.append(h)
    return pd.concat(frames, ignore_index=True)


def time_to_accuracy(histories: pd.DataFrame, *, f_ref: float, epsilon: float) -> pd.DataFrame:
    """Per (scheme, cores): the first checkpoint with (f − f_ref) ≤ ε·(f_0 − f_ref).

    Columns: scheme, cores, target, time (seconds; NaN: not reached), epochs, samples
    (gradient evaluations), reached.
    """
    if not (0.0 < epsilon < 1.0):
        raise ValueError(f"time_to_accuracy: epsilon = {epsilon!r}: must be in (0, 1), e.g. 0.1")
    rows = []
    for (scheme, p), h in histories.groupby(["scheme", "cores"], sort=True):
        h = h.sort_values("epoch")
        f0 = float(h["objective"].iloc[0])
        target = f_ref + epsilon * (f0 - f_ref)
        hit = h[h["objective"] <= target]
        first = hit.iloc[0] if len(hit) else None
        rows.append({"scheme": scheme, "cores": int(p), "target": target,
                     "time": float(first["time"]) if first is not None else float("nan"),
                     "epochs": int(first["epoch"]) if first is not None else -1,
                     "samples": int(first["samples"]) if first is not None else -1, "reached": first is not None})
    return pd.DataFrame(rows)


def speedup_table(tta: pd.DataFrame) -> pd.DataFrame:
    """Per cores: time to accuracy of each scheme and sync / async (how much longer sync takes)."""
    wide = tta.pivot(index="cores", columns="scheme", values="time")
    out = pd.DataFrame({"cores": wide.index.astype(int)})
    for s in wide.columns:
        out[f"time_{s}"] = wide[s].to_numpy()
    if {"minibatch-sync", "hogwild"} <= set(wide.columns):
        out["sync_over_async"] = (wide["minibatch-sync"] / wide["hogwild"]).to_numpy()
    return out


# --------------------------------------------------------------------------------------------
# Figures (matplotlib Figure objects, no pyplot state)
# --------------------------------------------------------------------------------------------
def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def _color(scheme: str) -> str:
    from .report import SCHEME_COLORS

    return SCHEME_COLORS.get(scheme, "#000000")


def fig_iteration_time(table: pd.DataFrame, *, delay=None, tick_unit: float = 1.0, unit: str = "ticks"):
    """Mean iteration time vs n (log x): simulated points with their CIs over the closed-form
    curve c + H_n/λ (drawn for every integer n in range when ``delay`` has a closed form),
    and the mean single-worker step time for scale.  Times are divided by ``tick_unit``."""
    fig = _figure(6.0, 4.0)
    ax = fig.add_subplot()
    n = table["n"].to_numpy()
    m = table["mean"].to_numpy() / tick_unit
    err = np.vstack([m - table["ci_lo"].to_numpy() / tick_unit, table["ci_hi"].to_numpy() / tick_unit - m])
    if delay is not None and math.isfinite(closed_form(delay, 1)):
        grid = np.unique(np.round(np.logspace(0, math.log10(max(2, int(n.max()))), 200)).astype(int))
        ax.plot(grid, [closed_form(delay, int(k)) / tick_unit for k in grid], "-", color="#333333", linewidth=1.6,
                label="closed form c + H_n/λ")
    elif "predicted" in table and np.isfinite(table["predicted"]).any():
        ax.plot(n, table["predicted"] / tick_unit, "-", color="#333333", linewidth=1.6, label="closed form")
    level, k = float(table["level"].iloc[0]), int(table["iterations"].iloc[0])
    ax.errorbar(n, m, yerr=err, fmt="o", color=_color("minibatch-sync"), markersize=5, capsize=3,
                label=f"simulated mean ({level:.1%} CI, {k} iterations)")
    ax.plot(n, table["worker_mean"] / tick_unit, ":", color=_color("hogwild"), label="one worker's mean step")
    ax.set_xscale("log")
    ax.set_xlabel("workers n")
    ax.set_ylabel(f"iteration time ({unit})")
    ax.set_title("Synchronous step = the slowest of n workers")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def fig_time_to_accuracy(histories: pd.DataFrame, tta: pd.DataFrame, *, cores: int | None = None,
                         f_ref: float | None = None, time_label: str = "simulated time (s)"):
    """Left: objective vs time at ``cores`` (default: the largest) for both schemes, the
    target marked (with ``f_ref``: f − f_ref on a log axis); right: time to accuracy vs
    cores (log-log)."""
    fig = _figure(10.0, 4.0)
    ax1, ax2 = fig.subplots(1, 2)
    p = int(histories["cores"].max()) if cores is None else int(cores)
    shift = 0.0 if f_ref is None else float(f_ref)
    for scheme, h in histories[histories["cores"] == p].groupby("scheme"):
        h = h.sort_values("epoch")
        y = h["objective"] - shift
        keep = y > 0 if f_ref is not None else np.ones(len(h), dtype=bool)
        ax1.plot(h["time"][keep], y[keep], "-o", markersize=3, color=_color(scheme), label=scheme)
    tgt = tta[tta["cores"] == p]["target"]
    if len(tgt):
        ax1.axhline(float(tgt.iloc[0]) - shift, color="#333333", linestyle="--", linewidth=1, label="target")
    if f_ref is not None:
        ax1.set_yscale("log")
    ax1.set_xlabel(time_label)
    ax1.set_ylabel("objective" if f_ref is None else "f − f*")
    ax1.set_title(f"{p} cores, same gradient evaluations per epoch")
    ax1.grid(True, alpha=0.3)
    ax1.legend(fontsize=8)
    for scheme, t in tta.groupby("scheme"):
        t = t.sort_values("cores")
        ax2.plot(t["cores"], t["time"], "-o", color=_color(scheme), label=scheme)
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xlabel("cores")
    ax2.set_ylabel(f"time to accuracy ({time_label.split('(')[-1].rstrip(')')})")
    ax2.set_title("Time to accuracy under stragglers")
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    return fig
