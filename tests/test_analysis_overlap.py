"""Overlap τ on synthetic traces whose τ is derived by hand, and τ distances."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import overlap
from analysis.synthetic import trace_from_phases


def _equal(p, n, dur=(3, 4, 3), start=None):
    w = np.repeat(np.arange(p), n)
    k = p * n
    return trace_from_phases(w, np.arange(k), np.full(k, dur[0]), np.full(k, dur[1]), np.full(k, dur[2]),
                             start=start)


@pytest.mark.parametrize("p", [1, 2, 3, 8])
def test_equal_delays_started_together(p):
    """p workers, equal durations T, started at 0: worker w's i-th sample runs in [iT, (i+1)T),
    exactly the intervals of the other p − 1 workers' i-th samples (intervals that only touch,
    [iT, (i+1)T) and [(i+1)T, ...), do not overlap). So τ_k = p − 1 for every k; under the
    start labelling the i-th round holds labels ip .. ip + p − 1, so label ip + j lags its
    round by max(j, p − 1 − j), and the largest lag is p − 1."""
    tt = overlap.tau_table(_equal(p, 5))
    assert (tt["tau"] == p - 1).all()
    j = tt["sample"].to_numpy() % p
    assert (tt["tau_start"].to_numpy() == np.maximum(j, p - 1 - j)).all()
    assert tt["tau_start"].max() == p - 1


def test_staggered_by_half_a_sample():
    """Two workers, T = 10, worker 1 starts at 5: each interior sample overlaps two samples of
    the other worker (the one running when it starts and the one starting halfway), τ_k = 2;
    worker 0's first sample overlaps only one (τ = 1), as does worker 1's last."""
    tt = overlap.tau_table(_equal(2, 6, start=[0, 5]))
    assert tt["tau"].iloc[0] == 1 and tt["tau"].iloc[-1] == 1
    assert (tt["tau"].iloc[1:-1] == 2).all()


def test_time_sliced_sample_overlaps_a_quantum_of_others():
    """Worker 0 is descheduled for 1000 ticks mid-sample (its sample takes 1010), while worker
    1 runs 100 samples of 10 ticks: that sample's τ is 100 -- unbounded in the quantum."""
    w = np.r_[0, np.ones(100, int)]
    compute = np.r_[1000, np.full(100, 4)]
    t = trace_from_phases(w, np.arange(101), np.r_[5, np.full(100, 3)], compute, np.r_[5, np.full(100, 3)])
    tt = overlap.tau_table(t)
    assert tt.loc[tt["worker"] == 0, "tau"].item() == 100
    assert (tt.loc[tt["worker"] == 1, "tau"] == 1).all()
    s = overlap.tau_summary(tt)
    assert s["max"].item() == 100 and s["count"].item() == 101


def test_unrecorded_labels_give_nan():
    """realrun does not record read_seq (-1): that labelling is NaN, the others are computed."""
    t = _equal(2, 3)
    t["read_seq"] = -1
    tt = overlap.tau_table(t)
    assert tt["tau_after_read"].isna().all() and (tt["tau"] == 1).all() and (tt["tau_start"] == 1).all()


def _overlap_from_times(t):
    """Oracle: overlaps counted from timestamps (intervals [t_start, t_end) that intersect)."""
    ts, te = t["t_start"].to_numpy(), t["t_end"].to_numpy()
    ov = (ts[:, None] < te[None, :]) & (ts[None, :] < te[:, None])
    np.fill_diagonal(ov, False)
    return ov


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_counter_tau_equals_time_overlap(p, n, seed):
    """For any per-worker sequential schedule (compute ≥ 1 tick), the counters' τ_k equals
    the number of intervals meeting k's, and τ_k^L is the largest label distance among
    them (checked against a plain O(K²) oracle on the timestamps)."""
    rng = np.random.default_rng(seed)
    k = p * n
    t = trace_from_phases(np.repeat(np.arange(p), n), np.arange(k), rng.integers(0, 5, k), rng.integers(1, 9, k),
                          rng.integers(0, 5, k), gap=rng.integers(0, 6, k), start=rng.integers(0, 10, p))
    tt = overlap.tau_table(t)
    ov = _overlap_from_times(t)
    assert (tt["tau"].to_numpy() == ov.sum(axis=1)).all()
    for col, lab in (("tau_start", "start_seq"), ("tau_after_write", "end_seq")):
        L = t[lab].to_numpy()
        lag = np.where(ov, np.abs(L[:, None] - L[None, :]), 0).max(axis=1)
        assert (tt[col].to_numpy() == lag).all(), col


def test_distance_known_values():
    """W1 between {0,1,2} and {1,2,3} (each uniform) is 1 (a shift by one); KS is 1/3.
    Disjoint supports: KS = 1."""
    d = overlap.tau_distance([0, 1, 2], [1, 2, 3])
    assert d["wasserstein"] == pytest.approx(1.0) and d["ks"] == pytest.approx(1 / 3)
    assert overlap.tau_distance([0, 0], [5, 5])["ks"] == 1.0
    same = overlap.tau_distance([1, 2, 2, 3], [1, 2, 2, 3])
    assert same["wasserstein"] == 0.0 and same["ks"] == 0.0 and same["ks_pvalue"] == pytest.approx(1.0)


def test_distance_histogram_equals_raw():
    rng = np.random.default_rng(0)
    a, b = rng.poisson(2.0, 3000), rng.poisson(2.4, 2000)
    ha, hb = overlap.tau_histogram(a), overlap.tau_histogram(b)
    raw, hist = overlap.tau_distance(a, b), overlap.tau_distance(ha, hb)
    for k in ("wasserstein", "ks", "mean_a", "mean_b", "n_a", "n_b"):
        assert raw[k] == pytest.approx(hist[k]), k
    from scipy import stats

    assert raw["ks"] == pytest.approx(stats.ks_2samp(a, b).statistic)
    assert raw["wasserstein"] == pytest.approx(stats.wasserstein_distance(a, b))
    side = overlap.tau_side_by_side(a, hb)
    assert side["measured"].sum() == pytest.approx(1.0) and side["predicted"].sum() == pytest.approx(1.0)


def test_summary_by_group():
    df = pd.DataFrame({"threads": [1, 1, 2, 2, 2], "tau": [0, 0, 1, 2, 3]})
    s = overlap.tau_summary(df, by=["threads"])
    assert s.set_index("threads").loc[2, "mean"] == 2.0 and s.set_index("threads").loc[1, "max"] == 0.0
