"""hwsim for ``decentralized``: simulated shared-memory nodes plus a network model.

Notes
-----
Chatterjee, Kungurtsev and Alistarh, "Scaling the Wild" (2022); the scheme's rules
(layout, data split, rounds, the in-place correction ``x += mean - snapshot``) are in
:mod:`workload.decentralized` and are the same as realrun's (:mod:`realrun.mpi`).

What is modelled
    * **One node** (``options.nodes == 1``): the run *is* ``hogwild`` on ``machine``, and
      :func:`simulate_decentralized` runs hwsim's exact engine on it (bit for bit the
      ``hogwild`` result, every interleaving included).
    * **Several nodes**: every node is a copy of ``machine`` running ``spec.threads``
      threads, one per core (no time slicing).  Thread w of node r processes its global
      worker's order; one sample on it takes ``m*read_cost + d + m*write_cost`` ticks
      (m = support size, d the next draw of that core's delay model from
      ``stream(seed, STREAM_CORE, r*T + w)``), and a thread's samples follow one another.
      A node's arithmetic applies its samples **one after the other in the order they end**
      (ties: lower thread first) with the serial ``sgd_pass`` kernel: inside a node there is
      no staleness and no coherence cost -- exact for one thread per node, an approximation
      of Hogwild!'s interleaving for more (run one node with ``hogwild`` for the exact one).
    * **Averaging rounds** (the communication thread): round k's snapshot of node r is taken
      when the node has finished ``k*A`` samples of the epoch, or when round k-1 completes if
      that is later (one round in flight); the snapshot holds every sample that ended at or
      before that tick.  The all-reduce starts when the last node has its snapshot and takes
      :meth:`Network.allreduce_ticks`; the correction lands at its completion tick, after
      every sample that ended at or before it (or at the epoch's end if the node finished
      earlier).  The epoch ends when every node has finished and every round has landed,
      plus one more all-reduce (the blocking final averaging, ``x_r <- mean``).
    * **Network**: ring all-reduce, ``2(P-1)(alpha + bytes/(P*beta))`` with
      ``alpha = latency_ns`` and ``beta = bandwidth_gbs`` (bytes per ns); the model is
      float64 (8 bytes a coordinate; fixed point int64).  No contention with the node's
      memory traffic, no overlap of one round with the next, no stragglers in the network.
      Calibrate alpha and beta with :func:`analysis.decentralized.fit_allreduce`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from workload.decentralized import Options, apply_correction, mean_state, node_orders, options, rounds_in_epoch
from workload.fixed import scale_of, to_state
from workload.schedule import schedule_args
from workload.serial import sgd_pass
from workload.spec import STREAM_CORE, stream
from workload.trace import SAMPLE_SCHEMA, empty

from .machine import Machine, check_fits
from .model import SimResult, history_frame

ROUNDS_COLS = ("epoch", "round", "t_snapshot_last", "t_start", "t_done", "n_bytes")


@dataclass(frozen=True, kw_only=True)
class Network:
    """The interconnect: latency alpha (ns per message) and bandwidth beta (GB/s = bytes/ns)."""

    latency_ns: float
    bandwidth_gbs: float

    @classmethod
    def from_options(cls, opts: Options) -> "Network":
        return cls(latency_ns=opts.latency_ns, bandwidth_gbs=opts.bandwidth_gbs)

    def allreduce_ns(self, n_bytes: float, nodes: int) -> float:
        """Ring all-reduce time in ns: 2(P-1)(alpha + n/(P beta)); 0 for one node."""
        if nodes <= 1:
            return 0.0
        return 2.0 * (nodes - 1) * (self.latency_ns + n_bytes / (nodes * self.bandwidth_gbs))

    def allreduce_ticks(self, n_bytes: float, nodes: int) -> int:
        return int(np.rint(self.allreduce_ns(n_bytes, nodes)))


class DecentralizedSim(NamedTuple):
    result: SimResult  # x = the (common) final model; samples empty; history per epoch
    rounds: pd.DataFrame  # ROUNDS_COLS, one row per averaging round (final ones: round = 0)
    node_seconds: np.ndarray  # per epoch, per node: simulated seconds of its last sample


def _node_schedule(spec, machine, opts, problem, epoch, r, t_begin, rngs):
    """Node r's samples in epoch: (terms, global t, end ticks) in the order they end."""
    T, W = opts.threads, opts.workers
    lens = np.diff(problem.terms.indptr)
    terms, ts, ends, thr = [], [], [], []
    for w, order in enumerate(node_orders(spec, opts, problem.terms.N, epoch, r)):
        d = machine.delay_of(w).sample(rngs[w], order.size).astype(np.int64)
        m = lens[order]
        dur = m * (machine.read_cost + machine.write_cost) + d
        terms.append(order)
        ts.append(np.arange(order.size, dtype=np.int64) * W + (r * T + w))
        ends.append(t_begin + np.cumsum(dur))
        thr.append(np.full(order.size, w))
    terms, ts, ends, thr = (np.concatenate(a) if a else np.empty(0, np.int64) for a in (terms, ts, ends, thr))
    k = np.lexsort((thr, ends))
    return (np.ascontiguousarray(terms[k], dtype=np.int64), np.ascontiguousarray(ts[k], dtype=np.int64),
            ends[k])


def simulate_decentralized(spec, machine: Machine, *, problem=None, network: Network | None = None,
                           engine: str = "fast", coord_trace: bool = True, with_opt: bool = False) -> DecentralizedSim:
    """Simulate a ``decentralized`` spec: ``nodes`` copies of ``machine`` plus ``network``.

    ``network`` defaults to the spec's ``latency_ns`` / ``bandwidth_gbs`` options.  See the
    module docstring for what is modelled.  ``engine`` and ``coord_trace`` apply to one
    node (hwsim's exact engine); with several nodes there is one model and no per-sample
    or coordinate trace (``samples`` empty, ``coords`` None).
    """
    opts = options(spec)
    net = Network.from_options(opts) if network is None else network
    if opts.nodes == 1:
        from . import simulate

        res = simulate(spec.replace(scheme="hogwild"), machine, problem=problem, engine=engine,
                       coord_trace=coord_trace, with_opt=with_opt)
        return DecentralizedSim(dataclasses.replace(res, spec=spec), pd.DataFrame(columns=list(ROUNDS_COLS)),
                                np.array([[res.ticks * 1e-9]]))
    check_fits(machine, opts.threads)
    if opts.threads > machine.cores:
        raise ValueError(f"hwsim decentralized: spec.threads = {opts.threads} (threads per node) > "
                         f"machine.cores = {machine.cores}; time slicing is not modelled across nodes: "
                         "use at most `cores` threads per node")
    if problem is None:
        from workload.build import build_problem

        problem = build_problem(spec)
    t = problem.terms
    P, A = opts.nodes, opts.average_every
    x0 = to_state(problem.initial_point(spec.seed), spec.dtype, spec.fixed_point_bits)
    xs = [x0.copy() for _ in range(P)]
    scale = scale_of(spec.fixed_point_bits)
    code, step0, beta, t0 = schedule_args(spec, t.N)
    n_bytes = x0.size * 8
    cost = net.allreduce_ticks(n_bytes, P)
    R = rounds_in_epoch(opts, t.N)
    rngs = [[stream(spec.seed, STREAM_CORE, r * opts.threads + w) for w in range(opts.threads)] for r in range(P)]
    now = 0
    checkpoints, rounds, node_secs = [], [], []
    samples_done = 0

    for epoch in range(spec.epochs):
        sched = [_node_schedule(spec, machine, opts, problem, epoch, r, now, rngs[r]) for r in range(P)]
        cur = [0] * P  # samples of each node applied so far

        def advance(r, upto):
            terms, ts, _ = sched[r]
            if upto > cur[r]:
                sgd_pass(problem.update, problem.params, problem.aux, t.indptr, t.indices, t.values, t.y,
                         terms[cur[r]:upto], ts[cur[r]:upto], xs[r], code, step0, beta, t0, epoch, scale)
                cur[r] = upto

        done_prev = now
        for k in range(1, R + 1):
            snaps_t = [max(int(sched[r][2][k * A - 1]), done_prev) for r in range(P)]
            start = max(snaps_t)
            done = start + cost
            snaps = []
            for r in range(P):  # the snapshot holds every sample that ended by its tick
                advance(r, int(np.searchsorted(sched[r][2], snaps_t[r], side="right")))
                snaps.append(xs[r].astype(np.int64 if xs[r].dtype == np.int64 else np.float64))
            mean = mean_state(np.sum(snaps, axis=0), P, xs[0].dtype)
            for r in range(P):  # the correction lands after every sample that ended by `done`
                advance(r, int(np.searchsorted(sched[r][2], done, side="right")))
                apply_correction(xs[r], mean - snaps[r])
            rounds.append((epoch, k, start, start, done, n_bytes))
            done_prev = done
        for r in range(P):
            advance(r, sched[r][0].size)
        last = max([int(s[2][-1]) if s[2].size else now for s in sched] + [done_prev])
        mean = mean_state(np.sum([x.astype(np.int64 if x.dtype == np.int64 else np.float64) for x in xs], axis=0),
                          P, xs[0].dtype).astype(xs[0].dtype)
        for r in range(P):
            xs[r][:] = mean
        rounds.append((epoch, 0, last, last, last + cost, n_bytes))
        node_secs.append([(int(s[2][-1]) - now) * 1e-9 if s[2].size else 0.0 for s in sched])
        now = last + cost
        samples_done += t.N
        checkpoints.append((epoch + 1, samples_done, now, xs[0].copy()))

    history = history_frame(problem, spec, x0, checkpoints, with_opt)
    res = SimResult(x=xs[0], samples=empty(SAMPLE_SCHEMA), coords=None, order=None, history=history, ticks=int(now),
                    lost_updates=0, engine="decentralized", machine=machine, spec=spec, x0=x0)
    return DecentralizedSim(res, pd.DataFrame(rounds, columns=list(ROUNDS_COLS)).astype("int64"),
                            np.asarray(node_secs))
