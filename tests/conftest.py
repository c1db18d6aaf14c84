"""Test configuration: Hypothesis profiles and shared fixtures.

Profiles (select with HYPOTHESIS_PROFILE=name; CI=true selects ``ci``):

* ``dev`` (default) and ``ci``: few examples, no deadline (JIT compilation breaks
  per-example deadlines), so the default run stays within the CI budget;
* ``thorough``: many more examples, for nightly runs and users (``-m slow`` too).
"""
from __future__ import annotations

import os
import tempfile

if os.environ.get("CI") and "NUMBA_CACHE_DIR" not in os.environ:
    # Kernels compiled with cache=True must not reuse a cache from another checkout in CI.
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="wildcheck-numba-cache-")

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, settings

settings.register_profile("dev", deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", deadline=None, max_examples=25, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, max_examples=500,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

SHARED_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")


@pytest.fixture
def shared_data():
    """Path of ../shared/data, or skip when the real data sets are not present."""
    path = os.path.abspath(SHARED_DATA)
    if not os.path.isdir(path):
        pytest.skip(f"real data sets not found at {path}")
    return path


def small_terms(n_rows=120, n_features=30, density=0.15, seed=0, labels="sign"):
    """A small random Terms for unit tests (every row has at least one entry)."""
    from workload.problems import Terms

    rng = np.random.default_rng(seed)
    A = sp.random(n_rows, n_features, density=density, random_state=rng, format="lil")
    for i in range(n_rows):
        if A.rows[i] == []:
            A[i, rng.integers(n_features)] = rng.random() + 0.1
    A = A.tocsr()
    y = np.sign(rng.standard_normal(n_rows)) if labels == "sign" else rng.standard_normal(n_rows)
    y[y == 0] = 1.0
    return Terms.from_csr(A, y)
