"""Sweep throughput: points per second for many small simulations, three ways.

Run (from the repository root)::

    .venv/bin/python benchmarks/bench_sweep.py                 # 240 points (about a minute)
    .venv/bin/python benchmarks/bench_sweep.py --points 1000 --rows 400 --workers 4
    .venv/bin/python benchmarks/bench_sweep.py --no-cluster    # without Dask

One grid of small ``hwsim`` simulations (least squares on a synthetic sparse set, hogwild,
threads 1-4 over a 4-core machine, seeds) is run by :func:`analysis.sweep.run_sweep`:

``one process``    ``workers=1``: every point in this process, one after another;
``local pool``     ``workers=N`` (default: the usable cores): N spawned processes;
``LocalCluster``   a ``distributed.LocalCluster(n_workers=N, threads_per_worker=1)``.

Each mode writes its own output folder (so committing results is timed too).  The JIT is
warmed outside the timed region -- in this process, in every pool worker (a warm-up task
per worker, held at a barrier so each worker takes exactly one), on every Dask worker
(``client.run``) -- and startup + compilation is printed separately.  ``points/s`` =
points / wall seconds of ``run_sweep``; ``busy`` = Σ per-point compute seconds /
(wall seconds × workers), how busy the workers were kept; ``ms/pt`` and ``cpu ms/pt``:
wall-clock and CPU milliseconds per point inside the worker.  A worker descheduled by
other load still counts as busy, and its ms/pt grows while its cpu ms/pt does not: read
the figures with the load average printed before and after.  Medians of ``--repeats``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def grid_text(points: int, rows: int, epochs: int, engine: str | None) -> str:
    seeds = max(1, points // 4)
    return f"""
[sweep]
with_opt = false
{f'engine = "{engine}"' if engine else ''}

[run]
problem = "least-squares"
problem_params = {{ lam = 1e-3 }}
scheme = "hogwild"
epochs = {epochs}
step = 0.02
data = {{ source = "synthetic-regression", params = {{ n_rows = {rows}, n_features = 100, nnz_mean = 8, seed = 0 }} }}

[machine]
cores = 4
read_cost = 2
write_cost = 4
coherence_cost = 40
delay = {{ kind = "shifted-exponential", shift = 50.0, rate = 0.02 }}

[grid]
threads = [1, 2, 3, 4]
seed = {list(range(seeds))}
"""


def _warm_task(point, barrier):
    """Compile in this worker, then hold until every worker has done the same."""
    from analysis.sweep import execute_point

    execute_point(point)
    barrier.wait(timeout=600)


def _warm_dask(point):
    from analysis.sweep import execute_point

    execute_point(point)


def _time(fn, repeats, workers):
    """Medians over ``repeats`` sweeps: wall seconds, busy fraction, per-point wall and CPU ms."""
    secs, busy, wall, cpu = [], [], [], []
    for _ in range(repeats):
        t = time.perf_counter()
        res = fn()
        secs.append(time.perf_counter() - t)
        assert res.ok, res.failures
        busy.append(float(res.results["wall_s"].sum()) / (secs[-1] * workers))
        wall.append(1e3 * float(res.results["wall_s"].mean()))
        cpu.append(1e3 * float(res.results["cpu_s"].mean()))
    return tuple(statistics.median(v) for v in (secs, busy, wall, cpu))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=240, help="points in the grid (multiple of 4; default %(default)s)")
    ap.add_argument("--rows", type=int, default=200, help="terms of the synthetic problem (default %(default)s)")
    ap.add_argument("--epochs", type=int, default=1, help="epochs per simulation (default %(default)s)")
    ap.add_argument("--engine", choices=("fast", "reference"), help="hwsim engine (default: hwsim's default)")
    ap.add_argument("--workers", type=int, help="pool / cluster size (default: usable cores)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per mode (default %(default)s)")
    ap.add_argument("--no-cluster", action="store_true", help="skip the Dask LocalCluster")
    args = ap.parse_args(argv)

    import multiprocessing

    from analysis import sweep as sw
    from analysis.environment import usable_cores

    workers = args.workers or usable_cores()
    grid = sw.load_grid(grid_text(args.points, args.rows, args.epochs, args.engine))
    n = len(grid)
    tmp = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    runs = iter(range(10**6))
    warm_point = grid.plan[-1]

    def sweep(**kw):
        return sw.run_sweep(grid, tmp / f"run{next(runs)}", progress=False, **kw)

    rows = []

    def record(mode, w, startup, timed):
        secs, busy, wall, cpu = timed
        rows.append((mode, w, startup, n, secs, n / secs, busy, wall, cpu))

    import os

    print(f"grid: {n} points (threads 1-4 x seeds), {args.rows} rows x {args.epochs} epoch(s), engine "
          f"{args.engine or 'default'}; {workers} workers; usable cores {usable_cores()}; load average "
          f"{os.getloadavg()[0]:.1f} before", flush=True)

    t = time.perf_counter()
    sw.execute_point(warm_point)
    startup = time.perf_counter() - t
    record("one process", 1, startup, _time(lambda: sweep(workers=1), args.repeats, 1))

    t = time.perf_counter()
    pool = sw.local_pool(workers)
    with multiprocessing.get_context("spawn").Manager() as manager:
        barrier = manager.Barrier(workers)
        for f in [pool.submit(_warm_task, warm_point, barrier) for _ in range(workers)]:
            f.result()
    startup = time.perf_counter() - t
    try:
        record("local pool", workers, startup, _time(lambda: sweep(scheduler=pool), args.repeats, workers))
    finally:
        pool.shutdown()

    if not args.no_cluster:
        try:
            import distributed
        except ImportError:
            print("distributed not installed: LocalCluster skipped (pip install -e '.[dask]')")
        else:
            t = time.perf_counter()
            with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                          dashboard_address=None) as cluster, distributed.Client(cluster) as client:
                client.run(_warm_dask, warm_point)
                startup = time.perf_counter() - t
                record("LocalCluster", workers, startup,
                       _time(lambda: sweep(scheduler=client), args.repeats, workers))

    base = rows[0][5]
    print(f"\n{'mode':<14}{'workers':>8}{'startup+JIT s':>15}{'points':>8}{'wall s':>9}{'points/s':>10}"
          f"{'vs one':>8}{'busy':>7}{'ms/pt':>8}{'cpu ms/pt':>11}")
    for mode, w, startup, pts, secs, rate, busy, wall, cpu in rows:
        print(f"{mode:<14}{w:>8}{startup:>15.1f}{pts:>8}{secs:>9.2f}{rate:>10.1f}{rate / base:>7.2f}x{busy:>6.0%}"
              f"{wall:>8.2f}{cpu:>11.2f}")
    print(f"\n(medians of {args.repeats}; load average {os.getloadavg()[0]:.1f} after; outputs under {tmp})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
