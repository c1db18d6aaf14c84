"""The ``decentralized`` scheme: nodes of shared-memory Hogwild! with non-blocking averaging.

Notes
-----
Chatterjee, Kungurtsev and Alistarh, "Scaling the Wild: Decentralizing Hogwild!-style
Shared-memory SGD" (2022).  Every *node* runs lock-free Hogwild! on its own copy of the
model with ``spec.threads`` threads; a node's communication agent periodically takes a
snapshot s_r of its model, starts an all-reduce of the snapshots and, when it completes,
applies the averaged correction **in place**::

    x_r <- x_r + (mean_r' s_r' - s_r)

so every local update made between the snapshot and the correction is kept (the paper's
non-blocking averaging; a plain ``x_r <- mean`` would throw that progress away).  At every
epoch end all nodes stop at a barrier and set ``x_r <- mean_r' x_r'``, so after the final
averaging every node holds the same model.

Layout and data split (the one definition both engines use)
    ``spec.threads`` is the number of threads **per node**; the run has
    ``W = nodes * threads`` workers.  Epoch e's orders are
    ``worker_orders(spec, N, e, workers=W)``; node r runs workers ``r*T .. r*T+T-1``
    (global worker id g = r*T + w) and the sample at position i of worker g has the global
    sequence number ``t = i*W + g`` for the step schedule.  With one node this is exactly
    ``hogwild``'s split and schedule, which is why ``nodes = 1`` reproduces ``hogwild``
    bit for bit.

Averaging rounds
    ``average_every`` = A counts a node's local steps (samples finished by all its threads
    together) between snapshots.  In epoch e node r starts round k (k = 1..R_e) once it has
    finished k*A samples of the epoch, where ``R_e = ceil(M_e / A) - 1`` and M_e is the
    smallest node's sample count in the epoch (so every node reaches every round and all
    ranks issue the same number of collectives); one round is in flight at a time.
    ``average_every = 0`` (the default) averages at epoch ends only.

Options (``spec.options``; validated in :func:`options`)
    ``nodes`` (int >= 1, default 1), ``average_every`` (int >= 0, default 0),
    ``latency_ns`` (float >= 0, default 5000) and ``bandwidth_gbs`` (float > 0, GB/s,
    default 10): the network model hwsim uses (:mod:`hwsim.decentralized`).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .order import split_sizes, worker_orders
from .spec import RunSpec, SpecError

DEFAULT_LATENCY_NS = 5000.0
DEFAULT_BANDWIDTH_GBS = 10.0
OPTION_NAMES = ("nodes", "average_every", "latency_ns", "bandwidth_gbs")


class Options(NamedTuple):
    nodes: int  # MPI ranks / simulated machines
    threads: int  # threads per node (spec.threads)
    average_every: int  # local steps of a node between snapshots; 0 = epoch ends only
    latency_ns: float  # network latency alpha (hwsim)
    bandwidth_gbs: float  # network bandwidth beta in GB/s = bytes per ns (hwsim)

    @property
    def workers(self) -> int:
        return self.nodes * self.threads


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def options(spec: RunSpec) -> Options:
    """The decentralized options of ``spec``, checked here and nowhere else."""
    if spec.scheme != "decentralized":
        raise SpecError("scheme", spec.scheme, "decentralized options belong to scheme 'decentralized'",
                        "set scheme = 'decentralized'")
    o = spec.options
    nodes = o.get("nodes", 1)
    if not _is_int(nodes) or nodes < 1:
        raise SpecError("options.nodes", nodes, "must be an integer >= 1 (MPI ranks / simulated machines)",
                        "set options.nodes = 1 or more")
    every = o.get("average_every", 0)
    if not _is_int(every) or every < 0:
        raise SpecError("options.average_every", every,
                        "must be an integer >= 0 (a node's local steps between averagings; 0 = epoch ends only)",
                        "set options.average_every = 0 or a positive sample count, e.g. 256")
    lat = o.get("latency_ns", DEFAULT_LATENCY_NS)
    if isinstance(lat, bool) or not isinstance(lat, (int, float, np.integer, np.floating)) \
            or not math.isfinite(lat) or lat < 0:
        raise SpecError("options.latency_ns", lat, "must be a finite number >= 0 (ns per message)",
                        f"set options.latency_ns = {DEFAULT_LATENCY_NS:g}")
    bw = o.get("bandwidth_gbs", DEFAULT_BANDWIDTH_GBS)
    if isinstance(bw, bool) or not isinstance(bw, (int, float, np.integer, np.floating)) \
            or not math.isfinite(bw) or bw <= 0:
        raise SpecError("options.bandwidth_gbs", bw, "must be a finite number > 0 (GB/s)",
                        f"set options.bandwidth_gbs = {DEFAULT_BANDWIDTH_GBS:g}")
    if spec.write_mode not in ("rmw", "atomic"):  # pragma: no cover -- RunSpec.validate checks it
        raise SpecError("write_mode", spec.write_mode, "must be rmw or atomic", "set write_mode = 'rmw'")
    return Options(int(nodes), int(spec.threads), int(every), float(lat), float(bw))


def node_orders(spec: RunSpec, opts: Options, n_terms: int, epoch: int, node: int) -> list[np.ndarray]:
    """Node ``node``'s per-thread orders in ``epoch`` (global workers node*T .. node*T+T-1)."""
    allw = worker_orders(spec, n_terms, epoch, workers=opts.workers)
    T = opts.threads
    return [np.ascontiguousarray(o, dtype=np.int64) for o in allw[node * T:(node + 1) * T]]


def rounds_in_epoch(opts: Options, n_terms: int) -> int:
    """R: the number of mid-epoch averaging rounds every node runs (same on every node)."""
    if opts.average_every == 0 or opts.nodes == 1:
        return 0
    sizes = split_sizes(n_terms, opts.workers).reshape(opts.nodes, opts.threads).sum(axis=1)
    m = int(sizes.min())
    return max(0, -(-m // opts.average_every) - 1)


def ring_allreduce_seconds(n_bytes: float, nodes: int, latency_s: float, bandwidth_bps: float) -> float:
    """Ring all-reduce time 2(P-1)(alpha + n_bytes/(P*beta)) (0 for one node).

    Notes: reduce-scatter then all-gather, each P-1 steps moving n/P bytes (Patarasuk and
    Yuan 2009; Thakur, Rabenseifner and Gropp 2005, the bandwidth-optimal all-reduce).
    """
    if nodes <= 1:
        return 0.0
    return 2.0 * (nodes - 1) * (latency_s + n_bytes / (nodes * bandwidth_bps))


def mean_state(total: np.ndarray, nodes: int, state_dtype) -> np.ndarray:
    """The averaged model from the all-reduced sum, in the state's arithmetic.

    Floats: ``total / nodes`` in float64.  Fixed point: ``rint(total / nodes)`` as int64
    (the grid's nearest point).  Both engines use this one rule.
    """
    if np.dtype(state_dtype) == np.int64:
        return np.rint(total / nodes).astype(np.int64)
    return np.asarray(total, dtype=np.float64) / nodes


def apply_correction(x: np.ndarray, corr: np.ndarray) -> None:
    """``x += corr`` in place, only where ``corr != 0``, rounded to x's dtype (the add_value rule).

    Untouched coordinates keep their exact bits (a one-node run's zero correction changes
    nothing, not even the sign of a zero).
    """
    nz = np.flatnonzero(corr)
    if nz.size == 0:
        return
    if x.dtype == np.float32:
        x[nz] = (x[nz].astype(np.float64) + corr[nz]).astype(np.float32)
    else:
        x[nz] += corr[nz].astype(x.dtype)
