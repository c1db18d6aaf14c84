"""Render a study's folder as ``index.html`` (self-contained) and ``report.md``.

Rendering reads only what the study wrote -- ``manifest.json``, ``data/*.parquet``,
``spec.toml``, ``environment.json``, ``machine.toml`` -- so a report can be re-rendered
from its folder, and a half-finished study renders what it has and lists the rest with
the reason.

``index.html`` embeds every plot as a base64 PNG (matplotlib's Agg backend) and carries a
Content-Security-Policy that forbids any fetch (``default-src 'none'; img-src data:;
style-src 'unsafe-inline'``): it opens offline, from a mail attachment or an archive.
The same plots are written to ``plots/*.png`` for ``report.md``.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from workload.trace import atomic_write_bytes

from .study import load_manifest, load_tables

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

MEASURED_STYLE = dict(linestyle="none", marker="o", markersize=6)
PREDICTED_STYLE = dict(linestyle="-", linewidth=1.8, marker=None)
SIMULATED_STYLE = dict(linestyle="--", linewidth=1.5, marker="x", markersize=5)
MEASURED_LINE = dict(linestyle="-", linewidth=1.4, marker="o", markersize=5)

SCHEME_COLORS = {"serial": "#444444", "hogwild": "#d62728", "hogwild-atomic": "#1f77b4", "lock-coord": "#2ca02c",
                 "lock-global": "#8c564b", "round-robin": "#9467bd", "minibatch-sync": "#e377c2",
                 "buckwild": "#bcbd22", "cyclades": "#17becf", "decentralized": "#7f7f7f"}

STATUS_CLASS = {"done": "ok", "not requested": "ok", "not available": "na", "skipped": "na", "failed": "bad", "interrupted": "bad",
                "not run": "na"}
PASS_WORDS = ("pass", "holds", "ok", "agree", "within", "identical", "met")
FAIL_WORDS = ("fail", "violated", "disagree", "outside", "differs", "not met")


def _color(scheme: str) -> str:
    return SCHEME_COLORS.get(scheme, "#000000")


def _legend(ax, schemes, styles, **kw):
    """One entry per scheme (its colour) and one per line style (measured / simulated / ...)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=_color(s), linewidth=3, label=s) for s in schemes]
    handles += [Line2D([], [], label=label, **{"color": "#333333", **style}) for label, style in styles]
    ax.legend(handles=handles, fontsize=7, **kw)


# ----------------------------------------------------------------------------------------
# Figures: each returns (png bytes or None, caption or the reason it is missing)
# ----------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 100, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3,
                         "svg.hashsalt": "wildcheck", "path.simplify": True})
    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)
    return buf.getvalue()


def _has(tables, *names) -> str | None:
    missing = [n for n in names if n not in tables or len(tables[n]) == 0]
    return f"no data: table {', '.join(missing)} was not produced" if missing else None


def fig_convergence(tables: Mapping[str, pd.DataFrame], workload: str, real="real_history", sim="sim_history"):
    """Objective per epoch: measured (median over repeats; solid, circles) vs simulated (dashed),
    one panel per measured thread count."""
    r = tables.get(real)
    s = tables.get(sim)
    r = None if r is None or "workload" not in r.columns else r[r["workload"] == workload]
    s = None if s is None or "workload" not in s.columns else s[s["workload"] == workload]
    if (r is None or len(r) == 0) and (s is None or len(s) == 0):
        return None, f"no data: neither {real} nor {sim} was produced for {workload}"
    threads = sorted(set(r["threads"].tolist())) if r is not None and len(r) else sorted(set(s["threads"]))[:3]
    schemes = sorted(set(([] if r is None else r["scheme"].tolist()) + ([] if s is None else s["scheme"].tolist())))
    plt = _plt()
    ncol = min(3, len(threads))
    nrow = math.ceil(len(threads) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.5 * nrow), squeeze=False, sharey=True,
                             layout="constrained")
    for ax, t in zip(axes.flat, threads):
        for scheme in schemes:
            if r is not None:
                m = r[(r["threads"] == t) & (r["scheme"] == scheme)]
                if len(m):
                    med = m.groupby("epoch")["objective"].median()
                    ax.plot(med.index, med.values, color=_color(scheme), **MEASURED_LINE)
            if s is not None:
                m = s[(s["threads"] == t) & (s["scheme"] == scheme)]
                if len(m):
                    ax.plot(m["epoch"], m["objective"], color=_color(scheme), **SIMULATED_STYLE)
        ax.set_title(f"{workload}, {t} thread{'s' if t > 1 else ''}")
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
    _legend(axes[0][-1] if len(threads) > 1 else axes[0][0], schemes,
            [("measured", MEASURED_LINE), ("simulated", SIMULATED_STYLE)], loc="upper right")
    for ax in list(axes.flat)[len(threads):]:
        ax.set_visible(False)
    axes[0][0].set_ylabel("objective f(x)")
    return _png(fig), ("Objective after each epoch. Solid lines with circles: measured on real threads (median of "
                       "the repeats); dashed lines with crosses: simulated by hwsim with the calibrated machine "
                       "(same spec, seeds and visit orders).")


def _speedup_measured(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (scheme, threads): median, min, max speedup over repeats, vs the scheme's 1-thread median."""
    rows = []
    for scheme, g in runs.groupby("scheme"):
        base = g[g["threads"] == 1]["samples_per_s"]
        if len(base) == 0:
            continue
        b = float(base.median())
        for t, gt in g.groupby("threads"):
            sp = gt["samples_per_s"].to_numpy(dtype=float) / b
            rows.append({"scheme": scheme, "threads": int(t), "speedup": float(np.median(sp)),
                         "lo": float(sp.min()), "hi": float(sp.max()), "repeats": int(sp.size),
                         "samples_per_s": float(gt["samples_per_s"].median())})
    return pd.DataFrame(rows)


def _speedup_predicted(pred: pd.DataFrame) -> pd.DataFrame:
    cores = "cores" if "cores" in pred.columns else "threads"
    if "speedup" in pred.columns:
        return pred.rename(columns={cores: "cores"})[["scheme", "cores", "speedup"]]
    if "samples_per_s" not in pred.columns:
        return pd.DataFrame(columns=["scheme", "cores", "speedup"])
    rows = []
    for scheme, g in pred.groupby("scheme"):
        base = g[g[cores] == 1]["samples_per_s"]
        if len(base):
            for _, row in g.iterrows():
                rows.append({"scheme": scheme, "cores": int(row[cores]),
                             "speedup": float(row["samples_per_s"]) / float(base.iloc[0])})
    return pd.DataFrame(rows)


def fig_speedup(tables: Mapping[str, pd.DataFrame]):
    """Measured speedup (points with min-max bars) vs predicted (lines), per scheme."""
    runs, pred = tables.get("real_runs"), tables.get("prediction")
    if (runs is None or len(runs) == 0) and (pred is None or len(pred) == 0):
        return None, "no data: neither real_runs nor prediction was produced"
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.0, 5.0), layout="constrained")
    xmax = 2
    schemes: set[str] = set()
    if pred is not None and len(pred):
        p = _speedup_predicted(pred)
        for scheme, g in p.groupby("scheme"):
            g = g.sort_values("cores")
            ax.plot(g["cores"], g["speedup"], color=_color(scheme), **PREDICTED_STYLE)
            schemes.add(scheme)
            xmax = max(xmax, int(g["cores"].max()))
    if runs is not None and len(runs):
        m = _speedup_measured(runs[runs["workload"] == runs["workload"].iloc[0]])
        for scheme, g in m.groupby("scheme"):
            ax.errorbar(g["threads"], g["speedup"], yerr=[g["speedup"] - g["lo"], g["hi"] - g["speedup"]],
                        color=_color(scheme), capsize=3, **MEASURED_STYLE, markerfacecolor="white",
                        markeredgewidth=1.6)
            xmax = max(xmax, int(g["threads"].max()))
            schemes.add(scheme)
    ax.plot([1, xmax], [1, xmax], color="#bbbbbb", linewidth=0.8, linestyle=":")
    _legend(ax, sorted(schemes), [("measured (median, min-max)", dict(MEASURED_STYLE, markerfacecolor="white",
                                                                     markeredgewidth=1.6)),
                                  ("predicted (hwsim)", PREDICTED_STYLE),
                                  ("linear speedup", dict(color="#bbbbbb", linestyle=":"))],
            loc="upper left", ncol=2)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("threads / simulated cores")
    ax.set_ylabel("speedup over the scheme's 1-thread run")
    return _png(fig), ("Speedup in samples/s. Open circles with bars: measured (median of the repeats, bars from the "
                       "slowest to the fastest repeat); lines: predicted by hwsim with the calibrated machine.")


def fig_tau(tables: Mapping[str, pd.DataFrame], workload: str, real="real_tau", sim="sim_tau"):
    """τ_k distributions: measured (realrun's counters) vs simulated, for each multi-thread config."""
    r, s = tables.get(real), tables.get(sim)
    frames = [x[(x["workload"] == workload) & (x["threads"] > 1)] for x in (r, s) if x is not None and len(x)]
    if not frames or all(len(f) == 0 for f in frames):
        return None, f"no data: no τ distribution with more than one thread for {workload}"
    if r is not None and len(frames[0]) and frames[0] is not None and "scheme" in r.columns:
        base = r[(r["workload"] == workload) & (r["threads"] > 1)]
    else:
        base = pd.concat(frames)
    configs = sorted(set((str(a), int(b)) for a, b in base[["scheme", "threads"]].drop_duplicates().to_numpy()))
    configs = configs[:6]
    plt = _plt()
    ncol = min(3, len(configs))
    nrow = math.ceil(len(configs) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.3 * nrow), squeeze=False, layout="constrained")
    for ax in list(axes.flat)[len(configs):]:
        ax.set_visible(False)
    for ax, (scheme, t) in zip(axes.flat, configs):
        for df, lab, style in ((r, "measured", dict(linewidth=1.8)), (s, "simulated", dict(linestyle="--",
                                                                                              linewidth=1.4))):
            if df is None or len(df) == 0:
                continue
            g = df[(df["workload"] == workload) & (df["scheme"] == scheme) & (df["threads"] == t)]
            if len(g):
                g = g.groupby("tau")["count"].sum().sort_index()
                full = g.reindex(np.arange(0, int(g.index.max()) + 1), fill_value=0)
                frac = np.where(full.values > 0, full.values / full.values.sum(), np.nan)  # gaps where none
                ax.plot(full.index, frac, drawstyle="steps-mid", color=_color(scheme) if lab == "measured"
                        else "#333333", label=lab, **style)
        ax.set_yscale("log")
        ax.set_xscale("symlog", linthresh=10)  # the body (a few) and the OS-preemption tail (thousands)
        ax.set_xlim(left=-0.5)
        ax.set_title(f"{scheme}, {t} threads")
        ax.set_xlabel("τ_k (overlapping samples)")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("fraction of samples")
    return _png(fig), ("Distribution of τ_k, the number of other samples whose processing overlapped sample k "
                       "(x axis linear up to 10, logarithmic beyond). Measured: realrun's two global counters; "
                       "simulated: hwsim's clock.")


def fig_noise(tables: Mapping[str, pd.DataFrame]):
    """Per-sample noise terms (hwsim's exact trace) against their worst-case bounds
    ‖x̂_k − x_k‖² ≤ (γ_k τ_k M)² and |⟨x̂_k − x_k, g_k⟩| ≤ γ_k τ_k M² (analysis.theory)."""
    df = tables.get("noise")
    if df is None or len(df) == 0:
        return None, "no data: table noise was not produced"
    th = tables.get("theory")
    M = float(th["M"].iloc[0]) if th is not None and "M" in th.columns and len(th) else math.nan
    df = df.sort_values("sample")
    k = df["sample"].to_numpy()
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
    for ax, col, bound, label in (
            (axes[0], "noise_sq", (df["step"] * df["tau"] * M) ** 2, "‖x̂_k − x_k‖²"),
            (axes[1], "noise_inner", df["step"] * df["tau"] * M ** 2, "|⟨x̂_k − x_k, g_k⟩|")):
        v = np.abs(df[col].to_numpy(float))
        pos = v > 0
        ax.plot(k[pos], v[pos], ".", markersize=2, color="#d62728", alpha=0.6, label=f"{label} (measured in hwsim)")
        if M == M:
            b = bound.to_numpy(float)
            bp = b > 0
            ax.plot(k[bp], b[bp], ".", markersize=1.5, color="black", alpha=0.4, label="worst-case bound")
        ax.set_yscale("log")
        ax.set_xlabel("sample k")
        ax.set_title(label + (f": {int((~pos).sum())} samples exactly 0" if (~pos).any() else ""))
        ax.legend(fontsize=7, markerscale=4)
    return _png(fig), ("Noise terms of the perturbed-iterate analysis (Mania et al. 2015) per sample (hogwild with "
                       "atomic writes, the analysis's model, in hwsim's exact fixed-point mode), from hwsim's "
                       "coordinate trace (zeros omitted on the log scale), against the per-sample worst-case "
                       "bounds with M from the problem's constants and τ_k each sample's overlap.")


BUCKWILD_COLORS = {"float64": "#444444", "int16": "#1f77b4", "int8": "#2ca02c", "int8-nearest": "#d62728"}


def fig_buckwild(tables: Mapping[str, pd.DataFrame]):
    """Objective per epoch of each Buckwild! variant and float64 at one thread (measured)."""
    h = tables.get("buckwild_history")
    if h is None or len(h) == 0:
        return None, "no data: table buckwild_history was not produced"
    h = h[h["threads"] == 1]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    for variant, g in h.groupby("variant", sort=False):  # float64 wide underneath: int16 often covers it
        style = dict(linewidth=4.0, alpha=0.4, marker=None) if variant == "float64" else MEASURED_LINE
        ax.plot(g["epoch"], g["objective"], color=BUCKWILD_COLORS.get(variant, "#000000"), label=variant, **style)
    ax.set_xlabel("epoch")
    ax.set_ylabel("objective f(x)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    return _png(fig), ("Objective after each epoch at one thread, measured on real threads (realrun): float64 "
                       "Hogwild! and Buckwild! at int16 / int8 with unbiased (stochastic) rounding and int8 with "
                       "biased (nearest) rounding, same spec, seed and visit order.")


def fig_sweep(points: pd.DataFrame, x: str, hue: str | None, ys, kind: str):
    """One panel per figure in ``ys`` over the sweep axis ``x`` (:func:`analysis.sweep.plot_sweep`)."""
    from .sweep import plot_sweep_panels, varying_axes

    if not ys:
        return None, "no data: the sweep recorded none of the plotted figures (no point is done)"
    fig = plot_sweep_panels(points, x, hue, ys)
    what = "simulated by hwsim" if kind == "simulated" else "measured (some points are real runs)"
    others = [a for a in varying_axes(points) if a not in (x, hue)]
    shared = f"{x}" + (f" and {hue}" if hue else "")
    agg = (f" Points that share {shared} differ in {', '.join(others)}: their mean is plotted, with a bar from "
           "their min to max." if others else "")
    return _png(fig), (f"{', '.join(ys)} over the sweep axis {x}" + (f", one line per value of {hue}" if hue else "")
                       + f" ({what}); done points only." + agg)


# ----------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------
def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "–"
        if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:.4g}"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    return str(v)


def verdict_class(v: Any) -> str:
    s = str(v).lower()
    if s == "done":
        return "ok"
    if any(w in s for w in FAIL_WORDS):
        return "bad"
    if any(w in s for w in PASS_WORDS):
        return "ok"
    return "na"


WRAP_COLUMNS = ("note", "reason", "quantity", "method", "title", "value")


def html_table(df: pd.DataFrame, max_rows: int = 60) -> str:
    if df is None or len(df) == 0:
        return "<p class='na'>(empty)</p>"
    shown = df.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = []
    for _, row in shown.iterrows():
        cells = []
        for c in shown.columns:
            v = row[c]
            classes = []
            if "verdict" in str(c) or c == "status":
                classes.append(verdict_class(v))
            if c in WRAP_COLUMNS:
                classes.append("wrap")
            cls = f" class='{' '.join(classes)}'" if classes else ""
            cells.append(f"<td{cls}>{html.escape(_fmt(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<p class='note'>{len(df) - max_rows} more rows in the data file.</p>" if len(df) > max_rows else ""
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>{more}"


def md_table(df: pd.DataFrame, max_rows: int = 60) -> str:
    if df is None or len(df) == 0:
        return "_(empty)_\n"
    shown = df.head(max_rows)
    lines = ["| " + " | ".join(str(c) for c in shown.columns) + " |",
             "|" + "|".join("---" for _ in shown.columns) + "|"]
    for _, row in shown.iterrows():
        lines.append("| " + " | ".join(_fmt(row[c]).replace("|", "\\|") for c in shown.columns) + " |")
    if len(df) > max_rows:
        lines.append(f"\n_{len(df) - max_rows} more rows in the data file._")
    return "\n".join(lines) + "\n"


def verdicts(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Every row of every table that carries a ``verdict`` column, with its source and one
    ``what`` column (the comparison's figure, or the theorem and check)."""
    frames = []
    for name in ("comparison", "regimes", "theory", "dense_comparison", "dense_theory"):
        df = tables.get(name)
        if df is None or "verdict" not in df.columns or len(df) == 0:
            continue
        d = pd.DataFrame({"source": name, "workload": df.get("workload", pd.Series([""] * len(df))).values})
        if "figure" in df.columns:
            d["what"] = [f"{s} x{t}: {f}" for s, t, f in zip(df["scheme"], df["threads"], df["figure"])]
        else:
            d["what"] = [f"{th}: {c}" for th, c in zip(df.get("theorem", [""] * len(df)), df.get("check", [""] * len(df)))]
        for c in ("measured", "predicted", "observed", "bound", "verdict"):
            d[c] = df[c].values if c in df.columns else math.nan
        frames.append(d)
    for name, what in (("buckwild_sim", lambda df: [f"{v}: hwsim = realrun at 1 worker (model bit for bit)"
                                                    for v in df["variant"]]),
                       ("buckwild_bound", lambda df: [f"{v}: {c}" for v, c in zip(df["variant"], df["check"])]),
                       ("sweep_checks", _sweep_check_labels),
                       ("coherence_drift", _drift_labels)):
        df = tables.get(name)
        if df is None or "verdict" not in df.columns or len(df) == 0:
            continue
        d = pd.DataFrame({"source": name, "workload": df["workload"].values if "workload" in df.columns else "",
                          "what": what(df)})
        for c in ("measured", "predicted", "observed", "bound", "verdict"):
            d[c] = df[c].values if c in df.columns else math.nan
        frames.append(d)
    if not frames:
        return pd.DataFrame(columns=["source", "verdict"])
    return pd.concat(frames, ignore_index=True)


def _unsteady(drift: pd.DataFrame | None) -> str:
    """The violated rows of a coherence_drift table as one phrase ('' when none)."""
    if drift is None or len(drift) == 0 or "verdict" not in drift.columns:
        return ""
    bad = drift[drift["verdict"] == "violated"]
    return "; ".join(f"{r.figure} ranged {_fmt(r.min)}-{_fmt(r.max)} over {r.probes} probes (spread "
                     f"{r.observed:.0%}, threshold {r.bound:.0%})" for r in bad.itertuples())


def _drift_labels(df: pd.DataFrame) -> list[str]:
    return [f"coherence figures steady while measured: {f} spread over {n} probes"
            for f, n in zip(df["figure"], df["probes"])]


def _sweep_check_labels(df: pd.DataFrame) -> list[str]:
    """``point #i (axis=value, ...): check`` for each row of a sweep's check table."""
    from .verdicts import CHECK_COLUMNS

    axes = [c for c in df.columns if c not in ("source", "point_id", "index", "kind", "check", *CHECK_COLUMNS)]
    return [f"point #{r['index']} ({', '.join(f'{a}={_fmt(r[a])}' for a in axes)}): {r['check']}"
            for r in df.to_dict("records")]


def headline(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per workload, scheme and measured thread count > 1: the speedup measured (median and
    range over repeats) and predicted, the mean τ and the lost-update rate on both sides,
    and the speedup verdict."""
    rows = []
    for runs_name, pred_name, cmp_name in (("real_runs", "prediction", "comparison"),
                                           ("dense_real_runs", "dense_prediction", "dense_comparison")):
        runs, pred, cmp = tables.get(runs_name), tables.get(pred_name), tables.get(cmp_name)
        if runs is None or len(runs) == 0:
            continue
        for wl, rw in runs.groupby("workload"):
            m = _speedup_measured(rw)
            for _, r in m[m["threads"] > 1].iterrows():
                row = {"workload": wl, "scheme": r["scheme"], "threads": int(r["threads"]),
                       "speedup measured": f"{r['speedup']:.3g} [{r['lo']:.3g}, {r['hi']:.3g}]",
                       "speedup predicted": math.nan, "speedup verdict": "–", "tau mean meas/pred": "–",
                       "lost/sample meas/pred": "–"}
                if pred is not None and len(pred):
                    p = pred[(pred["workload"] == wl) & (pred["scheme"] == r["scheme"]) &
                             (pred["threads"] == r["threads"])]
                    if len(p):
                        row["speedup predicted"] = float(p["speedup"].iloc[0])
                if cmp is not None and len(cmp):
                    c = cmp[(cmp["workload"] == wl) & (cmp["scheme"] == r["scheme"]) & (cmp["threads"] == r["threads"])]
                    sp = c[c["figure"] == "speedup"]
                    if len(sp):
                        row["speedup verdict"] = sp["verdict"].iloc[0]
                    tm = c[c["figure"] == "tau_mean"]
                    if len(tm):
                        row["tau mean meas/pred"] = f"{_fmt(tm['measured'].iloc[0])} / {_fmt(tm['predicted'].iloc[0])}"
                    lu = c[c["figure"] == "lost_updates"]
                    if len(lu):
                        row["lost/sample meas/pred"] = (f"{_fmt(lu['measured'].iloc[0])} / "
                                                        f"{_fmt(lu['predicted'].iloc[0])}")
                rows.append(row)
    return pd.DataFrame(rows)


def verdict_counts(v: pd.DataFrame) -> pd.DataFrame:
    if len(v) == 0:
        return pd.DataFrame()
    d = v.assign(outcome=v["verdict"].map(lambda x: {"ok": "pass", "bad": "fail / violated"}.get(
        verdict_class(x), "not applicable / other")))
    keys = ["source"] + (["workload"] if "workload" in d.columns else [])
    out = d.groupby(keys + ["outcome"]).size().unstack(fill_value=0).reset_index()
    for c in ("pass", "fail / violated", "not applicable / other"):
        if c not in out.columns:
            out[c] = 0
    return out[keys + ["pass", "fail / violated", "not applicable / other"]]


COMPACT_COMPARISON = ("workload", "scheme", "threads", "figure", "measured", "predicted", "observed", "bound",
                      "verdict", "threshold_name")
COMPACT_THEORY = ("workload", "theorem", "check", "quantity", "observed", "bound", "ratio", "verdict", "note")


def _compact(df: pd.DataFrame, cols) -> pd.DataFrame:
    return df[[c for c in cols if c in df.columns]]


def _applicable(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    if "verdict" not in df.columns:
        return df, 0
    na = df["verdict"].astype(str) == "not applicable"
    return df[~na], int(na.sum())


# ----------------------------------------------------------------------------------------
# The document
# ----------------------------------------------------------------------------------------
STYLE_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1280px;
padding:1em 2em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}th,td{border:1px solid #ddd;padding:3px 7px;
text-align:left}th{background:#f4f4f4}td{white-space:nowrap}td.wrap{white-space:normal;min-width:10em;max-width:26em}
.scroll{overflow-x:auto}td.ok{background:#e6f4ea}td.bad{background:#fce8e6}td.na{background:#f4f4f4;
color:#666}.ok{color:#137333}.bad{color:#a50e0e}.na{color:#666}code,pre{background:#f6f6f6;padding:1px 4px;
border-radius:3px}pre{padding:.6em;overflow-x:auto}img{max-width:100%;height:auto;border:1px solid #eee}
.note{color:#555;font-size:.9em}.missing{background:#fff8e1;border-left:4px solid #f9a825;padding:.4em .8em}
figure{margin:.6em 0}figcaption{color:#555;font-size:.85em}
"""


class Doc:
    """Builds the HTML and the Markdown side by side."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.h: list[str] = []
        self.m: list[str] = []
        self.plots: list[str] = []

    def heading(self, text: str, level: int = 2, anchor: str | None = None):
        a = f" id='{anchor}'" if anchor else ""
        self.h.append(f"<h{level}{a}>{html.escape(text)}</h{level}>")
        self.m.append(f"\n{'#' * level} {text}\n")

    def para(self, text: str, cls: str | None = None):
        c = f" class='{cls}'" if cls else ""
        self.h.append(f"<p{c}>{html.escape(text)}</p>")
        self.m.append(text + "\n")

    def code(self, text: str):
        self.h.append(f"<pre><code>{html.escape(text)}</code></pre>")
        self.m.append(f"```\n{text}\n```\n")

    def table(self, df: pd.DataFrame, max_rows: int = 60):
        self.h.append(html_table(df, max_rows))
        self.m.append(md_table(df, max_rows))

    def missing(self, text: str):
        self.h.append(f"<p class='missing'>{html.escape(text)}</p>")
        self.m.append(f"> **missing:** {text}\n")

    def figure(self, name: str, made: tuple[bytes | None, str]):
        png, caption = made
        if png is None:
            self.missing(caption)
            return
        atomic_write_bytes(self.folder / "plots" / f"{name}.png", png)
        self.plots.append(name)
        b64 = base64.b64encode(png).decode()
        self.h.append(f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{b64}'>"
                      f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        self.m.append(f"![{name}](plots/{name}.png)\n\n_{caption}_\n")


def _safe_fig(fn: Callable, *args) -> tuple[bytes | None, str]:
    try:
        return fn(*args)
    except Exception as exc:  # a broken plot must not cost the rest of the report
        return None, f"plot failed: {type(exc).__name__}: {exc}"


def _section_status(manifest, name) -> dict:
    return next((s for s in manifest.get("sections", []) if s["name"] == name), {"status": "not run", "reason": ""})


def _status_line(doc: Doc, manifest, name: str) -> bool:
    s = _section_status(manifest, name)
    if s["status"] == "not requested":
        doc.para(f"Not part of this study: {s.get('reason', '')}", "note")
        return False
    if s["status"] != "done":
        doc.missing(f"section '{name}' {s['status']}" + (f": {s['reason']}" if s.get("reason") else ""))
        return False
    return True


def render_report(folder: str | Path) -> Path:
    """Write ``index.html`` and ``report.md`` for a study folder; returns the HTML path."""
    folder = Path(folder)
    manifest = load_manifest(folder)
    tables = load_tables(folder, manifest)
    spec_text = (folder / "spec.toml").read_text() if (folder / "spec.toml").is_file() else ""
    for extra in ("rerun_comparison",):
        p = folder / "data" / f"{extra}.parquet"
        if p.is_file() and extra not in tables:
            tables[extra] = pd.read_parquet(p)
    env = _read_json(folder / "environment.json")
    spec_text = (folder / "spec.toml").read_text() if (folder / "spec.toml").is_file() else ""
    machine_text = (folder / "machine.toml").read_text() if (folder / "machine.toml").is_file() else ""
    doc = Doc(folder)
    title = f"wildcheck report: {manifest.get('study', '?')} study"
    state = manifest.get("state", "?")

    doc.heading(title, 1)
    doc.para(f"Started {manifest.get('started_utc', '?')} (UTC); wall time {manifest.get('wall_seconds', 0):.0f} s "
             f"of a {manifest.get('budget_s', 0):.0f} s budget; state: {state}.", "note")
    cpu = env.get("cpu", {})
    doc.para(f"Machine: {cpu.get('model_name', '?')}, {cpu.get('usable_cores', '?')} usable cores; "
             f"git {str(env.get('git', {}).get('commit', '?'))[:12]}"
             f"{' (dirty)' if env.get('git', {}).get('dirty') else ''}. Regenerate and compare with "
             f"`wildcheck rerun {folder}` (details at the end).", "note")
    if manifest.get("rerun_of"):
        doc.para(f"This is a rerun of {manifest['rerun_of']}; the comparison with it is the next section.", "note")

    # --- summary ---------------------------------------------------------------------
    doc.heading("Summary", 2, "summary")
    sec = pd.DataFrame(manifest.get("sections", []))
    if len(sec):
        doc.table(sec[["name", "title", "status", "reason", "seconds"]])
        gaps = sec[~sec["status"].isin(["done", "not requested"])]
        if len(gaps):
            doc.missing("not in this report: " + "; ".join(f"{r['name']} ({r['status']}: {r['reason']})"
                                                           for _, r in gaps.iterrows()))
    v = verdicts(tables)
    hl = headline(tables)
    if len(hl):
        doc.para("Speedup at each measured thread count (over the scheme's own 1-thread run), measured "
                 "(median [min, max] of the repeats) and predicted by hwsim with the calibrated machine; mean "
                 "overlap τ and lost updates per sample, measured / predicted:")
        doc.table(hl)
    if len(v):
        doc.para("Verdicts (each against a named threshold or a theorem's bound):")
        doc.table(verdict_counts(v))
        bad = v[v["verdict"].map(verdict_class) == "bad"]
        if len(bad):
            doc.para(f"Failed comparisons and violated assumptions ({len(bad)}):")
            doc.table(bad, max_rows=40)
    else:
        doc.missing("no verdicts: neither the comparison nor the theory checks produced a table")

    # --- rerun comparison -------------------------------------------------------------
    if "rerun_comparison" in tables:
        rc = tables["rerun_comparison"]
        doc.heading("Rerun vs original", 2, "rerun")
        sim = rc[rc["kind"].isin(["simulated", "computed"])]
        meas = rc[rc["kind"] == "measured"]
        doc.para(f"Simulated and computed figures must be identical bit for bit: {int((sim['verdict'] == 'identical').sum())}"
                 f" of {len(sim)} are. Measured figures must fall within the run-to-run spread the original "
                 f"measured: {int(meas['verdict'].isin(['within spread', 'identical']).sum())} of {len(meas)} do (a "
                 "run whose every original repeat left the same model must leave it again).")
        doc.table(rc, max_rows=200)

    # --- convergence ------------------------------------------------------------------
    doc.heading("Convergence: simulated vs measured", 2, "convergence")
    _status_line(doc, manifest, "predict")
    doc.figure("convergence", _safe_fig(fig_convergence, tables, "rcv1-shaped"))

    # --- speedup ----------------------------------------------------------------------
    doc.heading("Speedup: measured vs predicted", 2, "speedup")
    _status_line(doc, manifest, "real")
    doc.figure("speedup", _safe_fig(fig_speedup, tables))
    if "real_runs" in tables:
        doc.para("Measured throughput per configuration (median of the repeats; lo/hi: the slowest and fastest "
                 "repeat, as speedups):")
        doc.table(_speedup_measured(tables["real_runs"]))
    if "prediction" in tables:
        pr = tables["prediction"]
        for col, what in (("speedup", "speedup over 1 core"), ("tau_mean", "mean τ_k"),
                          ("lost_per_sample", "lost updates per sample")):
            if col in pr.columns:
                doc.para(f"Predicted {what}, per scheme (rows) and simulated cores (columns):")
                doc.table(_pivot(pr, col))
        if "mode" in pr.columns and (pr["mode"] == "subsample").any():
            sub = sorted(set(pr.loc[pr["mode"] == "subsample", "threads"]))
            doc.para(f"Points at {sub} cores were simulated on one epoch over a row subset ('subsample' mode of "
                     "analysis.predict): throughput and τ are per-sample quantities.", "note")
    unsteady = _unsteady(tables.get("coherence_drift"))
    states = tables.get("coherence_states")
    used = None if states is None or "used" not in states.columns else states.loc[states["used"], "repeat"]
    if unsteady and used is not None and 0 < len(used) < len(states):
        doc.para(f"The machine did not hold still while it was measured: {unsteady}. The calibration took the "
                 f"probes around repeats {sorted(int(r) for r in used)}, which ran in one state (their probes "
                 "agree), and the comparison below holds it against those repeats only; the others ran in another "
                 "state or while the host moved (table coherence_states at the end of this section).", "bad")
    elif unsteady:
        doc.para(f"The machine did not hold still while it was measured: {unsteady}. The verdicts below hold a "
                 "calibration on those medians against runs taken while the host changed; read them as saying "
                 "as much about the host as about the model (the probes are at the end of this section).", "bad")
    if "comparison" in tables:
        app, n_na = _applicable(tables["comparison"])
        doc.para(f"Measured vs predicted, per figure ({n_na} rows not applicable -- the 1-thread baseline and "
                 "in-sample points -- are in data/comparison.parquet):")
        doc.table(_compact(app, COMPACT_COMPARISON), max_rows=100)
    else:
        _status_line(doc, manifest, "compare")
    if "coherence_drift" in tables:
        doc.para("Coherence microbenchmarks (realrun.pingpong, the k-lines ping-pong of realrun.coherence) taken "
                 "before the first repeat and after each one; the calibration uses their medians. Their spread "
                 "says whether the machine held still while it was measured (threshold "
                 "analysis.calibrate.COHERENCE_DRIFT_MAX): where it did not, a prediction calibrated on one "
                 "moment is held against runs taken at others, and its errors say as much about the host as "
                 "about the model.")
        doc.table(tables["coherence_drift"][[c for c in ("figure", "probes", "median", "min", "max", "observed",
                                                          "bound", "verdict") if c in tables["coherence_drift"]]])
        if "coherence_probes" in tables:
            doc.table(tables["coherence_probes"])
        if states is not None:
            doc.para("Repeat r ran between probes r and r + 1: it is steady when their ping-pongs agree within the "
                     "threshold, and steady repeats with agreeing ping-pongs form a state "
                     "(analysis.calibrate.probe_states); the calibration and the comparison use the repeats marked "
                     "used.")
            doc.table(states)
    if "coherence_implied" in tables:
        ci = tables["coherence_implied"]
        doc.para("Coherence cost per simulated miss (ns) at which hwsim, every other parameter as calibrated, "
                 "reproduces each measured speedup (analysis.calibrate.implied_coherence). It is fitted to the "
                 "run it explains -- a diagnostic of the calibrated cost, not a prediction, so it has no verdict; "
                 "one cost that fits every scheme says the machine model holds and only the microbenchmark's "
                 "figure is off. The cost varied is that of reads, and of the stores without a cost of their "
                 "own: where the machine has one for atomic-instruction stores (atomic_store_cost_fixed) or "
                 "for plain stores (plain_store_cost_fixed), those keep it:")
        doc.table(ci[[c for c in ("scheme", "threads", "measured_speedup", "implied_coherence_cost",
                                  "calibrated_coherence_cost", "atomic_store_cost_fixed", "plain_store_cost_fixed",
                                  "speedup_at_zero_cost",
                                  "note") if c in ci.columns]])

    # --- regimes ----------------------------------------------------------------------
    doc.heading("Two regimes: cache-friendly and latency-bound rows", 2, "regimes")
    if "regimes" in tables:
        doc.para("hogwild from 1 to 2 threads, on the workload's generator at the rows given (more than fit in the "
                 "last-level cache in the default study), with realrun's rows prefetched the table's prefetch samples "
                 "ahead (cache-friendly: the hot features' cache lines moving between the cores limit the speedup) "
                 "and without prefetching (latency-bound: each random row is a run of cache misses, which two "
                 "cores overlap). Each regime is calibrated on its own 1-thread run, the coherence probes around its repeats and the 1-thread "
                 "microbenchmarks -- nothing from a 2-thread run -- and hwsim's predicted speedup is held against "
                 "the measured one (median of the repeats that ran in the probes' main state; lo/hi: the slowest "
                 "and fastest of them). Reads miss for the k-lines cost at the sample's misses in flight "
                 "(read_miss_ns), plain stores for store_miss_ns (0: a write's miss is off the core's critical "
                 "path), and a sample hides miss_overlap_ns of them under its own 1-thread memory stall. tau0: the "
                 "share of 2-thread samples that started with no other in flight, measured and predicted -- far "
                 "more measured than predicted says the threads took turns with other load (the verdict is then "
                 "not applicable, analysis.compare.CONCURRENCY_TAU0_EXCESS_MAX).")
        doc.table(tables["regimes"][[c for c in ("regime", "prefetch", "rows", "measured", "measured_lo", "measured_hi",
                                                  "predicted", "observed", "bound", "verdict", "repeats_compared",
                                                  "pingpong_ns", "read_miss_ns", "store_miss_ns", "miss_overlap_ns",
                                                  "tau0_measured", "tau0_predicted", "note")
                                         if c in tables["regimes"].columns]])
    else:
        _status_line(doc, manifest, "regimes")

    # --- tau --------------------------------------------------------------------------
    doc.heading("τ distributions: measured vs simulated", 2, "tau")
    doc.figure("tau", _safe_fig(fig_tau, tables, "rcv1-shaped"))

    # --- noise / theory ---------------------------------------------------------------
    doc.heading("Theory checks and noise terms vs bounds", 2, "theory")
    if _status_line(doc, manifest, "theory") and "theory" in tables:
        src = tables["theory"]["tau_source"].iloc[0] if "tau_source" in tables["theory"].columns else "?"
        doc.para(f"τ from: {src}. ε = {_spec_value(spec_text, 'epsilon')}.")
        doc.table(_compact(tables["theory"], COMPACT_THEORY))
    if _status_line(doc, manifest, "noise") or "noise" in tables:
        doc.figure("noise", _safe_fig(fig_noise, tables))

    # --- lost updates -----------------------------------------------------------------
    doc.heading("Lost updates", 2, "lost")
    lost = _lost_updates(tables)
    if len(lost):
        doc.para("Non-atomic read-modify-writes overwritten by another core's write, per sample. Measured: "
                 "realrun's lost-update probe (a separate hogwild run; 0 where a scheme cannot lose updates; "
                 "empty where not measured); simulated: hwsim's exact count. The probe makes every write a "
                 "locked exchange, to see what it overwrote: it runs slower than plain hogwild (probe slowdown: "
                 "the plain runs' median samples/s over the probe's), so each write's window between its load "
                 "and its store differs from the plain run's, and its rate is the probe's, not the plain run's.")
        doc.table(lost)
    else:
        doc.missing("no data: neither real_runs nor prediction was produced")

    # --- sparsity ---------------------------------------------------------------------
    doc.heading("Sparsity statistics", 2, "sparsity")
    if _status_line(doc, manifest, "workload") or "sparsity" in tables:
        if "sparsity" in tables:
            doc.para("Ω: largest support; ρ: largest fraction of terms meeting a given term; Δ: largest fraction "
                     "of terms containing a given coordinate (Niu et al. 2011, §2); Δ̄_C: average conflict-graph "
                     "degree (Mania et al. 2015).")
            doc.table(tables["sparsity"])

    # --- stragglers -------------------------------------------------------------------
    doc.heading("Synchronous minibatch SGD under stragglers", 2, "stragglers")
    if _status_line(doc, manifest, "stragglers") or "straggler_iterations" in tables:
        from .stragglers import fig_iteration_time, fig_time_to_accuracy

        if "straggler_iterations" in tables:
            it = tables["straggler_iterations"]
            import hwsim

            delay = hwsim.ShiftedExponential(float(it["shift"].iloc[0]), float(it["rate"].iloc[0]))
            doc.figure("straggler_iterations", _safe_fig(
                lambda: (_png(fig_iteration_time(it, delay=delay, tick_unit=1000.0, unit="units of 1000 ticks")),
                         "Iteration time vs workers: simulated means (points, CI) over c + H_n/λ (line)")))
            doc.table(it.drop(columns=["shift", "rate"]))
        if "straggler_histories" in tables and "straggler_tta" in tables:
            doc.figure("straggler_tta", _safe_fig(
                lambda: (_png(fig_time_to_accuracy(tables["straggler_histories"], tables["straggler_tta"])),
                         "Time to accuracy: minibatch-sync vs hogwild under the same stragglers (simulated)")))
            doc.table(tables["straggler_tta"])

    # --- Buckwild! ---------------------------------------------------------------------
    doc.heading("Buckwild!: int16 / int8 against float64", 2, "buckwild")
    if _status_line(doc, manifest, "buckwild") or "buckwild_runs" in tables:
        _render_buckwild(doc, tables, manifest)

    # --- parameter sweep ----------------------------------------------------------------
    doc.heading("Parameter sweep", 2, "sweep")
    if _status_line(doc, manifest, "sweep") or "sweep_status" in tables:
        _render_sweep(doc, tables, manifest)

    # --- dense case -------------------------------------------------------------------
    doc.heading("Dense-conflict case: a8a", 2, "dense")
    if _status_line(doc, manifest, "dense") or "dense_real_runs" in tables:
        doc.figure("dense_convergence", _safe_fig(fig_convergence, tables, "a8a", "dense_real_history",
                                                  "dense_sim_history"))
        doc.figure("dense_tau", _safe_fig(fig_tau, tables, "a8a", "dense_real_tau", "dense_sim_tau"))
        if "dense_real_runs" in tables:
            doc.table(_speedup_measured(tables["dense_real_runs"]))
        if "dense_comparison" in tables:
            app, n_na = _applicable(tables["dense_comparison"])
            doc.para(f"Measured vs predicted ({n_na} rows not applicable omitted):")
            doc.table(_compact(app, COMPACT_COMPARISON), max_rows=100)
        if "dense_theory" in tables:
            doc.para("Theory checks on a8a (a feature in ~95% of rows: Δ ≈ 1):")
            doc.table(_compact(tables["dense_theory"], COMPACT_THEORY))

    # --- environment ------------------------------------------------------------------
    doc.heading("Environment", 2, "environment")
    doc.table(_env_table(env))
    doc.para("Full details (CPU flags, package versions, Numba's system report, data hashes) in environment.json.",
             "note")
    if machine_text:
        doc.heading("Simulated machine", 3)
        doc.para(str(env.get("machine_source") or ""), "note")
        doc.code(_shorten_machine(machine_text))

    # --- regenerate -------------------------------------------------------------------
    doc.heading("Regenerate", 2, "regenerate")
    doc.para("Run the same study again -- real runs re-measured, simulations on this report's calibrated machine -- "
             "and compare it with this report (simulated figures must be identical, measured ones within the "
             "spread measured here):")
    doc.code(f"wildcheck rerun {folder}")
    doc.para("The command that produced this report:")
    doc.code(manifest.get("command", "wildcheck report"))
    doc.heading("Spec (spec.toml)", 3)
    doc.code(spec_text)

    # --- data files -------------------------------------------------------------------
    doc.heading("Data files", 2, "data")
    files = pd.DataFrame([{"table": k, "file": m["file"], "kind": m["kind"], "rows": m["rows"],
                           "complete": m["complete"], "sha256": m["sha256"][:16]}
                          for k, m in sorted(manifest.get("tables", {}).items())])
    doc.table(files, max_rows=200)

    html_text = _html_page(title, "\n".join(doc.h))
    atomic_write_bytes(folder / "index.html", html_text.encode())
    atomic_write_bytes(folder / "report.md", ("\n".join(doc.m) + "\n").encode())
    return folder / "index.html"


def _kind(manifest: Mapping, table: str) -> str:
    return str(manifest.get("tables", {}).get(table, {}).get("kind", "?"))


def buckwild_throughput(runs: pd.DataFrame) -> pd.DataFrame:
    """Per variant and thread count: samples/s (median, min, max over the repeats) and the
    median's ratio to float64's at the same thread count."""
    rows = []
    for (variant, t), g in runs.groupby(["variant", "threads"], sort=False):
        sps = g["samples_per_s"].to_numpy(dtype=float)
        rows.append({"variant": variant, "threads": int(t), "samples/s (measured)": float(np.median(sps)),
                     "min": float(sps.min()), "max": float(sps.max()), "repeats": int(sps.size)})
    df = pd.DataFrame(rows)
    if len(df):
        base = df[df["variant"] == "float64"].set_index("threads")["samples/s (measured)"]
        df["vs float64"] = [r / base.get(t, math.nan) for r, t in zip(df["samples/s (measured)"], df["threads"])]
        df = df.sort_values(["threads", "variant"], key=lambda c: c.map(
            {v: i for i, v in enumerate(BUCKWILD_COLORS)}) if c.name == "variant" else c, kind="stable")
    return df.reset_index(drop=True)


def _render_buckwild(doc: "Doc", tables: Mapping[str, pd.DataFrame], manifest: Mapping) -> None:
    doc.para("Buckwild! (De Sa, Zhang, Olukotun and Ré, NIPS 2015, §4): model and data in int16 / int8 fixed "
             "point, updates rounded stochastically (unbiased) or to nearest (biased), against float64 Hogwild! "
             "on the study's workload with the same spec and seed. Each model's scale δ = 2^-model_exp is the "
             "finest at which twice the float64 model's largest coordinate fits, so accuracy is lost to rounding, "
             "not to saturation (the 'saturated' column counts coordinates at the range ends).")
    if "buckwild_accuracy" in tables:
        doc.para("Accuracy loss: final objective against float64's at one thread (deterministic runs); loss = "
                 "objective − objective_float64 (> 0: worse), relative = loss / objective_float64:")
        doc.table(tables["buckwild_accuracy"])
    doc.figure("buckwild_convergence", _safe_fig(fig_buckwild, tables))
    if "buckwild_runs" in tables:
        doc.para(f"Throughput, {_kind(manifest, 'buckwild_runs')} on real threads (realrun, instrumentation off; "
                 "median and range over the repeats; vs float64: ratio of medians at the same thread count):")
        doc.table(buckwild_throughput(tables["buckwild_runs"]))
    if "buckwild_sim" in tables:
        sim = tables["buckwild_sim"]
        n_ok = int(sim["bit_for_bit"].sum())
        doc.para(f"hwsim at one worker against realrun, on {int(sim['rows'].iloc[0])} rows of the workload (a "
                 f"seeded subset where it has more), {_kind(manifest, 'buckwild_sim')}: the integer models are "
                 f"equal bit for bit in {n_ok} of {len(sim)} variants (bit_for_bit):")
        doc.table(sim.drop(columns=["model_sha256"]))
    if "buckwild_bound" in tables:
        doc.para("The rounding-variance term in the convergence bound (analysis.buckwild): a_K is the bound on "
                 "E‖x_K − x̃⋆‖² with the rounding variance σ_Q² = Ωδ²/4 per update (rounding_term: what σ_Q² adds), "
                 "x̃⋆ the optimum over the quantised data; the one-worker run's ‖x_K − x̃⋆‖² is held against a_K/α "
                 "(Markov: a correct run fails with probability at most α). Biased (nearest) rounding is outside "
                 "the bound's assumptions:")
        doc.table(_compact(tables["buckwild_bound"], ("variant", "rows", "check", "observed", "bound", "ratio",
                                                      "verdict", "sigma2", "a_K", "rounding_term", "note")))


def _render_sweep(doc: "Doc", tables: Mapping[str, pd.DataFrame], manifest: Mapping) -> None:
    import re

    from .sweep import plot_axes, report_figures

    st = tables.get("sweep_status")
    if st is None or len(st) == 0:
        doc.missing("no data: table sweep_status was not produced")
        return
    s = st.iloc[0]
    kind = _kind(manifest, "sweep_points")
    how = ("a sweep folder, read as it is (a rerun reads it again)" if s["source_kind"] == "folder"
           else "a grid, run by this study into sweep/ (a rerun runs it again)")
    doc.para(f"Sweep {s['source']}: {how}. Of {int(s['points'])} points, {int(s['done'])} done, "
             f"{int(s['failed'])} failed, {int(s['pending'])} not run. Its tables are {kind}"
             + (" (hwsim: they must regenerate bit for bit)." if kind == "simulated"
                else " (some points are real runs)."))
    if bool(s["partial"]):
        doc.missing(f"partial sweep: {int(s['pending'])} of {int(s['points'])} points not run (yet); the verdicts "
                    f"and plots cover the {int(s['done'])} done points (resume with `wildcheck sweep GRID --out "
                    f"FOLDER`)")
    if "sweep_verdicts" in tables:
        checks = str(s.get("checks", "")) or "none"
        doc.para(f"Verdicts across the grid, one row per point: completed (done / failed / not run) and each of "
                 f"the grid's [checks] ({checks}: holds / violated / not applicable); details per check in "
                 "data/sweep_checks.parquet:")
        doc.table(tables["sweep_verdicts"].drop(columns=["point_id"]), max_rows=100)
    points = tables.get("sweep_points")
    if points is not None and len(points):
        ys = report_figures(points)
        axes = plot_axes(points)
        if not axes:
            doc.para("No axis takes more than one value: nothing to plot over.", "note")
        for x, hue in axes:
            name = "sweep_" + re.sub(r"[^A-Za-z0-9_.-]", "_", x)
            doc.figure(name, _safe_fig(fig_sweep, points, x, hue, ys, kind))
    if "sweep_failures" in tables:
        f = tables["sweep_failures"]
        doc.para(f"Failed points ({len(f)}); tracebacks in {s['source'] if s['source_kind'] == 'folder' else 'sweep'}"
                 "/failures/<point_id>.json:")
        doc.table(f, max_rows=100)


def _lost_updates(tables) -> pd.DataFrame:
    """Lost updates per sample, measured vs simulated, at the measured thread counts."""
    frames = []
    for name, real_name, kind in (("real_runs", "real_runs", "measured"), ("prediction", "real_runs", "simulated"),
                                  ("dense_real_runs", "dense_real_runs", "measured"),
                                  ("dense_prediction", "dense_real_runs", "simulated")):
        df = tables.get(name)
        if df is None or len(df) == 0 or "lost_per_sample" not in df.columns:
            continue
        real = tables.get(real_name)
        if real is not None and len(real):
            df = df[df["threads"].isin(set(real["threads"]))]
        g = df.groupby(["workload", "scheme", "threads"], as_index=False)["lost_per_sample"].median()
        g["kind"] = kind
        frames.append(g)
    if not frames:
        return pd.DataFrame()
    keys = ["workload", "scheme", "threads"]
    meas = [f for f in frames if f["kind"].iloc[0] == "measured"]
    sim = [f for f in frames if f["kind"].iloc[0] == "simulated"]
    m = pd.concat(meas, ignore_index=True).drop(columns="kind").rename(
        columns={"lost_per_sample": "lost/sample measured"}) if meas else pd.DataFrame(columns=keys)
    s = pd.concat(sim, ignore_index=True).drop(columns="kind").rename(
        columns={"lost_per_sample": "lost/sample simulated"}) if sim else pd.DataFrame(columns=keys)
    out = m.merge(s, on=keys, how="outer")
    slow = []
    for runs_name, lost_name in (("real_runs", "real_lost"), ("dense_real_runs", "dense_real_lost")):
        runs, probe = tables.get(runs_name), tables.get(lost_name)
        if runs is None or probe is None or "probe_samples_per_s" not in probe.columns:
            continue
        plain = runs.groupby(keys, as_index=False)["samples_per_s"].median()
        p = probe[keys + ["probe_samples_per_s"]].merge(plain, on=keys)
        p["probe slowdown"] = p["samples_per_s"] / p["probe_samples_per_s"]
        slow.append(p[keys + ["probe slowdown"]])
    if slow:
        out = out.merge(pd.concat(slow, ignore_index=True), on=keys, how="left")
    return out.sort_values(keys).reset_index(drop=True)


def _pivot(df: pd.DataFrame, col: str) -> pd.DataFrame:
    p = df.pivot_table(index="scheme", columns="threads", values=col, aggfunc="first")
    p.columns = [f"{c} cores" for c in p.columns]
    return p.reset_index()


def _spec_value(spec_text: str, key: str) -> str:
    for line in spec_text.splitlines():
        if line.strip().startswith(f"{key} ="):
            return line.split("=", 1)[1].strip()
    return "?"


def _shorten_machine(text: str, width: int = 160) -> str:
    """machine.toml with long arrays (an empirical delay's points) elided."""
    out = []
    for line in text.splitlines():
        out.append(line if len(line) <= width else line[:width] + f" ... ({len(line)} characters; see machine.toml)")
    return "\n".join(out)


def _env_table(env: Mapping) -> pd.DataFrame:
    cpu, osd, py, git = env.get("cpu", {}), env.get("os", {}), env.get("python", {}), env.get("git", {})
    pk = env.get("packages", {})
    nb = env.get("numba_sysinfo", {})
    rows = [
        ("CPU", cpu.get("model_name")), ("usable cores / affinity", f"{cpu.get('usable_cores')} / {cpu.get('affinity')}"),
        ("os.cpu_count", cpu.get("os_cpu_count")),
        ("CPU flags", f"{len(cpu.get('flags', []))} flags (see environment.json)"),
        ("OS", osd.get("platform")), ("Python", f"{py.get('implementation')} {py.get('version')}"),
        ("numba / llvmlite", f"{pk.get('numba')} / {pk.get('llvmlite')}"),
        ("numpy / scipy / pandas", f"{pk.get('numpy')} / {pk.get('scipy')} / {pk.get('pandas')}"),
        ("Numba CPU name / features", f"{nb.get('CPU Name')} / {len(str(nb.get('CPU Features', '')).split())} features"),
        ("git commit", f"{git.get('commit', git.get('unavailable'))}{' (dirty)' if git.get('dirty') else ''}"),
        ("seeds", json.dumps(env.get("seeds", {}))),
    ]
    for k, v in env.get("data_sha256", {}).items():
        rows.append((f"sha256 {k}", v if isinstance(v, str) else json.dumps(v)))
    return pd.DataFrame(rows, columns=["what", "value"])


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _html_page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{STYLE_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")
