"""Property-based convergence testing: assertion helpers for users' own test suites.

Each ``assert_*`` runs hwsim and raises :class:`ClaimFailed` (an ``AssertionError``)
with a readable explanation -- the spec, the machine, the seed, the measured τ, the bound
and the curve -- so that when Hypothesis shrinks a counterexample the report says what
broke.  Inside a Hypothesis test the helpers call ``hypothesis.target`` with the measured
overlap, steering the search towards adversarial interleavings (large τ) rather than
typical ones.

Statistical claims (about expectations) are never checked with one seed:
:func:`mean_upper_claim` runs repeated seeds and tests the claim E[V] ≤ ε one-sidedly,
with a stated false-alarm rate α (the probability of failing a claim that is true).

Strategies live in :mod:`analysis.strategies`.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, NamedTuple

import numpy as np
import scipy.stats

from workload.serial import serial_oracle
from workload.spec import RunSpec


class ClaimFailed(AssertionError):
    """A claim about a run did not hold; the message explains the run and the figures."""


def _describe(spec: RunSpec, machine, **figures) -> str:
    lines = [f"  spec: scheme={spec.scheme} threads={spec.threads} epochs={spec.epochs} step={spec.step} "
             f"schedule={spec.schedule} order={spec.order} dtype={spec.dtype} write_mode={spec.write_mode} "
             f"seed={spec.seed}"]
    if machine is not None:
        lines.append(f"  machine: {machine.to_dict() if hasattr(machine, 'to_dict') else machine}")
    for k, v in figures.items():
        lines.append(f"  {k}: {v}")
    return "\n".join(lines)


def _target(value: float, label: str) -> None:
    """hypothesis.target when running inside a Hypothesis test; a no-op elsewhere."""
    import hypothesis

    if hypothesis.currently_in_test_context():
        hypothesis.target(float(value), label=label)


def _simulate(spec, machine, problem, engine, coord_trace=False):
    import hwsim

    return hwsim.simulate(spec, machine, problem=problem, engine=engine, coord_trace=coord_trace)


def measured_tau(samples) -> int:
    """τ = max_k τ_k over a sample-level trace (interval-overlap count, DESIGN.md)."""
    from workload.trace import tau_overlap

    tau = tau_overlap(samples)
    return int(tau.max()) if tau.size else 0


def assert_converges(spec: RunSpec, machine, *, problem, eps: float, within: int | None = None,
                     metric: str = "dist2_opt", engine: str = "fast"):
    """Claim: after ``within`` epochs (default: all of them) ``metric`` ≤ ``eps``.

    ``metric``: ``dist2_opt`` (‖x − x*‖², needs a problem with a computable x*) or
    ``gap`` (f(x) − f(x*)) or ``objective``.  Returns the SimResult.
    """
    res = _simulate(spec, machine, problem, engine)
    h = res.history.copy()
    if metric in ("dist2_opt", "gap"):
        sol = problem.solution()
        if sol is None:
            raise ValueError(f"metric = {metric!r} needs x*, but problem {problem.name!r} has none; "
                             "use metric='objective'")
        if metric == "gap":
            h["gap"] = h["objective"] - sol.f
        elif h["dist2_opt"].isna().any():  # the engine did not record it: the final epoch from res.x
            h.loc[h["epoch"] == spec.epochs, "dist2_opt"] = float(np.sum((_as_float(res.x, spec) - sol.x) ** 2))
    epoch = spec.epochs if within is None else within
    row = h[h["epoch"] == epoch]
    if row.empty:
        raise ValueError(f"within = {within}: the run has epochs 0..{spec.epochs}; pick one of those")
    tau = measured_tau(res.samples)
    _target(tau, "tau")
    value = float(row[metric].iloc[0])
    if not (value <= eps):
        curve = ", ".join(f"{e}:{v:.4g}" for e, v in zip(h["epoch"], h[metric]))
        raise ClaimFailed(f"did not converge: {metric} = {value:.6g} > eps = {eps:.6g} after {epoch} epochs\n"
                          + _describe(spec, machine, tau=tau, curve=f"[{curve}]"))
    return res


def _as_float(x, spec: RunSpec | None = None):
    from workload.fixed import to_float

    return to_float(x, spec.fixed_point_bits if spec is not None else 32)


def assert_tau_bounded(spec: RunSpec, machine, *, problem, bound: int, engine: str = "fast"):
    """Claim: the overlap τ = max_k τ_k of the simulated run is ≤ ``bound``.  Returns τ."""
    res = _simulate(spec, machine, problem, engine)
    tau = measured_tau(res.samples)
    _target(tau, "tau")
    if tau > bound:
        from workload.trace import tau_overlap

        k = int(np.argmax(tau_overlap(res.samples)))
        row = res.samples.iloc[k]
        raise ClaimFailed(f"τ = {tau} exceeds the bound {bound}\n" + _describe(
            spec, machine, worst_sample=f"sample {int(row['sample'])} (worker {int(row['worker'])}, term "
                                        f"{int(row['term'])}, ticks {int(row['t_start'])}..{int(row['t_end'])})"))
    return tau


def assert_perturbation_identity(spec: RunSpec, machine, *, problem, labelling: str = "start",
                                 engine: str = "fast"):
    """Claim: x̂_k − x_k = Σ_{i≠k} S_i^k u_i exactly (Mania et al. 2015, eq. (2.3), written with
    the updates u_i = −γ g_i), for every sample k.  Needs ``spec.dtype == "fixed"`` so
    the check is ``==`` on integers.  Returns the identity table."""
    from hwsim import checks

    if spec.dtype != "fixed":
        raise ValueError(f"spec.dtype = {spec.dtype!r}: the exact identity needs dtype = 'fixed'")
    res = _simulate(spec, machine, problem, engine, coord_trace=True)
    table = checks.identity(res, labelling)
    tau = measured_tau(res.samples)
    _target(tau, "tau")
    bad = table[~table["holds"]]
    if len(bad):
        first = bad.iloc[0]
        raise ClaimFailed(f"perturbed-iterate identity ({labelling} labelling) fails for {len(bad)} of {len(table)} "
                          f"reads; first: "
                          f"{first.to_dict()}\n" + _describe(spec, machine, tau=tau))
    return table


def assert_serially_equivalent(spec: RunSpec, machine, *, problem, engine: str = "fast"):
    """Claim: the run's final model equals serial SGD (bit for bit) over the serial order the
    scheme promises: one worker, or ``round-robin`` (strict worker order).  Returns the result."""
    if not (spec.threads == 1 or spec.scheme in ("serial", "round-robin")):
        raise ValueError(f"spec.scheme = {spec.scheme!r} with threads = {spec.threads} promises no serial order; "
                         "use one thread or scheme 'round-robin'")
    res = _simulate(spec, machine, problem, engine)
    ref = serial_oracle(problem, spec)
    if not np.array_equal(res.x, ref.x):
        diff = np.flatnonzero(res.x != ref.x)
        raise ClaimFailed(f"not serially equivalent: {diff.size} coordinates differ from the serial oracle, "
                          f"first {diff[:5].tolist()} (simulated {res.x[diff[:5]].tolist()}, serial "
                          f"{ref.x[diff[:5]].tolist()})\n" + _describe(spec, machine))
    return res


class MeanClaim(NamedTuple):
    """Outcome of a one-sided test of E[V] ≤ eps from n independent draws."""

    n: int
    mean: float
    lower: float  # (1 − alpha) lower confidence bound on E[V]
    upper: float  # (1 − alpha) upper confidence bound on E[V]
    eps: float
    alpha: float
    method: str
    rejected: bool  # True: the data contradict E[V] ≤ eps at level alpha (lower > eps)


def mean_confidence_bounds(values: Iterable[float], *, alpha: float = 0.01, method: str = "t",
                           value_range: tuple[float, float] | None = None) -> tuple[float, float]:
    """One-sided (1 − alpha) lower and upper confidence bounds on the mean of i.i.d. values.

    ``method="t"``: Student's t (exact for normal values, asymptotically valid otherwise);
    ``method="bernstein"``: the empirical Bernstein bound of Maurer & Pontil (2009, Thm 4),
    valid for every n when the values lie in ``value_range`` = (a, b):
    E − mean ≤ sqrt(2 V ln(2/α) / n) + 7 (b − a) ln(2/α) / (3 (n − 1)) (and symmetrically) with V the sample
    variance, each side at level α/2... we use ln(1/α) per side.
    """
    v = np.asarray(list(values), dtype=np.float64)
    n = v.size
    if n < 2:
        raise ValueError(f"values: need at least 2 draws for a confidence bound, got {n}")
    if not (0 < alpha < 0.5):
        raise ValueError(f"alpha = {alpha}: must be in (0, 0.5), e.g. 0.01")
    m = float(v.mean())
    s2 = float(v.var(ddof=1))
    if method == "t":
        half = float(scipy.stats.t.ppf(1 - alpha, n - 1)) * math.sqrt(s2 / n)
    elif method == "bernstein":
        if value_range is None:
            raise ValueError("method = 'bernstein' needs value_range = (a, b) bounding every value")
        a, b = value_range
        if v.min() < a or v.max() > b:
            raise ValueError(f"value_range = {value_range}: a value lies outside it ({v.min()}, {v.max()})")
        ln = math.log(2.0 / alpha)
        half = math.sqrt(2.0 * s2 * ln / n) + 7.0 * (b - a) * ln / (3.0 * (n - 1))
    else:
        raise ValueError(f"method = {method!r}: use 't' or 'bernstein'")
    return m - half, m + half


def mean_upper_claim(draw: Callable[[int], float], seeds: Iterable[int], *, eps: float, alpha: float = 0.01,
                     method: str = "t", value_range: tuple[float, float] | None = None) -> MeanClaim:
    """Test the claim E[V] ≤ eps from V = draw(seed) over ``seeds``.

    The claim is *rejected* only when the lower confidence bound exceeds ``eps``; the
    false-alarm rate (rejecting a true claim) is at most ``alpha`` (exactly for
    ``bernstein``, asymptotically for ``t``).  ``upper`` says how strongly the data
    support the claim (upper ≤ eps: the claim is confirmed at level alpha).
    """
    values = [float(draw(int(s))) for s in seeds]
    lo, hi = mean_confidence_bounds(values, alpha=alpha, method=method, value_range=value_range)
    return MeanClaim(n=len(values), mean=float(np.mean(values)), lower=lo, upper=hi, eps=eps, alpha=alpha,
                     method=method, rejected=lo > eps)


def assert_mean_at_most(draw: Callable[[int], float], seeds: Iterable[int], *, eps: float, alpha: float = 0.01,
                        method: str = "t", value_range: tuple[float, float] | None = None,
                        what: str = "E[V]") -> MeanClaim:
    """Raise :class:`ClaimFailed` when :func:`mean_upper_claim` rejects E[V] ≤ eps."""
    c = mean_upper_claim(draw, seeds, eps=eps, alpha=alpha, method=method, value_range=value_range)
    if c.rejected:
        raise ClaimFailed(f"{what} ≤ {eps:.6g} is contradicted: over {c.n} seeds the mean is {c.mean:.6g} and the "
                          f"{1 - alpha:.0%} lower confidence bound ({method}) is {c.lower:.6g} > {eps:.6g} "
                          f"(false-alarm rate {alpha})")
    return c


def derived_tau_bound(machine, problem, threads: int) -> float:
    """An upper bound on τ (max interval overlap) implied by bounded delays, or ``inf``.

    With pinned threads (threads ≤ cores), compute delays in [a, b] and supports of size
    in [m_lo, m_hi], a sample lasts ℓ ∈ [ℓmin, ℓmax] ticks with ℓmin = m_lo(R + W) + a and
    ℓmax = m_hi(R + W + 2H) + b (every access may miss the cache line once, H ticks).  Each
    other thread runs back-to-back samples of length ≥ ℓmin (barriers only add gaps), so at
    most ⌊ℓmax/ℓmin⌋ + 2 of them meet an interval of length ≤ ℓmax, and

        τ ≤ B = (p − 1)(⌊ℓmax/ℓmin⌋ + 2),   p = threads.

    The bound is infinite when a delay is unbounded, ℓmin = 0, or threads > cores (time
    slicing can preempt a sample for arbitrarily many others' quanta).
    """
    if threads > machine.cores:
        return math.inf
    models = machine.delay if isinstance(machine.delay, tuple) else (machine.delay,)
    lows, highs = zip(*(m.bounds() for m in models))
    a, b = float(min(lows)), float(max(highs))
    sizes = problem.terms.support_sizes()
    rw = machine.read_cost + machine.write_cost
    lmin = float(sizes.min()) * rw + a
    lmax = float(sizes.max()) * (rw + 2 * machine.coherence_cost) + b
    if not math.isfinite(b) or lmin <= 0:
        return math.inf
    return float((threads - 1) * (math.floor(lmax / lmin) + 2))
