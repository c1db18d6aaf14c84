"""realrun.coherence: the k-lines ping-pong runs, hands every line over, and its fit is a line."""
from __future__ import annotations

import os

import numpy as np
import pytest

from realrun import coherence as co

two_cpus = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")


@two_cpus
def test_pingpong_lines_hands_over_every_round():
    """Each batch's half round trip is a positive, finite time; the run ends (no line is
    ever left behind: a missed hand-over would spin forever)."""
    half = co.pingpong_lines(8, rounds=400, batch=100)
    assert half.shape == (4,) and np.all(np.isfinite(half)) and np.all(half > 0)


@two_cpus
def test_overlap_fit_is_least_squares_over_the_medians():
    f = co.overlap_fit((1, 4, 16), rounds=400, batch=100)
    t = f.table
    assert t["k"].tolist() == [1, 4, 16] and (t["batches"] == 4).all()
    b, a = np.polyfit(t["k"], t["half_round_ns"], 1)
    assert f.lone_ns == pytest.approx(f.latency_ns + f.marginal_ns)
    assert f.marginal_ns == pytest.approx(max(b, 1e-9)) and f.latency_ns == pytest.approx(a)
    assert f.overlap == pytest.approx(f.lone_ns / f.marginal_ns)


@pytest.mark.parametrize("kw, match", [({"k": 0}, "k = 0"), ({"k": 2, "rounds": 10, "batch": 10}, "rounds = 10"),
                                       ({"k": 2, "cores": (0, 0)}, "cores = ")])
def test_bad_arguments_name_the_parameter(kw, match):
    k = kw.pop("k")
    with pytest.raises(ValueError, match=match):
        co.pingpong_lines(k, **kw)


def test_overlap_fit_needs_two_k():
    with pytest.raises(ValueError, match="ks = "):
        co.overlap_fit((4,))


def _fit(halves, ks=(1, 2, 4)):
    import pandas as pd

    halves = np.asarray(halves, np.float64)
    table = pd.DataFrame({"k": list(ks), "half_round_ns": halves, "per_line_ns": halves / np.asarray(ks),
                          "batches": 10})
    return co._line(table, (0, 1))


def test_pooled_fit_takes_the_per_k_median_then_the_same_line():
    fits = [_fit([10, 12, 16]), _fit([20, 22, 26]), _fit([11, 14, 15])]
    pooled = co.pooled_fit(fits)
    t = pooled.table
    assert t["half_round_ns"].tolist() == [11, 14, 16]
    assert t["half_round_lo"].tolist() == [10, 12, 15] and t["half_round_hi"].tolist() == [20, 22, 26]
    assert (t["batches"] == 30).all() and (t["fits"] == 3).all()
    b, a = np.polyfit([1, 2, 4], [11, 14, 16], 1)
    assert pooled.marginal_ns == pytest.approx(b) and pooled.latency_ns == pytest.approx(a)
    assert co.pooled_fit([fits[0]]).table["half_round_ns"].tolist() == [10, 12, 16]


def test_pooled_fit_refuses_empty_and_mismatched_fits():
    with pytest.raises(ValueError, match="fits is empty"):
        co.pooled_fit([])
    with pytest.raises(ValueError, match="different k"):
        co.pooled_fit([_fit([1, 2, 3]), _fit([1, 2, 3], ks=(1, 2, 8))])
