"""realrun.atomics under contention: every increment lands, locks exclude, the clock is real.

Each test makes several threads (more than cores, so they also interleave at preemption
points) hammer one or two array elements and checks an exact count.
"""
import threading
import time

import numpy as np
import pytest
from numba import njit

from realrun.atomics import (atomic_add, atomic_cas, atomic_fadd, atomic_xchg, calibrate_tsc, exchange_add,
                             load_acquire, monotonic_ns, spin_pause, store_release, tsc_now)
from workload.fixed import add_value

THREADS = 4
CLOCK_TOLERANCE = 0.02  # relative error allowed between the calibrated counter and CLOCK_MONOTONIC


def _hammer(fn, *args):
    """Run fn(*args, worker) on THREADS threads at once; return their results."""
    out = [None] * THREADS
    start = threading.Barrier(THREADS)

    def body(w):
        start.wait()
        out[w] = fn(*args, w)

    ths = [threading.Thread(target=body, args=(w,)) for w in range(THREADS)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    return out


@njit(nogil=True)
def _adds(a, n, w):
    for i in range(n):
        atomic_add(a, i % 2, 1)
    return 0


@njit(nogil=True)
def _cas_incs(a, n, w):
    fails = 0
    for i in range(n):
        while True:
            old = load_acquire(a, 0)
            if atomic_cas(a, 0, old, old + 1) == old:
                break
            fails += 1
    return fails


@njit(nogil=True)
def _fadds(x, n, d, w):
    fails = 0
    for i in range(n):
        fails += atomic_fadd(x, i % 2, d)
    return fails


@njit(nogil=True)
def _locked_plain_incs(lock, counter, n, w):
    for i in range(n):
        while True:
            if load_acquire(lock, 0) == 0 and atomic_xchg(lock, 0, 1) == 0:
                break
            spin_pause()
        counter[0] = counter[0] + 1  # a plain read-modify-write: safe only under the lock
        store_release(lock, 0, 0)
    return 0


@njit(nogil=True)
def _probe_incs(x, n, w):
    lost = 0
    for i in range(n):
        lost += exchange_add(x, 0, 1.0)
    return lost


N_OPS = 200_000


def test_atomic_add_loses_nothing():
    a = np.zeros(2, dtype=np.int64)
    _hammer(_adds, a, N_OPS)
    assert a.tolist() == [THREADS * N_OPS // 2] * 2


def test_atomic_add_returns_distinct_tickets():
    @njit(nogil=True)
    def tickets(a, out, w):
        for i in range(out.shape[1]):
            out[w, i] = atomic_add(a, 0, 1)
        return 0

    a = np.zeros(1, dtype=np.int64)
    out = np.zeros((THREADS, 50_000), dtype=np.int64)
    _hammer(tickets, a, out)
    assert np.array_equal(np.sort(out.ravel()), np.arange(out.size))


def test_compare_and_swap_increments_lose_nothing():
    a = np.zeros(1, dtype=np.int64)
    _hammer(_cas_incs, a, N_OPS // 4)
    assert a[0] == THREADS * (N_OPS // 4)


@pytest.mark.parametrize("dtype,d", [(np.float64, 1.0), (np.float32, 1.0), (np.int64, 3)])
def test_float_and_fixed_atomic_add_lose_nothing(dtype, d):
    n = 100_000  # float32 counts stay exact below 2**24
    x = np.zeros(2, dtype=dtype)
    _hammer(_fadds, x, n, d)
    assert x.tolist() == [THREADS * n * d / 2] * 2


def test_atomic_fadd_rounds_like_add_value():
    """Uncontended, the CAS add stores exactly what workload.fixed.add_value stores."""

    @njit(nogil=True)
    def both(a, b, ds):
        for d in ds:
            atomic_fadd(a, 0, d)
            add_value(b, 0, d)

    rng = np.random.default_rng(0)
    ds = rng.standard_normal(1000) * 1e-3
    for dtype in (np.float64, np.float32):
        a = np.full(1, 0.1, dtype=dtype)
        b = a.copy()
        both(a, b, ds)
        assert a.tobytes() == b.tobytes()


def test_spinlock_excludes():
    lock = np.zeros(1, dtype=np.int64)
    counter = np.zeros(1, dtype=np.int64)
    _hammer(_locked_plain_incs, lock, counter, N_OPS // 4)
    assert counter[0] == THREADS * (N_OPS // 4) and lock[0] == 0


def test_exchange_probe_accounts_for_every_missing_increment():
    """Counting +1s with the probe: x = writes − (what the probe's clobbers erased) ≥ 0, and
    a shortfall implies at least one clobber seen."""
    x = np.zeros(1)
    lost = _hammer(_probe_incs, x, N_OPS // 4)
    writes = THREADS * (N_OPS // 4)
    assert 0 <= x[0] <= writes
    if x[0] < writes:
        assert sum(lost) > 0


def test_monotonic_clock_matches_python_and_the_counter_calibrates():
    a = time.monotonic_ns()
    b = monotonic_ns()
    c = time.monotonic_ns()
    assert a <= b <= c
    ns_per_tick, _, _ = calibrate_tsc()
    assert ns_per_tick > 0
    t0, n0 = tsc_now(), monotonic_ns()
    time.sleep(0.05)
    t1, n1 = tsc_now(), monotonic_ns()
    assert abs((t1 - t0) * ns_per_tick - (n1 - n0)) <= CLOCK_TOLERANCE * (n1 - n0)


def test_intrinsics_reject_wrong_arrays():
    from numba.core.errors import TypingError

    @njit
    def bad(a):
        return atomic_add(a, 0, 1.0)

    with pytest.raises((TypingError, TypeError), match="integer arrays only"):
        bad(np.zeros(2))
