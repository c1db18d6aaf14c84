"""hwsim: a simulated shared-memory machine running asynchronous SGD, exactly.

The model (full rules: :mod:`hwsim.model`)
    Integer ticks (1 ns).  Each thread processes its worker's order; one sample = read
    each support coordinate in index order (``read_cost`` each, plus ``coherence_cost``
    when another core stored to that cache line since this core last touched it), compute
    (a delay drawn from the core's :mod:`delay model <hwsim.delays>`), write each
    coordinate (``write_cost`` each, same miss rule) as an atomic add or a non-atomic
    read-modify-write (lost updates counted); an atomic-instruction store takes
    ``atomic_write_cost`` and misses for ``atomic_coherence_cost``, a plain store misses for
    ``store_coherence_cost`` (0: the core does not wait for it); a sample may hide up to
    ``miss_overlap`` ticks of its misses under its own memory stalls.  Locks / turns for the
    lock schemes and round-robin (``lock_cost`` per lock taken); OS time slicing when there
    are more threads than cores; a barrier at every epoch end.  Pending events run in
    ``(tick, core)`` order, every wait ends in a new event, and timing never depends on
    values -- so a seed fixes the whole run, and the schedule could be computed without
    doing any arithmetic.

The engines
    * ``engine="reference"`` (:mod:`hwsim.reference`): SimPy processes, one event per
      coordinate access; slow, plain: the specification.
    * ``engine="fast"`` (:mod:`hwsim.fast`, the default): the same rules as one jitted
      event loop (a tournament tree over cores picks the next ``(tick, core)``) that does
      the arithmetic in place with the same ``workload.fixed`` functions and the problem's
      own ``update`` kernel.  Identical sample / coordinate traces, memory order and
      bit-identical final models (property-tested); 98-130x the reference's coordinate
      events per second with the coordinate trace off and 64-97x with it kept in memory
      (``benchmarks/bench_hwsim.py``, 4 and 16 cores, over several sessions on one core
      of a shared VM; the in-memory trace's ~73 bytes per row are fresh memory, whose
      page faults set most of that gap).  Every scheme hwsim supports -- the lock schemes included --
      runs on both engines, so ``engine="fast"`` never falls back.

Extras beyond the contract
    ``SimResult.order`` (memory-operation numbers aligned with ``coords``: the exact total
    order of reads, rmw reads and stores, which :mod:`hwsim.checks` uses) and
    ``SimResult.x0`` (the initial model).  The coordinate trace is kept in memory
    (``coord_trace=True``), turned off (``False``) or streamed in chunks to a Parquet file
    (``coord_trace="coords.parquet"``, :mod:`hwsim.coordtrace`).

Use
    ``simulate(spec, machine)`` -> :class:`SimResult`; checks of the theory's assumptions on
    a result are in :mod:`hwsim.checks`; ``trace_hash(result)`` fingerprints a run.

Units: ticks everywhere; ``history.time`` in simulated seconds (ticks · 1e-9).
"""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from workload.trace import COORD_SCHEMA

from . import delays
from .coordtrace import (CoordTraceFile, CoordTraceWriter, coord_trace_option, file_columns, iter_column,
                         read_coord_trace)
from .delays import (Constant, DelayModel, Empirical, Exponential, LogNormal, ShiftedExponential, StragglerMixture,
                     delay_from_dict)
from .machine import Machine, MachineError, check_fits
from .model import SCHEMES as SUPPORTED_SCHEMES
from .model import ORDER_SCHEMA, SimResult, history_frame, scheme_code

#: schemes whose result has no coordinate-level trace (decentralized nodes exchange whole models)
NO_COORD_TRACE = ("decentralized",)

ENGINES = ("fast", "reference")
#: schemes with their own sample rules (hwsim.sync, hwsim.cyclades), which do not model
#: the Machine fields of PER_SAMPLE_ONLY
OWN_SAMPLE_RULES = ("minibatch-sync", "cyclades")
#: Machine fields that are rules of the per-sample schemes only, with the value that turns each off
PER_SAMPLE_ONLY = {"miss_overlap": 0, "store_coherence_cost": None}


def simulate(spec, machine: Machine, *, problem=None, engine: str = "fast", coord_trace=True,
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
    coord_trace : bool, str, os.PathLike or CoordTraceFile
        True: keep the coordinate-level trace in memory (``result.coords`` and
        ``result.order``; one row per support coordinate of each sample -- large for long
        runs).  False: do not record it.  A ``*.parquet`` path (or a
        :class:`~hwsim.coordtrace.CoordTraceFile` with the chunk size and codec): stream it
        to that file in chunks, atomically (:mod:`hwsim.coordtrace`); ``result.coords_path``
        names the file and ``result.coord_frames()`` reads it back.  The fast engine keeps
        only one chunk in memory; the reference engine and the schemes with their own
        engines build the trace in memory and then write the same file.  The sample-level
        trace is always kept.
    with_opt : bool
        Fill ``history.dist2_opt`` with ‖x − x*‖² where the problem can give x*.
    """
    keep, target = coord_trace_option(coord_trace)
    if target is not None and spec.scheme in NO_COORD_TRACE:  # say so before the run, not after it
        raise ValueError(f"coord_trace = {str(target.path)!r}: scheme {spec.scheme!r} records no coordinate-level "
                         "trace; use coord_trace=False")
    if target is not None and not (engine == "fast" and spec.scheme in SUPPORTED_SCHEMES):
        # these engines build the trace in memory: run with it, then write the same file
        res = simulate(spec, machine, problem=problem, engine=engine, coord_trace=True, with_opt=with_opt)
        if res.coords is None:
            raise ValueError(f"coord_trace = {str(target.path)!r}: scheme {spec.scheme!r} records no coordinate-level "
                             "trace; use coord_trace=False")
        with CoordTraceWriter(target, with_order=res.order is not None) as w:
            w.write_frames(res.coords, res.order)
            path = w.close()
        return dataclasses.replace(res, coords=None, order=None, coords_path=path)
    if engine not in ENGINES:
        raise ValueError(f"engine = {engine!r}: must be one of {', '.join(ENGINES)}; use 'fast' (default) or "
                         "'reference' (the SimPy specification)")
    if not isinstance(machine, Machine):
        raise TypeError(f"machine = {machine!r}: must be a hwsim.Machine; build one with hwsim.Machine(cores=..., ...)")
    for name, off in PER_SAMPLE_ONLY.items() if spec.scheme in OWN_SAMPLE_RULES else ():
        if getattr(machine, name) != off:
            raise MachineError(name, getattr(machine, name),
                               f"a rule of the per-sample schemes; {spec.scheme!r} has its own sample structure "
                               "(hwsim.sync / hwsim.cyclades) that does not model it",
                               f"simulate it with machine.replace({name}={off!r})")
    if spec.scheme == "minibatch-sync":  # barrier per step: hwsim.sync (its own rules and engines)
        from .sync import simulate_sync

        return simulate_sync(spec, machine, problem=problem, engine=engine, coord_trace=keep, with_opt=with_opt)
    # fixed-point integers: hwsim.buckwild replays the float engine's hogwild schedule (for
    # spec.write_mode) on the integer model
    if spec.scheme == "buckwild":
        from .buckwild import simulate_buckwild

        return simulate_buckwild(spec, machine, problem=problem, engine=engine, coord_trace=keep,
                                 with_opt=with_opt)
    if spec.scheme == "decentralized":  # nodes + network model: hwsim.decentralized
        from .decentralized import simulate_decentralized

        return simulate_decentralized(spec, machine, problem=problem, engine=engine, coord_trace=keep,
                                      with_opt=with_opt).result
    if spec.scheme == "cyclades":  # conflict-free batches: hwsim.cyclades (its own loop and engines)
        from .cyclades import simulate_cyclades

        return simulate_cyclades(spec, machine, problem=problem, engine=engine, coord_trace=keep,
                                 with_opt=with_opt)
    scheme_code(spec)  # NotImplementedError for unsupported schemes, before any work
    check_fits(machine, spec.threads)
    if problem is None:
        from workload.build import build_problem

        problem = build_problem(spec)
    if engine == "reference":
        from .reference import run_reference

        sim = run_reference(spec, machine, problem, keep)
        samples = sim.S.frame()
        coords, order = sim.C.frames() if sim.C is not None else (None, None)
        history = history_frame(problem, spec, sim.x0, sim.checkpoints, with_opt)
        return SimResult(x=sim.x, samples=samples, coords=coords, order=order, history=history, ticks=int(sim.ticks),
                         lost_updates=int(sim.lost_updates), engine="reference", machine=machine, spec=spec,
                         x0=sim.x0)
    from .fast import run_fast

    if target is None:
        return run_fast(spec, machine, problem, coord_trace=keep, with_opt=with_opt)
    with CoordTraceWriter(target) as w:
        res = run_fast(spec, machine, problem, with_opt=with_opt, sink=w)
        path = w.close()
    return dataclasses.replace(res, coords_path=path)


def trace_hash(result: SimResult) -> str:
    """SHA-256 over the final model, the sample trace and (when kept) the coordinate trace.

    A coordinate trace streamed to a file is read back column by column in batches (bounded
    memory) and hashes exactly as the same trace kept in memory."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(result.x).tobytes())
    for df, schema in ((result.samples, None), (result.coords, COORD_SCHEMA), (result.order, ORDER_SCHEMA)):
        if df is not None:
            for c in df.columns:
                h.update(c.encode())
                h.update(np.ascontiguousarray(df[c].to_numpy()).tobytes())
        elif schema is not None and result.coords_path is not None and set(schema) <= file_columns(
                result.coords_path):
            for c, t in schema.items():
                h.update(c.encode())
                for part in iter_column(result.coords_path, c):
                    h.update(np.ascontiguousarray(part.astype(t, copy=False)).tobytes())
        else:
            h.update(b"none")
    h.update(str(result.ticks).encode())
    h.update(str(result.lost_updates).encode())
    return h.hexdigest()


__all__ = ["simulate", "NO_COORD_TRACE", "trace_hash", "SimResult", "CoordTraceFile", "read_coord_trace", "Machine", "MachineError",
           "delays", "DelayModel", "Constant",
           "Exponential", "ShiftedExponential", "LogNormal", "Empirical", "StragglerMixture", "delay_from_dict",
           "ENGINES", "SUPPORTED_SCHEMES"]
