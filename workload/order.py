"""Visit orders: which terms each worker processes in an epoch.

A pure function of (spec, N, epoch), so hwsim, realrun and the serial oracle process the
same terms in the same per-worker order.  See :class:`workload.spec.RunSpec` for the three
orders.

The shuffle orders draw their permutation with :func:`shuffle` (a jitted Fisher--Yates
shuffle), the one implementation every engine uses through :func:`worker_orders`.
Its cost is part of realrun's timed epochs, which is why it is not numpy's
``Generator.permutation`` (about 6× slower on 200,000 terms: a Python-level call per
bounded draw is avoided, and no copy to int64 is needed).

Notes
-----
:func:`shuffle` is Durstenfeld's in-place Fisher--Yates shuffle (Knuth, TAOCP vol. 2,
§3.4.2, Algorithm P) in its "inside-out" form, which builds the permutation of
``0..n-1`` directly: for i = 0, 1, ..., n-1 draw j uniform in {0, ..., i}, then set
``a[i] = a[j]; a[j] = i``.  Every permutation has probability exactly 1/n! when each j is
exactly uniform.  The uniform draws come from xoshiro256** (Blackman & Vigna, "Scrambled
linear pseudorandom number generators", ACM TOMS 47(4), 2021), seeded with four 64-bit
words of the stream ``(STREAM_ORDER, epoch)``'s ``SeedSequence``
(:func:`workload.spec.seed_words`), and are mapped to {0, ..., i} without bias by
Lemire's multiply-and-reject method on the output's upper 32 bits ("Fast random integer
generation in an interval", ACM TOMACS 29(1), 2019): bounds up to 2**32, so n <= 2**32.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .spec import STREAM_ORDER, RunSpec, seed_words, stream

MAX_SHUFFLE = 2**32  # Lemire's method on 32-bit draws: bounds i + 1 <= 2**32


def split_sizes(n: int, parts: int) -> np.ndarray:
    """Sizes of ``parts`` contiguous chunks of ``n`` items (the first ``n % parts`` get one more)."""
    base, extra = divmod(n, parts)
    return np.array([base + (1 if w < extra else 0) for w in range(parts)], dtype=np.int64)


@njit(inline="always")
def _rotl(v, k):
    return (v << np.uint64(k)) | (v >> np.uint64(64 - k))


@njit(nogil=True, cache=True)
def _shuffle(a, state):
    """Fill ``a`` (int64) with the inside-out Fisher--Yates permutation of 0..a.size-1;
    ``state``: the four xoshiro256** words (uint64, not all zero), advanced in place."""
    n = a.size
    s0, s1, s2, s3 = state[0], state[1], state[2], state[3]
    low = np.uint64(0xFFFFFFFF)
    for i in range(n):
        bound = np.uint64(i + 1)  # j uniform in {0, ..., i}
        threshold = np.uint64(0)
        have_threshold = False
        while True:
            # xoshiro256**: output, then advance.
            out = _rotl(s1 * np.uint64(5), 7) * np.uint64(9)
            t = s1 << np.uint64(17)
            s2 ^= s0
            s3 ^= s1
            s1 ^= s2
            s0 ^= s3
            s2 ^= t
            s3 = _rotl(s3, 45)
            m = (out >> np.uint64(32)) * bound  # < 2**64: both factors <= 2**32
            lo = m & low
            if lo >= bound:  # the common case: accept without the threshold's division
                break
            if not have_threshold:
                threshold = (np.uint64(2**32) - bound) % bound  # 2**32 mod bound
                have_threshold = True
            if lo >= threshold:
                break
        j = np.int64(m >> np.uint64(32))
        a[i] = a[j]
        a[j] = i
    state[0], state[1], state[2], state[3] = s0, s1, s2, s3


def shuffle(n: int, words: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """A uniformly random permutation of ``0..n-1`` (int64) from four uint64 seed words
    (module Notes: inside-out Fisher--Yates, xoshiro256**, Lemire's bounded draws).

    out
        an int64 C-contiguous array of ``n`` entries to fill and return (a buffer
        allocated, and touched, ahead of a timed region); default: a new array.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not (0 <= n <= MAX_SHUFFLE):
        raise ValueError(f"shuffle: n = {n!r} must be an integer in [0, {MAX_SHUFFLE}] (32-bit bounded draws)")
    state = np.array(words, dtype=np.uint64).ravel()
    if state.size != 4 or not state.any():
        raise ValueError(f"shuffle: words = {words!r} must be four uint64 words, not all zero "
                         "(use workload.spec.seed_words(seed, purpose, *key, n=4))")
    if out is None:
        out = np.empty(int(n), dtype=np.int64)
    elif not (isinstance(out, np.ndarray) and out.dtype == np.int64 and out.ndim == 1 and out.size == n
              and out.flags.c_contiguous and out.flags.writeable):
        raise ValueError(f"shuffle: out must be a writeable C-contiguous int64 array of n = {n} entries, got "
                         f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}; "
                         f"pass np.empty({n}, dtype=np.int64) or leave out unset")
    _shuffle(out, state)
    return out


def epoch_permutation(spec: RunSpec, n_terms: int, epoch: int, *, out: np.ndarray | None = None) -> np.ndarray:
    """The permutation of terms visited in ``epoch`` for the shuffle orders (int64):
    :func:`shuffle` seeded from the stream ``(STREAM_ORDER, e)``, e = epoch
    (``epoch-shuffle``) or 0 (``fixed-shuffle``); written into ``out`` when given."""
    e = 0 if spec.order == "fixed-shuffle" else epoch
    words = seed_words(spec.seed, STREAM_ORDER, e, n=4)
    if not words.any():  # probability 2**-256; xoshiro's one forbidden state
        words[0] = 1
    return shuffle(n_terms, words, out=out)


def worker_orders(spec: RunSpec, n_terms: int, epoch: int, workers: int | None = None, *,
                  out: np.ndarray | None = None) -> list[np.ndarray]:
    """For each worker, the int64 array of term ids it processes in ``epoch``.

    Shuffle orders split the epoch's permutation (:func:`epoch_permutation`) into
    contiguous chunks (worker 0 first; each a C-contiguous view); ``with-replacement``
    gives each worker ``split_sizes(N, workers)[w]`` uniform draws from its own stream
    ``(STREAM_ORDER, epoch, w)``.

    out
        shuffle orders only: an int64 buffer of ``n_terms`` entries the permutation is
        written into (the chunks are views of it), so that a timed caller allocates and
        touches its memory beforehand; ignored for ``with-replacement``.
    """
    workers = spec.threads if workers is None else workers
    sizes = split_sizes(n_terms, workers)
    if spec.order == "with-replacement":
        return [stream(spec.seed, STREAM_ORDER, epoch, w).integers(0, n_terms, size=int(sizes[w]), dtype=np.int64)
                for w in range(workers)]
    perm = epoch_permutation(spec, n_terms, epoch, out=out)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [perm[bounds[w]:bounds[w + 1]] for w in range(workers)]
