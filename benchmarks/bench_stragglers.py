"""Stragglers: the tables behind the two figures of :mod:`analysis.stragglers`.

Run (from the repository root)::

    .venv/bin/python benchmarks/bench_stragglers.py                    # simulated (about a minute)
    .venv/bin/python benchmarks/bench_stragglers.py --figures reports/stragglers
    .venv/bin/python benchmarks/bench_stragglers.py --measured 1 2 4   # + real threads (realrun)

Table 1 -- iteration time vs n.  Per-worker step time X = 1000 + Exp(mean 2000) ticks (the
issue's 1 + Exp(λ = 0.5) with 1 unit = 1000 ticks), ``hwsim.straggler_study`` with
``--iterations`` independent iterations per n; mean with its 99.9% normal CI, the closed form
1000 + 2000·H_n, the KS distance of the whole distribution from (1 − e^{−λ(t−c)})^n, and
the slowdown E[max]/E[X].  Then the same with each worker's step = 16 samples (a share of
16 terms): sums concentrate, and the straggler penalty shrinks.

Table 2 -- time to accuracy, sync vs async, simulated.  Logistic regression (λ = 1e-3, l2)
on 2,000 × 500 synthetic sparse rows (10 nonzeros per row), step 0.5 with per-epoch backoff
0.85, 30 epochs; machine: read 2 ticks, write 2, compute X per sample as above.
``minibatch-sync`` (batch = per-worker × p, combine = sum: the same γ per gradient
evaluation) and ``hogwild`` on the same machine, data, seed and epochs; target: the first
epoch end with f − f* ≤ ε (f_0 − f*), ε = 0.01, f* from L-BFGS (resolution: one epoch).
``run_ticks_ratio`` is the ratio of the two runs' simulated lengths (30 epochs each: the
pure cost of the barrier), ``order_stat_ratio`` E[max of p]/E[X], what the barrier alone
predicts for it (ignoring the read/write and combine costs).

Table 3 (``--measured``) -- real threads: per thread count, both schemes' measured
time to the same target (median of ``--repeats`` runs), and minibatch-sync's median step,
compute-phase (wait for the slowest) and combine times from ``info["iterations"]``.

JIT compilation is done on a warm-up run first and excluded from every timing.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

UNIT = 1000
NS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000)
CORES = (1, 2, 4, 8, 16, 32)
EPSILON = 0.01


def _delay():
    from hwsim import ShiftedExponential

    return ShiftedExponential(shift=1 * UNIT, rate=0.5 / UNIT)


def _spec():
    from workload.spec import DataSpec, RunSpec

    return RunSpec(problem="logistic", problem_params={"lam": 1e-3, "reg": "l2"},
                   data=DataSpec(source="synthetic-classification",
                                 params={"n_rows": 2000, "n_features": 500, "nnz_mean": 10}),
                   epochs=30, step=0.5, schedule="backoff", beta=0.85, seed=3)


def table_iterations(iterations: int, seed: int) -> pd.DataFrame:
    from analysis.stragglers import iteration_time_table

    out = []
    for k in (1, 16):
        t = iteration_time_table(_delay(), NS, iterations, seed, samples_per_step=k)
        t.insert(1, "samples_per_step", k)
        out.append(t)
    return pd.concat(out, ignore_index=True)


def table_sync_async(per_worker: int, engine: str):
    from analysis.stragglers import closed_form, speedup_table, sync_vs_async, time_to_accuracy
    from hwsim import Machine
    from workload.build import build_problem

    spec = _spec()
    problem = build_problem(spec)
    f_star = problem.solution().f
    machine = Machine(cores=max(CORES), read_cost=2, write_cost=2, delay=_delay())
    sync_vs_async(spec.replace(epochs=1), machine, (2,), per_worker=per_worker, problem=problem, engine=engine)  # JIT
    t0 = time.perf_counter()
    hist = sync_vs_async(spec, machine, CORES, per_worker=per_worker, problem=problem, engine=engine)
    seconds = time.perf_counter() - t0
    tta = time_to_accuracy(hist, f_ref=f_star, epsilon=EPSILON)
    sp = speedup_table(tta)
    ticks = hist.groupby(["cores", "scheme"])["ticks"].first().unstack()
    sp["run_ticks_ratio"] = (ticks["minibatch-sync"] / ticks["hogwild"]).to_numpy()
    sp["order_stat_ratio"] = [closed_form(_delay(), int(p)) / _delay().mean() for p in sp["cores"]]
    return hist, tta, sp, seconds, f_star


def table_measured(threads, per_worker: int, repeats: int, f_star: float) -> pd.DataFrame:
    from analysis.stragglers import iteration_durations, time_to_accuracy
    from realrun import run
    from workload.build import build_problem

    spec = _spec()
    problem = build_problem(spec)
    rows = []
    for p in threads:
        for scheme in ("hogwild", "minibatch-sync"):
            opts = {} if scheme == "hogwild" else {"batch_size": per_worker * p, "combine": "sum"}
            s = spec.replace(scheme=scheme, threads=p, options=opts)
            run(s.replace(epochs=1), problem=problem, instrument=False)  # JIT
            times, steps = [], []
            for _ in range(repeats):
                r = run(s, problem=problem, instrument=False)
                h = r.history.assign(scheme=scheme, cores=p)
                tta = time_to_accuracy(h, f_ref=f_star, epsilon=EPSILON)
                times.append(float(tta["time"].iloc[0]))
                if scheme == "minibatch-sync":
                    steps.append(iteration_durations(r.info["iterations"]))
            row = {"threads": p, "scheme": scheme, "time_to_accuracy_s": float(np.median(times)),
                   "spread_s": float(np.max(times) - np.min(times))}
            if steps:
                d = pd.concat(steps)
                row.update({"median_step_ns": float(d["step_time"].median()),
                            "median_compute_ns": float(d["compute"].median()),
                            "median_combine_ns": float(d["combine"].median()),
                            "p99_step_ns": float(d["step_time"].quantile(0.99))})
            rows.append(row)
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=2000, help="iterations per n in table 1")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--per-worker", type=int, default=1, help="terms per worker per step (batch = this × p)")
    ap.add_argument("--engine", default="fast", choices=("fast", "reference"))
    ap.add_argument("--measured", type=int, nargs="*", default=None, metavar="THREADS",
                    help="also run both schemes on real threads at these thread counts")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of each measured run")
    ap.add_argument("--figures", default=None, metavar="DIR", help="write the two figures as PNG into DIR")
    args = ap.parse_args(argv)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 30)

    t1 = table_iterations(args.iterations, args.seed)
    print("Table 1: iteration time (ticks) vs n, X = 1000 + Exp(mean 2000) per worker sample")
    print(t1[["n", "samples_per_step", "iterations", "mean", "ci_lo", "ci_hi", "predicted", "agrees", "ks_D",
              "worker_mean", "slowdown", "seconds"]].to_string(index=False, float_format=lambda v: f"{v:.4g}"))

    hist, tta, sp, seconds, f_star = table_sync_async(args.per_worker, args.engine)
    print(f"\nTable 2: time to accuracy (simulated s), ε = {EPSILON}, f* = {f_star:.10g}, "
          f"{args.per_worker} term(s) per worker per step; {seconds:.1f} s of simulation")
    print(tta.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(sp.to_string(index=False, float_format=lambda v: f"{v:.4g}"))

    if args.measured:
        t3 = table_measured(args.measured, args.per_worker, args.repeats, f_star)
        print(f"\nTable 3: measured on real threads (cpus: {len(os.sched_getaffinity(0))}), median of {args.repeats}")
        print(t3.to_string(index=False, float_format=lambda v: f"{v:.4g}"))

    if args.figures:
        from analysis.stragglers import fig_iteration_time, fig_time_to_accuracy

        os.makedirs(args.figures, exist_ok=True)
        fig = fig_iteration_time(t1[t1.samples_per_step == 1], delay=_delay(), tick_unit=UNIT,
                                 unit="units of 1000 ticks")
        fig.savefig(os.path.join(args.figures, "iteration_time.png"))
        fig_time_to_accuracy(hist, tta, f_ref=f_star).savefig(os.path.join(args.figures, "time_to_accuracy.png"))
        print(f"\nfigures written to {args.figures}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
