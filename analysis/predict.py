"""Predict: simulate the calibrated machine at core counts the hardware may not have.

For each core count p the spec is run by ``hwsim.simulate`` with ``threads = p`` on the
machine with ``cores = p`` (each thread pinned, no time slicing). Every output row is
labelled ``kind = "predicted"`` and carries the thread counts the machine was calibrated
on (``calibrated_on_threads``), so :mod:`analysis.compare` can tell an out-of-sample
prediction from an in-sample one.

Throughput. Predicted samples/s = samples / (simulated seconds + epochs · epoch overhead),
the overhead being the calibration's per-epoch time outside the samples (reshuffle,
barrier; 0 when unknown).

Reduced runs. When ``spec.epochs · N`` exceeds ``max_samples``, a point is simulated on
one epoch over a uniform random subset of ``max_samples`` rows (without replacement, drawn
from ``workload.spec.stream(seed, STREAM_DATA, SUBSAMPLE_KEY)``), keeping all n
coordinates. Throughput and τ are per-sample (intensive) quantities: rows keep their
supports, so the per-pair conflict probability, the hot features and the per-sample costs
are those of the full problem, and samples/s and the τ distribution are taken from the
subset unchanged (``mode = "subsample"``). The objective of a subset says nothing about
the full problem's, so convergence is only reported for full runs (``mode = "full"``).

Memory layout. hwsim counts coherence misses per cache line, line = coordinate //
``line_coords``, so it must simulate the coordinate numbering the measured run used:
realrun renumbers the linear problems by descending degree (``options.relabel``, recorded
in the calibration's provenance as ``memory_layout``).  ``layout = "by-degree"`` simulates
:func:`workload.layout.relabel_by_degree`'s problem (before any row subset is drawn, so
degrees are the full problem's, as realrun computes them); ``"as-given"`` the problem as
it is; ``None`` takes the calibration's ``memory_layout`` (``"as-given"`` when unknown).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from workload.spec import STREAM_DATA, RunSpec, stream
from workload.trace import tau_overlap

from .overlap import tau_histogram, tau_summary

log = logging.getLogger(__name__)

DEFAULT_CORES = (1, 2, 4, 8, 16, 32, 64)
LAYOUTS = ("as-given", "by-degree")
#: Points with more samples than this are simulated on a row subset (module docstring).
MAX_SAMPLES = 200_000
#: The spawn key (under STREAM_DATA) of the row subset's stream.
SUBSAMPLE_KEY = 1013


@dataclass(frozen=True, eq=False)
class Prediction:
    """``summary``: one row per core count; ``history``: one row per (core count, epoch)
    (full runs only); ``tau``: the τ histogram per core count (``threads, tau, count,
    fraction``)."""

    summary: pd.DataFrame
    history: pd.DataFrame
    tau: pd.DataFrame


def _machine_and_provenance(machine) -> tuple[Any, dict]:
    if hasattr(machine, "machine") and hasattr(machine, "provenance"):  # a Calibration
        return machine.machine, dict(machine.provenance)
    return machine, {}


def subsample_problem(problem, rows: int, seed: int):
    """The problem over a uniform random subset of ``rows`` terms (all n coordinates kept)."""
    from workload.problems import Terms, make_problem

    t = problem.terms
    rng = stream(seed, STREAM_DATA, SUBSAMPLE_KEY)
    pick = np.sort(rng.choice(t.N, size=rows, replace=False))
    A = t.matrix()[pick]
    sub = Terms.from_csr(A, t.y[pick], n=t.n)
    params = {}
    info = getattr(problem, "info", {}) or {}
    if "lam" in info:
        params["lam"] = info["lam"]
    if "reg" in info:
        params["reg"] = info["reg"]
    return make_problem(problem.name, sub, **params)


def layout_of(prov: dict, layout: str | None) -> str:
    """The memory layout to simulate: ``layout`` when given, else the calibration's."""
    chosen = layout if layout is not None else prov.get("memory_layout", "as-given") or "as-given"
    if chosen not in LAYOUTS:
        raise ValueError(f"layout = {chosen!r}: must be one of {', '.join(LAYOUTS)} (or None: the calibration's "
                         "memory_layout); use 'by-degree' for realrun runs with options.relabel on")
    return chosen


def simulated_problem(problem, layout: str):
    """``problem`` in the coordinate numbering ``layout`` names (module docstring)."""
    if layout == "by-degree" and problem.name in ("svm", "logistic", "least-squares"):
        from workload.layout import relabel_by_degree

        return relabel_by_degree(problem)[0]
    return problem


def _simulate():
    import hwsim

    fn = getattr(hwsim, "simulate", None)
    if fn is None:
        raise RuntimeError("hwsim.simulate is not available; the prediction needs the simulator (issue 3)")
    return fn


def predict_detail(spec: RunSpec, machine, *, cores: Sequence[int] = DEFAULT_CORES, problem=None,
                   engine: str = "fast", max_samples: int | None = MAX_SAMPLES,
                   epoch_overhead_ns: float | None = None, layout: str | None = None) -> Prediction:
    """Simulate ``spec`` at every core count (module docstring).

    ``machine``: an ``hwsim.Machine`` or an :class:`analysis.calibrate.Calibration` (whose
    provenance is carried into the rows). ``problem``: built from the spec when None.
    ``layout``: the coordinate numbering to simulate (module docstring, "Memory layout").
    """
    machine, prov = _machine_and_provenance(machine)
    layout = layout_of(prov, layout)
    cores = sorted({int(c) for c in cores})
    if not cores or cores[0] < 1:
        raise ValueError(f"cores = {cores!r}: must be integers >= 1; e.g. cores=(1, 2, 4)")
    if spec.scheme == "serial" and cores != [1]:
        raise ValueError("predict: scheme 'serial' runs 1 thread; use cores=(1,) or a parallel scheme such as "
                         "'hogwild'")
    if problem is None:
        from workload.build import build_problem

        problem = build_problem(spec)
    problem = simulated_problem(problem, layout)
    if epoch_overhead_ns is None:
        epoch_overhead_ns = float(prov.get("epoch_overhead_ns", 0.0) or 0.0)
    simulate = _simulate()
    N = problem.N
    full = max_samples is None or spec.epochs * N <= max_samples
    if full:
        run_problem, run_spec, mode = problem, spec, "full"
    else:
        rows = int(min(max_samples, N))
        run_problem = subsample_problem(problem, rows, spec.seed)
        run_spec = spec.replace(epochs=1)
        mode = "subsample"
    calibrated_on = ",".join(str(t) for t in prov.get("fitted_on_threads", []))
    from hwsim import OWN_SAMPLE_RULES, PER_SAMPLE_ONLY

    if spec.scheme in OWN_SAMPLE_RULES:  # hwsim.sync / hwsim.cyclades: their own sample rules
        dropped = {n: getattr(machine, n) for n, off in PER_SAMPLE_ONLY.items() if getattr(machine, n, off) != off}
        if dropped:
            log.warning("predict: %s does not model %s; simulating it with %s (the calibration's %s left out)",
                        spec.scheme, ", ".join(dropped), ", ".join(f"{n} = {PER_SAMPLE_ONLY[n]}" for n in dropped),
                        ", ".join(f"{n} = {v}" for n, v in dropped.items()))
            machine = dataclasses.replace(machine, **{n: PER_SAMPLE_ONLY[n] for n in dropped})
    summary, hist, taus = [], [], []
    for p in cores:
        m = dataclasses.replace(machine, cores=p)
        res = simulate(run_spec.replace(threads=p), m, problem=run_problem, engine=engine, coord_trace=False)
        n_samples = len(res.samples)
        sim_s = float(res.ticks) * 1e-9
        per_sample = sim_s / max(n_samples, 1) + epoch_overhead_ns * 1e-9 / N
        tau = tau_overlap(res.samples)
        ts = tau_summary(tau).iloc[0]
        summary.append({
            "kind": "predicted", "threads": p, "cores": p, "engine": getattr(res, "engine", engine), "mode": mode,
            "simulated_samples": n_samples, "simulated_seconds": sim_s,
            "samples_per_s": 1.0 / per_sample if per_sample > 0 else math.inf,
            "tau_mean": ts["mean"], "tau_p50": ts["p50"], "tau_p99": ts["p99"], "tau_max": ts["max"],
            "lost_updates": int(res.lost_updates), "lost_per_sample": int(res.lost_updates) / max(n_samples, 1),
            "final_objective": float(res.history["objective"].iloc[-1]) if mode == "full" else math.nan,
            "calibrated_on_threads": calibrated_on, "epoch_overhead_ns": epoch_overhead_ns, "layout": layout,
            "miss_overlap": int(getattr(machine, "miss_overlap", 0)),
            "store_miss_cost": int(getattr(machine, "store_miss_cost", getattr(machine, "coherence_cost", 0))),
        })
        if mode == "full":
            h = res.history.copy()
            h.insert(0, "threads", p)
            h.insert(0, "kind", "predicted")
            hist.append(h)
        th = tau_histogram(tau)
        th.insert(0, "threads", p)
        taus.append(th)
        log.info("predicted %d cores: %.4g samples/s (%s, %d samples)", p, summary[-1]["samples_per_s"], mode,
                 n_samples)
    s = pd.DataFrame(summary)
    base = s.loc[s["threads"] == cores[0], "samples_per_s"].iloc[0]
    s["speedup"] = s["samples_per_s"] / base
    s["speedup_base_threads"] = cores[0]
    history = pd.concat(hist, ignore_index=True) if hist else pd.DataFrame(
        columns=["kind", "threads", "epoch", "samples", "objective", "dist2_opt", "time"])
    return Prediction(summary=s, history=history, tau=pd.concat(taus, ignore_index=True))


def predict(spec: RunSpec, machine, *, cores: Sequence[int] = DEFAULT_CORES, problem=None, engine: str = "fast",
            max_samples: int | None = MAX_SAMPLES, epoch_overhead_ns: float | None = None,
            layout: str | None = None) -> pd.DataFrame:
    """The per-core-count table of :func:`predict_detail`: ``kind, threads, cores, engine,
    mode, simulated_samples, simulated_seconds, samples_per_s, speedup, tau_mean, tau_p50,
    tau_p99, tau_max, lost_updates, lost_per_sample, final_objective,
    calibrated_on_threads, epoch_overhead_ns, layout, miss_overlap, store_miss_cost,
    speedup_base_threads``."""
    return predict_detail(spec, machine, cores=cores, problem=problem, engine=engine, max_samples=max_samples,
                          epoch_overhead_ns=epoch_overhead_ns, layout=layout).summary


def _cpus(cores, default: int) -> int:
    """Distinct CPUs the workers ran on (realrun records each worker's affinity)."""
    if cores is None:
        return default
    if isinstance(cores, (int, np.integer)):
        return int(cores)
    cpus: set = set()
    for c in cores:
        if c is None:
            continue
        cpus |= set(c) if isinstance(c, (tuple, list, set, frozenset)) else {c}
    return len(cpus) or default


def measured(results: Sequence[Any]) -> Prediction:
    """The same three tables from realrun results (``kind = "measured"``); repeated runs at
    one thread count keep a ``repeat`` column."""
    summary, hist, taus = [], [], []
    seen: dict[int, int] = {}
    for r in results:
        p = int(r.threads)
        rep = seen.get(p, 0)
        seen[p] = rep + 1
        n = len(r.samples) if r.samples is not None else 0
        tau = tau_overlap(r.samples) if n and (r.samples["finished_at_start"] >= 0).all() else np.array([], np.int64)
        ts = tau_summary(tau).iloc[0]
        lost = getattr(r, "lost_updates", None)  # None: not measured (realrun without its probe)
        summary.append({"kind": "measured", "threads": p, "cores": _cpus(getattr(r, "cores", None), p),
                        "repeat": rep, "samples_per_s": float(r.samples_per_s), "tau_mean": ts["mean"],
                        "tau_p50": ts["p50"], "tau_p99": ts["p99"], "tau_max": ts["max"],
                        "lost_updates": math.nan if lost is None else int(lost),
                        "lost_per_sample": math.nan if (lost is None or not n) else int(lost) / n,
                        "final_objective": float(r.history["objective"].iloc[-1])})
        h = r.history.copy()
        h.insert(0, "repeat", rep)
        h.insert(0, "threads", p)
        h.insert(0, "kind", "measured")
        hist.append(h)
        if tau.size:
            th = tau_histogram(tau)
            th.insert(0, "repeat", rep)
            th.insert(0, "threads", p)
            taus.append(th)
    return Prediction(summary=pd.DataFrame(summary), history=pd.concat(hist, ignore_index=True),
                      tau=pd.concat(taus, ignore_index=True) if taus else
                      pd.DataFrame(columns=["threads", "repeat", "tau", "count", "fraction"]))
