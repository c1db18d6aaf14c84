"""Exact checks of the theory's assumptions on a simulated run (functions -> DataFrames).

Labellings
    A labelling L numbers the samples 0, 1, ... in one of three orders (DESIGN.md):
    ``"start"`` (``start_seq``, Mania et al. 2015), ``"after-read"`` (``read_seq``, Leblond
    et al. 2017) and ``"after-write"`` (``end_seq``, Niu et al. 2011).

Overlap and τ (definitions used throughout)
    Samples i and k *overlap* when each started before the other ended, in the run's event
    order (:mod:`hwsim.model`: a sample that ends in the event where the next one starts does
    not overlap it).  From the trace: ``start_seq_i < started_at_end_k`` and
    ``start_seq_k < started_at_end_i``.

    * ``overlap_k``: the number of samples overlapping k (``workload.trace.tau_overlap``,
      what realrun measures with two counters);
    * ``τ_k^L = max |L(i) − L(k)|`` over samples i overlapping k (0 if none), and
      ``τ^L = max_k τ_k^L``.  This is the τ of "sample k is perturbed only by samples
      i with |i − k| ≤ τ".

    Facts (proved in the test docstrings): τ^start ≤ max_k overlap_k and τ^after-write ≤
    max_k overlap_k (samples labelled between two overlapping samples overlap the later /
    the earlier one); τ^after-read ≤ 2·max_k overlap_k.

The serial iterate and the perturbation (per labelling L)
    ``x_k = x_0 + Σ_{L(i) < L(k)} u_i`` with ``u_i`` the deltas the engine wrote
    (``encode_delta``: integers in fixed point).  Sample k read ``x̂_k`` on its support.
    For the read of coordinate j by k, an earlier-labelled sample i's write to j is
    *missed* when the value k read does not contain it, a later-labelled one is *seen* when
    it does; ``S_i^k[j] = -1`` (missed), ``+1`` (seen), else 0.  Then, exactly,

        x̂_k[j] − x_k[j] = Σ_{i≠k} S_i^k[j] u_i[j]          (j in the support of k).

    Which writes a value contains is decided by the memory order alone (``SimResult.order``):
    an atomic store adds to the value current when it lands; an rmw store replaces it by
    (the value its read saw) + its delta -- so each store has a *parent* version and a read
    contains exactly the *version chain* of the last store before it.  The identity check
    compares the values the engine actually read with this timing-derived structure:
    ``==`` on integers in fixed point.  In floating point x_k is evaluated in the state's own
    arithmetic (x_0 then each earlier-labelled delta added in label order with
    ``add_value``'s rounding -- so a serialised run reads exactly x_k), Σ S u and the
    differences in double-double, and the check is

        |x̂_k[j] − x_k[j] − Σ S u| ≤ ε · (c · (|x_0[j]| + Σ_{chain} |u_i[j]|)
                                          + c' · (|x_0[j]| + Σ_{L(i)<L(k)} |u_i[j]|)),

    c = the read's chain length and c' the number of earlier-labelled stores (one rounding
    per addition in each of the two sums), ε = 2^-52 (float64 state) or 2^-23 (float32
    state: an f64 add, then a round to f32).  Without lost updates, perturbing samples overlap k, so every
    ``|L(i) − L(k)| ≤ τ^L``; a lost update is missed by every later read, so with
    ``write_mode = "rmw"`` the ``within_tau`` column may be False.

Costs: the checks need the coordinate trace -- kept in memory (``coord_trace=True``) or
streamed to a file (``coord_trace="coords.parquet"``), which they read back whole -- and run
in O(rows log rows + pairs + scanned window) per labelling.  τ needs only the sample trace.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from numba import njit

LABELLINGS = {"start": "start_seq", "after-read": "read_seq", "after-write": "end_seq"}


def _labels(samples: pd.DataFrame, labelling: str) -> np.ndarray:
    if labelling not in LABELLINGS:
        raise ValueError(f"labelling = {labelling!r}: must be one of {', '.join(LABELLINGS)}")
    s = samples.sort_values("sample")
    if not np.array_equal(s["sample"].to_numpy(), np.arange(len(s))):
        raise ValueError("samples: the 'sample' column must be 0..N-1 (a full hwsim sample trace)")
    return np.ascontiguousarray(s[LABELLINGS[labelling]].to_numpy(), dtype=np.int64)


def _need_coords(result) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(coords, order) of a run: kept in memory, or read back from the streamed file."""
    if not result.has_coords():
        raise ValueError("this check needs the coordinate trace, which this run did not keep; rerun "
                         "hwsim.simulate(..., coord_trace=True) (in memory) or coord_trace='coords.parquet' "
                         "(streamed to a file, read back here)")
    coords, order = result.coord_frames()
    if order is None:
        raise ValueError(f"this check needs the memory order (SimResult.order), which scheme {result.spec.scheme!r} "
                         "does not record")
    return coords, order


# --- τ -------------------------------------------------------------------------------------

@njit(nogil=True, cache=True)
def _tau_kernel(start, se, lab_read, lab_end):
    n = start.size
    out = np.zeros((4, n), dtype=np.int64)  # overlap count, tau start, tau read, tau write
    # rows are in start order (start[k] == k); first(v) = min{i : se[i] > v} via prefix max
    pm = np.empty(n, dtype=np.int64)
    run = -1
    for i in range(n):
        run = max(run, se[i])
        pm[i] = run
    for k in range(n):
        lo = np.searchsorted(pm, k, side="right")  # first i with pm[i] > k
        cnt = 0
        ts = 0
        tr = 0
        tw = 0
        for i in range(lo, se[k]):
            if i == k:
                continue
            if i < k and se[i] <= k:
                continue
            cnt += 1
            ts = max(ts, abs(i - k))
            tr = max(tr, abs(lab_read[i] - lab_read[k]))
            tw = max(tw, abs(lab_end[i] - lab_end[k]))
        out[0, k] = cnt
        out[1, k] = ts
        out[2, k] = tr
        out[3, k] = tw
    return out


def tau(samples: pd.DataFrame) -> pd.DataFrame:
    """Per sample: ``overlap`` (count) and τ_k under the three labellings (module docstring).

    Also ``overlap_counters``: the count from the two counters (``workload.trace.tau_overlap``),
    which must equal ``overlap``.
    """
    from workload.trace import tau_overlap

    s = samples.sort_values("sample").reset_index(drop=True)
    start = _labels(s, "start")
    if not np.array_equal(start, np.arange(len(s))):
        raise ValueError("samples: start_seq must equal sample (hwsim numbering)")
    se = np.ascontiguousarray(s["started_at_end"].to_numpy(), dtype=np.int64)
    out = _tau_kernel(start, se, _labels(s, "after-read"), _labels(s, "after-write"))
    return pd.DataFrame({"sample": s["sample"].to_numpy(), "worker": s["worker"].to_numpy(),
                         "epoch": s["epoch"].to_numpy(), "overlap": out[0], "overlap_counters": tau_overlap(s),
                         "tau_start": out[1], "tau_after_read": out[2], "tau_after_write": out[3]})


def tau_summary(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per measure (overlap, start, after-read, after-write): max (τ) and mean."""
    t = tau(samples)
    rows = []
    for name, col in (("overlap", "overlap"), ("start", "tau_start"), ("after-read", "tau_after_read"),
                      ("after-write", "tau_after_write")):
        v = t[col].to_numpy()
        rows.append({"labelling": name, "tau": int(v.max()) if v.size else 0,
                     "mean": float(v.mean()) if v.size else 0.0})
    return pd.DataFrame(rows)


# --- version chains and the perturbation structure ------------------------------------------

class _Layout:
    """Stores and reads of the coordinate trace, grouped by coordinate in memory order."""

    def __init__(self, result, labelling: str, frames=None):
        co, od = frames if frames is not None else _need_coords(result)
        self.frames = (co, od)
        L = _labels(result.samples, labelling)
        self.L = L
        self.fixed = result.x.dtype == np.int64
        self.scale = float(2.0 ** result.spec.fixed_point_bits)
        sample = co["sample"].to_numpy()
        coord = co["coord"].to_numpy()
        keep = sample >= 0
        self.rows = np.flatnonzero(keep)
        sample, coord = sample[keep], coord[keep]
        read_op = od["read_op"].to_numpy()[keep]
        wread_op = od["wread_op"].to_numpy()[keep]
        write_op = od["write_op"].to_numpy()[keep]
        self.rmw = bool(np.any(wread_op >= 0))
        so = np.lexsort((write_op, coord))
        ro = np.lexsort((read_op, coord))
        self.st_coord = np.ascontiguousarray(coord[so])
        self.st_op = np.ascontiguousarray(write_op[so])
        self.st_wop = np.ascontiguousarray(wread_op[so])
        self.st_sample = np.ascontiguousarray(sample[so])
        self.st_label = np.ascontiguousarray(L[sample[so]])
        self.st_rowpos = so
        self.rd_coord = np.ascontiguousarray(coord[ro])
        self.rd_op = np.ascontiguousarray(read_op[ro])
        self.rd_sample = np.ascontiguousarray(sample[ro])
        self.rd_label = np.ascontiguousarray(L[sample[ro]])
        self.rd_rowpos = ro
        coords = np.unique(coord)
        self.coords = coords
        self.st_off = np.searchsorted(self.st_coord, np.append(coords, np.iinfo(np.int64).max)).astype(np.int64)
        self.rd_off = np.searchsorted(self.rd_coord, np.append(coords, np.iinfo(np.int64).max)).astype(np.int64)
        delta = co["delta"].to_numpy()[keep]
        rv = co["read_value"].to_numpy()[keep]
        x0 = result.x0
        if self.fixed:
            self.st_delta = np.rint(delta[so] * self.scale).astype(np.int64)
            self.rd_value = np.rint(rv[ro] * self.scale).astype(np.int64)
            self.x0 = x0.astype(np.int64)
        else:
            self.st_delta = np.ascontiguousarray(delta[so], dtype=np.float64)
            self.rd_value = np.ascontiguousarray(rv[ro], dtype=np.float64)
            self.x0 = x0.astype(np.float64)
        self.eps = 2.0 ** -52 if x0.dtype == np.float64 else 2.0 ** -23
        self.f32 = x0.dtype == np.float32


@njit(nogil=True, cache=True)
def _parents(st_off, st_op, st_wop, rd_off, rd_op, rmw):
    """Per store its parent (global store index or -1), chain length, lowest excluded position;
    per read its current version (global store index or -1)."""
    ns = st_op.size
    parent = np.full(ns, -1, dtype=np.int64)
    lex = np.full(ns, np.iinfo(np.int64).max, dtype=np.int64)  # lowest store position not in the chain
    clen = np.zeros(ns, dtype=np.int64)
    cur = np.full(rd_op.size, -1, dtype=np.int64)
    big = np.iinfo(np.int64).max
    for g in range(st_off.size - 1):
        a, b = st_off[g], st_off[g + 1]
        ops = st_op[a:b]
        for p in range(b - a):
            if rmw:
                q = np.searchsorted(ops, st_wop[a + p]) - 1  # last store before its read
            else:
                q = p - 1
            if q >= 0:
                parent[a + p] = a + q
                clen[a + p] = clen[a + q] + 1
                lx = lex[a + q]
            else:
                clen[a + p] = 1
                lx = big
            if q + 1 < p:
                lx = min(lx, q + 1)
            lex[a + p] = lx
        for r in range(rd_off[g], rd_off[g + 1]):
            q = np.searchsorted(ops, rd_op[r]) - 1
            cur[r] = a + q if q >= 0 else -1
    return parent, clen, lex, cur


@njit(nogil=True, cache=True)
def _pairs(st_off, st_label, st_sample, parent, lex, rd_off, rd_label, rd_sample, cur, fill,
           out_read, out_store, out_sign):
    """Enumerate (read, store, sign) perturbation pairs; count only when not ``fill``."""
    ns = st_label.size
    pm = np.empty(ns, dtype=np.int64)  # prefix max of labels within each coordinate
    sm = np.empty(ns, dtype=np.int64)  # suffix min
    for g in range(st_off.size - 1):
        a, b = st_off[g], st_off[g + 1]
        run = -1
        for p in range(a, b):
            run = max(run, st_label[p])
            pm[p] = run
        run = np.iinfo(np.int64).max
        for p in range(b - 1, a - 1, -1):
            run = min(run, st_label[p])
            sm[p] = run
    n = 0
    for g in range(st_off.size - 1):
        a, b = st_off[g], st_off[g + 1]
        for r in range(rd_off[g], rd_off[g + 1]):
            Lk = rd_label[r]
            k = rd_sample[r]
            c = cur[r]
            if c >= 0:
                lx = lex[c]
                ch = c
                p = c
                while p >= a:
                    if pm[p] <= Lk and p - a < lx:
                        break
                    if p == ch:
                        if st_label[p] > Lk:
                            if fill:
                                out_read[n] = r
                                out_store[n] = p
                                out_sign[n] = 1
                            n += 1
                        ch = parent[ch]
                    elif st_label[p] < Lk and st_sample[p] != k:
                        if fill:
                            out_read[n] = r
                            out_store[n] = p
                            out_sign[n] = -1
                        n += 1
                    p -= 1
            p = (c + 1) if c >= 0 else a
            while p < b:
                if sm[p] >= Lk:
                    break
                if st_label[p] < Lk and st_sample[p] != k:
                    if fill:
                        out_read[n] = r
                        out_store[n] = p
                        out_sign[n] = -1
                    n += 1
                p += 1
    return n


def _structure(result, labelling, frames=None):
    lay = _Layout(result, labelling, frames)
    parent, clen, lex, cur = _parents(lay.st_off, lay.st_op, lay.st_wop, lay.rd_off, lay.rd_op, lay.rmw)
    z = np.zeros(0, dtype=np.int64)
    n = _pairs(lay.st_off, lay.st_label, lay.st_sample, parent, lex, lay.rd_off, lay.rd_label, lay.rd_sample, cur,
               False, z, z, z)
    pr, ps, sg = (np.zeros(n, dtype=np.int64) for _ in range(3))
    _pairs(lay.st_off, lay.st_label, lay.st_sample, parent, lex, lay.rd_off, lay.rd_label, lay.rd_sample, cur,
           True, pr, ps, sg)
    return lay, parent, clen, cur, pr, ps, sg


def perturbations(result, labelling: str = "start") -> pd.DataFrame:
    """The perturbation structure: one row per (sample k, coordinate j, other sample i) with
    S_i^k[j] ≠ 0.

    Columns: ``sample`` (k), ``coord`` (j), ``other`` (i), ``sign`` (S_i^k[j]: -1 missed an
    earlier write, +1 saw a later one), ``distance`` L(i) − L(k), ``within_tau``
    (|distance| ≤ τ^L of the run).
    """
    lay, parent, clen, cur, pr, ps, sg = _structure(result, labelling)
    t = tau_summary(result.samples).set_index("labelling")["tau"]
    dist = lay.st_label[ps] - lay.rd_label[pr]
    return pd.DataFrame({"sample": lay.rd_sample[pr], "coord": lay.rd_coord[pr], "other": lay.st_sample[ps],
                         "sign": sg.astype(np.int8), "distance": dist,
                         "within_tau": np.abs(dist) <= int(t[labelling])})


def s_matrix(pert: pd.DataFrame, k: int) -> pd.DataFrame:
    """S_i^k for one sample k from :func:`perturbations`: rows i, columns coordinates,
    entries in {-1, 0, +1} (the diagonal of each S_i^k, on the coordinates it touches)."""
    p = pert[pert["sample"] == k]
    if p.empty:
        return pd.DataFrame(dtype=np.int8)
    return p.pivot_table(index="other", columns="coord", values="sign", aggfunc="sum", fill_value=0).astype(np.int8)


# --- the identity ----------------------------------------------------------------------------

@njit(nogil=True, cache=True)
def _two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@njit(nogil=True, cache=True)
def _dd_add(hi, lo, v):
    s, e = _two_sum(hi, v)
    e += lo
    return _two_sum(s, e)


@njit(nogil=True, cache=True)
def _float_identity(st_off, st_label, st_delta, parent, clen, rd_off, rd_label, rd_value, rd_x0, cur,
                    pr, ps, sg, eps, f32):
    nr = rd_label.size
    # x_k[j]: x0 plus the stores labelled before k, added one by one in label order with the
    # state's rounding (the serial iterate in the engine's arithmetic); count and |.| sums
    xk = np.zeros(nr)
    pcnt = np.zeros(nr)
    pabs = np.zeros(nr)
    for g in range(st_off.size - 1):
        a, b = st_off[g], st_off[g + 1]
        order = np.argsort(st_label[a:b], kind="mergesort")
        labs = st_label[a:b][order]
        for r in range(rd_off[g], rd_off[g + 1]):
            q = np.searchsorted(labs, rd_label[r])
            v = rd_x0[r]
            ab = abs(v)
            for z in range(q):
                d = st_delta[a + order[z]]
                v = np.float64(np.float32(v + d)) if f32 else v + d
                ab += abs(d)
            xk[r] = v
            pcnt[r] = q
            pabs[r] = ab
    rhs_hi = np.zeros(nr)
    rhs_lo = np.zeros(nr)
    for n in range(pr.size):
        r = pr[n]
        rhs_hi[r], rhs_lo[r] = _dd_add(rhs_hi[r], rhs_lo[r], sg[n] * st_delta[ps[n]])
    # chain absolute sums for the bound
    cabs = np.zeros(st_label.size)
    for s in range(st_label.size):
        cabs[s] = abs(st_delta[s]) + (cabs[parent[s]] if parent[s] >= 0 else 0.0)
    lhs = np.zeros(nr)
    rhs = np.zeros(nr)
    resid = np.zeros(nr)
    bound = np.zeros(nr)
    for r in range(nr):
        h, l = _two_sum(rd_value[r], -xk[r])  # x̂ - x_k, exactly
        lhs[r] = h + l
        rhs[r] = rhs_hi[r] + rhs_lo[r]
        h, l = _dd_add(h, l, -rhs_hi[r])
        h, l = _dd_add(h, l, -rhs_lo[r])
        resid[r] = h + l
        c = cur[r]
        chain = clen[c] * (abs(rd_x0[r]) + cabs[c]) if c >= 0 else 0.0
        bound[r] = eps * (chain + pcnt[r] * pabs[r])
    return lhs, rhs, resid, bound


def identity(result, labelling: str = "start", *, frames=None) -> pd.DataFrame:
    """x̂_k − x_k = Σ_{i≠k} S_i^k u_i, checked per (sample, coordinate) read.

    Columns: ``sample``, ``coord``, ``lhs`` (x̂_k[j] − x_k[j]), ``rhs`` (Σ S u), ``residual``
    (lhs − rhs), ``bound`` (0 in fixed point; the float bound of the module docstring),
    ``holds`` (``residual == 0`` in fixed point, ``|residual| <= bound`` otherwise).  In fixed
    point lhs, rhs and residual are integers in units of 2^-bits.  ``frames``: the run's
    (coords, order) when already at hand (a streamed trace is otherwise read back).
    """
    lay, parent, clen, cur, pr, ps, sg = _structure(result, labelling, frames)
    x0 = lay.x0[lay.rd_coord]
    if lay.fixed:
        nr = lay.rd_label.size
        xk = np.zeros(nr, dtype=np.int64)
        for g in range(lay.st_off.size - 1):
            a, b = lay.st_off[g], lay.st_off[g + 1]
            o = np.argsort(lay.st_label[a:b], kind="stable")
            pref = np.concatenate([[0], np.cumsum(lay.st_delta[a:b][o])])
            ra, rb = lay.rd_off[g], lay.rd_off[g + 1]
            xk[ra:rb] = pref[np.searchsorted(lay.st_label[a:b][o], lay.rd_label[ra:rb])]
        rhs = np.zeros(nr, dtype=np.int64)
        np.add.at(rhs, pr, sg * lay.st_delta[ps])
        lhs = lay.rd_value - x0 - xk
        resid = lhs - rhs
        bound = np.zeros(nr, dtype=np.int64)
        holds = resid == 0
    else:
        lhs, rhs, resid, bound = _float_identity(lay.st_off, lay.st_label, lay.st_delta, parent, clen, lay.rd_off,
                                                 lay.rd_label, lay.rd_value, np.ascontiguousarray(x0), cur, pr, ps,
                                                 sg, lay.eps, lay.f32)
        holds = np.abs(resid) <= bound
    df = pd.DataFrame({"sample": lay.rd_sample, "coord": lay.rd_coord, "lhs": lhs, "rhs": rhs, "residual": resid,
                       "bound": bound, "holds": holds})
    return df.sort_values(["sample", "coord"], kind="stable").reset_index(drop=True)


def noise(result, labelling: str = "start", problem=None) -> pd.DataFrame:
    """Per sample: ``dist2`` = ‖x̂_k − x_k‖² and ``inner`` = ⟨x_k − x̂_k, g_k⟩ on k's support,
    with g_k recomputed by ``problem.update`` on the values k read (the engine's arithmetic).

    The noise terms of the perturbed-iterate analysis (Mania et al. 2015, eq. (2.5)-(2.6)).
    ``problem`` is built from the spec when None.
    """
    if problem is None:
        from workload.build import build_problem

        problem = build_problem(result.spec)
    frames = _need_coords(result)
    idn = identity(result, labelling, frames=frames)
    scale = float(2.0 ** result.spec.fixed_point_bits) if result.x.dtype == np.int64 else 1.0
    diff = idn["lhs"].to_numpy().astype(np.float64) / scale  # x̂ - x_k
    co = frames[0].sort_values(["sample", "coord"], kind="stable")
    xr_all = co["read_value"].to_numpy()
    t = problem.terms
    smp = result.samples.sort_values("sample")
    steps = smp["step"].to_numpy()
    terms = smp["term"].to_numpy()
    n = len(smp)
    dist2 = np.zeros(n)
    inner = np.zeros(n)
    sizes = t.indptr[terms + 1] - t.indptr[terms]
    off = np.concatenate([[0], np.cumsum(sizes)])
    for k in range(n):
        e = terms[k]
        lo, hi = t.indptr[e], t.indptr[e + 1]
        m = hi - lo
        if m == 0:
            continue
        xr = np.ascontiguousarray(xr_all[off[k]:off[k + 1]])
        g = np.empty(m)
        u = np.empty(m)
        problem.update(problem.params, problem.aux, t.indices[lo:hi], t.values[lo:hi], t.y[e], xr, steps[k], g, u)
        d = diff[off[k]:off[k + 1]]
        dist2[k] = float(d @ d)
        inner[k] = float(-d @ g)
    return pd.DataFrame({"sample": smp["sample"].to_numpy(), "dist2": dist2, "inner": inner})


def lost_updates(result) -> pd.DataFrame:
    """One row per lost write: ``sample``, ``coord``, ``write_tick``, ``overwritten_by`` (the
    sample whose rmw store overwrote it first) and ``in_final_model`` (whether the final
    value of the coordinate contains its delta again: a later store can bring it back)."""
    lay = _Layout(result, "start")
    parent, clen, lex, cur = _parents(lay.st_off, lay.st_op, lay.st_wop, lay.rd_off, lay.rd_op, lay.rmw)
    coords = lay.frames[0]
    lost = coords["lost"].to_numpy()[lay.rows][lay.st_rowpos]
    wt = coords["write_tick"].to_numpy()[lay.rows][lay.st_rowpos]
    out = []
    for g in range(lay.st_off.size - 1):
        a, b = lay.st_off[g], lay.st_off[g + 1]
        if not lost[a:b].any():
            continue
        final = set()
        s = b - 1
        while s >= 0 and s >= a:
            final.add(s)
            s = parent[s]
        for p in np.flatnonzero(lost[a:b]) + a:
            by = -1
            for q in range(p + 1, b):
                if lay.st_wop[q] >= 0 and lay.st_wop[q] < lay.st_op[p]:
                    by = int(lay.st_sample[q])
                    break
            out.append({"sample": int(lay.st_sample[p]), "coord": int(lay.st_coord[p]), "write_tick": int(wt[p]),
                        "overwritten_by": by, "in_final_model": p in final})
    cols = {"sample": "int64", "coord": "int64", "write_tick": "int64", "overwritten_by": "int64",
            "in_final_model": "bool"}
    if not out:
        return pd.DataFrame({c: pd.Series([], dtype=d) for c, d in cols.items()})
    return pd.DataFrame(out).astype(cols).sort_values(["sample", "coord"]).reset_index(drop=True)
