"""Buckwild!: low-precision fixed-point asynchronous SGD with unbiased stochastic rounding.

De Sa, Zhang, Olukotun and Ré, "Taming the Wild: A Unified Analysis of Hogwild!-Style
Algorithms", NIPS 2015, §4 (Buckwild!) and eq. (9) (the unbiased rounding Q̃).

Representation
    Model x and data a are stored as signed B-bit integers with a power-of-two scale:
    x = q_x · 2^-model_exp (int8 / int16 / int32 array), a = q_a · 2^-data_exp.  The
    update of coordinate j of term e is computed in float64 from the integers,

        s   = (Σ_k q_a[k] · q_x[j_k]) · 2^-(data_exp + model_exp)     (exact: int64 sum)
        v_k = c_A · q_a[k] + (−γ · aux[j_k]) · q_x̂[j_k],  c_A = −γ · ℓ'(s, y) · 2^(model_exp − data_exp)

    (v_k is the update −γ g_k in model ulps), rounded to an integer d_k = Q(v_k), saturated
    to ``gradient_bits`` and added to the model with saturation to ``model_bits``:
    x_j ← clamp(x_j + clamp(d_k)).  Saturation is where the paper's arithmetic saturates
    (fixed-point adds on SIMD units).  Everything after the float64 v_k is integer.

Rounding (``rounding``)
    ``"stochastic"`` (unbiased): Q(v) = ⌊v⌋ + [r < v − ⌊v⌋] with r uniform on the grid
    {m · 2^-53}, so E[Q(v)] = v up to 2^-53 (P[r < f] = ⌈f·2^53⌉/2^53) and
    Var[Q(v) − v] = f(1 − f) ≤ 1/4 ulp².  ``"nearest"``: Q(v) = ⌊v + 1/2⌋, biased (the
    counter-example the paper warns about: small updates vanish).

The generator
    Counter-based: r for the c-th rounding of worker w is splitmix64(key_w + c · φ) with
    key_w = ``seed_words(seed, STREAM_ROUNDING, w)[0]`` (φ = 0x9E3779B97F4A7C15).  No state
    but a per-worker counter (advanced by the support size per sample), so the inner loop
    has no loop-carried dependency and vectorises, and hwsim replays the same draws.  The
    data are quantised once with the key ``seed_words(seed, STREAM_ROUNDING, DATA_KEY)``.

The slow oracle
    :func:`oracle_run` is plain Python integers and floats (no numpy in the arithmetic),
    the reference every fast path is compared with bit for bit.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from .spec import STREAM_ROUNDING, RunSpec, SpecError, seed_words

BITS = (8, 16, 32)
ROUNDINGS = ("stochastic", "nearest")
STOCHASTIC, NEAREST = 0, 1
INT_DTYPES = {8: np.int8, 16: np.int16, 32: np.int32}
LOSSES = {"svm": 0, "logistic": 1, "least-squares": 2}
DATA_KEY = 2**32  # spawn key of the data-quantisation stream (worker keys are < 2**32)

MASK64 = (1 << 64) - 1
_PHI = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
PHI, M1, M2 = np.uint64(_PHI), np.uint64(_M1), np.uint64(_M2)
S30, S27, S31, S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
TWO_M53 = 2.0**-53
V_CLAMP = 2.0**40  # |v| beyond this saturates anyway (every range is < 2**32); keeps int64 exact


class Config(NamedTuple):
    """Validated Buckwild! settings (``validate_options``)."""

    data_bits: int
    model_bits: int
    gradient_bits: int
    data_exp: int
    model_exp: int
    rounding: int  # STOCHASTIC or NEAREST
    loss: int  # LOSSES code

    @property
    def model_dtype(self):
        return INT_DTYPES[self.model_bits]

    @property
    def data_dtype(self):
        return INT_DTYPES[self.data_bits]

    def model_range(self) -> tuple[int, int]:
        return int_range(self.model_bits)

    def grad_range(self) -> tuple[int, int]:
        return int_range(self.gradient_bits)

    def data_range(self) -> tuple[int, int]:
        return int_range(self.data_bits)


def int_range(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def auto_data_exp(max_abs: float, bits: int) -> int:
    """The largest exponent with max|a| · 2^exp ≤ 2^(bits-1) − 1 (no data saturates)."""
    if max_abs <= 0:
        return bits - 2
    return int(math.floor(math.log2(((1 << (bits - 1)) - 1) / max_abs)))


def validate_options(spec: RunSpec, problem=None) -> Config:
    """The one place Buckwild!'s ``spec.options`` are checked.

    ``data_bits``, ``model_bits`` (default 16 each), ``gradient_bits`` (default 32) in
    {8, 16, 32}; ``model_exp`` (int, default model_bits − 2: range ±2); ``data_exp`` (int
    or "auto", default "auto": the largest exponent at which no data value saturates);
    ``rounding`` in {"stochastic", "nearest"} (default "stochastic").  The problem must be
    linear (svm, logistic, least-squares).
    """
    o = spec.options

    def bits(name, default):
        v = o.get(name, default)
        if isinstance(v, bool) or v not in BITS:
            raise SpecError(f"options.{name}", v, f"must be one of {', '.join(map(str, BITS))}",
                            f"set options.{name} = 8, 16 or 32")
        return int(v)

    db, mb, gb = bits("data_bits", 16), bits("model_bits", 16), bits("gradient_bits", 32)
    me = o.get("model_exp", mb - 2)
    if isinstance(me, bool) or not isinstance(me, (int, np.integer)) or not (0 <= me <= mb + 8):
        raise SpecError("options.model_exp", me, f"must be an integer in [0, {mb + 8}] (x = q · 2^-model_exp)",
                        f"set options.model_exp = {mb - 2} (range ±2) or remove it")
    rounding = o.get("rounding", "stochastic")
    if rounding not in ROUNDINGS:
        raise SpecError("options.rounding", rounding, f"must be one of {', '.join(ROUNDINGS)}",
                        "set options.rounding = 'stochastic' (unbiased) or 'nearest' (biased)")
    if spec.problem not in LOSSES:
        raise SpecError("problem", spec.problem, f"scheme 'buckwild' runs the linear problems "
                        f"({', '.join(LOSSES)})", "pick one of those problems or another scheme")
    de = o.get("data_exp", "auto")
    if de == "auto":
        max_abs = float(np.max(np.abs(problem.terms.values))) if problem is not None and problem.terms.nnz else 1.0
        de = auto_data_exp(max_abs, db)
    elif isinstance(de, bool) or not isinstance(de, (int, np.integer)) or not (-8 <= de <= db + 16):
        raise SpecError("options.data_exp", de, f"must be 'auto' or an integer in [-8, {db + 16}]",
                        "remove it (auto: no data value saturates)")
    return Config(db, mb, gb, int(de), int(me), STOCHASTIC if rounding == "stochastic" else NEAREST,
                  LOSSES[spec.problem])


def worker_key(seed: int, worker: int) -> int:
    """The generator key of a worker's rounding stream (a Python int < 2**64)."""
    return int(seed_words(seed, STREAM_ROUNDING, worker, n=1)[0])


def worker_keys(seed: int, workers: int) -> np.ndarray:
    return np.array([worker_key(seed, w) for w in range(workers)], dtype=np.uint64)


# --- the generator and the quantiser (jitted) -------------------------------------------
@njit(nogil=True, inline="always")
def uniform53(key, ctr):
    """splitmix64(key + ctr·φ) >> 11, scaled to [0, 1): the ctr-th draw of stream ``key``."""
    z = key + np.uint64(ctr) * PHI
    z = (z ^ (z >> S30)) * M1
    z = (z ^ (z >> S27)) * M2
    z = z ^ (z >> S31)
    return np.float64(z >> S11) * TWO_M53


@njit(nogil=True, inline="always")
def quantise(v, key, ctr, rounding):
    """Q(v) as int64: unbiased stochastic (draw ``ctr`` of ``key``) or nearest (⌊v + ½⌋)."""
    v = min(max(v, -V_CLAMP), V_CLAMP)
    if rounding == NEAREST:
        return np.int64(math.floor(v + 0.5))
    fl = math.floor(v)
    r = uniform53(key, ctr)
    return np.int64(fl) + np.int64(r < v - fl)  # branch-free: the loop vectorises


@njit(nogil=True, inline="always")
def saturate(d, lo, hi):
    return min(max(d, lo), hi)


@njit(nogil=True)
def quantise_array(v, key, ctr0, rounding):
    """Q(v[i]) with draw ctr0 + i of stream ``key`` (int64 array)."""
    out = np.empty(v.size, dtype=np.int64)
    for i in range(v.size):
        out[i] = quantise(v[i], key, ctr0 + i, rounding)
    return out


@njit(nogil=True, inline="always")
def dloss(loss, s, y):
    if loss == 0:
        return -y if y * s < 1.0 else 0.0
    if loss == 1:
        return -y / (1.0 + math.exp(y * s))
    return s - y


@njit(nogil=True, inline="always")
def sample_deltas(loss, rounding, reg, gamma, y, aq, xq, cq, inv_s, a_to_x, key, ctr, glo, ghi, d):
    """The integer deltas d[k] of one sample from its data aq, the model values xq read and
    the regulariser weights cq[k] = aux[j_k] at the support (gathered by the caller, so this
    loop has no indirect loads and vectorises).

    ``inv_s`` = 2^-(data_exp + model_exp), ``a_to_x`` = 2^(model_exp − data_exp); draws
    ``ctr .. ctr + k − 1`` of ``key``.  The one implementation of the arithmetic, shared by
    realrun and hwsim (module docstring).  ``reg`` False skips the regulariser's term (the
    same d as with aux = 0: adding a signed zero changes no floor), saving its loads.
    """
    m = aq.size
    acc = np.int64(0)
    for k in range(m):
        acc += np.int64(aq[k]) * np.int64(xq[k])
    s = np.float64(acc) * inv_s
    ca = -gamma * dloss(loss, s, y) * a_to_x
    if reg:
        for k in range(m):
            v = ca * np.float64(aq[k]) + (-gamma * cq[k]) * np.float64(xq[k])
            d[k] = saturate(quantise(v, key, ctr + k, rounding), glo, ghi)
    else:
        for k in range(m):
            v = ca * np.float64(aq[k])
            d[k] = saturate(quantise(v, key, ctr + k, rounding), glo, ghi)


# --- the model and the data in fixed point ----------------------------------------------
def encode_model(x: np.ndarray, cfg: Config) -> np.ndarray:
    """Float64 model → int array (nearest, saturated): the initial point."""
    lo, hi = cfg.model_range()
    q = np.clip(np.floor(np.asarray(x, dtype=np.float64) * 2.0**cfg.model_exp + 0.5), lo, hi)
    return np.ascontiguousarray(q.astype(cfg.model_dtype))


def decode_model(q: np.ndarray, cfg: Config) -> np.ndarray:
    return q.astype(np.float64) * 2.0**-cfg.model_exp


def encode_data(values: np.ndarray, cfg: Config, seed: int) -> np.ndarray:
    """Data values → int array with the spec's rounding (stream DATA_KEY), saturated."""
    key = np.uint64(worker_key(seed, DATA_KEY))
    lo, hi = cfg.data_range()
    q = quantise_array(np.ascontiguousarray(values, dtype=np.float64) * 2.0**cfg.data_exp, key, 0, cfg.rounding)
    return np.ascontiguousarray(np.clip(q, lo, hi).astype(cfg.data_dtype))


def decode_data(q: np.ndarray, cfg: Config) -> np.ndarray:
    return q.astype(np.float64) * 2.0**-cfg.data_exp


def constants(cfg: Config) -> tuple[float, float, int, int, int, int]:
    """(inv_s, a_to_x, glo, ghi, mlo, mhi) for the kernels."""
    glo, ghi = cfg.grad_range()
    mlo, mhi = cfg.model_range()
    return (2.0**-(cfg.data_exp + cfg.model_exp), 2.0**(cfg.model_exp - cfg.data_exp), glo, ghi, mlo, mhi)


# --- the slow oracle: plain Python integers ---------------------------------------------
def py_uniform53(key: int, ctr: int) -> float:
    z = (key + ctr * _PHI) & MASK64
    z = ((z ^ (z >> 30)) * _M1) & MASK64
    z = ((z ^ (z >> 27)) * _M2) & MASK64
    z ^= z >> 31
    return float(z >> 11) * TWO_M53


def py_quantise(v: float, key: int, ctr: int, rounding: int) -> int:
    v = min(max(v, -V_CLAMP), V_CLAMP)
    if rounding == NEAREST:
        return math.floor(v + 0.5)
    fl = math.floor(v)
    return fl + (1 if py_uniform53(key, ctr) < v - fl else 0)


def _py_dloss(loss: int, s: float, y: float) -> float:
    if loss == 0:
        return -y if y * s < 1.0 else 0.0
    if loss == 1:
        return -y / (1.0 + math.exp(y * s))
    return s - y


def oracle_run(problem, spec: RunSpec) -> list[list[int]]:
    """Buckwild! in plain Python integers: the model (a list of ints) after each epoch.

    Processes the round-robin interleaving of the worker orders (for one worker: serial
    SGD), each worker with its own rounding stream and counter.  Slow: small problems only.
    """
    from .order import worker_orders
    from .schedule import schedule_args, step_at
    from .serial import interleave

    cfg = validate_options(spec, problem)
    t = problem.terms
    x = [int(v) for v in encode_model(problem.initial_point(spec.seed), cfg)]
    aq = [int(v) for v in encode_data(t.values, cfg, spec.seed)]
    indptr = [int(v) for v in t.indptr]
    indices = [int(v) for v in t.indices]
    ys = [float(v) for v in t.y]
    aux = [float(v) for v in problem.aux]
    inv_s, a_to_x, glo, ghi, mlo, mhi = constants(cfg)
    keys = [worker_key(spec.seed, w) for w in range(spec.threads)]
    ctrs = [0] * spec.threads
    code, step0, beta, t0 = schedule_args(spec, t.N)
    out = []
    for epoch in range(spec.epochs):
        seq, ts = interleave(worker_orders(spec, t.N, epoch))
        for e, tt in zip(seq.tolist(), ts.tolist()):
            w = tt % spec.threads
            gamma = float(step_at(code, step0, beta, t0, epoch, tt))
            lo, hi = indptr[e], indptr[e + 1]
            idx = indices[lo:hi]
            a = aq[lo:hi]
            xr = [x[j] for j in idx]
            s = float(sum(ai * xi for ai, xi in zip(a, xr))) * inv_s
            ca = -gamma * _py_dloss(cfg.loss, s, ys[e]) * a_to_x
            for k, j in enumerate(idx):
                v = ca * float(a[k]) + (-gamma * aux[j]) * float(xr[k])
                d = min(max(py_quantise(v, keys[w], ctrs[w] + k, cfg.rounding), glo), ghi)
                x[j] = min(max(x[j] + d, mlo), mhi)
            ctrs[w] += len(idx)
        out.append(list(x))
    return out
