"""Decentralized Hogwild!: calibrate the network model, compare measured with simulated.

Notes
-----
Chatterjee, Kungurtsev and Alistarh, "Scaling the Wild" (2022).  hwsim models an averaging
round as a ring all-reduce (:class:`hwsim.decentralized.Network`)::

    t(n_bytes, P) = 2(P-1) alpha + (2(P-1)/P) n_bytes / beta

which is linear in ``n_bytes`` for a fixed P: :func:`fit_allreduce` fits intercept and slope
to measured all-reduce times (``realrun.mpi.measure_allreduce``: blocking ``Allreduce`` of
float64 arrays on P ranks) by least squares on relative error (sizes span several orders of
magnitude), and returns alpha and beta.  :func:`allreduce_table` puts measured and modelled
times side by side.  :func:`compare` runs one spec on both engines (realrun launches
``mpiexec`` for more than one node) and returns the two convergence histories, and
:func:`predict` simulates larger layouts (say 8 nodes x 16 cores) with a calibrated network.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

MEASURED_COLS = ("nodes", "n_bytes", "seconds")


def _check_measured(df: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in MEASURED_COLS if c not in df.columns]
    if missing:
        raise ValueError(f"fit_allreduce: measured table lacks column(s) {missing}; it needs {MEASURED_COLS} "
                         "(realrun.mpi.measure_allreduce gives them)")
    nodes = df["nodes"].unique()
    if len(nodes) != 1 or int(nodes[0]) < 2:
        raise ValueError(f"fit_allreduce: nodes = {sorted(nodes.tolist())}; fit one node count >= 2 at a time")
    if df["n_bytes"].nunique() < 2:
        raise ValueError("fit_allreduce: needs at least two distinct message sizes (n_bytes) to separate "
                         "latency from bandwidth")
    if (df["seconds"] <= 0).any():
        raise ValueError("fit_allreduce: every measured time must be > 0 seconds")
    return df


def fit_allreduce(measured: pd.DataFrame, *, column: str = "seconds"):
    """The ring model's alpha (latency, ns) and beta (bandwidth, GB/s) fitted to measured times.

    ``measured``: columns ``nodes`` (one value P >= 2), ``n_bytes``, and ``column`` (seconds).
    Least squares on relative error: minimise sum ((a + b n - t) / t)^2 over a, b >= 0,
    then alpha = a / (2(P-1)) and beta = 2(P-1) / (P b).  A slope fitted at 0 (no size
    dependence seen) gives ``bandwidth_gbs = inf``.
    """
    from hwsim.decentralized import Network

    if column not in measured.columns:
        raise ValueError(f"fit_allreduce: column = {column!r} is not in the measured table "
                         f"({list(measured.columns)}); pass the column of measured seconds")
    df = _check_measured(measured[["nodes", "n_bytes"]].assign(seconds=measured[column]))
    P = int(df["nodes"].iloc[0])
    n = df["n_bytes"].to_numpy(dtype=np.float64)
    t_ns = df["seconds"].to_numpy(dtype=np.float64) * 1e9
    A = np.column_stack([np.ones_like(n), n]) / t_ns[:, None]
    from scipy.optimize import nnls

    (a, b), _ = nnls(A, np.ones_like(n))
    alpha = a / (2.0 * (P - 1))
    beta = 2.0 * (P - 1) / (P * b) if b > 0 else float("inf")
    return Network(latency_ns=float(alpha), bandwidth_gbs=float(beta))


def allreduce_table(measured: pd.DataFrame, network) -> pd.DataFrame:
    """Measured vs modelled all-reduce time per size: ``modelled_seconds`` and ``ratio`` (model / measured)."""
    df = _check_measured(measured).copy()
    df["modelled_seconds"] = [network.allreduce_ns(nb, int(p)) * 1e-9 for nb, p in zip(df["n_bytes"], df["nodes"])]
    df["ratio"] = df["modelled_seconds"] / df["seconds"]
    return df


def compare(spec, machine, *, network=None, problem=None) -> pd.DataFrame:
    """One decentralized spec measured (realrun) and simulated (hwsim): tidy convergence rows.

    Columns: ``kind`` (measured | simulated), ``epoch``, ``samples``, ``objective``, ``time``.
    """
    import realrun
    from hwsim.decentralized import simulate_decentralized

    meas = realrun.run(spec, problem=problem if spec.options.get("nodes", 1) == 1 else None)
    sim = simulate_decentralized(spec, machine, problem=problem, network=network, coord_trace=False).result
    rows = []
    for kind, h in (("measured", meas.history), ("simulated", sim.history)):
        for r in h.itertuples():
            rows.append({"kind": kind, "epoch": r.epoch, "samples": r.samples, "objective": r.objective,
                         "time": r.time})
    return pd.DataFrame(rows)


def predict(spec, machine, network, layouts, *, problem=None) -> pd.DataFrame:
    """Simulated throughput and final objective for each ``(nodes, threads_per_node)`` in ``layouts``.

    Columns: ``nodes``, ``threads``, ``samples_per_s`` (simulated), ``objective`` (final),
    ``allreduce_s`` (one round's modelled time), ``rounds``.
    """
    from hwsim.decentralized import simulate_decentralized

    if problem is None:
        from workload.build import build_problem

        problem = build_problem(spec)
    rows = []
    for nodes, threads in layouts:
        s = spec.replace(threads=int(threads), options={**dict(spec.options), "nodes": int(nodes)})
        if nodes == 1 and threads > machine.cores:
            raise ValueError(f"predict: layout ({nodes}, {threads}) needs {threads} cores; machine has "
                             f"{machine.cores}")
        out = simulate_decentralized(s, machine, problem=problem, network=network, coord_trace=False)
        h = out.result.history
        secs = out.result.ticks * 1e-9
        rows.append({"nodes": int(nodes), "threads": int(threads),
                     "samples_per_s": float(h["samples"].iloc[-1] / secs) if secs > 0 else float("nan"),
                     "objective": float(h["objective"].iloc[-1]),
                     "allreduce_s": network.allreduce_ns(problem.n * 8, int(nodes)) * 1e-9,
                     "rounds": int((out.rounds["round"] > 0).sum()) if len(out.rounds) else 0})
    return pd.DataFrame(rows)


def in_run_rounds(rounds: pd.DataFrame, nodes: int) -> pd.DataFrame:
    """The averaging rounds of a measured run (``RealResult.info["rounds"]``) as measured all-reduce times.

    One row per rank and round: ``nodes``, ``n_bytes``, ``seconds`` = all-reduce done minus
    snapshot (the non-blocking all-reduce as the run saw it: progress made only while the
    communication thread polls, on cores shared with the workers).
    """
    need = ("n_bytes", "t_snapshot", "t_reduced")
    missing = [c for c in need if c not in rounds.columns]
    if missing:
        raise ValueError(f"in_run_rounds: rounds table lacks {missing}; pass RealResult.info['rounds']")
    return pd.DataFrame({"nodes": int(nodes), "n_bytes": rounds["n_bytes"].astype("int64"),
                         "seconds": (rounds["t_reduced"] - rounds["t_snapshot"]).astype("float64") * 1e-9})


def calibrate_in_run(network, measured_rounds: pd.DataFrame):
    """``network`` with its latency refitted so the model gives the median in-run round time.

    Bandwidth is kept (a run averages one model size, so it cannot separate the two); the
    extra time of a polled, non-blocking all-reduce on busy cores goes into alpha:
    alpha' = (median - 2(P-1) n/(P beta)) / (2(P-1)), and at least 0.
    """
    from hwsim.decentralized import Network

    df = _check_measured(measured_rounds) if measured_rounds["n_bytes"].nunique() > 1 else measured_rounds
    if len(df) == 0:
        raise ValueError("calibrate_in_run: no rounds measured; run with options.average_every > 0")
    P = int(df["nodes"].iloc[0])
    if P < 2:
        raise ValueError(f"calibrate_in_run: nodes = {P}; one node has no all-reduce to calibrate")
    n = float(df["n_bytes"].median())
    t_ns = float(df["seconds"].median()) * 1e9
    bw_ns = 2.0 * (P - 1) * n / (P * network.bandwidth_gbs)
    alpha = max(0.0, (t_ns - bw_ns) / (2.0 * (P - 1)))
    return Network(latency_ns=alpha, bandwidth_gbs=network.bandwidth_gbs)
