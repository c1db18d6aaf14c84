"""Synchronous minibatch SGD: the serial oracle every engine's ``minibatch-sync`` must equal.

The scheme (DESIGN.md, Schemes: ``minibatch-sync``)
    An epoch visits the single-worker order ``worker_orders(spec, N, epoch, workers=1)[0]``
    (the order serial SGD with one thread visits) in *steps* of ``B = options.batch_size``
    consecutive terms; the last step of an epoch holds the ``N mod B`` left over terms when
    B does not divide N.  In step s (terms at positions ``lo = s·B`` .. ``hi - 1`` of the
    epoch's order, ``b = hi - lo`` of them):

    1. every term's update ``u_e = update(x̂_e, γ_s)`` is computed against the *same* model
       x (the values read with :func:`workload.fixed.read_value`; nothing is written while
       the step computes).  With p workers the batch is split into p contiguous shares
       (:func:`share_bounds`, worker 0 first), but the split changes no arithmetic;
    2. the updates are combined per coordinate in a fixed order -- *batch order*: term by
       term as the epoch's order lists them, and within a term in support order -- into a
       float64 accumulator that starts at ``-0.0`` (so a coordinate touched once gets
       exactly its u, signed zeros included: ``-0.0 + u == u`` for every float64 u):
       ``a_j = Σ_{e in batch, j in e} u_{e,j}``;
    3. the combined update ``v_j = a_j / b`` (``combine = "mean"``, default) or ``v_j = a_j``
       (``combine = "sum"``) is written once per touched coordinate with the engines' one
       write rule, ``add_value(x, j, encode_delta(x, v_j, scale))``: for the fixed-point
       model v_j is quantised once (not each u).

    Because step 2's order is the batch order, not the order in which workers finish, the
    result does not depend on the number of workers: hwsim and realrun at any thread count
    must equal this oracle bit for bit.

Step size
    γ_s = ``step_at(code, step0, beta, t0, epoch, t = lo)``: t is the epoch position of the
    step's first term (the number of gradient evaluations made earlier in the epoch), the
    same t serial SGD gives that term, so with ``B = 1`` and ``combine = "mean"`` the scheme
    *is* serial SGD, bit for bit (a test holds it to that).

``mean`` vs ``sum``
    With ``mean`` the step is γ·(mean gradient): minibatch SGD as usually written.  ``sum``
    takes a step γ per gradient evaluation -- the linear step-scaling rule (Goyal et al.
    2017, §2.1: "when the minibatch size is multiplied by k, multiply the learning rate by
    k") -- and is the fair partner of Hogwild! when both make the same number of gradient
    evaluations with the same γ (:mod:`analysis.stragglers`).  For u = −γg the two differ
    only by the factor b (and rounding); for projected updates they differ more.

Options (``spec.options``, validated in :func:`minibatch_options`)
    ``batch_size`` (required): integer in [1, N]; ``combine``: ``"mean"`` or ``"sum"``.

Notes
    Synchronous minibatch SGD and its straggler problem: Dekel et al. 2012 (§3, "Minibatch
    SGD"); Chen et al. 2016, "Revisiting distributed synchronous SGD" (§2.1: the step waits
    for the slowest of n workers).
"""
from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np
import pandas as pd
from numba import njit

from .fixed import add_value, encode_delta, read_value, scale_of, to_state
from .order import split_sizes, worker_orders
from .problems.base import Problem
from .schedule import schedule_args, step_at
from .serial import SerialResult, _x_star, history_row
from .spec import RunSpec, SpecError
from .trace import HISTORY_SCHEMA

SCHEME = "minibatch-sync"

#: One row per step of a synchronous run, in both engines (hwsim: ticks; realrun: ns since
#: the run started).
ITERATION_SCHEMA: dict[str, str] = {
    "epoch": "int32",
    "step": "int64",  # step index within the epoch
    "batch": "int64",  # terms in the step
    "t_begin": "int64",  # the step began (every worker released)
    "t_first_arrival": "int64",  # earliest worker arrival at the barrier
    "t_last_arrival": "int64",  # the last arrival: the combine begins
    "combiner": "int32",  # the worker that combined (the last to arrive)
    "t_end": "int64",  # the combined update is written: the next step begins
}
COMBINES = ("mean", "sum")
DEFAULT_COMBINE = "mean"


class MinibatchOptions(NamedTuple):
    """The validated minibatch settings of a spec."""

    batch_size: int  # B, terms per step, 1 <= B <= N
    combine: str  # "mean" or "sum"

    @property
    def mean(self) -> bool:
        return self.combine == "mean"


def minibatch_options(spec: RunSpec, n_terms: int) -> MinibatchOptions:
    """The one place ``options.batch_size`` and ``options.combine`` are checked."""
    o = spec.options
    if "batch_size" not in o:
        raise SpecError("options.batch_size", None, f"scheme {SCHEME!r} needs a minibatch size (terms per step)",
                        f"set options.batch_size to an integer in [1, N={n_terms}], e.g. "
                        f"{min(n_terms, 16 * spec.threads)} (16 per worker)")
    b = o["batch_size"]
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not (1 <= b <= n_terms):
        raise SpecError("options.batch_size", b, f"must be an integer in [1, N={n_terms}] (terms per step)",
                        f"set options.batch_size to e.g. {min(n_terms, 16 * spec.threads)}")
    c = o.get("combine", DEFAULT_COMBINE)
    if c not in COMBINES:
        raise SpecError("options.combine", c, f"must be one of {', '.join(COMBINES)}",
                        "use 'mean' (γ times the mean gradient; default) or 'sum' (γ per gradient evaluation)")
    return MinibatchOptions(int(b), str(c))


def epoch_order(spec: RunSpec, n_terms: int, epoch: int) -> np.ndarray:
    """The terms of ``epoch`` in batch order (int64, C-contiguous)."""
    return np.ascontiguousarray(worker_orders(spec, n_terms, epoch, workers=1)[0], dtype=np.int64)


def step_bounds(n_terms: int, batch_size: int) -> np.ndarray:
    """Positions where the epoch's steps begin, and N at the end (int64, ceil(N/B) + 1 entries)."""
    return np.append(np.arange(0, n_terms, batch_size, dtype=np.int64), np.int64(n_terms))


def share_bounds(lo: int, hi: int, workers: int) -> np.ndarray:
    """Epoch positions where each worker's contiguous share of the step [lo, hi) begins, and hi
    (int64, workers + 1 entries; the first ``(hi - lo) % workers`` shares hold one more term)."""
    return np.concatenate([[lo], lo + np.cumsum(split_sizes(hi - lo, workers))]).astype(np.int64)


def entry_offsets(indptr: np.ndarray, order: np.ndarray) -> np.ndarray:
    """e_off[i] = number of support entries of the terms at positions < i (int64, len(order) + 1)."""
    sizes = (indptr[order + 1] - indptr[order]).astype(np.int64)
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


# --------------------------------------------------------------------------------------------
# The oracle: a readable Python loop over numpy
# --------------------------------------------------------------------------------------------
def _read(x: np.ndarray, idx: np.ndarray, scale: float) -> np.ndarray:
    return x[idx] * (1.0 / scale) if x.dtype == np.int64 else x[idx].astype(np.float64)


def _write(x: np.ndarray, idx: np.ndarray, v: np.ndarray, scale: float) -> None:
    if x.dtype == np.int64:
        x[idx] = x[idx] + np.rint(v * scale).astype(np.int64)
    elif x.dtype == np.float32:
        x[idx] = (x[idx].astype(np.float64) + v).astype(np.float32)
    else:
        x[idx] = x[idx] + v


def oracle_step(problem: Problem, x: np.ndarray, terms: np.ndarray, gamma: float, mean: bool, scale: float
                ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """One step of the oracle, in place on x: returns the per-term read values and updates
    (batch order) and the touched coordinates (ascending)."""
    t = problem.terms
    reads, ups, supports = [], [], []
    for e in terms:  # 1. every update against the same x
        lo, hi = t.indptr[e], t.indptr[e + 1]
        idx = t.indices[lo:hi]
        xr = _read(x, idx, scale)
        g = np.empty(hi - lo)
        u = np.empty(hi - lo)
        problem.update(problem.params, problem.aux, idx, t.values[lo:hi], t.y[e], xr, gamma, g, u)
        reads.append(xr)
        ups.append(u)
        supports.append(idx)
    acc = np.full(t.n, -0.0)
    for idx, u in zip(supports, ups):  # 2. combine in batch order (np.add.at: element by element)
        np.add.at(acc, idx, u)
    touched = np.unique(np.concatenate(supports)) if supports else np.zeros(0, dtype=np.int64)
    v = acc[touched] / float(terms.size) if mean else acc[touched]
    _write(x, touched, v, scale)  # 3. one write per touched coordinate
    return reads, ups, touched


def minibatch_oracle(problem: Problem, spec: RunSpec, *, with_opt: bool = False) -> SerialResult:
    """Serial minibatch SGD as a plain Python loop (slow; the reference of every engine)."""
    t = problem.terms
    opt = minibatch_options(spec, t.N)
    x = to_state(problem.initial_point(spec.seed), spec.dtype, spec.fixed_point_bits)
    scale = scale_of(spec.fixed_point_bits)
    code, step0, beta, t0 = schedule_args(spec, t.N)
    x_star = _x_star(problem, with_opt)
    rows = [history_row(problem, x, spec, 0, 0, 0.0, x_star)]
    samples, seconds = 0, 0.0
    bounds = step_bounds(t.N, opt.batch_size)
    for epoch in range(spec.epochs):
        t_begin = time.perf_counter()
        order = epoch_order(spec, t.N, epoch)
        for s in range(bounds.size - 1):
            lo, hi = int(bounds[s]), int(bounds[s + 1])
            gamma = step_at(code, step0, beta, t0, epoch, lo)
            oracle_step(problem, x, order[lo:hi], gamma, opt.mean, scale)
        seconds += time.perf_counter() - t_begin
        samples += order.size
        rows.append(history_row(problem, x, spec, epoch + 1, samples, seconds, x_star))
    return SerialResult(x=x, history=pd.DataFrame(rows).astype(HISTORY_SCHEMA), seconds=seconds)


# --------------------------------------------------------------------------------------------
# The jitted pass (bit-identical to the oracle)
# --------------------------------------------------------------------------------------------
@njit(nogil=True)
def combine_apply(x, touched, nt, acc, b, mean, scale):
    """Step 3 for the ``nt`` coordinates ``touched[:nt]``: write v_j (a_j, or a_j / b) with the
    engines' write rule and reset a_j to -0.0."""
    for q in range(nt):
        j = touched[q]
        v = acc[j] / b if mean else acc[j]
        add_value(x, j, encode_delta(x, v, scale))
        acc[j] = -0.0


@njit(nogil=True)
def minibatch_pass(update, params, aux, indptr, indices, values, y, order, bounds, x, code, step0, beta, t0,
                   epoch, scale, mean, acc, mark, touched, rec_xr, rec_u):
    """One epoch of minibatch SGD in place on x (one worker; the oracle's arithmetic).

    acc: float64 (n,) all -0.0; mark: int8 (n,) all 0; touched: int64 scratch of at least
    the largest step's number of support entries.  rec_xr / rec_u: when not empty, receive
    every term's read values and update at its epoch entry offset (for hwsim's coordinate
    trace).  acc and mark are left as they were given.
    """
    inv_scale = 1.0 / scale
    maxlen = 1
    for e in order:
        maxlen = max(maxlen, indptr[e + 1] - indptr[e])
    xr = np.empty(maxlen)
    g = np.empty(maxlen)
    u = np.empty(maxlen)
    record = rec_xr.size > 0
    off = 0
    for s in range(bounds.size - 1):
        lo = bounds[s]
        hi = bounds[s + 1]
        gamma = step_at(code, step0, beta, t0, epoch, lo)
        nt = 0
        for i in range(lo, hi):
            e = order[i]
            a = indptr[e]
            k = indptr[e + 1] - a
            idx = indices[a:a + k]
            for q in range(k):
                xr[q] = read_value(x, idx[q], inv_scale)
            update(params, aux, idx, values[a:a + k], y[e], xr[:k], gamma, g[:k], u[:k])
            for q in range(k):  # accumulating now is step 2: x is not written until the step ends
                j = idx[q]
                acc[j] += u[q]
                if mark[j] == 0:
                    mark[j] = 1
                    touched[nt] = j
                    nt += 1
                if record:
                    rec_xr[off + q] = xr[q]
                    rec_u[off + q] = u[q]
            off += k
        for q in range(nt):
            mark[touched[q]] = 0
        combine_apply(x, touched, nt, acc, float(hi - lo), mean, scale)


def minibatch_sgd(problem: Problem, spec: RunSpec, *, with_opt: bool = False) -> SerialResult:
    """Jitted serial minibatch SGD; bit-identical to :func:`minibatch_oracle` for the same spec."""
    t = problem.terms
    opt = minibatch_options(spec, t.N)
    x = to_state(problem.initial_point(spec.seed), spec.dtype, spec.fixed_point_bits)
    scale = scale_of(spec.fixed_point_bits)
    code, step0, beta, t0 = schedule_args(spec, t.N)
    x_star = _x_star(problem, with_opt)
    rows = [history_row(problem, x, spec, 0, 0, 0.0, x_star)]
    bounds = step_bounds(t.N, opt.batch_size)
    acc = np.full(t.n, -0.0)
    mark = np.zeros(t.n, dtype=np.int8)
    touched = np.zeros(max(1, min(t.n, int(np.diff(t.indptr).max(initial=0)) * opt.batch_size)), dtype=np.int64)
    none = np.zeros(0)
    samples, seconds = 0, 0.0
    for epoch in range(spec.epochs):
        t_begin = time.perf_counter()
        order = epoch_order(spec, t.N, epoch)
        minibatch_pass(problem.update, problem.params, problem.aux, t.indptr, t.indices, t.values, t.y, order,
                       bounds, x, code, step0, beta, t0, epoch, scale, opt.mean, acc, mark, touched, none, none)
        seconds += time.perf_counter() - t_begin
        samples += order.size
        rows.append(history_row(problem, x, spec, epoch + 1, samples, seconds, x_star))
    return SerialResult(x=x, history=pd.DataFrame(rows).astype(HISTORY_SCHEMA), seconds=seconds)
