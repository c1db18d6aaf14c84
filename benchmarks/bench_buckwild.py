"""Buckwild! throughput and accuracy: float64 / float32 Hogwild! vs int16 / int8 Buckwild!.

Run (from the repository root)::

    .venv/bin/python benchmarks/bench_buckwild.py --quick     # ~2 minutes on 2 busy cores
    .venv/bin/python benchmarks/bench_buckwild.py             # full sizes

Two workloads (SVM, ``epoch-shuffle``):

* ``rcv1``: ``workload.data.synthetic_classification`` defaults (RCV1-shaped: 47,236
  features, ~75 nonzeros per row; 200,000 rows, 40,000 with --quick), lam = 1e-4;
* ``bandwidth``: dense rows (500 nonzeros each, uniform features) over a 16M-coordinate
  model (8M with --quick): 128 MB in float64, 64 MB in float32, 16 MB in int8 -- far
  beyond the L2 cache; lam = 1e-4 (``--only bandwidth-noreg``: lam = 0).  The float
  kernels load the float64 regulariser weight aux[j] per coordinate; Buckwild! recomputes
  the same float64 value as μN / d_j from a uint8 / uint16 degree array (bit-identical;
  ``realrun.buckwild.REG_DEGREE``), one of its memory savings.

float64 / float32: ``realrun`` ``hogwild`` (plain stores) with that ``dtype``; int16 / int8:
``buckwild`` with ``data_bits = model_bits`` = 16 / 8, default scales, stochastic rounding.
Each run does ``--epochs`` epochs with ``instrument=False``, ``--repeats`` runs per variant
interleaved across variants; ``median/s`` is the median over all those epochs of N / epoch
seconds and ``best/s`` the fastest epoch (JIT compile excluded: realrun compiles before
timing; ``jit s`` is the first run's compile time).  The
objective column is the final objective of the 1-thread run (deterministic); ``vs f64`` is
its relative difference from float64's.  The machine may be shared: rates are medians and
the table says how many CPUs there were.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import realrun
from workload.build import build_problem
from workload.spec import DataSpec, RunSpec

VARIANTS = {
    "float64": dict(scheme="hogwild", dtype="float64"),
    "float32": dict(scheme="hogwild", dtype="float32"),
    "int16": dict(scheme="buckwild", options=dict(model_bits=16, data_bits=16)),
    "int8": dict(scheme="buckwild", options=dict(model_bits=8, data_bits=8)),
}


def workloads(quick: bool) -> dict:
    w = {
        "rcv1": dict(data=DataSpec(source="synthetic-classification",
                                   params=dict(n_rows=40_000 if quick else 200_000, seed=1)),
                     problem_params=dict(lam=1e-4), step=0.1),
        "bandwidth": dict(data=DataSpec(source="synthetic-classification",
                                        params=dict(n_rows=6_000 if quick else 20_000,
                                                    n_features=8_000_000 if quick else 16_000_000, nnz_mean=500,
                                                    row_lengths="fixed", skew=0.0, seed=1)),
                          problem_params=dict(lam=1e-4), step=0.1),
    }
    # Not run by default (--only bandwidth-noreg): lam = 0, so Buckwild! loads no regulariser
    # weight at all while the float kernels still load their (zero) aux entries.
    w["bandwidth-noreg"] = dict(w["bandwidth"], problem_params=dict(lam=0.0))
    return w


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller data, fewer epochs")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per run (default 3, --quick 3)")
    ap.add_argument("--repeats", type=int, default=None, help="runs per variant, interleaved (default 3, --quick 2)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--only", nargs="+", default=None, help="workloads to run (rcv1, bandwidth)")
    args = ap.parse_args(argv)
    epochs = args.epochs or 3
    repeats = args.repeats or (2 if args.quick else 3)
    print(f"# bench_buckwild: cpus={len(os.sched_getaffinity(0))} load={os.getloadavg()[0]:.1f} epochs={epochs} "
          f"repeats={repeats} quick={args.quick}")
    print(f"{'workload':<10} {'dtype':<8} {'thr':>3} {'median/s':>12} {'best/s':>12} {'vs f32':>7} {'objective':>10} "
          f"{'vs f64':>8} {'jit s':>6}")
    for wname, w in workloads(args.quick).items():
        if (args.only and wname not in args.only) or (not args.only and wname == "bandwidth-noreg"):
            continue
        t0 = time.perf_counter()
        base = RunSpec(problem="svm", epochs=epochs, seed=0, **w)
        problem = build_problem(base)
        build_s = time.perf_counter() - t0
        print(f"# {wname}: N={problem.N} n={problem.n} nnz={problem.terms.nnz} (built in {build_s:.1f}s)")
        rates: dict = {}
        objs: dict = {}
        jit: dict = {}
        for rep in range(repeats):  # variants interleaved, so load changes hit them alike
            for p in args.threads:
                for vname, v in VARIANTS.items():
                    spec = base.replace(threads=p, **v)
                    r = realrun.run(spec, problem=problem, instrument=False)
                    rates.setdefault((vname, p), []).extend(problem.N / r.epoch_seconds)
                    jit.setdefault(vname, r.jit_seconds)
                    if p == args.threads[0]:
                        objs[vname] = float(r.history.objective.iloc[-1])
        for p in args.threads:
            f32 = float(np.median(rates[("float32", p)]))
            for vname in VARIANTS:
                rs = np.asarray(rates[(vname, p)])
                med = float(np.median(rs))
                obj = objs[vname]
                rel = (obj - objs["float64"]) / abs(objs["float64"])
                print(f"{wname:<10} {vname:<8} {p:>3} {med:>12.0f} {float(rs.max()):>12.0f} {med / f32:>7.2f} "
                      f"{obj:>10.5f} {rel:>+8.2%} {jit[vname]:>6.1f}", flush=True)
        del problem


if __name__ == "__main__":
    main()
