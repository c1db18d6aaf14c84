"""Hypothesis strategies for sparse problems, machines, schedules and run specs.

General by default, narrowable by arguments, so a user's property can say "for every
sparse problem of this shape and every machine with up to 64 cores whose delays are
bounded" and let Hypothesis search -- and shrink -- over exactly that space.

Problems are drawn term by term (each support a unique list of coordinates), so a failing
example shrinks to few terms, few coordinates and small supports.  The sparsity statistics
Ω (support size), ρ and Δ (Niu et al. 2011, §2) are steered by ``support_size``,
``n_coords`` and ``hot``: with ``hot = h`` every coordinate comes from the first h with
probability ``p_hot``, which makes those coordinates shared by many terms (large Δ, ρ).
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from workload.problems import Terms, make_problem
from workload.spec import RunSpec

FINITE = dict(allow_nan=False, allow_infinity=False)


@st.composite
def sparse_terms(draw, *, n_terms=(2, 24), n_coords=(1, 16), support_size=(1, 4), hot=None, p_hot=0.5,
                 labels="sign", value_range=(0.25, 2.0)):
    """A :class:`Terms` with ``n_terms`` terms over ``n_coords`` coordinates.

    Each bound is an inclusive (lo, hi) pair.  ``labels``: ``"sign"`` (±1) or ``"real"``.
    ``hot``: (lo, hi) range for the number of hot coordinates, or None for uniform supports.
    """
    n = draw(st.integers(*n_coords))
    N = draw(st.integers(*n_terms))
    h = draw(st.integers(max(1, min(hot[0], n)), max(1, min(hot[1], n)))) if hot else None
    lo_s, hi_s = support_size
    indptr, indices, values = [0], [], []
    for _ in range(N):
        size = draw(st.integers(min(lo_s, n), min(hi_s, n)))
        if h is not None:
            coord = st.one_of(st.integers(0, h - 1), st.integers(0, n - 1)) if p_hot < 1 else st.integers(0, h - 1)
            size = min(size, n if p_hot < 1 else h)
        else:
            coord = st.integers(0, n - 1)
        support = sorted(draw(st.lists(coord, min_size=size, max_size=size, unique=True)))
        sign = st.sampled_from([-1.0, 1.0])
        mags = draw(st.lists(st.floats(*value_range, **FINITE), min_size=size, max_size=size))
        signs = draw(st.lists(sign, min_size=size, max_size=size))
        indices += support
        values += [m * s for m, s in zip(mags, signs)]
        indptr.append(len(indices))
    if labels == "sign":
        y = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=N, max_size=N))
    else:
        y = draw(st.lists(st.floats(-2.0, 2.0, **FINITE), min_size=N, max_size=N))
    return Terms(np.array(indptr), np.array(indices, dtype=np.int64), np.array(values), np.array(y), n)


@st.composite
def problems(draw, *, kinds=("least-squares", "logistic", "svm"), terms=None, lam=(1e-3, 1.0), reg=("l2",)):
    """A linear problem over drawn terms (least squares gets real labels)."""
    kind = draw(st.sampled_from(list(kinds)))
    t = draw(terms if terms is not None else sparse_terms(labels="real" if kind == "least-squares" else "sign"))
    lam_v = draw(st.floats(*lam, **FINITE))
    return make_problem(kind, t, lam=lam_v, reg=draw(st.sampled_from(list(reg))))


def delay_models(*, bounded: bool | None = None, max_ticks: int = 200):
    """Delay models of :mod:`hwsim.delays`; ``bounded=True`` only those with finite bounds,
    ``False`` only unbounded ones, ``None`` both."""
    from hwsim import delays as d

    ticks = st.integers(0, max_ticks)
    bounded_models = st.one_of(
        ticks.map(lambda c: d.Constant(c)),
        st.lists(st.integers(0, max_ticks), min_size=1, max_size=8).map(lambda v: d.Empirical(np.array(v))),
    )
    unbounded_models = st.one_of(
        st.floats(1.0, float(max_ticks), **FINITE).map(lambda m: d.Exponential(m)),
        st.tuples(ticks, st.floats(1.0 / max_ticks, 1.0, **FINITE)).map(lambda a: d.ShiftedExponential(*a)),
        st.tuples(st.floats(0.0, np.log(max_ticks), **FINITE), st.floats(0.05, 1.0, **FINITE)).map(
            lambda a: d.LogNormal(*a)),
    )
    if bounded is True:
        return bounded_models
    if bounded is False:
        return unbounded_models
    return st.one_of(bounded_models, unbounded_models)


@st.composite
def machines(draw, *, cores=(1, 8), bounded: bool | None = None, coherence=(0, 50), access_cost=(1, 20),
             per_core_delays: bool = True, max_ticks: int = 200):
    """An :class:`hwsim.Machine` with ``cores`` in the inclusive range and delays as
    :func:`delay_models` draws them (per core when ``per_core_delays``)."""
    from hwsim import Machine

    p = draw(st.integers(*cores))
    models = delay_models(bounded=bounded, max_ticks=max_ticks)
    if per_core_delays and draw(st.booleans()):
        delay = tuple(draw(models) for _ in range(p))
    else:
        delay = draw(models)
    return Machine(cores=p, read_cost=draw(st.integers(*access_cost)), write_cost=draw(st.integers(*access_cost)),
                   delay=delay, coherence_cost=draw(st.integers(*coherence)))


def schedules():
    """(schedule, step, beta) triples."""
    return st.tuples(st.sampled_from(["constant", "backoff", "inv-k"]), st.floats(1e-3, 0.2, **FINITE),
                     st.floats(0.5, 1.0, **FINITE))


@st.composite
def run_specs(draw, *, problem="least-squares", schemes=("hogwild",), threads=(1, 4), epochs=(1, 2),
              dtypes=("float64", "fixed"), orders=("fixed-shuffle", "epoch-shuffle", "with-replacement"),
              write_modes=("atomic", "rmw")):
    """A :class:`RunSpec` for an already built problem named ``problem``."""
    schedule, step, beta = draw(schedules())
    scheme = draw(st.sampled_from(list(schemes)))
    return RunSpec(problem=problem, scheme=scheme,
                   threads=1 if scheme == "serial" else draw(st.integers(*threads)),
                   epochs=draw(st.integers(*epochs)), step=step, schedule=schedule, beta=beta,
                   order=draw(st.sampled_from(list(orders))), dtype=draw(st.sampled_from(list(dtypes))),
                   write_mode=draw(st.sampled_from(list(write_modes))), seed=draw(st.integers(0, 2**32 - 1)))
