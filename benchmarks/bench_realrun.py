"""realrun's throughput on the RCV1-shaped default, for every scheme at 1 and 2 threads.

One command, prints tables::

    .venv/bin/python benchmarks/bench_realrun.py            # 20 epochs, median of 5 runs (~15 min)
    .venv/bin/python benchmarks/bench_realrun.py --quick    # 3 epochs, median of 3 runs (~2 min)

Workload: ``workload.data.synthetic_classification`` defaults (200,000 rows × 47,236
features, ~75 nonzeros/row, Zipf skew 1, lognormal row lengths; data seed 0), the Hogwild!
SVM (``reg = "hogwild"``; μ = 1, i.e. ``lam = 0.5``: the gradient of term e's regulariser
is μ x_j / d_j), step 0.1, 20 epochs, ``order = "epoch-shuffle"`` (a fresh permutation
each epoch, split across the workers; its cost is inside the timed region).

Tables:

1. samples/s for every scheme × {1, 2} threads × instrumentation {off, on}: median and
   spread over ``--runs`` runs, all configurations interleaved run by run (so a busy
   spell on this shared machine hits them alike); the ``hogwild`` rows are set against the
   original C++ Hogwild! figures on this machine type (1.7M samples/s at 1 thread, 3.25M
   at 2) and the targets (2× at 1 thread, 1.4× at 2); ``hogwild plain`` is the same
   kernel without software prefetch, in the data's own coordinate numbering, supports in
   storage order (the naive random-order visit).  At 2 threads the default ``hogwild``
   runs on rows stored by ascending coordinate (``options.sort_rows``); ``hogwild
   row-order`` keeps the data's row order and visits each support in ascending coordinate
   order through an index (``sort_rows = false``), ``hogwild storage-order`` visits it in
   storage order (``sort_rows = false, row_order = false``);
   ``load`` is the median 1-minute load average sampled after each of the configuration's
   runs (2 CPUs: above ~1 at 1 thread or ~2 at 2 threads, others are sharing the cores);
2. instrumentation overhead: the median over runs of the paired ratio on/off;
3. visit orders at 1 thread (kernel only, no reshuffle, no instrumentation;
   ``realrun.calibrate.visit_rates``): the per-core ceiling (cache-resident rows), rows
   in storage order, the prefetched random order, the plain random order; at 2 threads
   the kernel on one shared model against a private model per thread
   (``realrun.calibrate.sharing_rates``: what the bouncing hot cache lines cost); and the
   reshuffle's own cost (``workload.order.worker_orders``, the jitted Fisher--Yates shuffle,
   beside numpy's ``Generator.permutation`` that it replaced);
4. lost updates of plain ``hogwild`` at 2 threads on this SVM (``options.count_lost``:
   every write is an exchange that notices what it overwrote) and τ;
5. calibration microbenchmarks: core-to-core cache-line transfer (``pingpong``) and per-
   coordinate read / write cost (``coord_cost``).

Timings on a shared 2-core machine are noisy: read the spread, compare rows measured in
the same run.  ``--json PATH`` also writes every measurement.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from realrun import coord_cost, pingpong, run  # noqa: E402
from realrun.calibrate import sharing_rates, visit_rates  # noqa: E402
from workload.build import build_problem  # noqa: E402
from workload.order import worker_orders  # noqa: E402
from workload.spec import STREAM_ORDER, DataSpec, RunSpec, stream  # noqa: E402

CPP_HOGWILD = {1: 1.70e6, 2: 3.25e6}  # the C++ Hogwild! SVM here: samples/s, median of 10
TARGET_FACTOR = {1: 2.0, 2: 1.4}
SCHEMES = ("serial", "hogwild", "hogwild-atomic", "lock-global", "lock-coord", "round-robin")


def _args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 epochs, 3 runs")
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--epochs", type=int, default=None, help="epochs per run (default 20; --quick 3)")
    ap.add_argument("--runs", type=int, default=None, help="runs per configuration (default 5; --quick 3)")
    ap.add_argument("--schemes", default=",".join(SCHEMES))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--json", default=None, help="write all measurements here")
    a = ap.parse_args(argv)
    a.epochs = a.epochs or (3 if a.quick else 20)
    a.runs = a.runs or (3 if a.quick else 5)
    return a


def _configs(schemes, threads):
    out = []
    for s in schemes:
        for p in threads:
            if s == "serial" and p != 1:
                continue
            for inst in (False, True):
                out.append((s, p, inst, {}))
    if "hogwild" in schemes:
        for p in threads:
            out.append(("hogwild plain", p, False, {"prefetch": 0, "relabel": False, "row_order": False,
                                                    "sort_rows": False}))
        for p in threads:
            if p > 1:
                out.append(("hogwild row-order", p, False, {"sort_rows": False}))
                out.append(("hogwild storage-order", p, False, {"sort_rows": False, "row_order": False}))
    return out


def _fmt(v):
    return f"{v / 1e6:6.2f}M"


def main(argv=None):
    a = _args(argv)
    schemes = [s for s in a.schemes.split(",") if s]
    threads = [int(t) for t in a.threads.split(",") if t]
    base = RunSpec(problem="svm", problem_params={"lam": 0.5, "reg": "hogwild"},
                   data=DataSpec(source="synthetic-classification", params={"n_rows": a.rows, "seed": 0}),
                   scheme="hogwild", threads=1, epochs=a.epochs, step=0.1, schedule="constant",
                   order="epoch-shuffle", seed=0)
    t = time.perf_counter()
    problem = build_problem(base)
    print(f"data: {problem.N} rows × {problem.n} features, {problem.terms.nnz / problem.N:.1f} nnz/row, "
          f"built in {time.perf_counter() - t:.1f}s; CPUs {sorted(os.sched_getaffinity(0))}; "
          f"{a.epochs} epochs, {a.runs} runs per configuration", flush=True)
    cfgs = _configs(schemes, threads)
    rates = {i: [] for i in range(len(cfgs))}
    oncpu = {i: [] for i in range(len(cfgs))}
    cfg_loads = {i: [] for i in range(len(cfgs))}
    loads = []
    taus = {i: [] for i in range(len(cfgs))}
    jit = {}
    for r in range(a.runs + 1):  # run 0 compiles and warms up; not counted
        for i, (s, p, inst, opts) in enumerate(cfgs):
            spec = base.replace(scheme=s.split()[0], threads=p, epochs=a.epochs if r else 1, seed=r, options=opts)
            res = run(spec, problem=problem, instrument=inst)
            if r == 0:
                jit[i] = res.jit_seconds
                continue
            rates[i].append(res.samples_per_s)
            oncpu[i].append(res.info["oncpu_samples_per_s"])
            cfg_loads[i].append(os.getloadavg()[0])
            if inst:
                taus[i].append(float(np.mean(res.tau())))
            del res
            gc.collect()
        if r:
            loads.append(os.getloadavg()[0])
            print(f"  run {r}/{a.runs} done (load average {loads[-1]:.2f})", flush=True)

    print("\n1. samples/s (median [min–max] over runs; epoch-shuffle reshuffle included); "
          f"load average during the runs {min(loads):.1f}–{max(loads):.1f} on {os.cpu_count()} CPUs")
    print("   on-CPU: samples over CPU seconds (reshuffle + slowest worker), a diagnostic when others share the cores")
    print(f"{'scheme':<22}{'threads':>7} {'instr':>5} {'median':>8}  {'spread':>17}  {'vs C++':>6}  "
          f"{'target':>13}  {'on-CPU':>7}  {'mean τ':>6}  {'jit s':>5}  {'load':>4}")
    rows = []
    for i, (s, p, inst, opts) in enumerate(cfgs):
        v = np.array(rates[i])
        med = float(np.median(v))
        vs = tgt = ""
        if s == "hogwild":
            vs = f"{med / CPP_HOGWILD[p]:5.2f}×" if p in CPP_HOGWILD else ""
            if p in TARGET_FACTOR:
                need = TARGET_FACTOR[p] * CPP_HOGWILD[p]
                tgt = f"{'met' if med >= need else 'MISSED'} {need / 1e6:.2f}M"
        tau = f"{np.median(taus[i]):6.2f}" if taus[i] else ""
        print(f"{s:<22}{p:>7} {'on' if inst else 'off':>5} {_fmt(med):>8}  [{_fmt(v.min())}–{_fmt(v.max())}]"
              f"  {vs:>6}  {tgt:>13}  {_fmt(np.median(oncpu[i])):>7}  {tau:>6}  {jit[i]:5.2f}"
              f"  {np.median(cfg_loads[i]):4.2f}")
        rows.append({"scheme": s, "threads": p, "instrument": inst, "options": opts, "samples_per_s": v.tolist(),
                     "median": med, "oncpu_samples_per_s": oncpu[i], "mean_tau": taus[i], "jit_seconds": jit[i],
                     "load_average": cfg_loads[i]})

    print("\n2. instrumentation overhead: 1 − on/off (median of paired runs)")
    for i, (s, p, inst, opts) in enumerate(cfgs):
        if inst:
            j = cfgs.index((s, p, False, opts))
            ratio = np.array(rates[i]) / np.array(rates[j])
            print(f"{s:<22}{p:>7}   {100 * (1 - np.median(ratio)):5.1f}%   "
                  f"(per run: {', '.join(f'{100 * (1 - q):.1f}' for q in ratio)})")

    print("\n3. visit orders, 1 thread, kernel only (median [min–max] of 5)")
    vr = visit_rates(problem, repeats=5)
    for _, row in vr.iterrows():
        print(f"{row['order']:<14} {_fmt(row['samples_per_s'])}  [{_fmt(row['min'])}–{_fmt(row['max'])}]")
    ceiling = float(vr.set_index("order").loc["resident", "samples_per_s"])
    hw1 = [rows[i]["median"] for i, c in enumerate(cfgs) if c[0] == "hogwild" and c[1] == 1 and not c[2]]
    if hw1:
        print(f"hogwild 1 thread (run, instrumentation off) = {100 * hw1[0] / ceiling:.0f}% of the per-core ceiling")
    if 2 in threads and len(os.sched_getaffinity(0)) >= 2:
        sr = sharing_rates(problem, threads=2, repeats=3).set_index("model")
        sh, pr = sr.loc["shared", "samples_per_s"], sr.loc["private", "samples_per_s"]
        print(f"2 threads, kernel only: one shared model {_fmt(sh)}, a private model each {_fmt(pr)} "
              f"(sharing costs {100 * (1 - sh / pr):.0f}%: the hot coordinates' cache lines moving between cores)")
    ts, tn = [], []
    buf = np.full(problem.N, -1, dtype=np.int64)
    for e in range(10):
        t = time.perf_counter()
        worker_orders(base, problem.N, e, out=buf)
        ts.append(time.perf_counter() - t)
        t = time.perf_counter()
        stream(base.seed, STREAM_ORDER, e).permutation(problem.N)
        tn.append(time.perf_counter() - t)
    print(f"reshuffle (worker_orders, {problem.N} terms, jitted Fisher–Yates): {1e3 * np.median(ts):.2f} ms per "
          f"epoch; numpy Generator.permutation {1e3 * np.median(tn):.2f} ms (medians of 10, interleaved)")

    print("\n4. lost updates, plain hogwild, 2 threads (count_lost probe; every write a locked exchange)")
    if 2 in threads and len(os.sched_getaffinity(0)) >= 2:
        spec = base.replace(threads=2, epochs=min(a.epochs, 5), options={"count_lost": True})
        res = run(spec, problem=problem)
        writes = problem.terms.nnz * spec.epochs
        print(f"lost {res.lost_updates} of {writes} writes ({100 * res.lost_updates / writes:.4f}%) in "
              f"{spec.epochs} epochs; samples/s with the probe {_fmt(res.samples_per_s)}; "
              f"τ mean {np.mean(res.tau()):.2f}, max {int(np.max(res.tau()))}")
        lost = {"lost_updates": res.lost_updates, "writes": writes, "epochs": spec.epochs}
        del res
    else:
        lost = None
        print("skipped (needs 2 threads and 2 CPUs)")

    print("\n5. calibration microbenchmarks")
    pp = pingpong() if len(os.sched_getaffinity(0)) >= 2 else None
    cc = coord_cost()
    if pp is not None:
        print(f"pingpong: cache-line transfer {pp.transfer_ns:.1f} ns (median; cores {pp.cores})")
    print(f"coord_cost: read {cc.read_ns:.2f} ns, write {cc.write_ns:.2f} ns per coordinate "
          f"(n = {cc.n}, support {cc.support})")
    if a.json:
        Path(a.json).write_text(json.dumps({"configs": rows, "load_average": loads, "visit_rates": vr.to_dict("records"),
                                            "reshuffle_ms": 1e3 * float(np.median(ts)),
                                            "numpy_permutation_ms": 1e3 * float(np.median(tn)), "lost": lost,
                                            "pingpong_ns": None if pp is None else pp.transfer_ns,
                                            "coord_cost": cc._asdict()}, indent=1))


if __name__ == "__main__":
    main()
