"""Model state representations and the one write rule every engine uses.

State dtypes (``RunSpec.dtype``):

* ``float64``: x in float64; reads widen nothing; x_j ← x_j + u.
* ``float32``: x stored in float32, arithmetic in float64: x_j ← float32(x_j + u).
* ``fixed``: x stored as int64 q with x = q · 2^-bits; an update u is quantised once,
  Q(u) = rint(u · 2^bits), and added as an integer, so additions are associative and the
  order in which concurrent updates land does not change the sum (DESIGN.md, hwsim).
"""
from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

STATE_DTYPES = {"float64": np.float64, "float32": np.float32, "fixed": np.int64}


def state_dtype(dtype: str):
    return STATE_DTYPES[dtype]


def scale_of(bits: int) -> float:
    return float(2.0**bits)


def to_state(x: np.ndarray, dtype: str, bits: int) -> np.ndarray:
    """Float64 x → the stored model (a new C-contiguous array)."""
    x = np.asarray(x, dtype=np.float64)
    if dtype == "fixed":
        return np.ascontiguousarray(np.rint(x * scale_of(bits)).astype(np.int64))
    return np.ascontiguousarray(x.astype(STATE_DTYPES[dtype]))


def to_float(x: np.ndarray, bits: int) -> np.ndarray:
    """The stored model → float64."""
    if x.dtype == np.int64:
        return x.astype(np.float64) / scale_of(bits)
    return x.astype(np.float64)


def read_value(x, j, inv_scale):
    """The float64 value of stored coordinate j (inv_scale = 2^-bits, ignored for floats)."""
    if x.dtype == np.int64:
        return float(x[j]) * inv_scale
    return float(x[j])


def encode_delta(x, u, scale):
    """An update u in the stored model's arithmetic: Q(u) = rint(u·scale) for fixed point, else u."""
    if x.dtype == np.int64:
        return np.int64(np.rint(u * scale))
    return u


def add_value(x, j, d):
    """x_j ← x_j + d (d from :func:`encode_delta`), rounded to the stored dtype."""
    if x.dtype == np.float32:
        x[j] = np.float32(np.float64(x[j]) + d)
    else:
        x[j] = x[j] + d


# Jitted versions, chosen by the state array's dtype at compile time.
@overload(read_value, inline="always", jit_options={"nogil": True})
def _read_value(x, j, inv_scale):
    if isinstance(x.dtype, types.Integer):
        return lambda x, j, inv_scale: x[j] * inv_scale
    return lambda x, j, inv_scale: np.float64(x[j])


@overload(encode_delta, inline="always", jit_options={"nogil": True})
def _encode_delta(x, u, scale):
    if isinstance(x.dtype, types.Integer):
        return lambda x, u, scale: np.int64(np.rint(u * scale))
    return lambda x, u, scale: u


@overload(add_value, inline="always", jit_options={"nogil": True})
def _add_value(x, j, d):
    if x.dtype == types.float32:
        def impl(x, j, d):
            x[j] = np.float32(np.float64(x[j]) + d)
        return impl

    def impl(x, j, d):
        x[j] = x[j] + d
    return impl
