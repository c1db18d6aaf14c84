"""workload.layout: realrun's coordinate numbering, as hwsim must simulate it."""
from __future__ import annotations

import numpy as np
import pytest

import hwsim
from analysis import calibrate as cal
from analysis import predict as pred
from workload.data import synthetic_classification
from workload.layout import degree_order, relabel_by_degree
from workload.problems import make_problem
from workload.spec import RunSpec


@pytest.fixture(scope="module")
def zipf_problem():
    """Zipf-skewed features scattered over the index range (permute=True), as real data."""
    t = synthetic_classification(n_rows=3000, n_features=800, nnz_mean=12.0, seed=3)
    return make_problem("svm", t, lam=0.5)


def test_degree_order_is_descending_and_stable():
    idx = np.array([3, 1, 3, 2, 1, 3, 0])  # degrees: 0:1, 1:2, 2:1, 3:3
    assert degree_order(idx, 5).tolist() == [3, 1, 0, 2, 4]


def test_relabel_keeps_the_problem(zipf_problem):
    """The renumbered problem is the same function (up to summation order), its supports are
    sorted, and coordinate k now has the k-th largest degree."""
    p2, old_of_new = relabel_by_degree(zipf_problem)
    t, t2 = zipf_problem.terms, p2.terms
    assert sorted(old_of_new.tolist()) == list(range(t.n))
    d2 = t2.degrees()
    assert np.all(np.diff(d2) <= 0)
    assert np.array_equal(d2, t.degrees()[old_of_new])
    for e in (0, 17, 2999):
        s = t2.indices[t2.indptr[e]:t2.indptr[e + 1]]
        assert np.all(np.diff(s) > 0)
        assert sorted(old_of_new[s].tolist()) == sorted(t.indices[t.indptr[e]:t.indptr[e + 1]].tolist())
    x = np.random.default_rng(0).standard_normal(t.n)
    assert p2.objective(x[old_of_new]) == pytest.approx(zipf_problem.objective(x), rel=1e-12)
    assert np.array_equal(p2.aux, zipf_problem.aux[old_of_new])


def test_relabel_refuses_a_non_linear_problem():
    class Fake:
        name = "matrix-completion"

    with pytest.raises(ValueError, match="not linear"):
        relabel_by_degree(Fake())


def test_simulating_realrun_layout_moves_fewer_lines(zipf_problem):
    """Packing the hot features into a few lines (realrun's layout) leaves hwsim fewer
    coherence misses per sample than the scattered numbering of the data."""
    spec = RunSpec(problem="svm", threads=1, epochs=1, step=0.01, seed=1)
    m = hwsim.Machine(cores=1, read_cost=1, write_cost=1, delay=hwsim.Constant(40))
    scattered = cal.misses_per_sample(spec, m, zipf_problem, engine="fast")
    packed = cal.misses_per_sample(spec, m, zipf_problem, engine="fast", layout="by-degree")
    assert 0 < packed < scattered


def test_prediction_takes_the_layout_from_the_calibration(zipf_problem):
    spec = RunSpec(problem="svm", threads=1, epochs=1, step=0.01, seed=1)
    m = hwsim.Machine(cores=1, read_cost=1, write_cost=1, delay=hwsim.Constant(40), coherence_cost=30)
    c_given = cal.Calibration(machine=m, table=None, provenance={"memory_layout": "as-given"})
    c_degree = cal.Calibration(machine=m, table=None, provenance={"memory_layout": "by-degree"})
    a = pred.predict(spec, c_given, cores=(1, 2), problem=zipf_problem)
    b = pred.predict(spec, c_degree, cores=(1, 2), problem=zipf_problem)
    assert a["layout"].tolist() == ["as-given"] * 2 and b["layout"].tolist() == ["by-degree"] * 2
    # one core: no coherence, same time; two cores: fewer line transfers in realrun's layout
    assert a["simulated_seconds"].iloc[0] == b["simulated_seconds"].iloc[0]
    assert b["samples_per_s"].iloc[1] > a["samples_per_s"].iloc[1]
    with pytest.raises(ValueError, match="layout = 'sideways'"):
        pred.predict(spec, m, cores=(1,), problem=zipf_problem, layout="sideways")


def test_calibration_records_realrun_layout(zipf_problem):
    import realrun

    spec = RunSpec(problem="svm", threads=1, epochs=1, step=0.01, seed=1)
    on = realrun.run(spec, problem=zipf_problem)
    off = realrun.run(spec.replace(options={"relabel": False}), problem=zipf_problem)
    assert cal.calibrate(on, problem=zipf_problem).provenance["memory_layout"] == "by-degree"
    assert cal.calibrate(off, problem=zipf_problem).provenance["memory_layout"] == "as-given"
    with pytest.raises(ValueError, match="layout = 'diagonal'"):
        cal.calibrate(on, problem=zipf_problem, layout="diagonal")
