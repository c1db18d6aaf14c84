"""hwsim.checks: τ, the perturbation structure, the identity, noise terms, lost updates."""
import dataclasses

import numpy as np
import pytest

import hwsim
from conftest import small_terms
from hwsim import checks
from hwsim.delays import Exponential
from hwsim.machine import Machine
from workload.problems import make_problem
from workload.spec import RunSpec

LABELLINGS = ("start", "after-read", "after-write")
MACHINE = Machine(cores=4, read_cost=2, write_cost=5, coherence_cost=15, delay=Exponential(25.0))
SLICED = Machine(cores=2, read_cost=2, write_cost=5, coherence_cost=15, delay=Exponential(25.0), quantum=40,
                 switch_cost=4)


@pytest.fixture(scope="module")
def lsq():
    return make_problem("least-squares", small_terms(n_rows=120, n_features=14, density=0.3, seed=7, labels="real"),
                        lam=1e-2, reg="l2")


def run(problem, dtype="fixed", write_mode="atomic", machine=MACHINE, threads=4, seed=0):
    spec = RunSpec(problem="least-squares", scheme="hogwild", threads=threads, epochs=2, step=0.02, dtype=dtype,
                   write_mode=write_mode, seed=seed)
    return hwsim.simulate(spec, machine, problem=problem)


@pytest.mark.parametrize("machine", [MACHINE, SLICED], ids=["pinned", "sliced"])
@pytest.mark.parametrize("write_mode", ["atomic", "rmw"])
def test_fixed_point_identity_is_exact(lsq, machine, write_mode):
    r = run(lsq, "fixed", write_mode, machine, threads=4)
    for lab in LABELLINGS:
        idn = checks.identity(r, lab)
        assert len(idn) == len(r.coords)
        assert idn["holds"].all() and (idn["residual"] == 0).all() and (idn["lhs"] == idn["rhs"]).all()
        assert (idn["lhs"] != 0).any()  # the run is genuinely perturbed
        pert = checks.perturbations(r, lab)
        if write_mode == "atomic":
            assert pert["within_tau"].all()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_float_identity_within_documented_bound(lsq, dtype):
    r = run(lsq, dtype, "rmw")
    for lab in LABELLINGS:
        idn = checks.identity(r, lab)
        assert idn["holds"].all()
        assert (idn["bound"] > 0).any()


def test_identity_detects_a_wrong_read(lsq):
    """Mutation check: the identity is not a tautology of the trace -- change one read value
    by one unit of the fixed-point scale and exactly that row fails."""
    r = run(lsq, "fixed", "atomic")
    coords = r.coords.copy()
    row = len(coords) // 2
    coords.loc[row, "read_value"] += 2.0 ** -r.spec.fixed_point_bits
    bad = checks.identity(dataclasses.replace(r, coords=coords), "start")
    assert (~bad["holds"]).sum() == 1
    assert not bad.set_index(["sample", "coord"]).loc[(coords.loc[row, "sample"], coords.loc[row, "coord"]), "holds"]


def test_without_perturbation_the_structure_is_empty(lsq):
    """A single thread reads exactly x_k: no S entries, zero noise terms."""
    spec = RunSpec(problem="least-squares", scheme="serial", threads=1, epochs=1, dtype="fixed", seed=1)
    r = hwsim.simulate(spec, MACHINE, problem=lsq)
    for lab in LABELLINGS:
        assert checks.perturbations(r, lab).empty
    n = checks.noise(r, problem=lsq)
    assert (n["dist2"] == 0).all() and (n["inner"] == 0).all()
    assert checks.tau_summary(r.samples)["tau"].eq(0).all()


def test_s_matrix_and_noise_terms_match_the_identity(lsq):
    r = run(lsq, "fixed", "atomic")
    pert = checks.perturbations(r, "start")
    k = int(pert["sample"].value_counts().index[0])
    S = checks.s_matrix(pert, k)
    assert set(np.unique(S.to_numpy())) <= {-1, 0, 1} and len(S) > 0
    # under the start labelling L(i) = i: earlier samples can only be missed, later ones only seen
    for i, row in S.iterrows():
        assert (row[row != 0] == (1 if i > k else -1)).all()
    p = pert[pert["sample"] == k]
    assert ((p["distance"] > 0) == (p["sign"] > 0)).all()
    idn = checks.identity(r, "start")
    n = checks.noise(r, problem=lsq).set_index("sample")
    d = idn[idn["sample"] == k]["lhs"].to_numpy() / 2.0 ** r.spec.fixed_point_bits
    assert n.loc[k, "dist2"] == pytest.approx(float(d @ d))
    assert (n["dist2"] >= 0).all()


def test_lost_updates_table_and_tau_counters(lsq):
    r = run(lsq, "fixed", "rmw", Machine(cores=4, read_cost=1, write_cost=8, delay=Exponential(5.0)))
    lost = checks.lost_updates(r)
    assert r.lost_updates > 0 and len(lost) == r.lost_updates == int(r.coords["lost"].sum())
    assert set(lost.columns) == {"sample", "coord", "write_tick", "overwritten_by", "in_final_model"}
    t = checks.tau(r.samples)
    assert (t["overlap"] == t["overlap_counters"]).all()
    assert (t["tau_start"] <= t["overlap"].max()).all()


def test_checks_need_the_coordinate_trace(lsq):
    spec = RunSpec(problem="least-squares", scheme="hogwild", threads=2, dtype="fixed")
    r = hwsim.simulate(spec, MACHINE, problem=lsq, coord_trace=False)
    with pytest.raises(ValueError, match="coord_trace=True"):
        checks.identity(r)
    with pytest.raises(ValueError, match="labelling"):
        checks.perturbations(hwsim.simulate(spec, MACHINE, problem=lsq), "middle")
