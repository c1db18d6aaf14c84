"""Serial SGD's samples/s on the RCV1-shaped default, against a tight compiled loop.

One command, prints a table::

    .venv/bin/python benchmarks/bench_serial.py            # 200,000 rows, 5 epochs, median of 5
    .venv/bin/python benchmarks/bench_serial.py --quick    # 2 epochs, median of 3

Rows of the table (one thread each; SVM, ``reg = "hogwild"``, μ = 1, step 0.1):

* ``workload.serial.serial_sgd``: the jitted serial driver (``sgd_pass``) over the
  spec's visit order (``epoch-shuffle``: a fresh random permutation every epoch, its cost
  included) -- rows reached in random order, no prefetch: latency-bound;
* ``realrun serial``: the same SGD, bit for bit (the tests hold this), through realrun's
  kernel: the same random order, but every row's cache lines are prefetched 16 samples
  ahead and coordinates are renumbered by frequency (hot ones share cache lines);
* the tight compiled loop (``realrun.calibrate.visit_rates``: the kernel alone, no
  reshuffle) over three memory access orders: ``resident`` (the first 256 rows again and
  again: the per-core ceiling of the update), ``storage`` (rows in the order they are
  stored: hardware-prefetched streams), ``random`` (prefetched), ``random-plain``.

Memory access order decides this benchmark, not the language: the rows (~900 bytes each,
180 MB in all) come from DRAM; visited in random order without prefetch each row costs a
full memory latency.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from realrun import run  # noqa: E402
from realrun.calibrate import visit_rates  # noqa: E402
from workload.build import build_problem  # noqa: E402
from workload.serial import serial_sgd  # noqa: E402
from workload.spec import DataSpec, RunSpec  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 epochs, 3 runs")
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--runs", type=int, default=None)
    a = ap.parse_args(argv)
    epochs = a.epochs or (2 if a.quick else 5)
    runs = a.runs or (3 if a.quick else 5)
    spec = RunSpec(problem="svm", problem_params={"lam": 0.5, "reg": "hogwild"},
                   data=DataSpec(source="synthetic-classification", params={"n_rows": a.rows, "seed": 0}),
                   scheme="serial", epochs=epochs, step=0.1, order="epoch-shuffle", seed=0)
    problem = build_problem(spec)
    print(f"data: {problem.N} rows × {problem.n} features, {problem.terms.nnz / problem.N:.1f} nnz/row; "
          f"{epochs} epochs, median of {runs} runs")
    serial_sgd(problem, spec.replace(epochs=1))  # compile
    run(spec.replace(epochs=1), problem=problem, instrument=False)
    s_rates, r_rates = [], []
    for r in range(runs):
        res = serial_sgd(problem, spec.replace(seed=r))
        s_rates.append(problem.N * epochs / res.seconds)
        r_rates.append(run(spec.replace(seed=r), problem=problem, instrument=False).samples_per_s)
    vr = visit_rates(problem, repeats=runs).set_index("order")
    ceiling = vr.loc["resident", "samples_per_s"]
    print(f"\n{'what':<36}{'samples/s':>10}  {'of ceiling':>10}")
    for name, v in (("workload.serial.serial_sgd", np.median(s_rates)), ("realrun serial", np.median(r_rates)),
                    ("loop: resident rows (ceiling)", ceiling),
                    ("loop: storage order", vr.loc["storage", "samples_per_s"]),
                    ("loop: random order, prefetched", vr.loc["random", "samples_per_s"]),
                    ("loop: random order, plain", vr.loc["random-plain", "samples_per_s"])):
        print(f"{name:<36}{v / 1e6:>9.2f}M  {100 * v / ceiling:>9.0f}%")
    print(f"\nserial_sgd spread {min(s_rates) / 1e6:.2f}–{max(s_rates) / 1e6:.2f}M; "
          f"realrun serial {min(r_rates) / 1e6:.2f}–{max(r_rates) / 1e6:.2f}M")


if __name__ == "__main__":
    main()
