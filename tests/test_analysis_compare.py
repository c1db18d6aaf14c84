"""compare's verdicts on synthetic measured and predicted tables whose answers are known."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import compare as cmp
from analysis.verdicts import AGREES, DISAGREES, NOT_APPLICABLE


def _measured(sps1=(100.0, 102.0, 98.0), sps2=(185.0, 184.0, 186.0), lost2=0.0):
    rows = [{"threads": 1, "repeat": i, "samples_per_s": v, "lost_per_sample": 0.0} for i, v in enumerate(sps1)]
    rows += [{"threads": 2, "repeat": i, "samples_per_s": v, "lost_per_sample": lost2} for i, v in enumerate(sps2)]
    return pd.DataFrame(rows)


def _predicted(sps1=120.0, sps2=216.0, lost2=0.0, fitted="1"):
    return pd.DataFrame({"kind": "predicted", "threads": [1, 2], "samples_per_s": [sps1, sps2],
                         "lost_per_sample": [0.0, lost2], "calibrated_on_threads": fitted})


def _fig(df, p, figure):
    r = df[(df["threads"] == p) & (df["figure"] == figure)]
    assert len(r) == 1
    return r.iloc[0]


def test_speedup_within_ten_percent_agrees():
    """Measured 1→2: median 185 / median 100 = 1.85; predicted 216/120 = 1.80: relative error
    0.05/1.85 = 2.7% ≤ 10%: agrees (the absolute throughput is 20% off: 120 vs 100, at the
    limit of THROUGHPUT_REL_ERR_MAX, and the 1-thread row is in sample)."""
    df = cmp.compare(_measured(), _predicted())
    r = _fig(df, 2, "speedup")
    assert r["measured"] == pytest.approx(1.85) and r["predicted"] == pytest.approx(1.8)
    assert r["observed"] == pytest.approx(0.05 / 1.85) and r["verdict"] == AGREES and r["honest"]
    assert r["threshold_name"] == "SPEEDUP_REL_ERR_MAX" and r["bound"] == cmp.SPEEDUP_REL_ERR_MAX
    one = df[df["threads"] == 1]
    assert (one["verdict"] == NOT_APPLICABLE).all() and (one["honest"] == False).all()  # noqa: E712
    assert "in-sample" in _fig(df, 1, "samples_per_s")["note"]


def test_two_x_for_a_cache_bound_regime_disagrees():
    """The regime where hot cache lines hold the real speedup to 1.1×: a simulator that
    predicts 2× is off by 0.9/1.1 = 82%: disagrees, by a factor 8.2 over the threshold."""
    df = cmp.compare(_measured(sps2=(110.0, 110.0, 110.0)), _predicted(sps1=100.0, sps2=200.0))
    r = _fig(df, 2, "speedup")
    assert r["verdict"] == DISAGREES and r["ratio"] == pytest.approx((0.9 / 1.1) / 0.10)


def test_in_sample_prediction_is_not_a_verdict():
    """A machine fitted on the 2-thread run cannot be judged on it."""
    df = cmp.compare(_measured(), _predicted(fitted="1,2"))
    assert (df.loc[df["threads"] == 2, "verdict"] == NOT_APPLICABLE).all()
    assert (df.loc[df["threads"] == 2, "honest"] == False).all()  # noqa: E712
    df = cmp.compare(_measured(), _predicted().drop(columns="calibrated_on_threads"))
    r = _fig(df, 2, "speedup")
    assert r["honest"] is None and "provenance unknown" in r["note"]
    df = cmp.compare(_measured(), _predicted().drop(columns="calibrated_on_threads"), calibrated_on=[1])
    assert bool(_fig(df, 2, "speedup")["honest"])


def test_tau_figures():
    """Identical τ histograms agree (KS 0, W1 0); a prediction of τ ≡ 1 against a measured
    τ ≡ 3 has KS 1 and W1 2 (relative 2/3 > 0.5): both disagree."""
    mt = pd.DataFrame({"threads": 2, "tau": [0, 1, 2], "count": [10, 70, 20]})
    df = cmp.compare(_measured(), _predicted(), measured_tau=mt, predicted_tau=mt.copy())
    for f in ("tau_ks", "tau_wasserstein", "tau_mean"):
        assert _fig(df, 2, f)["verdict"] == AGREES and _fig(df, 2, f)["observed"] == 0.0
    a = pd.DataFrame({"threads": 2, "tau": [3], "count": [50]})
    b = pd.DataFrame({"threads": 2, "tau": [1], "count": [50]})
    df = cmp.compare(_measured(), _predicted(), measured_tau=a, predicted_tau=b)
    assert _fig(df, 2, "tau_ks")["observed"] == 1.0 and _fig(df, 2, "tau_ks")["verdict"] == DISAGREES
    assert _fig(df, 2, "tau_wasserstein")["observed"] == pytest.approx(2 / 3)
    assert _fig(df, 2, "tau_wasserstein")["verdict"] == DISAGREES
    # per-sample τ instead of a histogram gives the same figures
    raw = pd.DataFrame({"threads": 2, "tau": np.repeat([0, 1, 2], [10, 70, 20])})
    df2 = cmp.compare(_measured(), _predicted(), measured_tau=raw, predicted_tau=mt)
    assert _fig(df2, 2, "tau_ks")["observed"] == 0.0


def test_lost_updates_figure():
    """Rates 1e-3 vs 1.2e-3 per sample: |Δ| = 2e-4 ≤ max(1e-4, 0.5 · 1e-3): agrees; 1e-3 vs 0: disagrees."""
    df = cmp.compare(_measured(lost2=1e-3), _predicted(lost2=1.2e-3))
    assert _fig(df, 2, "lost_updates")["verdict"] == AGREES
    df = cmp.compare(_measured(lost2=1e-3), _predicted(lost2=0.0))
    assert _fig(df, 2, "lost_updates")["verdict"] == DISAGREES


def _hist(p, f):
    return pd.DataFrame({"threads": p, "epoch": np.arange(len(f)), "samples": np.arange(len(f)) * 100,
                         "objective": f, "dist2_opt": np.nan, "time": 0.0})


def test_convergence_gap():
    """Objectives 1.0, 0.5, 0.4 measured vs 1.0, 0.505, 0.404 predicted: largest relative gap
    1% ≤ 2%: agrees; vs 1.0, 0.6, 0.45: 20% gap: disagrees by a factor 10."""
    mh = _hist(2, [1.0, 0.5, 0.4])
    df = cmp.compare(_measured(), _predicted(), measured_history=mh, predicted_history=_hist(2, [1.0, 0.505, 0.404]))
    r = _fig(df, 2, "convergence")
    assert r["observed"] == pytest.approx(0.01) and r["verdict"] == AGREES
    df = cmp.compare(_measured(), _predicted(), measured_history=mh, predicted_history=_hist(2, [1.0, 0.6, 0.45]))
    r = _fig(df, 2, "convergence")
    assert r["verdict"] == DISAGREES and r["ratio"] == pytest.approx(10.0)
    gaps = cmp.convergence_gaps(mh, _hist(2, [1.0, 0.6, 0.45]))
    assert list(gaps["epoch"]) == [0, 1, 2] and gaps["rel_gap"].max() == pytest.approx(0.2)


def test_missing_pieces_are_not_applicable_and_keys_match():
    m = _measured().assign(scheme="hogwild", workload="rcv1")
    p = pd.concat([_predicted().assign(scheme="hogwild", workload="rcv1"),
                   _predicted(sps2=100.0).assign(scheme="lock-global", workload="rcv1")])
    df = cmp.compare(m, p)
    assert set(df["scheme"]) == {"hogwild"}
    assert _fig(df, 2, "convergence")["verdict"] == NOT_APPLICABLE
    assert _fig(df, 2, "tau_ks")["verdict"] == NOT_APPLICABLE
    with pytest.raises(ValueError, match="samples_per_s"):
        cmp.compare(m.drop(columns="samples_per_s"), p)
    v = cmp.verdicts(df)
    assert "figure" in v.columns


def _tau_hist(p, zero_share, n=1000):
    z = int(round(zero_share * n))
    return pd.DataFrame({"threads": p, "tau": [0, 1, 2], "count": [z, (n - z) // 2, n - z - (n - z) // 2]})


def test_time_shared_measurement_is_not_a_verdict():
    """40% of the measured 2-thread samples overlapped nothing against 1% predicted: the
    threads took turns; the throughput figures are not applicable, with both shares in
    the note; τ's own figures are still compared."""
    m_tau, p_tau = _tau_hist(2, 0.40), _tau_hist(2, 0.01)
    df = cmp.compare(_measured(sps2=(110.0, 110.0, 110.0)), _predicted(sps1=100.0, sps2=200.0),
                     measured_tau=m_tau, predicted_tau=p_tau)
    for fig in ("speedup", "samples_per_s"):
        r = _fig(df, 2, fig)
        assert r["verdict"] == NOT_APPLICABLE and "time-shared: 40.0%" in r["note"] and "1.0%" in r["note"]
    assert _fig(df, 2, "tau_ks")["verdict"] in (AGREES, DISAGREES)


def test_parallel_measurement_keeps_its_verdict():
    """An excess of 5 points (6% vs 1%) is within CONCURRENCY_TAU0_EXCESS_MAX: judged as usual."""
    df = cmp.compare(_measured(sps2=(110.0, 110.0, 110.0)), _predicted(sps1=100.0, sps2=200.0),
                     measured_tau=_tau_hist(2, 0.06), predicted_tau=_tau_hist(2, 0.01))
    assert _fig(df, 2, "speedup")["verdict"] == DISAGREES
    assert cmp.tau0_share(_tau_hist(2, 0.25)) == pytest.approx(0.25)
    assert cmp.tau0_share(pd.DataFrame({"tau": [0, 0, 3, 1]})) == pytest.approx(0.5)
