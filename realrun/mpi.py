"""realrun on MPI: the ``decentralized`` scheme, one rank per node (mpi4py).

Notes
-----
Chatterjee, Kungurtsev and Alistarh, "Scaling the Wild" (2022): each node runs
shared-memory Hogwild! and averages its model with the others without blocking its
workers.  The rules (layout, data split, rounds, the correction) are in
:mod:`workload.decentralized`; this module runs them:

* each rank runs ``spec.threads`` Python threads, each a nogil ``hogwild`` kernel of
  :mod:`realrun.kernels` (``hogwild-atomic`` when ``write_mode = "atomic"``) over its
  global worker's order, against the rank's one model array;
* a **communication thread** per rank waits until the node has finished ``k * A`` samples
  of the epoch (read from the kernels' packed instrumentation counter), snapshots the
  model, starts ``Iallreduce`` (sum), polls it with ``Test`` (sleeping ``POLL_S`` between
  polls, so it holds neither a core nor the GIL), and applies the correction
  ``x += mean - snapshot`` in place, racing with the workers as Hogwild! does (only
  coordinates whose correction is nonzero are written).  One round is in flight at a time;
* at each epoch end the workers stop at a barrier, the main thread runs a blocking
  ``Allreduce`` and sets ``x <- mean`` (so every rank holds the same model), and rank 0
  evaluates the objective (outside the timed region).

Entry point: ``mpiexec -n P python -m realrun.mpi SPEC.toml OUT`` writes, on rank 0 and
atomically, ``OUT/result.npz`` (``x``, ``x_ranks`` -- every rank's final model --,
``epoch_seconds``, ``jit_seconds``), ``OUT/history.csv.gz`` and ``OUT/rounds.csv.gz`` (one
row per rank and averaging round: snapshot, all-reduce done and correction done times in ns
since the run began).  ``python -m realrun.mpi --allreduce-bench OUT.csv.gz`` times
blocking ``Allreduce`` of float64 arrays of several sizes (for hwsim's network model,
:func:`analysis.decentralized.fit_allreduce`).  :func:`run_decentralized` (what
``realrun.run`` calls) runs in-process with one node and launches ``mpiexec`` for more.

Not measured for ``nodes > 1``: the per-sample trace (``samples`` is empty) and lost updates.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from workload.decentralized import apply_correction, mean_state, node_orders, options, rounds_in_epoch
from workload.fixed import scale_of, to_state
from workload.serial import history_row
from workload.spec import RunSpec
from workload.trace import HISTORY_SCHEMA, SAMPLE_SCHEMA, atomic_write_bytes, empty, read_table, write_table

from . import kernels as K
from .engine import RealResult, Layout, run_options

POLL_S = 20e-6  # the communication thread's sleep between polls
ROUNDS_COLS = ("rank", "epoch", "round", "t_snapshot", "t_reduced", "t_applied", "n_bytes")
REPO_ROOT = Path(__file__).resolve().parent.parent


class SelfComm:
    """A one-rank stand-in for an mpi4py communicator (no MPI needed for one node)."""

    rank = 0
    size = 1

    class _Done:
        def Test(self):  # noqa: N802 -- mpi4py's name
            return True

    def Iallreduce(self, send, recv, op=None):  # noqa: N802
        recv[...] = send
        return self._Done()

    def Allreduce(self, send, recv, op=None):  # noqa: N802
        recv[...] = send

    def gather(self, obj, root=0):
        return [obj]

    def Barrier(self):  # noqa: N802
        pass


def _sum_op(comm):
    if isinstance(comm, SelfComm):
        return None
    from mpi4py import MPI

    return MPI.SUM


def run_node(spec: RunSpec, comm, *, problem=None, pin: bool = True, with_opt: bool = False, progress=None):
    """Run this rank's node of a ``decentralized`` spec; every rank returns its own pieces.

    Returns ``dict(x, history, epoch_seconds, jit_seconds, rounds, cores, info)``; ``x`` is
    in problem coordinates and the stored dtype; ``history`` is filled on rank 0 only.
    """
    opts = options(spec)
    P, r, T = comm.size, comm.rank, opts.threads
    if P != opts.nodes:
        raise ValueError(f"realrun.mpi: options.nodes = {opts.nodes} but the communicator has {P} ranks; "
                         f"launch with mpiexec -n {opts.nodes}")
    if problem is None:
        from workload.build import build_problem

        problem = build_problem(spec)
    prefetch_distance, _, _, _, relabel = run_options(spec, problem)
    lay = Layout.of(problem, relabel)
    kscheme = "hogwild-atomic" if spec.write_mode == "atomic" else "hogwild"
    kernel = K.make_worker(problem.update, kscheme, instrument=True, prefetch_distance=prefetch_distance,
                           count_lost=False)
    x = lay.to_kernel(to_state(problem.initial_point(spec.seed), spec.dtype, spec.fixed_point_bits))
    scale = scale_of(spec.fixed_point_bits)
    from workload.schedule import schedule_args

    code, step0, beta, t0 = schedule_args(spec, lay.N)
    W = opts.workers
    sync = np.zeros(K.SYNC_LEN, dtype=np.int64)
    locks = np.zeros(1, dtype=np.int32)
    stride = 2**62  # record only position 0: the kernels' counter is what we need
    x_star = None
    if with_opt:
        sol = problem.solution()
        x_star = None if sol is None else sol.x

    def call(order, g, rec, st, epoch):
        kernel(lay.params, lay.aux, lay.indptr, lay.indices, lay.values, lay.y, order, g, W, x, code, step0, beta,
               t0, epoch, scale, lay.maxlen, sync, locks, rec, stride, stride, st)

    t_jit = time.perf_counter()
    call(np.empty(0, dtype=np.int64), 0, np.empty((1, K.REC_COLS), dtype=np.int64),
         np.zeros(K.ST_LEN, dtype=np.int64), 0)
    jit_seconds = time.perf_counter() - t_jit

    cpus = sorted(os.sched_getaffinity(0))
    do_pin = pin and W <= len(cpus)
    cores: list = [None] * T
    errors: list = []
    start_barrier = threading.Barrier(T + 2)  # T workers, the comm thread, the main thread
    end_barrier = threading.Barrier(T + 2)
    job: dict = {}
    stats = np.zeros((T, K.ST_LEN), dtype=np.int64)
    recs = np.zeros((T, 1, K.REC_COLS), dtype=np.int64)
    rounds: list = []
    R = rounds_in_epoch(opts, lay.N)
    op = _sum_op(comm)
    run_t0 = time.perf_counter_ns()

    def fail(who, exc):
        errors.append((who, job.get("epoch"), exc))
        sync[K.STOP] = 1
        start_barrier.abort()
        end_barrier.abort()

    def worker(w):
        try:
            if do_pin:
                os.sched_setaffinity(0, {cpus[(r * T + w) % len(cpus)]})
            cores[w] = tuple(sorted(os.sched_getaffinity(0)))
            while True:
                start_barrier.wait()
                if job.get("quit"):
                    return
                call(job["orders"][w], r * T + w, recs[w], stats[w], job["epoch"])
                end_barrier.wait()
        except threading.BrokenBarrierError:
            return
        except BaseException as exc:  # noqa: BLE001 -- handed to the main thread
            fail(f"worker {w}", exc)

    def communicator():
        snap = np.empty(x.size, dtype=np.int64 if x.dtype == np.int64 else np.float64)
        total = np.empty_like(snap)
        try:
            while True:
                start_barrier.wait()
                if job.get("quit"):
                    return
                epoch = job["epoch"]
                for k in range(1, R + 1):
                    need = k * opts.average_every
                    while (int(sync[K.CTR]) & int(K.LOW_MASK)) < need:
                        if sync[K.STOP]:
                            return
                        time.sleep(POLL_S)
                    t_snap = time.perf_counter_ns()
                    snap[:] = x
                    req = comm.Iallreduce(snap, total, op=op)
                    while not req.Test():
                        time.sleep(POLL_S)
                    t_red = time.perf_counter_ns()
                    apply_correction(x, mean_state(total, P, x.dtype) - snap)
                    rounds.append((r, epoch, k, t_snap - run_t0, t_red - run_t0, time.perf_counter_ns() - run_t0,
                                   snap.nbytes))
                end_barrier.wait()
        except threading.BrokenBarrierError:
            return
        except BaseException as exc:  # noqa: BLE001
            fail("communication thread", exc)

    threads = [threading.Thread(target=worker, args=(w,), name=f"realrun-mpi-{r}-worker-{w}", daemon=True)
               for w in range(T)]
    threads.append(threading.Thread(target=communicator, name=f"realrun-mpi-{r}-comm", daemon=True))
    history = [history_row(problem, lay.from_kernel(x), spec, 0, 0, 0.0, x_star)] if r == 0 else []
    epoch_seconds: list[float] = []
    samples_done = 0
    total_buf = np.empty(x.size, dtype=np.int64 if x.dtype == np.int64 else np.float64)
    try:
        for th in threads:
            th.start()
        for epoch in range(spec.epochs):
            comm.Barrier()  # all nodes start the epoch's clock together
            t_begin = time.perf_counter_ns()
            orders = node_orders(spec, opts, lay.N, epoch, r)
            job.update(orders=orders, epoch=epoch)
            sync[K.CTR] = 0
            stats[:] = 0
            start_barrier.wait()
            end_barrier.wait()
            done = int(stats[:, K.ST_DONE].sum())
            if done != sum(o.size for o in orders):
                raise RuntimeError(f"realrun.mpi rank {r}: epoch {epoch} processed {done} of "
                                   f"{sum(o.size for o in orders)} samples")
            if P > 1:  # the epoch's final averaging: every rank ends with the same model
                comm.Allreduce(np.ascontiguousarray(x, dtype=total_buf.dtype), total_buf, op=op)
                x[:] = mean_state(total_buf, P, x.dtype).astype(x.dtype)
            epoch_seconds.append((time.perf_counter_ns() - t_begin) * 1e-9)
            samples_done += lay.N
            if r == 0:
                row = history_row(problem, lay.from_kernel(x), spec, epoch + 1, samples_done,
                                  float(np.sum(epoch_seconds)), x_star)
                history.append(row)
                if progress is not None:
                    progress(epoch, row)
    except threading.BrokenBarrierError:
        pass
    finally:
        sync[K.STOP] = 1
        job["quit"] = True
        start_barrier.abort()
        end_barrier.abort()
        for th in threads:
            if th.ident is not None:
                th.join()
    if errors:
        who, ep, exc = errors[0]
        exc.add_note(f"raised by the {who} of realrun.mpi rank {r} in epoch {ep}")
        raise exc
    return {"x": lay.from_kernel(x), "history": history, "epoch_seconds": np.asarray(epoch_seconds),
            "jit_seconds": jit_seconds, "rounds": rounds, "cores": tuple(cores),
            "info": {"nodes": P, "threads_per_node": T, "kernel_scheme": kscheme, "rounds_per_epoch": R,
                     "average_every": opts.average_every, "prefetch": prefetch_distance, "relabel": lay.relabel,
                     "pinned": do_pin, "ns_per_tick": 1.0}}


def _result(spec: RunSpec, part: dict, x_ranks: np.ndarray | None, rounds: pd.DataFrame) -> RealResult:
    total = float(np.sum(part["epoch_seconds"]))
    hist = part["history"] if isinstance(part["history"], pd.DataFrame) else pd.DataFrame(part["history"])
    hist = hist.astype(HISTORY_SCHEMA)
    n = int(hist["samples"].iloc[-1])
    info = dict(part["info"])
    info["rounds"] = rounds
    info["x_ranks"] = x_ranks
    opts = options(spec)
    return RealResult(x=part["x"], samples=empty(SAMPLE_SCHEMA), history=hist,
                      epoch_seconds=np.asarray(part["epoch_seconds"]),
                      samples_per_s=n / total if total > 0 else float("nan"), jit_seconds=float(part["jit_seconds"]),
                      lost_updates=0 if spec.threads == 1 and opts.nodes == 1 else None,
                      threads=opts.workers, cores=tuple(part["cores"]), instrument=False, interrupted=False,
                      spec=spec, info=info)


def _rounds_frame(rounds: list) -> pd.DataFrame:
    return pd.DataFrame(rounds, columns=list(ROUNDS_COLS)).astype("int64")


def mpiexec_path() -> str | None:
    """The ``mpiexec`` next to this Python (the ``mpich`` wheel's), else the one on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


def _launch(nodes: int, args: list[str], timeout: float | None) -> None:
    exe = mpiexec_path()
    if exe is None:
        raise RuntimeError("realrun.mpi: no mpiexec found next to the Python executable or on PATH; "
                           "install the 'mpi' extra: pip install -e '.[mpi]'")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    cmd = [exe, "-n", str(nodes), sys.executable, "-m", "realrun.mpi", *args]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"realrun.mpi: {' '.join(cmd)} exited with {proc.returncode}:\n"
                           f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")


def run_decentralized(spec: RunSpec, *, problem=None, instrument: bool = True, pin: bool = True,
                      with_opt: bool = False, progress=None, timeout: float | None = None) -> RealResult:
    """``realrun.run`` for ``decentralized``: in-process for one node, ``mpiexec -n nodes`` else.

    The in-process run is the same node runner as every MPI rank's (:func:`run_node`), with
    :class:`SelfComm` for a communicator.  ``instrument`` is accepted for ``realrun.run``'s
    signature: the kernels always count samples (the rounds need it) and ``samples`` is
    empty.  ``RealResult.threads`` is the total worker count ``nodes * spec.threads``;
    ``timeout`` (seconds) bounds the ``mpiexec`` run.

    With more than one node every rank rebuilds the problem from the spec; a ``problem``
    given here must be the spec's own (checked by :func:`problem_digest` on every rank); ``info["x_ranks"]`` holds every rank's final model and
    ``info["rounds"]`` the averaging rounds (:data:`ROUNDS_COLS`).
    """
    opts = options(spec)
    if opts.nodes == 1:
        part = run_node(spec, SelfComm(), problem=problem, pin=pin, with_opt=with_opt, progress=progress)
        return _result(spec, part, part["x"][None, :], _rounds_frame(part["rounds"]))
    check = [] if problem is None else ["--problem-sha256", problem_digest(problem)]
    with tempfile.TemporaryDirectory(prefix="wildcheck-mpi-") as tmp:
        spec_path = Path(tmp) / "spec.toml"
        spec_path.write_text(spec.to_toml())
        out = Path(tmp) / "out"
        _launch(opts.nodes, [str(spec_path), str(out)] + (["--with-opt"] if with_opt else []) +
                ([] if pin else ["--no-pin"]) + check, timeout)
        return load_result(spec, out)


def problem_digest(problem) -> str:
    """SHA-256 of a problem's name, terms, params and aux (ranks rebuild the problem from the spec
    and compare this, so a caller's ``problem`` that is not the spec's own fails loudly)."""
    h = hashlib.sha256(str(problem.name).encode())
    t = problem.terms
    for a in (t.indptr, t.indices, t.values, t.y, problem.params, problem.aux):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def load_result(spec: RunSpec, out: str | Path) -> RealResult:
    """Read what the entry point wrote to ``out`` back into a :class:`RealResult`."""
    out = Path(out)
    with np.load(out / "result.npz") as z:
        x, x_ranks, secs, jit = z["x"], z["x_ranks"], z["epoch_seconds"], float(z["jit_seconds"])
    meta = json.loads((out / "info.json").read_text())
    part = {"x": x, "history": read_table(out / "history.csv.gz"), "epoch_seconds": secs, "jit_seconds": jit,
            "cores": tuple(tuple(c) if c is not None else None for c in meta["cores"]), "info": meta["info"]}
    return _result(spec, part, x_ranks, read_table(out / "rounds.csv.gz"))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if argv and argv[0] == "--allreduce-bench":
        df = allreduce_bench(comm)
        if comm.rank == 0:
            write_table(df, argv[1])
        return 0
    with_opt = "--with-opt" in argv
    pin = "--no-pin" not in argv
    digest = None
    if "--problem-sha256" in argv:
        i = argv.index("--problem-sha256")
        digest = argv[i + 1]
        del argv[i:i + 2]
    spec_path, out = [a for a in argv if not a.startswith("--")]
    spec = RunSpec.from_toml(Path(spec_path))
    from workload.build import build_problem

    problem = build_problem(spec)
    if digest is not None and problem_digest(problem) != digest:
        raise ValueError(f"realrun.mpi rank {comm.rank}: the problem built from {spec_path} differs from the one "
                         "passed to realrun.run; with options.nodes > 1 pass problem=None or the spec's own problem")
    part = run_node(spec, comm, problem=problem, pin=pin, with_opt=with_opt)
    xs = comm.gather(part["x"], root=0)
    allrounds = comm.gather(part["rounds"], root=0)
    if comm.rank == 0:
        out = Path(out)
        buf = io.BytesIO()
        np.savez(buf, x=part["x"], x_ranks=np.stack(xs), epoch_seconds=part["epoch_seconds"],
                 jit_seconds=np.float64(part["jit_seconds"]))
        write_table(pd.DataFrame(part["history"]).astype(HISTORY_SCHEMA), out / "history.csv.gz")
        write_table(_rounds_frame([row for rr in allrounds for row in rr]), out / "rounds.csv.gz")
        atomic_write_bytes(out / "info.json", json.dumps({"cores": part["cores"], "info": part["info"]}).encode())
        atomic_write_bytes(out / "result.npz", buf.getvalue())  # last: its presence means complete
    return 0


BENCH_BYTES = (8, 8 * 2**6, 8 * 2**10, 8 * 2**14, 8 * 2**17, 8 * 2**20)


def allreduce_bench(comm, sizes_bytes=BENCH_BYTES, reps: int = 30, warmup: int = 3) -> pd.DataFrame:
    """Blocking ``Allreduce`` (sum) of float64 arrays: per size, the median and min seconds over ``reps``.

    Each repetition starts after a barrier; its time is the slowest rank's.
    """
    from mpi4py import MPI

    rows = []
    for nb in sizes_bytes:
        a = np.ones(max(1, int(nb) // 8))
        b = np.empty_like(a)
        ts = []
        for i in range(warmup + reps):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(a, b, op=MPI.SUM)
            dt = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
            if i >= warmup:
                ts.append(dt)
        rows.append({"nodes": comm.size, "n_bytes": a.nbytes, "seconds": float(np.median(ts)),
                     "seconds_min": float(np.min(ts)), "reps": reps})
    return pd.DataFrame(rows)


def measure_allreduce(nodes: int = 2, *, timeout: float | None = 300) -> pd.DataFrame:
    """Run :func:`allreduce_bench` under ``mpiexec -n nodes`` and return its table."""
    with tempfile.TemporaryDirectory(prefix="wildcheck-mpi-bench-") as tmp:
        path = Path(tmp) / "allreduce.csv.gz"
        _launch(nodes, ["--allreduce-bench", str(path)], timeout)
        return read_table(path)


if __name__ == "__main__":
    sys.exit(main())
