"""One way to state a check: observed value, bound, relation, verdict and by how much.

Every theory check (:mod:`analysis.theory`) and every comparison figure
(:mod:`analysis.compare`) is a row built by :func:`check_row`, so reports read them alike:

=============  ==========================================================================
column         meaning
=============  ==========================================================================
observed       the value measured on the run (or the input being tested)
bound          the value it is held against (a bound, a threshold, a prescribed value)
relation       ``"<="`` (holds when observed ≤ bound) or ``">="`` (observed ≥ bound)
ratio          observed / bound: by what factor; > 1 on a violated ``<=`` check
margin         signed slack: bound − observed for ``<=``, observed − bound for ``>=``;
               negative exactly when the check fails
verdict        ``holds`` / ``violated`` / ``not applicable`` (theory) or
               ``agrees`` / ``disagrees`` / ``not applicable`` (comparison)
note           why a check is not applicable, or what the figure means
=============  ==========================================================================

A check is *not applicable* when an input it needs is missing or undefined (NaN, None, a
non-smooth objective for a bound that needs L); it never silently passes.
"""
from __future__ import annotations

import math

HOLDS, VIOLATED = "holds", "violated"
AGREES, DISAGREES = "agrees", "disagrees"
NOT_APPLICABLE = "not applicable"
RELATIONS = ("<=", ">=")
CHECK_COLUMNS = ("observed", "bound", "relation", "ratio", "margin", "verdict", "note")


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_row(observed, bound, relation: str = "<=", *, note: str = "", not_applicable: str | None = None,
              words: tuple[str, str] = (HOLDS, VIOLATED)) -> dict:
    """The standard columns of one check (module docstring).

    ``observed`` may be +inf (an unbounded quantity: always violates a finite ``<=`` bound);
    ``bound`` may be +inf (no constraint). ``not_applicable`` gives the reason when the check
    cannot be made; NaN or None inputs also make it not applicable.
    """
    if relation not in RELATIONS:
        raise ValueError(f"relation = {relation!r}: must be one of {RELATIONS}; use '<=' or '>='")
    obs = None if observed is None else float(observed)
    bnd = None if bound is None else float(bound)
    if not_applicable is None:
        if obs is None or math.isnan(obs):
            not_applicable = "observed value unavailable"
        elif bnd is None or math.isnan(bnd):
            not_applicable = "bound unavailable"
    row = {"observed": obs if obs is not None else math.nan, "bound": bnd if bnd is not None else math.nan,
           "relation": relation, "ratio": math.nan, "margin": math.nan}
    if not_applicable is not None:
        row.update(verdict=NOT_APPLICABLE, note=(not_applicable + ("; " + note if note else "")))
        return row
    if bnd == 0.0:
        ratio = 0.0 if obs == 0.0 else math.copysign(math.inf, obs)
    else:
        ratio = obs / bnd
    margin = (bnd - obs) if relation == "<=" else (obs - bnd)
    if math.isnan(margin):  # inf - inf: both unbounded
        margin = 0.0
    ok = obs <= bnd if relation == "<=" else obs >= bnd
    row.update(ratio=ratio, margin=margin, verdict=words[0] if ok else words[1], note=note)
    return row
