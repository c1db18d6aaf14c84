"""Overlap τ: per-sample distributions from any trace, summaries, and distances.

Both engines emit the same sample table (``workload.trace.SAMPLE_SCHEMA``), so a measured
and a simulated τ distribution are computed the same way and can be held side by side.

Overlap. Samples i and k overlap when each started before the other ended in the run's
order of events, read from the two counters every trace carries: i (started after k)
overlaps k iff ``start_seq_i < started_at_end_k`` -- the definition of
:mod:`hwsim.checks`, and what realrun measures with its atomic counters. τ_k (column
``tau``) is the number of samples overlapping k (:func:`workload.trace.tau_overlap`).

Per labelling (``tau_start``, ``tau_after_read``, ``tau_after_write``): for the *start*
(Mania et al. 2015), *after-read* (Leblond et al. 2017) and *after-write* (Niu et al.
2011) orders, τ_k^L = max |L(i) − L(k)| over the samples i overlapping k (0 if none): the
lag that labelling's analysis must bound. A label a trace does not record (realrun's
``read_seq`` = −1) gives NaN. On a trace that records only some samples (realrun's
``options.trace_every``) the lags are taken over the recorded samples, a lower bound.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from numba import njit
from scipy import stats as sstats

from workload.trace import tau_overlap

LABELLINGS = {"tau_start": "start_seq", "tau_after_read": "read_seq", "tau_after_write": "end_seq"}
QUANTILES = (0.5, 0.9, 0.99)


@njit(cache=False, nogil=True)
def _overlap_lags(start_seq, started_at_end, seqs):
    """Samples sorted by start_seq: per labelling row of ``seqs``, the largest |seq_i − seq_k|
    over samples i overlapping k. Scans forward only: j (after k) overlaps k iff
    start_seq_j < started_at_end_k; both k and j are updated."""
    n = start_seq.size
    L = seqs.shape[0]
    lag = np.zeros((L, n), np.int64)
    for k in range(n):
        j = k + 1
        while j < n and start_seq[j] < started_at_end[k]:
            for r in range(L):
                d = abs(seqs[r, j] - seqs[r, k])
                if d > lag[r, k]:
                    lag[r, k] = d
                if d > lag[r, j]:
                    lag[r, j] = d
            j += 1
    return lag


def tau_table(samples: pd.DataFrame, *, labellings: bool = True) -> pd.DataFrame:
    """Per-sample τ from a trace: ``sample, worker, epoch, tau`` and, with ``labellings``,
    ``tau_start, tau_after_read, tau_after_write`` (module docstring; NaN where a label is
    not recorded)."""
    out = pd.DataFrame({"sample": samples["sample"].to_numpy(), "worker": samples["worker"].to_numpy(),
                        "epoch": samples["epoch"].to_numpy(), "tau": tau_overlap(samples).astype(np.int64)})
    if not labellings:
        return out
    cols = list(LABELLINGS)
    ss = samples["start_seq"].to_numpy(np.int64)
    order = np.argsort(ss, kind="stable")
    se = np.ascontiguousarray(samples["started_at_end"].to_numpy(np.int64)[order])
    seqs = np.ascontiguousarray(np.stack([samples[LABELLINGS[c]].to_numpy(np.int64)[order] for c in cols]))
    lag = _overlap_lags(np.ascontiguousarray(ss[order]), se, seqs)
    inv = np.empty_like(order)
    inv[order] = np.arange(order.size)
    for r, c in enumerate(cols):
        v = lag[r][inv].astype(np.float64)
        if (samples[LABELLINGS[c]].to_numpy() < 0).any():
            v[:] = np.nan
        out[c] = v
    return out


def tau_summary(tau: pd.DataFrame | np.ndarray, *, by: list[str] | tuple[str, ...] = (),
                column: str = "tau") -> pd.DataFrame:
    """Summary of a τ column: ``count, mean, std, min, p50, p90, p99, max`` (per group in ``by``)."""
    if not isinstance(tau, pd.DataFrame):
        tau = pd.DataFrame({column: np.asarray(tau)})

    def one(v: np.ndarray) -> dict:
        v = v[~np.isnan(v)]
        if v.size == 0:
            return {"count": 0, "mean": np.nan, "std": np.nan, "min": np.nan, **{f"p{int(q * 100)}": np.nan
                                                                                   for q in QUANTILES},
                    "max": np.nan}
        qs = np.quantile(v, QUANTILES)
        return {"count": int(v.size), "mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
                **{f"p{int(q * 100)}": float(x) for q, x in zip(QUANTILES, qs)}, "max": float(v.max())}

    by = list(by)
    if not by:
        return pd.DataFrame([one(tau[column].to_numpy(np.float64))])
    rows = []
    for key, g in tau.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), **one(g[column].to_numpy(np.float64))})
    return pd.DataFrame(rows)


def tau_histogram(tau: np.ndarray, *, label: str | None = None) -> pd.DataFrame:
    """τ value → count and fraction (``tau, count, fraction`` [, ``label``])."""
    v = np.asarray(tau, dtype=np.int64)
    values, counts = np.unique(v, return_counts=True)
    df = pd.DataFrame({"tau": values, "count": counts, "fraction": counts / max(v.size, 1)})
    if label is not None:
        df["label"] = label
    return df


def _values_weights(x) -> tuple[np.ndarray, np.ndarray]:
    """(values, counts) from raw τ values, or from a histogram table (``tau, count``)."""
    if isinstance(x, pd.DataFrame):
        if "count" in x.columns:
            g = x.groupby("tau")["count"].sum()
            return g.index.to_numpy(np.float64), g.to_numpy(np.float64)
        x = x["tau"].to_numpy()
    v = np.asarray(x, dtype=np.float64)
    v = v[~np.isnan(v)]
    u, c = np.unique(v, return_counts=True)
    return u, c.astype(np.float64)


def tau_distance(a, b) -> dict:
    """Distance between two τ distributions, each raw τ values or a histogram (``tau,
    count``): ``wasserstein`` (W1, in samples: :func:`scipy.stats.wasserstein_distance`),
    ``ks`` (the two-sample Kolmogorov–Smirnov statistic: the largest CDF gap),
    ``ks_pvalue`` (asymptotic Kolmogorov distribution, :data:`scipy.stats.kstwobign`, with
    n = n_a n_b / (n_a + n_b)), both means and sizes."""
    va, wa = _values_weights(a)
    vb, wb = _values_weights(b)
    na, nb = float(wa.sum()), float(wb.sum())
    if na == 0 or nb == 0:
        return {"wasserstein": np.nan, "ks": np.nan, "ks_pvalue": np.nan, "mean_a": np.nan, "mean_b": np.nan,
                "n_a": int(na), "n_b": int(nb)}
    grid = np.union1d(va, vb)
    fa = np.cumsum(np.bincount(np.searchsorted(grid, va), weights=wa, minlength=grid.size)) / na
    fb = np.cumsum(np.bincount(np.searchsorted(grid, vb), weights=wb, minlength=grid.size)) / nb
    ks = float(np.max(np.abs(fa - fb)))
    n_eff = na * nb / (na + nb)
    return {"wasserstein": float(sstats.wasserstein_distance(va, vb, wa, wb)), "ks": ks,
            "ks_pvalue": float(sstats.kstwobign.sf(ks * np.sqrt(n_eff))),
            "mean_a": float(np.sum(va * wa) / na), "mean_b": float(np.sum(vb * wb) / nb), "n_a": int(na),
            "n_b": int(nb)}


def tau_side_by_side(measured, predicted) -> pd.DataFrame:
    """Both τ distributions in one table (``tau, measured, predicted`` fractions); each
    argument raw τ values or a histogram (``tau, count``)."""
    vm, wm = _values_weights(measured)
    vp, wp = _values_weights(predicted)
    hm = pd.Series(wm / max(wm.sum(), 1), index=vm.astype(np.int64), name="measured")
    hp = pd.Series(wp / max(wp.sum(), 1), index=vp.astype(np.int64), name="predicted")
    out = pd.concat([hm, hp], axis=1).fillna(0.0).sort_index()
    out.index.name = "tau"
    return out.reset_index()
