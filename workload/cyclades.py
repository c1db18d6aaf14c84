"""Cyclades: conflict-free batches, their schedule onto cores, and the serial order a run equals.

Pan et al., "Cyclades: Conflict-free Asynchronous Machine Learning", NIPS 2016.  An epoch's
visit order is cut into batches; within a batch, terms whose supports meet are adjacent in
the *conflict graph* (Mania et al.'s graph, restricted to the batch); each connected
component is processed serially, in its batch order, by one core; components go to cores
largest first; a barrier separates batches.  Components of one batch touch disjoint
coordinates, so the run is *serially equivalent*: its output is that of serial SGD on one
permutation of the sampled terms (the framework's central property; arXiv:1605.09721).

Everything both engines share lives here, so hwsim and realrun process the same batches,
the same components and the same per-core lists:

Batches (:func:`epoch_order`, :func:`batch_bounds`)
    The epoch's order is ``workload.order.worker_orders(spec, N, epoch, workers=1)[0]``
    (the spec's visit order for one worker, whatever ``spec.threads``), cut into
    consecutive batches of ``options.batch_size`` terms (the last may be shorter).
    Pan et al. sample each batch uniformly at random; a shuffle order gives batches
    sampled without replacement, ``with-replacement`` with.
Components (:func:`batch_schedule`, jitted)
    Union-find over the batch's terms: the first term to touch a coordinate owns it, every
    later term touching it is united with the owner (so terms are united exactly when a
    path of shared coordinates joins them).  A component is named by its root, its first
    term in batch order (union by smaller index; path halving).
Load balancing
    Component weight = Σ over its terms of (support size + 1), a sample's cost in either
    engine up to constants.  Components sorted by weight, heaviest first, ties by batch
    position; each goes to the least-loaded core so far (ties: lowest core) -- the greedy
    longest-processing-time rule, the simple greedy allocation of components to cores
    that Pan et al. describe.  A core processes its components in that
    order, each component's terms in batch order.
The equivalent serial order and the steps
    The recorded permutation is the epoch's order itself, batch by batch (one of the orders
    the run is equivalent to: every order that keeps each component's internal order is,
    because components of one batch share no coordinate).  The term at epoch position ``i``
    gets ``γ = step_at(code, γ_0, β, t0, epoch, t=i)``, the step serial SGD gives it.  So
    a Cyclades run equals :func:`workload.serial.serial_sgd` of the same spec on one thread
    bit for bit, at any thread count; :func:`serial_replay` (the plain Python oracle) and
    :func:`replay` (jitted) replay any permutation with explicit steps.
Fixed orders
    With ``order = "fixed-shuffle"`` every epoch has the same batches, so the schedule is
    found once, in epoch 0, and reused (:func:`reuses_schedule`).

Options (``spec.options``, validated in :func:`cyclades_options`)
    ``batch_size`` (int >= 1, default :data:`DEFAULT_BATCH_SIZE`); hwsim's
    ``barrier_cost`` (ticks from a barrier's last arrival to its release, int >= 0, default
    0) and ``component_cost`` (ticks per support entry plus per term when finding a batch's
    components, float >= 0, default 0); ``verify`` (bool, default True: both engines
    replay the recorded permutation after the run and raise
    :class:`SerialEquivalenceError` unless the model is bit-identical).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd
from numba import njit

from .fixed import add_value, encode_delta, read_value, scale_of, to_state
from .order import worker_orders
from .problems.base import Problem
from .schedule import schedule_args, step_at
from .spec import RunSpec, SpecError

DEFAULT_BATCH_SIZE = 1000


class CycladesOptions(NamedTuple):
    batch_size: int  # terms per batch
    barrier_cost: int  # hwsim: ticks from a barrier's last arrival to its release
    component_cost: float  # hwsim: ticks per (support entry + term) of a batch to find its components
    verify: bool  # replay the permutation after the run and require a bit-identical model


class SerialEquivalenceError(AssertionError):
    """A Cyclades run's model differs from serial SGD over its recorded permutation."""


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def cyclades_options(spec: RunSpec) -> CycladesOptions:
    """The Cyclades options of ``spec.options``, checked (the one place they are)."""
    o = spec.options
    b = o.get("batch_size", DEFAULT_BATCH_SIZE)
    if not _is_int(b) or b < 1:
        raise SpecError("options.batch_size", b, "must be an integer >= 1 (terms per conflict-free batch)",
                        f"set options.batch_size to a positive integer, e.g. {DEFAULT_BATCH_SIZE}, or see "
                        "workload.cyclades.suggest_batch_size(problem.terms)")
    bc = o.get("barrier_cost", 0)
    if not _is_int(bc) or bc < 0:
        raise SpecError("options.barrier_cost", bc, "must be an integer >= 0 (hwsim ticks per batch barrier)",
                        "set options.barrier_cost = 0 (free barriers) or a measured barrier time in ns")
    cc = o.get("component_cost", 0)
    if isinstance(cc, (bool, np.bool_)) or not isinstance(cc, (int, float, np.integer, np.floating)) \
            or not math.isfinite(cc) or cc < 0:
        raise SpecError("options.component_cost", cc, "must be a finite number >= 0 (hwsim ticks per support "
                        "entry and per term when finding a batch's components)",
                        "set options.component_cost = 0 (free) or realrun's measured ns per entry")
    v = o.get("verify", True)
    if not isinstance(v, (bool, np.bool_)):
        raise SpecError("options.verify", v, "must be true or false",
                        "set options.verify = true (check serial equivalence after every run)")
    return CycladesOptions(int(b), int(bc), float(cc), bool(v))


def suggest_batch_size(terms, eps: float = 0.5) -> int:
    """Pan et al.'s batch size ⌊(1 − ε)·N / Δ_C⌋, under which their phase-transition theorem
    gives components of size O(log N / ε²) with high probability.

    Δ_C, the conflict graph's largest degree, is bounded from above by
    max_e Σ_{j ∈ e} (d_j − 1) (d_j: terms containing coordinate j), so the batch returned is
    no larger than the theorem's.
    """
    if not (0 < eps < 1):
        raise ValueError(f"eps = {eps!r}: must be in (0, 1); use e.g. 0.5")
    d = terms.degrees()
    per_entry = np.append((d[terms.indices] - 1).astype(np.int64), 0)  # the 0: rows may end empty
    bound = np.where(np.diff(terms.indptr) > 0, np.add.reduceat(per_entry, terms.indptr[:-1]), 0)
    delta = int(bound.max()) if bound.size else 0
    return max(1, int((1 - eps) * terms.N / max(delta, 1)))


# --------------------------------------------------------------------------------------
# Batches, components, balancing
# --------------------------------------------------------------------------------------
def epoch_order(spec: RunSpec, n_terms: int, epoch: int) -> np.ndarray:
    """The epoch's visit order for one worker (int64, C-contiguous): the batches, in order."""
    return np.ascontiguousarray(worker_orders(spec, n_terms, epoch, workers=1)[0], dtype=np.int64)


def batch_bounds(size: int, batch_size: int) -> np.ndarray:
    """Start positions of the batches of an epoch of ``size`` terms, and ``size`` (int64)."""
    return np.append(np.arange(0, size, batch_size, dtype=np.int64), np.int64(size))


_LOW32 = np.int64(0xFFFFFFFF)


@njit(nogil=True, inline="always")
def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(nogil=True)
def batch_schedule(indptr, indices, order, lo, hi, cores, tag, sv, work, core_ptr, comp):
    """Components of the batch ``order[lo:hi]`` and their cores (module docstring).

    Scratch: ``tag`` (int64, one per coordinate): ``sv << 32 | owner`` where the batch
    stamped ``sv`` (>= 0, < 2**31, not used before on this ``tag``) met the coordinate
    first, ``owner`` being a term of the owner's component (batch index).  Writes
    ``work[lo:hi]`` (epoch positions, core 0's list first, each core's components
    heaviest first, each component's terms in batch order),
    ``core_ptr[0..cores]`` (core c's list is ``work[core_ptr[c]:core_ptr[c+1]]``) and
    ``comp[lo:hi]`` (each position's component root, as an epoch position).  Returns the
    number of components.
    """
    m = hi - lo
    tagged = np.int64(sv) << 32
    parent = np.arange(m)
    rlo = np.empty(m, dtype=np.int64)
    rhi = np.empty(m, dtype=np.int64)
    for i in range(m):  # independent loads first: the rows' misses overlap
        e = order[lo + i]
        rlo[i] = indptr[e]
        rhi[i] = indptr[e + 1]
    for i in range(m):
        ri = i  # i's root, kept current: roots only ever move to smaller indices
        for q in range(rlo[i], rhi[i]):
            j = indices[q]
            tj = tag[j]
            if (tj >> 32) != sv:
                tag[j] = tagged | ri
            else:
                b = tj & _LOW32
                if b == ri:  # already in i's component (common on dense data)
                    continue
                b = _find(parent, b)
                if ri < b:
                    parent[b] = ri
                elif b < ri:
                    parent[ri] = b
                    ri = b
                tag[j] = tagged | ri  # later visits start at the merged root
    weight = np.zeros(m, dtype=np.int64)
    size = np.zeros(m, dtype=np.int64)
    nroots = 0
    for i in range(m):  # parent[i] := root (the smallest batch index of i's component)
        r = _find(parent, i)
        parent[i] = r
        weight[r] += rhi[i] - rlo[i] + 1
        size[r] += 1
        if r == i:
            nroots += 1
    roots = np.empty(nroots, dtype=np.int64)
    neg = np.empty(nroots, dtype=np.int64)
    k = 0
    for i in range(m):
        if parent[i] == i:
            roots[k] = i
            neg[k] = -weight[i]
            k += 1
    rank = np.argsort(neg, kind="mergesort")  # heaviest first; stable: ties by batch position
    load = np.zeros(cores, dtype=np.int64)
    count = np.zeros(cores, dtype=np.int64)
    core_of = np.empty(m, dtype=np.int64)
    for t in range(nroots):
        r = roots[rank[t]]
        c = 0
        for cc in range(1, cores):
            if load[cc] < load[c]:
                c = cc
        core_of[r] = c
        load[c] += weight[r]
        count[c] += size[r]
    core_ptr[0] = lo
    for c in range(cores):
        core_ptr[c + 1] = core_ptr[c] + count[c]
    cursor = np.empty(cores, dtype=np.int64)
    for c in range(cores):
        cursor[c] = core_ptr[c]
    start = np.empty(m, dtype=np.int64)  # the next free slot of each component
    for t in range(nroots):
        r = roots[rank[t]]
        c = core_of[r]
        start[r] = cursor[c]
        cursor[c] += size[r]
    for i in range(m):
        r = parent[i]
        work[start[r]] = lo + i
        start[r] += 1
        comp[lo + i] = lo + r
    return nroots


@njit(nogil=True)
def schedule_batches(indptr, indices, order, bounds, cores, tag, stamp_base, work, core_ptr, comp, first, step):
    """:func:`batch_schedule` for batches ``first, first + step, ...`` (stamps ``stamp_base + b``)."""
    ncomp = 0
    for b in range(first, bounds.size - 1, step):
        ncomp += batch_schedule(indptr, indices, order, bounds[b], bounds[b + 1], cores, tag, stamp_base + b,
                                work, core_ptr[b], comp)
    return ncomp


class EpochSchedule(NamedTuple):
    """One epoch's Cyclades schedule (positions are indices into ``order``)."""

    order: np.ndarray  # int64 (size,): the epoch's terms in serial order
    bounds: np.ndarray  # int64 (batches + 1,): batch b = positions bounds[b]:bounds[b+1]
    work: np.ndarray  # int64 (size,): positions, batch by batch, core by core, in processing order
    core_ptr: np.ndarray  # int64 (batches, cores + 1): core c of batch b runs work[core_ptr[b,c]:core_ptr[b,c+1]]
    comp: np.ndarray  # int64 (size,): each position's component root (a position)

    @property
    def cores(self) -> int:
        return int(self.core_ptr.shape[1] - 1)

    @property
    def batches(self) -> int:
        return int(self.bounds.size - 1)

    def core_list(self, b: int, c: int) -> np.ndarray:
        """Positions core c processes in batch b, in order."""
        return self.work[self.core_ptr[b, c]:self.core_ptr[b, c + 1]]


def reuses_schedule(spec: RunSpec, epoch: int) -> bool:
    """Whether ``epoch`` runs the schedule found in epoch 0 instead of finding its own.

    With ``order = "fixed-shuffle"`` every epoch visits the same order, so it has the same
    batches, components and lists: both engines find them once, in epoch 0, and later
    epochs cost no component phase (Cyclades' graph work amortised over the run).
    """
    return spec.order == "fixed-shuffle" and epoch > 0


def new_tags(n: int) -> np.ndarray:
    """Scratch for :func:`batch_schedule` over ``n`` coordinates (no stamp used yet)."""
    return np.full(max(int(n), 1), -1, dtype=np.int64)


def alloc_schedule(order: np.ndarray, batch_size: int, cores: int) -> EpochSchedule:
    """Arrays for an epoch's schedule (filled by :func:`schedule_batches`)."""
    bounds = batch_bounds(order.size, batch_size)
    return EpochSchedule(order=order, bounds=bounds, work=np.empty(order.size, dtype=np.int64),
                         core_ptr=np.zeros((bounds.size - 1, cores + 1), dtype=np.int64),
                         comp=np.empty(order.size, dtype=np.int64))


def epoch_schedule(terms, order: np.ndarray, batch_size: int, cores: int) -> EpochSchedule:
    """The schedule of one epoch's ``order`` on ``cores`` cores (checks, allocates, calls the kernel)."""
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size = {batch_size!r}: must be an integer >= 1")
    if not _is_int(cores) or cores < 1:
        raise ValueError(f"cores = {cores!r}: must be an integer >= 1")
    order = np.ascontiguousarray(order, dtype=np.int64)
    s = alloc_schedule(order, int(batch_size), int(cores))
    tag = new_tags(terms.n)
    schedule_batches(terms.indptr, terms.indices, order, s.bounds, int(cores), tag, 0, s.work, s.core_ptr, s.comp,
                     0, 1)
    return s


def schedule_stats(s: EpochSchedule, terms) -> pd.DataFrame:
    """Per batch: size, nnz, components, largest component (terms), and the cores' loads.

    Loads are in the balancer's weight (Σ support size + 1); ``imbalance`` = max load /
    mean load over the cores (1 = perfect; ``cores`` = one core does everything).
    """
    starts = s.bounds[:-1]
    nb = s.batches
    sizes = np.diff(terms.indptr)[s.order]
    cols = {"batch": np.arange(nb, dtype=np.int64), "first": starts.astype(np.int64),
            "size": np.diff(s.bounds).astype(np.int64)}
    if nb == 0:
        for c in ("nnz", "components", "largest", "max_load"):
            cols[c] = np.zeros(0, dtype=np.int64)
        cols["mean_load"] = cols["imbalance"] = np.zeros(0)
        return pd.DataFrame(cols)
    pos = np.arange(s.order.size)
    members = np.bincount(s.comp, minlength=s.order.size)  # component size, at its root position
    cols["nnz"] = np.add.reduceat(sizes, starts).astype(np.int64)
    cols["components"] = np.add.reduceat((s.comp == pos).astype(np.int64), starts)
    cols["largest"] = np.maximum.reduceat(members, starts).astype(np.int64)
    cw = np.concatenate([[0], np.cumsum(sizes[s.work] + 1)])
    loads = cw[s.core_ptr[:, 1:]] - cw[s.core_ptr[:, :-1]]
    mean = loads.mean(axis=1)
    cols["max_load"] = loads.max(axis=1).astype(np.int64)
    cols["mean_load"] = mean
    cols["imbalance"] = np.where(mean > 0, loads.max(axis=1) / np.where(mean > 0, mean, 1.0), 1.0)
    return pd.DataFrame(cols)


def check_schedule(s: EpochSchedule, terms) -> None:
    """Raise AssertionError unless ``s`` is a valid Cyclades schedule of its order.

    Every batch's lists partition its positions; each component lies on one core, in batch
    order; components on different cores share no coordinate.
    """
    for b in range(s.batches):
        lo, hi = int(s.bounds[b]), int(s.bounds[b + 1])
        if s.core_ptr[b, 0] != lo or s.core_ptr[b, -1] != hi or np.any(np.diff(s.core_ptr[b]) < 0):
            raise AssertionError(f"batch {b}: core_ptr {s.core_ptr[b]} does not partition [{lo}, {hi})")
        if not np.array_equal(np.sort(s.work[lo:hi]), np.arange(lo, hi)):
            raise AssertionError(f"batch {b}: the core lists are not a permutation of the batch")
        owner_core = {}
        for c in range(s.cores):
            lst = s.core_list(b, c)
            for comp_root in np.unique(s.comp[lst]):
                mine = lst[s.comp[lst] == comp_root]
                if np.any(np.diff(mine) <= 0):
                    raise AssertionError(f"batch {b}, core {c}: component {comp_root} is not in batch order")
            for pos in lst:
                for j in terms.support(int(s.order[pos])):
                    prev = owner_core.setdefault(int(j), (c, int(s.comp[pos])))
                    if prev[0] != c or prev[1] != s.comp[pos]:
                        raise AssertionError(f"batch {b}: coordinate {j} is touched by components {prev[1]} "
                                             f"(core {prev[0]}) and {int(s.comp[pos])} (core {c})")


# --------------------------------------------------------------------------------------
# The permutation, the steps, the serial replay
# --------------------------------------------------------------------------------------
@njit(nogil=True)
def epoch_steps(code, step0, beta, t0, epoch, size):
    """γ of epoch positions 0..size-1: ``step_at(..., epoch, t=position)`` (float64)."""
    out = np.empty(size)
    for i in range(size):
        out[i] = step_at(code, step0, beta, t0, epoch, i)
    return out


class Permutation(NamedTuple):
    """The serial order a Cyclades run is equivalent to, over all its epochs."""

    terms: np.ndarray  # int64: the terms in serial order, epoch after epoch
    steps: np.ndarray  # float64: the step each gets
    epoch_ptr: np.ndarray  # int64 (epochs + 1,): epoch e is terms[epoch_ptr[e]:epoch_ptr[e+1]]


def serial_permutation(spec: RunSpec, n_terms: int, epochs: int | None = None) -> Permutation:
    """The recorded permutation of a Cyclades run of ``spec`` (its first ``epochs`` epochs)."""
    epochs = spec.epochs if epochs is None else epochs
    code, step0, beta, t0 = schedule_args(spec, n_terms)
    orders = [epoch_order(spec, n_terms, e) for e in range(epochs)]
    steps = [epoch_steps(code, step0, beta, t0, e, o.size) for e, o in enumerate(orders)]
    ptr = np.zeros(epochs + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([o.size for o in orders])
    cat = (lambda a, dt: np.ascontiguousarray(np.concatenate(a), dtype=dt) if a else np.zeros(0, dt))
    return Permutation(terms=cat(orders, np.int64), steps=cat(steps, np.float64), epoch_ptr=ptr)


def serial_replay(problem: Problem, spec: RunSpec, permutation, steps) -> np.ndarray:
    """Serial SGD over ``permutation`` with explicit ``steps``: the plain Python oracle.

    Starts at ``problem.initial_point(spec.seed)`` in the spec's state dtype and applies
    each term's update through ``problem.update`` with the write rule of
    :mod:`workload.fixed`, one term after the other.  Returns the stored model.
    """
    t = problem.terms
    permutation = np.asarray(permutation, dtype=np.int64)
    steps = np.asarray(steps, dtype=np.float64)
    if permutation.shape != steps.shape:
        raise ValueError(f"serial_replay: {permutation.size} terms but {steps.size} steps; give one step per term")
    x = to_state(problem.initial_point(spec.seed), spec.dtype, spec.fixed_point_bits)
    scale = scale_of(spec.fixed_point_bits)
    for e, gamma in zip(permutation, steps):
        lo, hi = t.indptr[e], t.indptr[e + 1]
        idx = t.indices[lo:hi]
        xr = np.array([read_value(x, j, 1.0 / scale) for j in idx], dtype=np.float64)
        g = np.empty(hi - lo)
        u = np.empty(hi - lo)
        problem.update(problem.params, problem.aux, idx, t.values[lo:hi], t.y[e], xr, float(gamma), g, u)
        for j, uj in zip(idx, u):
            add_value(x, j, encode_delta(x, float(uj), scale))
    return x


@njit(nogil=True)
def replay_pass(update, params, aux, indptr, indices, values, y, seq, steps, x, scale):
    """Serial SGD over ``seq`` with explicit ``steps``, in place on x (the jitted :func:`serial_replay`)."""
    inv_scale = 1.0 / scale
    maxlen = 0
    for e in seq:
        maxlen = max(maxlen, indptr[e + 1] - indptr[e])
    xr = np.empty(maxlen)
    g = np.empty(maxlen)
    u = np.empty(maxlen)
    for i in range(seq.size):
        e = seq[i]
        lo = indptr[e]
        k = indptr[e + 1] - lo
        idx = indices[lo:lo + k]
        for j in range(k):
            xr[j] = read_value(x, idx[j], inv_scale)
        update(params, aux, idx, values[lo:lo + k], y[e], xr[:k], steps[i], g[:k], u[:k])
        for j in range(k):
            add_value(x, idx[j], encode_delta(x, u[j], scale))


def replay(problem: Problem, spec: RunSpec, permutation, steps) -> np.ndarray:
    """:func:`serial_replay`, jitted (bit-identical to it; used to verify every run)."""
    t = problem.terms
    seq = np.ascontiguousarray(permutation, dtype=np.int64)
    st = np.ascontiguousarray(steps, dtype=np.float64)
    if seq.shape != st.shape:
        raise ValueError(f"replay: {seq.size} terms but {st.size} steps; give one step per term")
    x = to_state(problem.initial_point(spec.seed), spec.dtype, spec.fixed_point_bits)
    replay_pass(problem.update, problem.params, problem.aux, t.indptr, t.indices, t.values, t.y, seq, st, x,
                scale_of(spec.fixed_point_bits))
    return x


def bit_equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two stored models are identical bit for bit (NaNs with equal bits included)."""
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def verify(x: np.ndarray, problem: Problem, spec: RunSpec, perm: Permutation, engine: str) -> None:
    """Raise :class:`SerialEquivalenceError` unless ``x`` equals :func:`replay` over ``perm`` bit for bit."""
    ref = replay(problem, spec, perm.terms, perm.steps)
    if bit_equal(x, ref):
        return
    if x.shape != ref.shape or x.dtype != ref.dtype:
        raise SerialEquivalenceError(f"{engine} cyclades: model {x.dtype}{x.shape} vs serial replay "
                                     f"{ref.dtype}{ref.shape}")
    bits = f"u{x.itemsize}"
    diff = np.flatnonzero(np.ascontiguousarray(x).view(bits) != np.ascontiguousarray(ref).view(bits))
    j = int(diff[0])
    raise SerialEquivalenceError(
        f"{engine} cyclades (seed {spec.seed}, threads {spec.threads}, batch_size "
        f"{spec.options.get('batch_size', DEFAULT_BATCH_SIZE)}): the model differs from serial SGD over the "
        f"recorded permutation at {diff.size} coordinate(s), first {j}: {x[j]!r} vs {ref[j]!r}; this is a bug in "
        "the scheme (a conflict inside a batch ran in parallel): report the spec")
