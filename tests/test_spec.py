import numpy as np
import pytest

from workload.order import split_sizes, worker_orders
from workload.spec import STREAM_ORDER, DataSpec, RunSpec, SpecError, stream


def test_defaults_validate_and_round_trip_through_toml(tmp_path):
    spec = RunSpec(problem="logistic", problem_params={"lam": 1e-3, "reg": "l2"}, scheme="hogwild", threads=2,
                   epochs=3, step=0.05, schedule="backoff", beta=0.8, order="with-replacement", dtype="fixed",
                   fixed_point_bits=30, seed=7, data=DataSpec(source="synthetic-classification",
                                                              params={"n_rows": 100, "n_features": 50}),
                   options={"batch_size": 8})
    path = tmp_path / "spec.toml"
    path.write_text(spec.to_toml())
    again = RunSpec.from_toml(path)
    assert again == spec
    assert RunSpec.from_toml(spec.to_toml()) == spec


@pytest.mark.parametrize("field,value,needle", [
    ("threads", 0, "threads = 0"),
    ("epochs", 1.5, "epochs = 1.5"),
    ("step", -0.1, "step = -0.1"),
    ("step", float("nan"), "step = nan"),
    ("scheme", "hogwlid", "scheme = 'hogwlid'"),
    ("order", "random", "order = 'random'"),
    ("beta", 0.0, "beta = 0.0"),
    ("seed", -1, "seed = -1"),
    ("fixed_point_bits", 60, "fixed_point_bits = 60"),
])
def test_bad_fields_name_field_value_and_fix(field, value, needle):
    with pytest.raises(SpecError) as exc:
        RunSpec(**{field: value})
    msg = str(exc.value)
    assert needle in msg and ";" in msg  # value, what is allowed; then the fix
    assert exc.value.field == field


def test_serial_scheme_requires_one_thread():
    with pytest.raises(SpecError, match="threads"):
        RunSpec(scheme="serial", threads=2)


def test_file_source_needs_path():
    with pytest.raises(SpecError, match="data.path"):
        RunSpec(data=DataSpec(source="svmlight"))


def test_toml_errors_name_the_problem(tmp_path):
    with pytest.raises(SpecError, match="not valid TOML"):
        RunSpec.from_toml("[run\nscheme = 1")
    with pytest.raises(SpecError, match="no \\[run\\] table"):
        RunSpec.from_toml("[other]\nx = 1\n")
    with pytest.raises(SpecError, match="thread"):
        RunSpec.from_toml("[run]\nthread = 2\n")
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        RunSpec.from_toml(str(tmp_path / "nope.toml"))


def test_streams_are_pure_functions_of_their_key():
    a = stream(3, STREAM_ORDER, 1).random(5)
    b = stream(3, STREAM_ORDER, 1).random(5)
    c = stream(3, STREAM_ORDER, 2).random(5)
    d = stream(4, STREAM_ORDER, 1).random(5)
    assert np.array_equal(a, b) and not np.array_equal(a, c) and not np.array_equal(a, d)


@pytest.mark.parametrize("order", ["fixed-shuffle", "epoch-shuffle", "with-replacement"])
@pytest.mark.parametrize("threads", [1, 3])
def test_worker_orders(order, threads):
    spec = RunSpec(order=order, threads=threads, seed=5)
    n = 101
    e0 = worker_orders(spec, n, 0)
    e1 = worker_orders(spec, n, 1)
    assert [o.size for o in e0] == list(split_sizes(n, threads))
    assert all(o.dtype == np.int64 for o in e0)
    assert all(np.array_equal(a, b) for a, b in zip(e0, worker_orders(spec, n, 0)))  # deterministic
    if order == "with-replacement":
        assert all(((o >= 0) & (o < n)).all() for o in e0)
    else:
        assert np.array_equal(np.sort(np.concatenate(e0)), np.arange(n))  # a permutation, split
    same = all(np.array_equal(a, b) for a, b in zip(e0, e1))
    assert same == (order == "fixed-shuffle")
