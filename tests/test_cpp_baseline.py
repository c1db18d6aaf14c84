"""benchmarks/cpp/hogwild_svm.cc, the side-by-side C++ baseline of bench_realrun.py.

Its update is compared with a plain serial reimplementation here (the original Hogwild!
SVM's arithmetic: double margins and steps, float parameters and shrink factor; Niu et
al. 2011, the Hogwild! code's SVM) bit for bit, on visit orders the test chooses.
"""
from __future__ import annotations

import math
import platform
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import cpp_baseline  # noqa: E402

from workload.data import synthetic_classification  # noqa: E402

pytestmark = pytest.mark.skipif(cpp_baseline.compiler() is None,
                                reason="no C++ compiler (g++ or c++) on PATH: the C++ baseline cannot be built")

STEP, DECAY, MU = 0.1, 0.8, 1.0  # a decay below 1 so that the float step schedule is exercised too
EPOCHS = 3
LOSS_RTOL = 1e-12  # the loss sums: hogwild_svm and scipy add the margins' terms in different orders


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    return cpp_baseline.compile_binary(tmp_path_factory.mktemp("cpp-build"))


@pytest.fixture(scope="module")
def terms():
    return synthetic_classification(n_rows=300, n_features=200, nnz_mean=8, seed=1)


def reference_svm(terms, orders, *, step, decay, mu):
    """The original's serial SVM in numpy scalars: float32 where it uses float, else float64."""
    deg = np.bincount(terms.indices, minlength=terms.n).astype(np.float32)  # unsigned → float: exact here
    w = np.zeros(terms.n)
    step32, decay32, mu32 = np.float32(step), np.float32(decay), np.float32(mu)
    for order in orders:
        for e in order:
            lo, hi = terms.indptr[e], terms.indptr[e + 1]
            idx, val, y = terms.indices[lo:hi], terms.values[lo:hi], float(terms.y[e])
            dot = 0.0
            for i in range(hi - lo - 1, -1, -1):
                dot += w[idx[i]] * val[i]
            if dot * y < 1.0:
                g = float(step32) * y
                for i in range(hi - lo):
                    w[idx[i]] += g * val[i]
            scalar = step32 * mu32
            for i in range(hi - lo - 1, -1, -1):
                j = idx[i]
                w[j] *= float(np.float32(1.0) - scalar / deg[j])
        step32 = step32 * decay32
    return w


def test_update_matches_the_reference_bit_for_bit(binary, terms, tmp_path):
    if platform.machine() not in ("x86_64", "AMD64"):
        # g++ defaults to -ffp-contract=fast: where the baseline ISA has FMA (aarch64, ...) it
        # may fuse w += g·v into one rounding, which this reference does not do.
        pytest.skip(f"bit-for-bit needs no FMA contraction; {platform.machine()} may fuse multiply-adds")
    rng = np.random.default_rng(7)
    orders = np.array([rng.permutation(terms.N) for _ in range(EPOCHS)])
    data = cpp_baseline.write_data(terms, tmp_path / "svm.bin")
    out = cpp_baseline.run(binary, data, threads=1, epochs=EPOCHS, step=STEP, decay=DECAY, mu=MU, seed=0,
                           orders=cpp_baseline.write_orders(orders, tmp_path / "orders.bin"),
                           model_out=tmp_path / "w.bin")
    w = np.fromfile(tmp_path / "w.bin", dtype="<f8")
    ref = reference_svm(terms, orders, step=STEP, decay=DECAY, mu=MU)
    assert out["shuffle"] == "orders" and out["epochs"] == EPOCHS and out["N"] == terms.N
    assert np.count_nonzero(ref) > 0
    np.testing.assert_array_equal(w, ref)
    margins = terms.matrix() @ ref * terms.y
    assert out["loss"] == pytest.approx(float(np.sum(np.maximum(0.0, 1.0 - margins))), rel=LOSS_RTOL)


def test_lazy_shuffle_two_threads_runs_and_learns(binary, terms, tmp_path):
    data = cpp_baseline.write_data(terms, tmp_path / "svm.bin")
    out = cpp_baseline.run(binary, data, threads=2, epochs=EPOCHS, step=STEP, decay=1.0, mu=MU, seed=3)
    assert out["threads"] == 2 and out["shuffle"] == "lazy" and not out["pinned"]
    assert out["samples_per_s"] > 0 and len(out["epoch_seconds"]) == EPOCHS
    assert math.isfinite(out["loss"]) and out["loss"] < terms.N  # the hinge loss sum at w = 0 is N


def test_bad_arguments_name_the_flag(binary, terms, tmp_path):
    data = cpp_baseline.write_data(terms, tmp_path / "svm.bin")
    with pytest.raises(RuntimeError, match=r"--threads 0: must be an integer in \[1, 1024\]"):
        cpp_baseline.run(binary, data, threads=0, epochs=1, step=STEP, decay=1.0, mu=MU, seed=0)
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"not the format at all")
    with pytest.raises(RuntimeError, match="not a hogwild_svm data file"):
        cpp_baseline.run(binary, garbage, threads=1, epochs=1, step=STEP, decay=1.0, mu=MU, seed=0)
