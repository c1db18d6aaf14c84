"""Step-size schedules as one small jitted function shared by every engine.

``step_at(code, step0, beta, t0, epoch, t)`` gives γ for the sample with global sequence
number ``t`` in ``epoch``.  Codes: 0 constant; 1 per-epoch backoff γ_0·β^epoch (Niu et al.
2011, §5: "we diminish the step size by a factor β after every epoch"); 2 ``inv-k``
γ_0 / (1 + t/t0) (the 1/k schedule of SGD analyses).
"""
from __future__ import annotations

from numba import njit

CONSTANT, BACKOFF, INV_K = 0, 1, 2
CODES = {"constant": CONSTANT, "backoff": BACKOFF, "inv-k": INV_K}


@njit(nogil=True, cache=False)
def step_at(code, step0, beta, t0, epoch, t):
    if code == BACKOFF:
        return step0 * beta**epoch
    if code == INV_K:
        return step0 / (1.0 + t / t0)
    return step0


def schedule_args(spec, n_terms: int):
    """(code, step0, beta, t0) for :func:`step_at` from a spec, with t0 = N when 0."""
    t0 = float(spec.step_t0) if spec.step_t0 > 0 else float(n_terms)
    return CODES[spec.schedule], float(spec.step), float(spec.beta), t0


def global_t(position: int, worker: int, threads: int) -> int:
    """The global sequence number of a worker's ``position``-th sample in an epoch."""
    return position * threads + worker
