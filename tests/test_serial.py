"""Serial oracle vs jitted serial SGD on the linear problems (the other problems are in test_problems.py)."""
import numpy as np
import pytest

from conftest import small_terms
from workload.problems import make_problem
from workload.serial import interleave, serial_oracle, serial_sgd
from workload.spec import RunSpec


@pytest.mark.parametrize("name", ["svm", "logistic", "least-squares"])
@pytest.mark.parametrize("dtype", ["float64", "float32", "fixed"])
@pytest.mark.parametrize("schedule", ["constant", "backoff", "inv-k"])
def test_oracle_and_jitted_agree_bit_for_bit(name, dtype, schedule):
    terms = small_terms(labels="sign" if name != "least-squares" else "real")
    problem = make_problem(name, terms, lam=1e-2, reg="l2")
    for order in ("fixed-shuffle", "epoch-shuffle", "with-replacement"):
        for scheme, threads in (("serial", 1), ("round-robin", 3)):
            spec = RunSpec(problem=name, scheme=scheme, threads=threads, epochs=2, step=0.05, schedule=schedule,
                           order=order, dtype=dtype, seed=11)
            a = serial_oracle(problem, spec)
            b = serial_sgd(problem, spec)
            assert a.x.dtype == b.x.dtype
            assert np.array_equal(a.x, b.x), (order, scheme)
            assert np.array_equal(a.history["objective"], b.history["objective"])


def test_interleave_is_round_robin_with_global_sequence_numbers():
    orders = [np.array([10, 11, 12]), np.array([20, 21]), np.array([30, 31])]
    terms, ts = interleave(orders)
    assert terms.tolist() == [10, 20, 30, 11, 21, 31, 12]
    assert ts.tolist() == [0, 1, 2, 3, 4, 5, 6]


def test_serial_sgd_converges_to_least_squares_optimum():
    """Decaying steps drive ‖x − x*‖² well below its starting value (x* exact)."""
    terms = small_terms(n_rows=400, n_features=20, density=0.3, labels="real", seed=3)
    problem = make_problem("least-squares", terms, lam=1e-1, reg="l2")
    spec = RunSpec(problem="least-squares", scheme="serial", epochs=30, step=0.1, schedule="backoff", beta=0.85,
                   seed=1)
    h = serial_sgd(problem, spec, with_opt=True).history
    assert h["dist2_opt"].iloc[-1] < 1e-2 * h["dist2_opt"].iloc[0]
    assert h["objective"].iloc[-1] - problem.solution().f < 1e-3
