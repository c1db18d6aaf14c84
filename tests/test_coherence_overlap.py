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
