"""Compare: measured vs predicted, one verdict per figure against a named threshold.

For every thread count that was both measured and predicted, the figures are:

=================  ======================================================  ==========================
figure             error (observed) held against                           threshold
=================  ======================================================  ==========================
speedup            |S_pred − S_meas| / S_meas, S = samples/s(p) /          SPEEDUP_REL_ERR_MAX
                   samples/s(1 thread)
samples_per_s      |pred − meas| / meas (absolute throughput)              THROUGHPUT_REL_ERR_MAX
tau_ks             two-sample KS statistic of the τ distributions          TAU_KS_MAX
tau_wasserstein    W1(τ_pred, τ_meas) / max(mean τ_meas, 1)                TAU_W1_REL_MAX
tau_mean           |mean τ_pred − mean τ_meas| / max(mean τ_meas, 1)       TAU_MEAN_REL_ERR_MAX
lost_updates       |rate_pred − rate_meas| (lost updates per sample),      LOST_RATE_ABS_TOL and
                   against max(LOST_RATE_ABS_TOL, LOST_REL_ERR_MAX·meas)   LOST_REL_ERR_MAX
convergence        max over epochs of |f_pred(e) − f_meas(e)| / |f_meas(e)|  CONVERGENCE_REL_GAP_MAX
=================  ======================================================  ==========================

The thresholds are module constants, each set once here before any comparison was run
(``SPEEDUP_REL_ERR_MAX`` is issue 13's 10%); a report quotes them by name. Measured
repeats at one thread count are summarised by their median (throughput) or mean
(objective per epoch), and τ histograms of repeats are pooled.

Honesty. A prediction for p threads is *out of sample* only when the machine was not
fitted to a p-thread run. The predicted table's ``calibrated_on_threads`` (or the
``calibrated_on`` argument) says which runs the machine was fitted to; a figure at a thread
count in that set is reported with ``honest = False`` and verdict *not applicable*
("in-sample"), and ``honest`` is None where the provenance is unknown. The speedup at the
baseline (1 thread) is 1 by definition and not a figure.

Was the measurement parallel? On a shared machine other processes take turns on the
cores, and a "2-thread" run whose threads mostly ran one at a time measures time sharing,
not the machine: its speedup says nothing about the simulator. realrun's counters show it:
a sample that started with no other sample in flight (τ = 0) is rare when p threads really
run at once (hwsim predicts the share for the machine it simulates). When the measured
share of τ = 0 exceeds the predicted one by more than ``CONCURRENCY_TAU0_EXCESS_MAX``, the
throughput and speedup rows at that thread count are *not applicable* ("time-shared"),
with both shares in the note -- never *disagrees*. (On this project's 2-core machines,
runs with both cores free showed excesses of 2.5–6 points, runs beside other jobs 26–54.)
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .overlap import tau_distance
from .verdicts import AGREES, DISAGREES, check_row

SPEEDUP_REL_ERR_MAX = 0.10
THROUGHPUT_REL_ERR_MAX = 0.20
TAU_KS_MAX = 0.20
TAU_W1_REL_MAX = 0.50
TAU_MEAN_REL_ERR_MAX = 0.25
LOST_RATE_ABS_TOL = 1e-4
LOST_REL_ERR_MAX = 0.50
CONVERGENCE_REL_GAP_MAX = 0.02
#: A measured p-thread run whose share of τ = 0 samples exceeds the prediction's by more
#: than this was time-shared (module docstring): its throughput figures are not applicable.
CONCURRENCY_TAU0_EXCESS_MAX = 0.10

THRESHOLDS = {
    "speedup": ("SPEEDUP_REL_ERR_MAX", SPEEDUP_REL_ERR_MAX),
    "samples_per_s": ("THROUGHPUT_REL_ERR_MAX", THROUGHPUT_REL_ERR_MAX),
    "tau_ks": ("TAU_KS_MAX", TAU_KS_MAX),
    "tau_wasserstein": ("TAU_W1_REL_MAX", TAU_W1_REL_MAX),
    "tau_mean": ("TAU_MEAN_REL_ERR_MAX", TAU_MEAN_REL_ERR_MAX),
    "lost_updates": ("LOST_RATE_ABS_TOL, LOST_REL_ERR_MAX", LOST_RATE_ABS_TOL),
    "convergence": ("CONVERGENCE_REL_GAP_MAX", CONVERGENCE_REL_GAP_MAX),
}
KEYS = ("workload", "scheme")
COLUMNS = ("threads", "figure", "measured", "predicted", "observed", "bound", "relation", "ratio", "margin",
           "verdict", "threshold_name", "honest", "note")


def _table(x, part: str = "summary") -> pd.DataFrame | None:
    """A DataFrame from a DataFrame, a :class:`analysis.predict.Prediction`, or realrun results."""
    if x is None:
        return None
    if isinstance(x, pd.DataFrame):
        return x
    if hasattr(x, part) and isinstance(getattr(x, part), pd.DataFrame):
        return getattr(x, part)
    if isinstance(x, Sequence) and x and hasattr(x[0], "samples_per_s"):
        from .predict import measured

        return getattr(measured(list(x)), part)
    raise TypeError(f"compare: cannot read a {part} table from {type(x).__name__}; pass a DataFrame, a "
                    "Prediction, or a list of realrun results")


def _keys(*dfs) -> list[str]:
    present = [k for k in KEYS if all(d is not None and k in d.columns for d in dfs)]
    return present


def _groups(df: pd.DataFrame, keys: list[str]) -> Iterable[tuple[tuple, pd.DataFrame]]:
    if not keys:
        yield (), df
        return
    for k, g in df.groupby(keys, sort=True):
        yield (k if isinstance(k, tuple) else (k,)), g


def _calibrated_on(predicted: pd.DataFrame, calibrated_on) -> set[int] | None:
    if calibrated_on is not None:
        return {int(t) for t in calibrated_on}
    if "calibrated_on_threads" not in predicted.columns:
        return None
    vals = {str(v) for v in predicted["calibrated_on_threads"].dropna()}
    out: set[int] = set()
    for v in vals:
        out |= {int(t) for t in v.split(",") if t.strip()}
    return out if vals and out else None


def _honest(p: int, fitted: set[int] | None):
    if fitted is None:
        return None
    return p not in fitted


def _row(p, figure, meas, pred, observed, bound, *, honest, note="", relation="<=", na=None):
    name, _ = THRESHOLDS[figure]
    if honest is False and na is None:
        na = f"in-sample: the machine was fitted to a {p}-thread run"
    r = check_row(observed, bound, relation, note=note, not_applicable=na, words=(AGREES, DISAGREES))
    if honest is None and not na:
        r["note"] = (r["note"] + "; " if r["note"] else "") + "calibration provenance unknown"
    return {"threads": p, "figure": figure, "measured": meas, "predicted": pred, **r, "threshold_name": name,
            "honest": honest}


def _rel(a, b):
    return abs(a - b) / abs(b) if b else (0.0 if a == b else math.inf)


def _tau_for(df: pd.DataFrame | None, keys: list[str], key: tuple, p: int):
    if df is None or df.empty:
        return None
    sel = df
    for k, v in zip(keys, key):
        if k in sel.columns:
            sel = sel[sel[k] == v]
    sel = sel[sel["threads"] == p]
    return sel if len(sel) else None


def _history_for(df: pd.DataFrame | None, keys: list[str], key: tuple, p: int) -> pd.Series | None:
    sel = _tau_for(df, keys, key, p)
    if sel is None:
        return None
    return sel.groupby("epoch")["objective"].mean()


def convergence_gaps(measured_history: pd.DataFrame, predicted_history: pd.DataFrame) -> pd.DataFrame:
    """Per (thread count, epoch): ``measured, predicted, gap, rel_gap`` of the objective
    (repeats averaged)."""
    keys = _keys(measured_history, predicted_history)
    rows = []
    for key, mg in _groups(measured_history, keys):
        for p in sorted(mg["threads"].unique()):
            hm = _history_for(measured_history, keys, key, p)
            hp = _history_for(predicted_history, keys, key, p)
            if hm is None or hp is None:
                continue
            both = pd.concat([hm.rename("measured"), hp.rename("predicted")], axis=1, join="inner")
            for e, r in both.iterrows():
                rows.append({**dict(zip(keys, key)), "threads": int(p), "epoch": int(e), "measured": r["measured"],
                             "predicted": r["predicted"], "gap": r["predicted"] - r["measured"],
                             "rel_gap": _rel(r["predicted"], r["measured"])})
    return pd.DataFrame(rows)


def compare(measured, predicted, *, measured_history=None, predicted_history=None, measured_tau=None,
            predicted_tau=None, calibrated_on: Sequence[int] | None = None, baseline_threads: int = 1) -> pd.DataFrame:
    """Measured vs predicted, one row per (thread count, figure) (module docstring).

    ``measured``: one row per run (``threads, samples_per_s`` [, ``lost_updates`` with
    ``samples`` or ``lost_per_sample``] [, ``workload, scheme, repeat``]), a
    :class:`~analysis.predict.Prediction` from :func:`analysis.predict.measured`, or a list
    of realrun results. ``predicted``: :func:`analysis.predict.predict`'s table or a
    Prediction. Histories: HISTORY_SCHEMA plus ``threads``; τ: per-sample (``threads,
    tau``) or histograms (``threads, tau, count``). When a Prediction is passed, its
    history and τ tables are used unless given explicitly.

    Columns: ``[workload, scheme,] threads, figure, measured, predicted, observed, bound,
    relation, ratio, margin, verdict, threshold_name, honest, note`` and, for τ rows,
    ``wasserstein, ks, ks_pvalue``.
    """
    m = _table(measured)
    pr = _table(predicted)
    if measured_history is None and not isinstance(measured, pd.DataFrame) and measured is not None:
        measured_history = _table(measured, "history")
    if measured_tau is None and not isinstance(measured, pd.DataFrame) and measured is not None:
        measured_tau = _table(measured, "tau")
    if predicted_history is None and hasattr(predicted, "history"):
        predicted_history = predicted.history
    if predicted_tau is None and hasattr(predicted, "tau"):
        predicted_tau = predicted.tau
    for name, df in (("measured", m), ("predicted", pr)):
        missing = [c for c in ("threads", "samples_per_s") if c not in df.columns]
        if missing:
            raise ValueError(f"compare: the {name} table lacks {missing}; it needs one row per run with 'threads' "
                             "and 'samples_per_s'")
    fitted = _calibrated_on(pr, calibrated_on)
    keys = _keys(m, pr)
    rows = []
    for key, mg in _groups(m, keys):
        pg = pr
        for k, v in zip(keys, key):
            pg = pg[pg[k] == v]
        meas_sps = mg.groupby("threads")["samples_per_s"].median()
        pred_sps = pg.groupby("threads")["samples_per_s"].median()
        for p in sorted(set(meas_sps.index) & set(pred_sps.index)):
            p = int(p)
            honest = _honest(p, fitted)
            out = []
            tm, tp = _tau_for(measured_tau, keys, key, p), _tau_for(predicted_tau, keys, key, p)
            shared = time_shared(tm, tp) if p > 1 else None
            # throughput
            out.append(_row(p, "samples_per_s", meas_sps[p], pred_sps[p], _rel(pred_sps[p], meas_sps[p]),
                            THROUGHPUT_REL_ERR_MAX, honest=honest, na=shared))
            # speedup over the baseline
            if p == baseline_threads:
                out.append(_row(p, "speedup", 1.0, 1.0, math.nan, SPEEDUP_REL_ERR_MAX, honest=honest,
                                na=f"the baseline ({baseline_threads} thread): speedup 1 by definition"))
            elif baseline_threads in meas_sps.index and baseline_threads in pred_sps.index:
                sm = meas_sps[p] / meas_sps[baseline_threads]
                sp = pred_sps[p] / pred_sps[baseline_threads]
                out.append(_row(p, "speedup", sm, sp, _rel(sp, sm), SPEEDUP_REL_ERR_MAX, honest=honest,
                                note=f"speedup over {baseline_threads} thread(s)", na=shared))
            else:
                out.append(_row(p, "speedup", math.nan, math.nan, math.nan, SPEEDUP_REL_ERR_MAX, honest=honest,
                                na=f"no {baseline_threads}-thread run in both tables"))
            # τ distributions
            if tm is not None and tp is not None:
                dist = tau_distance(tm, tp)
                ref = max(dist["mean_a"], 1.0)
                extra = {"wasserstein": dist["wasserstein"], "ks": dist["ks"], "ks_pvalue": dist["ks_pvalue"]}
                out.append({**_row(p, "tau_ks", dist["mean_a"], dist["mean_b"], dist["ks"], TAU_KS_MAX,
                                   honest=honest, note="measured/predicted: mean τ"), **extra})
                out.append({**_row(p, "tau_wasserstein", dist["mean_a"], dist["mean_b"], dist["wasserstein"] / ref,
                                   TAU_W1_REL_MAX, honest=honest, note="W1 / max(mean τ measured, 1)"), **extra})
                out.append({**_row(p, "tau_mean", dist["mean_a"], dist["mean_b"],
                                   abs(dist["mean_b"] - dist["mean_a"]) / ref, TAU_MEAN_REL_ERR_MAX,
                                   honest=honest), **extra})
            else:
                for fig, thr in (("tau_ks", TAU_KS_MAX), ("tau_wasserstein", TAU_W1_REL_MAX),
                                 ("tau_mean", TAU_MEAN_REL_ERR_MAX)):
                    out.append(_row(p, fig, math.nan, math.nan, math.nan, thr, honest=honest,
                                    na="τ distribution missing on one side"))
            # lost updates
            lm, lp = _lost_rate(mg, p), _lost_rate(pg, p)
            if lm == lm and lp == lp:
                out.append(_row(p, "lost_updates", lm, lp, abs(lp - lm),
                                max(LOST_RATE_ABS_TOL, LOST_REL_ERR_MAX * lm), honest=honest,
                                note="lost updates per sample"))
            else:
                out.append(_row(p, "lost_updates", lm, lp, math.nan, LOST_RATE_ABS_TOL, honest=honest,
                                na="lost-update rate missing on one side"))
            # convergence
            hm = _history_for(measured_history, keys, key, p)
            hp = _history_for(predicted_history, keys, key, p)
            if hm is not None and hp is not None:
                both = pd.concat([hm.rename("m"), hp.rename("p")], axis=1, join="inner")
                gaps = [(_rel(r["p"], r["m"])) for _, r in both.iterrows()]
                worst = max(gaps) if gaps else math.nan
                out.append(_row(p, "convergence", float(both["m"].iloc[-1]) if len(both) else math.nan,
                                float(both["p"].iloc[-1]) if len(both) else math.nan, worst,
                                CONVERGENCE_REL_GAP_MAX, honest=honest,
                                note=f"largest relative objective gap over {len(both)} checkpoints; "
                                     "measured/predicted: final objective"))
            else:
                out.append(_row(p, "convergence", math.nan, math.nan, math.nan, CONVERGENCE_REL_GAP_MAX,
                                honest=honest, na="objective per epoch missing on one side"))
            for r in out:
                rows.append({**dict(zip(keys, key)), **r})
    df = pd.DataFrame(rows)
    first = list(keys) + list(COLUMNS)
    return df[first + [c for c in df.columns if c not in first]] if len(df) else pd.DataFrame(columns=first)


def tau0_share(tau) -> float:
    """The share of samples with τ = 0 in raw τ values or a histogram (``tau, count``)."""
    if tau is None:
        return math.nan
    if isinstance(tau, pd.DataFrame):
        if "count" in tau.columns:
            n = float(tau["count"].sum())
            return float(tau.loc[tau["tau"] == 0, "count"].sum()) / n if n else math.nan
        tau = tau["tau"].to_numpy()
    t = np.asarray(tau)
    return float(np.mean(t == 0)) if t.size else math.nan


def time_shared(measured_tau, predicted_tau) -> str | None:
    """Why a measured multi-thread run is not a parallel measurement (module docstring),
    or None when it is (or when τ is missing on a side: nothing to judge by)."""
    m, p = tau0_share(measured_tau), tau0_share(predicted_tau)
    if not (m == m and p == p) or m - p <= CONCURRENCY_TAU0_EXCESS_MAX:
        return None
    return (f"time-shared: {m:.1%} of the measured samples started with no other in flight against {p:.1%} "
            f"predicted (excess > CONCURRENCY_TAU0_EXCESS_MAX = {CONCURRENCY_TAU0_EXCESS_MAX:.0%}); the threads "
            "took turns with other load -- measure again on an idle machine")


def _lost_rate(df: pd.DataFrame, p: int) -> float:
    g = df[df["threads"] == p]
    if g.empty:
        return math.nan
    if "lost_per_sample" in g.columns:
        return float(g["lost_per_sample"].median())
    if "lost_updates" in g.columns and "samples" in g.columns:
        return float((g["lost_updates"] / g["samples"].clip(lower=1)).median())
    return math.nan


def verdicts(comparison: pd.DataFrame) -> pd.DataFrame:
    """Counts of verdicts per figure."""
    return comparison.groupby(["figure", "verdict"]).size().unstack(fill_value=0).reset_index()
