"""Cyclades vs Hogwild!: measured samples/s at 1 and 2 threads, simulated speedups at 4-64 cores.

One command, prints tables::

    .venv/bin/python benchmarks/bench_cyclades.py            # 200,000 rows, 10 epochs, median of 5 runs
    .venv/bin/python benchmarks/bench_cyclades.py --quick    # 50,000 rows, 3 epochs, median of 3 runs
    .venv/bin/python benchmarks/bench_cyclades.py --order fixed-shuffle   # schedule found once per run

Problems (the Hogwild! SVM, ``reg = "hogwild"``, ``lam = 0.5``, as benchmarks/bench_realrun.py):

* ``rcv1-shaped``: ``workload.data.synthetic_classification`` defaults (47,236 features,
  ~75 nonzeros/row, Zipf skew 1): the most frequent feature sits in ~98% of the rows
  (Δ ≈ 1), so every batch of two or more terms is one connected component;
* ``sparse``: the same generator with ``skew = 0`` and ``nnz_mean = 10`` (Δ ≈ 6e-4): a
  batch's conflict graph is sub-critical while its average degree B·E[|e|²]/n stays below 1
  (here up to B ≈ 300), so its components are small and the balancer spreads them evenly.

Both are printed with their Δ, the batch size Pan et al.'s phase-transition theorem
suggests (``workload.cyclades.suggest_batch_size``) and, per batch size, the schedule's mean
components per batch, largest component and load imbalance (max/mean core load).

1. **Measured** (realrun, ``instrument = False``, ``order = "epoch-shuffle"`` unless
   ``--order`` says otherwise): samples/s of
   ``serial``, ``hogwild`` (plain stores, as the C++ code) and ``cyclades`` (each
   ``--batch-sizes``) at 1 and 2 threads -- median and min-max over ``--runs`` runs, all
   configurations interleaved run by run (run 0 compiles and is not counted) -- and for
   Cyclades the share of the epoch spent finding components (``component_seconds /
   epoch_seconds``).  Every Cyclades run is verified bit-identical to serial SGD over its
   permutation (``options.verify``, untimed).
2. **Simulated** (hwsim, one epoch -- components found -- of ``--sim-rows`` rows of the
   same generator): speedup
   = ticks of ``serial`` on 1 core / ticks of the scheme on p cores, p in ``--cores``.  The
   machine is calibrated on the problem (``analysis.calibrate.calibrate``: per-coordinate
   costs and an empirical compute delay fitted to a 1-thread instrumented Hogwild! trace,
   coherence cost from ``realrun.pingpong``); Cyclades' ``component_cost`` is realrun's
   measured ns per (support entry + term) of the component phase at 1 thread, and its
   ``barrier_cost`` at p cores is p × the coherence cost (a centralized counter barrier:
   each arrival moves the counter's line once).  Hogwild! writes as realrun's plain
   stores do (``write_mode = "rmw"``).

The measured figures depend on the machine and on what else runs on it: read the spread.
``--json PATH`` writes every measurement.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import hwsim  # noqa: E402
from analysis import calibrate as cal  # noqa: E402
from realrun import pingpong, run  # noqa: E402
from workload.cyclades import epoch_order, epoch_schedule, schedule_stats, suggest_batch_size  # noqa: E402
from workload.problems import make_problem  # noqa: E402
from workload.spec import RunSpec  # noqa: E402

PROBLEMS = {"rcv1-shaped": {}, "sparse": {"skew": 0.0, "nnz_mean": 10.0}}
LAM = 0.5


def _args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="50,000 rows, 3 epochs, 3 runs, 10,000 simulated rows")
    ap.add_argument("--rows", type=int, default=None, help="rows of each problem (default 200000; --quick 50000)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per measured run (default 10; --quick 3)")
    ap.add_argument("--runs", type=int, default=None, help="measured runs per configuration (default 5; --quick 3)")
    ap.add_argument("--batch-sizes", default="200,1000", help="Cyclades batch sizes (comma list)")
    ap.add_argument("--threads", default="1,2", help="measured thread counts")
    ap.add_argument("--cores", default="1,2,4,8,16,32,64", help="simulated core counts")
    ap.add_argument("--sim-rows", type=int, default=None, help="rows simulated (default 50000; --quick 10000)")
    ap.add_argument("--problems", default=",".join(PROBLEMS))
    ap.add_argument("--order", default="epoch-shuffle", help="visit order of every run (fixed-shuffle: Cyclades "
                    "finds its schedule once, in epoch 0)")
    ap.add_argument("--json", default=None, help="write all measurements here")
    a = ap.parse_args(argv)
    a.rows = a.rows or (50_000 if a.quick else 200_000)
    a.epochs = a.epochs or (3 if a.quick else 10)
    a.runs = a.runs or (3 if a.quick else 5)
    a.sim_rows = a.sim_rows or (10_000 if a.quick else 50_000)
    return a


def _problem(name, rows):
    from workload.data import synthetic_classification

    terms = synthetic_classification(n_rows=rows, seed=0, **PROBLEMS[name])
    return make_problem("svm", terms, lam=LAM, reg="hogwild")


ORDER = "epoch-shuffle"


def _spec(scheme, threads, epochs, seed, batch=None, **extra):
    options = {"batch_size": batch} if batch else {}
    options.update(extra)
    return RunSpec(problem="svm", problem_params={"lam": LAM, "reg": "hogwild"}, scheme=scheme, threads=threads,
                   epochs=epochs, step=0.1, schedule="constant", order=ORDER, seed=seed, options=options)


def _fmt_rate(v):
    return f"{v / 1e6:6.3f}M"


def _schedule_summary(problem, batch, cores, seed=0):
    spec = _spec("cyclades", cores, 1, seed, batch)
    st = schedule_stats(epoch_schedule(problem.terms, epoch_order(spec, problem.N, 0), batch, cores), problem.terms)
    return st["components"].mean(), st["largest"].mean(), st["imbalance"].mean()


def measure(problem, a, batches, threads):
    """Interleaved realrun runs; returns a tidy DataFrame (one row per counted run)."""
    cfgs = [("serial", 1, None)]
    for p in threads:
        cfgs.append(("hogwild", p, None))
        cfgs += [("cyclades", p, b) for b in batches]
    rows = []
    for r in range(a.runs + 1):  # run 0 compiles and warms up
        for scheme, p, b in cfgs:
            res = run(_spec(scheme, p, a.epochs if r else 1, r, b), problem=problem, instrument=False)
            if r == 0:
                continue
            row = {"scheme": scheme, "threads": p, "batch": b or 0, "run": r, "samples_per_s": res.samples_per_s,
                   "seconds": float(np.sum(res.epoch_seconds)), "component_seconds": 0.0, "update_seconds": 0.0,
                   "found_epoch_seconds": 0.0}
            if scheme == "cyclades":
                found = np.asarray(res.info["components_found"]) > 0
                row["component_seconds"] = float(np.sum(res.component_seconds))
                row["found_epoch_seconds"] = float(np.mean(res.component_seconds[found]))
                row["update_seconds"] = float(np.sum(res.update_seconds))
                assert res.info["serially_equivalent"]
            rows.append(row)
    return pd.DataFrame(rows)


def _measured_table(df):
    base = df[df["scheme"] == "serial"]["samples_per_s"].median()
    out = []
    for (scheme, p, b), g in df.groupby(["scheme", "threads", "batch"], sort=False):
        med = g["samples_per_s"].median()
        comp = (g["component_seconds"] / g["seconds"]).median() if scheme == "cyclades" else float("nan")
        lo, hi = (_fmt_rate(g["samples_per_s"].agg(f)).strip() for f in ("min", "max"))
        out.append({"scheme": scheme, "threads": p, "batch": b or "", "samples/s": _fmt_rate(med), "min-max": f"{lo}-{hi}",
                    "vs serial": f"{med / base:5.2f}x",
                    "components %": "" if np.isnan(comp) else f"{100 * comp:4.0f}%"})
    return pd.DataFrame(out)


def calibrate_machine(problem, pp):
    """An hwsim machine (cores = 1) fitted to a 1-thread instrumented Hogwild! trace."""
    res = run(_spec("hogwild", 1, 1, 99), problem=problem, instrument=True)
    return cal.calibrate(res, problem=problem, pingpong=pp, delay="empirical").machine


def component_ns(df, problem, a):
    """Measured ns per (support entry + term) of Cyclades' component phase at 1 thread (the
    median over runs of the mean over the epochs that found their components)."""
    g = df[(df["scheme"] == "cyclades") & (df["threads"] == 1)]
    return float(g["found_epoch_seconds"].median() * 1e9 / (problem.terms.nnz + problem.N))


def simulate(sim_problem, machine, cores, batches, comp_ns):
    """hwsim speedups over serial on 1 core (one epoch)."""
    def ticks(spec, p):
        return hwsim.simulate(spec, machine.replace(cores=p), problem=sim_problem, coord_trace=False).ticks

    serial = ticks(_spec("serial", 1, 1, 0), 1)
    rows = []
    for p in cores:
        rows.append({"scheme": "hogwild", "batch": "", "cores": p, "speedup": serial / ticks(
            _spec("hogwild", p, 1, 0).replace(write_mode="rmw"), p)})
        for b in batches:
            spec = _spec("cyclades", p, 1, 0, b, component_cost=comp_ns,
                         barrier_cost=int(p * max(machine.coherence_cost, 1)))
            rows.append({"scheme": "cyclades", "batch": b, "cores": p, "speedup": serial / ticks(spec, p)})
    return pd.DataFrame(rows)


def main(argv=None):
    global ORDER
    a = _args(argv)
    ORDER = a.order
    batches = [int(b) for b in a.batch_sizes.split(",") if b]
    threads = [int(t) for t in a.threads.split(",") if t]
    cores = [int(c) for c in a.cores.split(",") if c]
    print(f"CPUs {sorted(os.sched_getaffinity(0))} (load average {os.getloadavg()[0]:.1f}); {a.rows} rows, "
          f"{a.epochs} epochs, median of {a.runs} runs, order {a.order}; {a.sim_rows} rows simulated", flush=True)
    pp = pingpong() if len(os.sched_getaffinity(0)) >= 2 else None
    out = {"args": vars(a), "problems": {}}
    for name in [n for n in a.problems.split(",") if n]:
        t = time.perf_counter()
        problem = _problem(name, a.rows)
        d = problem.terms.degrees()
        print(f"\n== {name}: {problem.N} rows x {problem.n} features, {problem.terms.nnz / problem.N:.1f} nnz/row, "
              f"Δ = {d.max() / problem.N:.2g}, suggested batch (Pan et al., ε = 0.5) "
              f"{suggest_batch_size(problem.terms)}; built in {time.perf_counter() - t:.1f}s", flush=True)
        sched = pd.DataFrame([dict(zip(("batch", "cores", "components/batch", "largest", "imbalance"),
                                       (b, p, *_schedule_summary(problem, b, p))))
                              for b in batches for p in sorted(set(threads) | {max(cores)})])
        print("schedule (epoch 0):")
        print(sched.to_string(index=False, float_format=lambda v: f"{v:.2f}"), flush=True)
        t = time.perf_counter()
        df = measure(problem, a, batches, threads)
        print(f"measured (realrun, samples/s; {time.perf_counter() - t:.0f}s):")
        print(_measured_table(df).to_string(index=False), flush=True)
        t = time.perf_counter()
        machine = calibrate_machine(problem, pp)
        comp = component_ns(df, problem, a)
        sim_problem = _problem(name, a.sim_rows)
        sim = simulate(sim_problem, machine, cores, batches, comp)
        print(f"simulated speedup over serial on 1 core (hwsim; machine: read {machine.read_cost}, write "
              f"{machine.write_cost}, coherence {machine.coherence_cost} ns, mean delay {machine.delay.mean():.0f} ns; "
              f"component cost {comp:.1f} ns per entry+term; {time.perf_counter() - t:.0f}s):")
        wide = sim.pivot_table(index=["scheme", "batch"], columns="cores", values="speedup", sort=False)
        print(wide.to_string(float_format=lambda v: f"{v:6.2f}"), flush=True)
        out["problems"][name] = {"schedule": sched.to_dict("records"), "measured": df.to_dict("records"),
                                 "simulated": sim.to_dict("records"), "machine": machine.to_dict(),
                                 "component_ns": comp}
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
