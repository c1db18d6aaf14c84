"""hwsim: a simulated shared-memory machine running asynchronous SGD, exactly.

The model (full rules: :mod:`hwsim.model`)
    Integer ticks (1 ns).  Each thread processes its worker's order; one sample = read
    each support coordinate in index order (``read_cost`` each, plus ``coherence_cost``
    when another core stored to that cache line since this core last touched it), compute
    (a delay drawn from the core's :mod:`delay model <hwsim.delays>`), write each
    coordinate (``write_cost`` each, same miss rule) as an atomic add or a non-atomic
    read-modify-write (lost updates counted).  Locks / turns for the lock schemes and
    round-robin; OS time slicing when there are more threads than cores; a barrier at
    every epoch end.  Pending events run in ``(tick, core)`` order, every wait ends in a
    new event, and timing never depends on values -- so a seed fixes the whole run, and
    the schedule could be computed without doing any arithmetic.

The engines
    * ``engine="reference"`` (:mod:`hwsim.reference`): SimPy processes, one event per
      coordinate access; slow, plain: the specification.
    * ``engine="fast"`` (:mod:`hwsim.fast`, the default): the same rules as one jitted
      event loop (a tournament tree over cores picks the next ``(tick, core)``) that does
      the arithmetic in place with the same ``workload.fixed`` functions and the problem's
      own ``update`` kernel.  Identical sample / coordinate traces, memory order and
      bit-identical final models (property-tested); roughly 60-80x the reference's
      coordinate events per second (``benchmarks/bench_hwsim.py``), about 10^7 events/s at
      16 cores.  Every scheme hwsim supports -- the lock schemes included -- runs on both
      engines, so ``engine="fast"`` never falls back.

Extras beyond the contract
    ``SimResult.order`` (memory-operation numbers aligned with ``coords``: the exact total
    order of reads, rmw reads and stores, which :mod:`hwsim.checks` uses) and
    ``SimResult.x0`` (the initial model).  The coordinate trace is kept in memory or turned
    off (``coord_trace=False``); it is not streamed to Parquet.

Use
    ``simulate(spec, machine)`` -> :class:`SimResult`; checks of the theory's assumptions on
    a result are in :mod:`hwsim.checks`; ``trace_hash(result)`` fingerprints a run.

Units: ticks everywhere; ``history.time`` in simulated seconds (ticks · 1e-9).
"""
from __future__ import annotations

import hashlib

import numpy as np

from . import delays
from .delays import (Constant, DelayModel, Empirical, Exponential, LogNormal, ShiftedExponential, StragglerMixture,
                     delay_from_dict)
from .machine import Machine, MachineError, check_fits
from .model import SCHEMES as SUPPORTED_SCHEMES
from .model import SimResult, history_frame, scheme_code

ENGINES = ("fast", "reference")


def simulate(spec, machine: Machine, *, problem=None, engine: str = "fast", coord_trace: bool = True,
             with_opt: bool = False) -> SimResult:
    """Simulate ``spec`` on ``machine``.

    Parameters
    ----------
    spec : workload.spec.RunSpec
        The run (scheme, threads, epochs, step schedule, order, dtype, seed).
    machine : Machine
        Cores, costs, delays, coherence, time slicing.
    problem : workload.problems.Problem, optional
        Built with ``workload.build.build_problem(spec)`` when None.
    engine : {"fast", "reference"}
        Which engine runs (both produce identical results).
    coord_trace : bool
        Keep the coordinate-level trace (one row per coordinate access pair; large for
        long runs).  The sample-level trace is always kept.
    with_opt : bool
        Fill ``history.dist2_opt`` with ‖x − x*‖² where the problem can give x*.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine = {engine!r}: must be one of {', '.join(ENGINES)}; use 'fast' (default) or "
                         "'reference' (the SimPy specification)")
    if not isinstance(machine, Machine):
        raise TypeError(f"machine = {machine!r}: must be a hwsim.Machine; build one with hwsim.Machine(cores=..., ...)")
    if spec.scheme == "minibatch-sync":  # barrier per step: hwsim.sync (its own rules and engines)
        from .sync import simulate_sync

        return simulate_sync(spec, machine, problem=problem, engine=engine, coord_trace=coord_trace, with_opt=with_opt)
    if spec.scheme == "buckwild":  # fixed-point integers: hwsim.buckwild (hogwild-atomic schedule, integer replay)
        from .buckwild import simulate_buckwild

        return simulate_buckwild(spec, machine, problem=problem, engine=engine, coord_trace=coord_trace,
                                 with_opt=with_opt)
    if spec.scheme == "decentralized":  # nodes + network model: hwsim.decentralized
        from .decentralized import simulate_decentralized

        return simulate_decentralized(spec, machine, problem=problem, engine=engine, coord_trace=coord_trace,
                                      with_opt=with_opt).result
    if spec.scheme == "cyclades":  # conflict-free batches: hwsim.cyclades (its own loop and engines)
        from .cyclades import simulate_cyclades

        return simulate_cyclades(spec, machine, problem=problem, engine=engine, coord_trace=coord_trace,
                                 with_opt=with_opt)
    scheme_code(spec)  # NotImplementedError for unsupported schemes, before any work
    check_fits(machine, spec.threads)
    if problem is None:
        from workload.build import build_problem

        problem = build_problem(spec)
    if engine == "reference":
        from .reference import run_reference

        sim = run_reference(spec, machine, problem, coord_trace)
        samples = sim.S.frame()
        coords, order = sim.C.frames() if sim.C is not None else (None, None)
        history = history_frame(problem, spec, sim.x0, sim.checkpoints, with_opt)
        return SimResult(x=sim.x, samples=samples, coords=coords, order=order, history=history, ticks=int(sim.ticks),
                         lost_updates=int(sim.lost_updates), engine="reference", machine=machine, spec=spec,
                         x0=sim.x0)
    from .fast import run_fast

    return run_fast(spec, machine, problem, coord_trace=coord_trace, with_opt=with_opt)


def trace_hash(result: SimResult) -> str:
    """SHA-256 over the final model, the sample trace and (when kept) the coordinate trace."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(result.x).tobytes())
    for df in (result.samples, result.coords, result.order):
        if df is None:
            h.update(b"none")
            continue
        for c in df.columns:
            h.update(c.encode())
            h.update(np.ascontiguousarray(df[c].to_numpy()).tobytes())
    h.update(str(result.ticks).encode())
    h.update(str(result.lost_updates).encode())
    return h.hexdigest()


__all__ = ["simulate", "trace_hash", "SimResult", "Machine", "MachineError", "delays", "DelayModel", "Constant",
           "Exponential", "ShiftedExponential", "LogNormal", "Empirical", "StragglerMixture", "delay_from_dict",
           "ENGINES", "SUPPORTED_SCHEMES"]
