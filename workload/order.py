"""Visit orders: which terms each worker processes in an epoch.

A pure function of (spec, N, epoch), so hwsim and realrun process the same terms in the
same per-worker order.  See :class:`workload.spec.RunSpec` for the three orders.
"""
from __future__ import annotations

import numpy as np

from .spec import STREAM_ORDER, RunSpec, stream


def split_sizes(n: int, parts: int) -> np.ndarray:
    """Sizes of ``parts`` contiguous chunks of ``n`` items (the first ``n % parts`` get one more)."""
    base, extra = divmod(n, parts)
    return np.array([base + (1 if w < extra else 0) for w in range(parts)], dtype=np.int64)


def epoch_permutation(spec: RunSpec, n_terms: int, epoch: int) -> np.ndarray:
    """The permutation of terms visited in ``epoch`` for the shuffle orders (int64)."""
    e = 0 if spec.order == "fixed-shuffle" else epoch
    return stream(spec.seed, STREAM_ORDER, e).permutation(n_terms).astype(np.int64)


def worker_orders(spec: RunSpec, n_terms: int, epoch: int, workers: int | None = None) -> list[np.ndarray]:
    """For each worker, the int64 array of term ids it processes in ``epoch``.

    Shuffle orders split the epoch's permutation into contiguous chunks (worker 0 first);
    ``with-replacement`` gives each worker ``split_sizes(N, workers)[w]`` uniform draws from
    its own stream ``(STREAM_ORDER, epoch, w)``.
    """
    workers = spec.threads if workers is None else workers
    sizes = split_sizes(n_terms, workers)
    if spec.order == "with-replacement":
        return [stream(spec.seed, STREAM_ORDER, epoch, w).integers(0, n_terms, size=int(sizes[w]), dtype=np.int64)
                for w in range(workers)]
    perm = epoch_permutation(spec, n_terms, epoch)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [perm[bounds[w]:bounds[w + 1]] for w in range(workers)]
