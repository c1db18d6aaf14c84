"""Buckwild! throughput and accuracy: float64 / float32 Hogwild! vs int16 / int8 Buckwild!.

Run (from the repository root)::

    .venv/bin/python benchmarks/bench_buckwild.py             # the issue's configuration (issue 8)
    .venv/bin/python benchmarks/bench_buckwild.py --quick     # smoke test: small data, 2 rounds

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
``buckwild`` with ``data_bits = model_bits`` = 16 / 8, default scales, stochastic rounding,
plain stores (``write_mode = "rmw"``, the same write as the float runs).

Method.  A *round* runs every variant once at every thread count, in an order rotated
from round to round, so that load drift on a shared machine hits all variants alike;
``--repeats`` rounds (default 5).  Each run does ``--epochs`` epochs with
``instrument=False``; its rate is its samples over its measured seconds (JIT compile
excluded: realrun compiles before timing; ``jit s`` is the first run's compile time).
``median/s`` is the median over rounds, ``min/s`` / ``max/s`` the spread; ``×f32`` is the
variant's rate over float32's *in the same round* (same threads), medianed over rounds --
the issue's figure is int8 ×f32 on ``bandwidth`` (target >= 1.5).  ``cpu×f32`` is the same
ratio of on-CPU rates (``info["oncpu_samples_per_s"]``: samples over the reshuffle's and the
slowest worker's CPU time), a check on shared machines where other processes take turns
on the cores.  ``objective`` is the
final objective of the 1-thread run (deterministic), ``vs f64`` its relative difference
from float64's on the same spec.

Instrumentation overhead (``--overhead-repeats`` pairs, default 9; 0 skips it): on
``rcv1`` at 1 thread, int16 and int8 Buckwild! run with ``instrument=True`` and ``False``
back to back (which goes first alternates), and the overhead is the per-pair
``rate_off / rate_on − 1``, medianed (``on-CPU``: the same with on-CPU rates); ``min`` /
``max`` show the pairs' spread.

The load averages (1, 5, 15 min) are printed at the start and the end.
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
TARGET = ("bandwidth", "int8", 1.5)  # issue 8: int8 reaches at least 1.5x float32 on the bandwidth-bound workload
OVERHEAD_VARIANTS = ("int16", "int8")


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


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def rotated(items: list, k: int) -> list:
    k %= max(len(items), 1)
    return items[k:] + items[:k]


def measure(base: RunSpec, problem, threads: list[int], repeats: int) -> dict:
    """Per (variant, threads): wall-clock and on-CPU rates per round, the 1-thread objective
    and the jit time."""
    cells = [(v, p) for p in threads for v in VARIANTS]
    rates = {(c, kind): [] for c in cells for kind in ("wall", "cpu")}
    objs, jit = {}, {}
    for rnd in range(repeats):
        for vname, p in rotated(cells, rnd):
            r = realrun.run(base.replace(threads=p, **VARIANTS[vname]), problem=problem, instrument=False)
            rates[((vname, p), "wall")].append(r.samples_per_s)
            rates[((vname, p), "cpu")].append(r.info["oncpu_samples_per_s"])
            jit.setdefault(vname, r.jit_seconds)
            if p == threads[0]:
                objs[vname] = float(r.history.objective.iloc[-1])
    return {"rates": rates, "objs": objs, "jit": jit}


def table_rows(wname: str, res: dict, threads: list[int]) -> list[dict]:
    rows = []
    objs = res["objs"]

    def rates(vname, p, kind):
        return np.asarray(res["rates"][((vname, p), kind)])

    for p in threads:
        for vname in VARIANTS:
            rs = rates(vname, p, "wall")
            rows.append(dict(workload=wname, dtype=vname, threads=p, median=float(np.median(rs)), lo=float(rs.min()),
                             hi=float(rs.max()), x_f32=float(np.median(rs / rates("float32", p, "wall"))),
                             cpu_x_f32=float(np.median(rates(vname, p, "cpu") / rates("float32", p, "cpu"))),
                             objective=objs[vname], vs_f64=(objs[vname] - objs["float64"]) / abs(objs["float64"]),
                             jit=res["jit"][vname]))
    return rows


HEADER = (f"{'workload':<10} {'dtype':<8} {'thr':>3} {'median/s':>11} {'min/s':>11} {'max/s':>11} {'×f32':>6} "
          f"{'cpu×f32':>7} {'objective':>10} {'vs f64':>8} {'jit s':>6}")


def print_rows(rows: list[dict]) -> None:
    for r in rows:
        print(f"{r['workload']:<10} {r['dtype']:<8} {r['threads']:>3} {r['median']:>11.0f} {r['lo']:>11.0f} "
              f"{r['hi']:>11.0f} {r['x_f32']:>6.2f} {r['cpu_x_f32']:>7.2f} {r['objective']:>10.5f} "
              f"{r['vs_f64']:>+8.2%} {r['jit']:>6.1f}", flush=True)


def overhead(base: RunSpec, problem, pairs: int) -> list[dict]:
    """Instrumentation on vs off at 1 thread, paired back to back (module docstring)."""
    out = []
    for vname in OVERHEAD_VARIANTS:
        spec = base.replace(threads=1, **VARIANTS[vname])
        got = {(on, kind): [] for on in (True, False) for kind in ("wall", "cpu")}
        for k in range(pairs):
            for instrument in ((True, False) if k % 2 == 0 else (False, True)):
                r = realrun.run(spec, problem=problem, instrument=instrument)
                got[(instrument, "wall")].append(r.samples_per_s)
                got[(instrument, "cpu")].append(r.info["oncpu_samples_per_s"])
        over, over_cpu = (np.asarray(got[(False, k)]) / np.asarray(got[(True, k)]) - 1.0 for k in ("wall", "cpu"))
        out.append(dict(dtype=vname, on=float(np.median(got[(True, "wall")])),
                        off=float(np.median(got[(False, "wall")])), overhead=float(np.median(over)),
                        lo=float(over.min()), hi=float(over.max()), overhead_cpu=float(np.median(over_cpu))))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: smaller data, 2 rounds, 2 overhead pairs")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per run (default 3)")
    ap.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 5; --quick 2)")
    ap.add_argument("--overhead-repeats", type=int, default=None,
                    help="instrumentation on/off pairs on rcv1 at 1 thread (default 9; --quick 2; 0 skips)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--only", nargs="+", default=None, help="workloads to run (rcv1, bandwidth, bandwidth-noreg)")
    args = ap.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    pairs = args.overhead_repeats if args.overhead_repeats is not None else (2 if args.quick else 9)
    t_start = time.perf_counter()
    print(f"# bench_buckwild: cpus={len(os.sched_getaffinity(0))} loadavg(start)={load()} epochs={args.epochs} "
          f"rounds={repeats} overhead_pairs={pairs} quick={args.quick}")
    all_rows = []
    problems = {}
    for wname, w in workloads(args.quick).items():
        if (args.only and wname not in args.only) or (not args.only and wname == "bandwidth-noreg"):
            continue
        t0 = time.perf_counter()
        base = RunSpec(problem="svm", epochs=args.epochs, seed=0, **w)
        problem = build_problem(base)
        print(f"# {wname}: N={problem.N} n={problem.n} nnz={problem.terms.nnz} (built in "
              f"{time.perf_counter() - t0:.1f}s); loadavg={load()}")
        print(HEADER)
        rows = table_rows(wname, measure(base, problem, args.threads, repeats), args.threads)
        print_rows(rows)
        all_rows += rows
        if wname == "rcv1":
            problems[wname] = (base, problem)
        else:
            del problem
    wl, dt, goal = TARGET
    for r in all_rows:
        if r["workload"] == wl and r["dtype"] == dt:
            verdict = "met" if r["x_f32"] >= goal else "NOT met"
            print(f"# target: {wl} {dt} at {r['threads']} thread(s): {r['x_f32']:.2f}x float32 "
                  f"(median of per-round ratios; goal >= {goal}): {verdict}")
    if pairs > 0 and "rcv1" in problems:
        base, problem = problems["rcv1"]
        print(f"# instrumentation overhead: rcv1, 1 thread, {pairs} on/off pairs; loadavg={load()}")
        print(f"{'dtype':<8} {'on/s':>11} {'off/s':>11} {'overhead':>9} {'min':>8} {'max':>8} {'on-CPU':>8}")
        for r in overhead(base, problem, pairs):
            print(f"{r['dtype']:<8} {r['on']:>11.0f} {r['off']:>11.0f} {r['overhead']:>+9.1%} {r['lo']:>+8.1%} "
                  f"{r['hi']:>+8.1%} {r['overhead_cpu']:>+8.1%}", flush=True)
    print(f"# done in {time.perf_counter() - t_start:.0f}s; loadavg(end)={load()}")


if __name__ == "__main__":
    main()
