"""hwsim engine benchmark: coordinate events per second, reference vs fast, and a full RCV1-sized epoch.

Run (from the repository root)::

    .venv/bin/python benchmarks/bench_hwsim.py            # small cases (about a minute)
    .venv/bin/python benchmarks/bench_hwsim.py --big      # + one epoch of 800,000 × 47,236 on 16 cores
    .venv/bin/python benchmarks/bench_hwsim.py --big-only # only the big case
    .venv/bin/python benchmarks/bench_hwsim.py --big-only --big-stream  # + the same epoch streaming
                                                          # its coordinate trace to Parquet

A *coordinate event* is one simulated coordinate read or write (2 per support entry per
sample).  Events/s = events / seconds of one whole ``hwsim.simulate`` call (trace assembly
and history evaluation included; data generation and JIT compilation excluded: the fast
engine is warmed on a tiny run first and its compile time is printed).  Each case then runs
each engine once untimed before its timed runs, so that both are measured in the steady
state of a sweep: caches warm and the memory allocator holding pages from an earlier run
(without it, the first runs of a case take fresh pages from the operating system; see
``faults`` below).  Figures are medians of ``--repeats`` runs (the reference engine: half
as many), as wall-clock and as process CPU time -- on a shared machine the CPU time is the
steadier of the two; the load average is printed with them. Fairness: both engines get the
same problem object, spec and machine, produce the same outputs (trace hashes checked
equal: the coordinate trace, when on, as DataFrames in both), are timed the same way (the
previous result stays alive while the next run allocates, for both), and the events are
counted once, from the problem.  The big case keeps the sample-level trace and turns the
coordinate-level trace off (or, with ``--big-stream``, streams it to a Parquet file in a
temporary folder); memory is reported as the peak of numpy allocations during the run
(tracemalloc) and the process's peak resident set size.  ``faults`` is the median number of
minor page faults per run: memory the operating system had to provide fresh.  The in-memory
coordinate trace is about 73 bytes per row, all of it fresh unless the allocator recycles
the previous run's pages; on a virtual machine a fresh page can cost far more than writing
it, so a run with faults can take twice as long as one without, and the median moves with
how many runs fault.  With the previous result alive, glibc's allocator typically gives
every second run fresh pages (the result freed last sat at the top of the heap, which is
returned to the operating system), so where a case has runs of both kinds the table adds
their medians and ratios on a line of their own.

Machine of every case: read 2 ticks, write 4, coherence miss 60, 8 coordinates per
line, compute delay 100 + Exp(mean 50) ticks; hogwild with atomic writes, float64 state.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path



def _machine(cores):
    from hwsim import Machine, ShiftedExponential

    return Machine(cores=cores, read_cost=2, write_cost=4, coherence_cost=60, line_coords=8,
                   delay=ShiftedExponential(shift=100, rate=1 / 50))


def _spec(threads, seed=0):
    from workload.spec import RunSpec

    return RunSpec(problem="svm", scheme="hogwild", threads=threads, epochs=1, step=0.05, write_mode="atomic",
                   order="epoch-shuffle", dtype="float64", seed=seed, problem_params={"lam": 1e-4, "reg": "hogwild"})


def _problem(n_rows, n_features, nnz_mean, seed=0):
    from workload.data import synthetic_classification
    from workload.problems import make_problem

    terms = synthetic_classification(n_rows=n_rows, n_features=n_features, nnz_mean=nnz_mean, skew=1.0, seed=seed)
    return make_problem("svm", terms, lam=1e-4, reg="hogwild")


def _timed(fn, repeats):
    """(last result, median wall s, median CPU s, median minor page faults, [(CPU s, faults)
    per run]) over ``repeats`` calls, after one untimed call (the warm-up: see the module
    docstring)."""
    out, wall, cpu, faults = fn(), [], [], []
    for _ in range(repeats):
        f = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f)
    return out, statistics.median(wall), statistics.median(cpu), statistics.median(faults), list(zip(cpu, faults))


#: a run with more minor page faults than this (1 MiB of pages) took fresh memory
FRESH_FAULTS = 256


def _fresh_split(runs, ref_cpu: float) -> str:
    """The CPU-time medians of ``runs`` (_timed's) without and with fresh pages, and the
    ratio of each to ``ref_cpu``, when both kinds occurred (else "")."""
    calm = [c for c, f in runs if f <= FRESH_FAULTS]
    fresh = [c for c, f in runs if f > FRESH_FAULTS]
    if not calm or not fresh:
        return ""
    a, b = statistics.median(calm), statistics.median(fresh)
    return (f"{'':>27}runs without fresh pages: cpu {a:.4f} s ({len(calm)} of {len(runs)}), {ref_cpu / a:.0f}x; "
            f"with: {b:.4f} s ({len(fresh)}), {ref_cpu / b:.0f}x")


def _rss_mib():
    """Current and peak resident set size of this process, MiB."""
    cur = 0.0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024.0
    return cur, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def _warm():
    import hwsim

    t = time.perf_counter()
    hwsim.simulate(_spec(2), _machine(2), problem=_problem(50, 200, 5.0), engine="fast")
    return time.perf_counter() - t


def small(repeats: int, rows: int):
    import hwsim

    problem = _problem(rows, 47_236, 75.0)
    events = 2 * int(problem.terms.nnz)
    print(f"small RCV1-shaped problem: {rows:,} rows x 47,236 features, {problem.terms.nnz / rows:.1f} nnz/row, "
          f"{events:,} coordinate events per epoch (one epoch per run)")
    print(f"fast engine JIT compile (warm-up, excluded below): {_warm():.2f} s; {_load()}")
    print(f"{'cores':>5} {'coord trace':>11} {'engine':>9} {'wall s':>8} {'cpu s':>8} {'events/s (cpu)':>15} "
          f"{'faults':>7} {'ratio wall':>10} {'ratio cpu':>9}")
    for cores in (4, 16):
        spec, machine = _spec(cores), _machine(cores)
        for trace in (False, True):
            def run(engine):
                return hwsim.simulate(spec, machine, problem=problem, engine=engine, coord_trace=trace)

            ref, ref_w, ref_c, ref_f, _ = _timed(lambda: run("reference"), max(1, (repeats + 1) // 2))
            fast, fast_w, fast_c, fast_f, runs = _timed(lambda: run("fast"), repeats)
            if hwsim.trace_hash(ref) != hwsim.trace_hash(fast):
                raise SystemExit("fast and reference engines disagree: a bug")
            tr = "on" if trace else "off"
            print(f"{cores:>5} {tr:>11} {'reference':>9} {ref_w:>8.3f} {ref_c:>8.3f} {events / ref_c:>15,.0f} "
                  f"{ref_f:>7,.0f}")
            print(f"{cores:>5} {tr:>11} {'fast':>9} {fast_w:>8.4f} {fast_c:>8.4f} {events / fast_c:>15,.0f} "
                  f"{fast_f:>7,.0f} {ref_w / fast_w:>9.0f}x {ref_c / fast_c:>8.0f}x")
            note = _fresh_split(runs, ref_c)
            if note:
                print(note)
    print(_load())


def big(repeats: int, stream: bool = False):
    import tracemalloc

    import hwsim

    t = time.perf_counter()
    problem = _problem(800_000, 47_236, 75.0)
    gen_s = time.perf_counter() - t
    events = 2 * int(problem.terms.nnz)
    print(f"big: 800,000 rows x 47,236 features, {problem.terms.nnz / 800_000:.1f} nnz/row, {events:,} events; "
          f"data generated in {gen_s:.1f} s")
    print(f"fast engine JIT compile (warm-up, excluded): {_warm():.2f} s")
    cur, peak = _rss_mib()
    print(f"resident before the run: {cur:,.0f} MiB (the problem's data; peak so far {peak:,.0f} MiB)")
    spec, machine = _spec(16), _machine(16)
    tracemalloc.start()
    res, med_w, med_c, _, _ = _timed(lambda: hwsim.simulate(spec, machine, problem=problem, engine="fast",
                                                      coord_trace=False), repeats)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    cur2, peak2 = _rss_mib()
    print(f"16 cores, fast engine, one epoch, coordinate trace off: median wall {med_w:.2f} s, cpu {med_c:.2f} s "
          f"over {repeats} run(s); {events / med_c:,.0f} events/s (cpu); simulated {res.ticks * 1e-9 * 1e3:.2f} ms; "
          f"{len(res.samples):,} sample rows (target: <= 60 s)")
    print(f"memory: peak numpy allocations during simulate (tracemalloc) {traced_peak / 2**20:,.0f} MiB; "
          f"process peak RSS {peak2:,.0f} MiB, resident after {cur2:,.0f} MiB; {_load()}")
    if not stream:
        return
    del res
    with tempfile.TemporaryDirectory(prefix="bench-hwsim-") as tmp:
        path = Path(tmp) / "coords.parquet"
        tracemalloc.start()
        t, c = time.perf_counter(), time.process_time()
        res = hwsim.simulate(spec, machine, problem=problem, engine="fast", coord_trace=path)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        cur3, peak3 = _rss_mib()
        size = path.stat().st_size
        print(f"16 cores, fast engine, one epoch, coordinate trace streamed to Parquet ({events // 2:,} rows, "
              f"{size / 2**30:.2f} GiB, snappy): wall {wall:.2f} s, cpu {cpu:.2f} s (writing included); peak numpy "
              f"allocations {traced_peak / 2**20:,.0f} MiB; process peak RSS {peak3:,.0f} MiB (the whole process so "
              f"far), resident after {cur3:,.0f} MiB; {_load()}")
        if res.coords_path != path:
            raise SystemExit(f"the streamed result names {res.coords_path}, not {path}: a bug")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--big", action="store_true", help="also run the 800,000-row epoch on 16 cores")
    ap.add_argument("--big-only", action="store_true", help="only the big case")
    ap.add_argument("--big-stream", action="store_true",
                    help="with the big case, also stream its coordinate trace to Parquet (a temporary folder)")
    ap.add_argument("--repeats", type=int, default=5, help="repeats per case (median reported)")
    ap.add_argument("--rows", type=int, default=10_000, help="rows of the small problem")
    a = ap.parse_args(argv)
    if not a.big_only:
        small(a.repeats, a.rows)
    if a.big or a.big_only:
        big(max(1, min(a.repeats, 3)), stream=a.big_stream)


if __name__ == "__main__":
    sys.exit(main())
