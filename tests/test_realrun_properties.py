"""Hypothesis properties of realrun's locking schemes on generated supports.

* lock-coord never deadlocks and loses no update, whatever the supports and the threads;
* round-robin reproduces the serial oracle's interleaving bit for bit.

A deadlock would hang, so each run has a watchdog: after DEADLOCK_TIMEOUT_S it sends
SIGINT, which realrun turns into a stopped run with ``interrupted=True`` (the test then
fails instead of hanging).  Spinning workers check the stop flag, so a real deadlock is
broken too.
"""
import os
import signal
import threading

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from realrun import run
from realrun.testing import count_problem, expected_counts
from workload.problems import Terms, make_problem
from workload.serial import serial_oracle
from workload.spec import RunSpec

DEADLOCK_TIMEOUT_S = 60.0  # generous: tiny runs finish in well under a second even on a busy machine


# --- strategies ---------------------------------------------------------------------------------
@st.composite
def supports(draw, max_coords=10, max_terms=40):
    """(supports, n): sorted, distinct, non-empty coordinate sets over n coordinates."""
    n = draw(st.integers(1, max_coords))
    sets = draw(st.lists(st.sets(st.integers(0, n - 1), min_size=1, max_size=n), min_size=1, max_size=max_terms))
    return [sorted(s) for s in sets], n


def _watched(spec, problem, **kw):
    timer = threading.Timer(DEADLOCK_TIMEOUT_S, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        return run(spec, problem=problem, **kw)
    finally:
        timer.cancel()


# --- properties -------------------------------------------------------------------------------------
@settings(deadline=None)
@given(supports(), st.integers(2, 4), st.integers(1, 3), st.integers(0, 2**16))
def test_lock_coord_never_deadlocks_and_loses_nothing(sup, threads, epochs, seed):
    supports_, n = sup
    problem = count_problem(supports_, n)
    spec = RunSpec(problem="svm", scheme="lock-coord", threads=threads, epochs=epochs, seed=seed)
    got = _watched(spec, problem, instrument=False)
    assert not got.interrupted, "lock-coord did not finish: deadlock"
    assert np.array_equal(got.x, expected_counts(problem, epochs))


@settings(deadline=None)
@given(supports(max_coords=8, max_terms=30), st.integers(2, 3), st.sampled_from(["float64", "fixed"]),
       st.integers(0, 2**16))
def test_round_robin_equals_the_oracle_on_generated_problems(sup, threads, dtype, seed):
    supports_, n = sup
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(len(supports_)), [len(s) for s in supports_])
    cols = np.concatenate([np.asarray(s) for s in supports_])
    A = sp.csr_matrix((rng.standard_normal(cols.size), (rows, cols)), shape=(len(supports_), n))
    y = np.where(rng.random(len(supports_)) < 0.5, -1.0, 1.0)
    problem = make_problem("svm", Terms.from_csr(A, y, n=n), lam=1e-2, reg="hogwild")
    spec = RunSpec(problem="svm", scheme="round-robin", threads=threads, epochs=2, step=0.1, dtype=dtype,
                   schedule="inv-k", seed=seed)
    got = _watched(spec, problem)
    assert not got.interrupted
    assert np.array_equal(got.x, serial_oracle(problem, spec).x)


@pytest.mark.slow
@settings(deadline=None, max_examples=200)
@given(supports(max_coords=6, max_terms=200), st.integers(2, 6), st.integers(0, 2**16))
def test_lock_coord_dense_conflicts_thorough(sup, threads, seed):
    """Many terms over very few coordinates and more threads than cores."""
    supports_, n = sup
    problem = count_problem(supports_, n)
    spec = RunSpec(problem="svm", scheme="lock-coord", threads=threads, epochs=3, seed=seed)
    got = _watched(spec, problem, instrument=True)
    assert not got.interrupted
    assert np.array_equal(got.x, expected_counts(problem, 3))
    assert (got.tau() >= 0).all()
