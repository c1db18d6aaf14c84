"""hwsim.Machine and the delay models: validation, serialisation, draws."""
import math

import numpy as np
import pytest
import tomli_w
import tomllib

from hwsim import Machine, MachineError, simulate
from hwsim.delays import (DELAY_BLOCK, Constant, DelayError, DelayStream, Empirical, Exponential, LogNormal,
                          ShiftedExponential, StragglerMixture, delay_from_dict)
from workload.spec import STREAM_CORE, RunSpec, stream

MODELS = [
    Constant(7),
    Exponential(30.0),
    ShiftedExponential(shift=20, rate=0.1),
    LogNormal(mu=2.0, sigma=0.5, shift=3),
    Empirical([5, 9, 9, 40]),
    StragglerMixture(Constant(10), factor=8, p=0.25),
    StragglerMixture(Exponential(20.0), factor=3, p=0.1, slow_cores=(1,)),
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.to_dict()["kind"])
def test_delay_models_draw_int_ticks_within_bounds_and_round_trip(model):
    rng = np.random.default_rng(0)
    d = model.sample(rng, 5000)
    assert d.dtype == np.int64 and d.shape == (5000,)
    lo, hi = model.bounds()
    assert d.min() >= lo and d.max() <= hi
    assert delay_from_dict(model.to_dict()) == model
    # mean() is the continuous model's mean; the sample mean is within 5 standard errors + rounding
    if math.isfinite(model.mean()):
        se = d.std() / math.sqrt(d.size)
        assert abs(d.mean() - model.mean()) <= 5 * se + 0.5


def test_straggler_mixture_slow_cores_are_always_slow():
    m = StragglerMixture(Constant(10), factor=5, p=0.0, slow_cores=(2,))
    rng = np.random.default_rng(1)
    assert np.all(m.for_core(0).sample(rng, 100) == 10)
    assert np.all(m.for_core(2).sample(rng, 100) == 50)
    assert m.bounds() == (10.0, 50.0)


def test_delay_stream_consumes_blocks_from_the_core_stream():
    model = Exponential(25.0)
    s = DelayStream(model, seed=4, core=3)
    got = np.array([s.next() for _ in range(DELAY_BLOCK + 10)])
    rng = stream(4, STREAM_CORE, 3)
    want = np.concatenate([model.sample(rng, DELAY_BLOCK), model.sample(rng, DELAY_BLOCK)])[:DELAY_BLOCK + 10]
    assert np.array_equal(got, want)


@pytest.mark.parametrize("bad, field", [
    (dict(cores=0), "cores"), (dict(read_cost=0), "read_cost"), (dict(write_cost=1.5), "write_cost"),
    (dict(coherence_cost=-1), "coherence_cost"), (dict(atomic_coherence_cost=-2), "atomic_coherence_cost"),
    (dict(atomic_coherence_cost=2.5), "atomic_coherence_cost"), (dict(line_coords=0), "line_coords"),
    (dict(miss_overlap=-1), "miss_overlap"), (dict(miss_overlap=3.5), "miss_overlap"),
    (dict(lock_cost=-1), "lock_cost"), (dict(lock_cost=1.5), "lock_cost"),
    (dict(atomic_write_cost=0), "atomic_write_cost"), (dict(atomic_write_cost=2.5), "atomic_write_cost"),
    (dict(store_coherence_cost=-1), "store_coherence_cost"), (dict(store_coherence_cost=0.5), "store_coherence_cost"),
    (dict(delay=5), "delay"), (dict(cores=2, delay=(Constant(1),)), "delay"),
    (dict(quantum=100), "switch_cost"), (dict(quantum=0, switch_cost=1), "quantum"),
])
def test_machine_validation_names_the_field(bad, field):
    with pytest.raises(MachineError) as e:
        Machine(**bad)
    assert e.value.field == field
    assert f"Machine.{field}" in str(e.value)


@pytest.mark.parametrize("bad", [dict(ticks=-1), dict(ticks=2.5)])
def test_delay_validation(bad):
    with pytest.raises(DelayError):
        Constant(**bad)
    with pytest.raises(DelayError):
        Exponential(0.0)
    with pytest.raises(DelayError):
        Empirical([])
    with pytest.raises(DelayError):
        delay_from_dict({"kind": "gamma"})


def test_machine_to_dict_from_dict_through_toml():
    m = Machine(cores=3, read_cost=2, write_cost=5, coherence_cost=40, line_coords=4, quantum=1000, switch_cost=50,
                delay=(Constant(3), Exponential(9.0), StragglerMixture(Empirical([1, 2]), factor=4, p=0.5)))
    for mm in (m, m.replace(atomic_coherence_cost=90), m.replace(miss_overlap=250), m.replace(store_coherence_cost=0),
               m.replace(atomic_write_cost=7), m.replace(lock_cost=4)):
        text = tomli_w.dumps({"machine": mm.to_dict()})
        back = Machine.from_dict(tomllib.loads(text)["machine"])
        assert back == mm
    assert "atomic_coherence_cost" not in m.to_dict() and "miss_overlap" not in m.to_dict()
    assert (m.atomic_miss_cost, m.replace(atomic_coherence_cost=90).atomic_miss_cost) == (40, 90)
    assert "store_coherence_cost" not in m.to_dict() and m.replace(store_coherence_cost=0).to_dict()["store_coherence_cost"] == 0
    assert (m.store_miss_cost, m.replace(store_coherence_cost=0).store_miss_cost) == (40, 0)
    assert "lock_cost" not in m.to_dict() and "atomic_write_cost" not in m.to_dict() and (m.atomic_store_cost, m.replace(atomic_write_cost=7).atomic_store_cost) == (5, 7)
    # copy sets are kept when any access can miss
    assert Machine(coherence_cost=0, store_coherence_cost=5).coherence_tracked
    assert not Machine(coherence_cost=0, store_coherence_cost=0).coherence_tracked
    with pytest.raises(MachineError):
        Machine.from_dict({"cores": 2, "bogus": 1})


def test_missing_time_slicing_and_unknown_engine_raise_clearly():
    from conftest import small_terms
    from workload.problems import make_problem

    problem = make_problem("svm", small_terms(n_rows=10), lam=0.1, reg="l2")
    with pytest.raises(MachineError, match="time slicing"):
        simulate(RunSpec(scheme="hogwild", threads=3), Machine(cores=2), problem=problem)
    with pytest.raises(ValueError, match="engine"):
        simulate(RunSpec(scheme="hogwild", threads=2), Machine(cores=2), problem=problem, engine="gpu")
    for scheme in ("cyclades", "minibatch-sync"):  # their own sample rules do not model hidden misses
        with pytest.raises(MachineError, match="miss_overlap=0") as e:
            simulate(RunSpec(scheme=scheme, threads=2), Machine(cores=2, miss_overlap=50), problem=problem)
        assert e.value.field == "miss_overlap"
        with pytest.raises(MachineError, match="store_coherence_cost=None") as e:
            simulate(RunSpec(scheme=scheme, threads=2), Machine(cores=2, coherence_cost=9, store_coherence_cost=0),
                     problem=problem)
        assert e.value.field == "store_coherence_cost"
