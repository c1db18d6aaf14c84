"""From a run spec to a ready problem: load or generate the data, build the objective."""
from __future__ import annotations

from .problems import Problem, make_problem
from .spec import RunSpec


def build_problem(spec: RunSpec) -> Problem:
    """The problem a spec names, over the data its ``data`` field describes.

    Synthetic data is seeded by ``data.params["seed"]`` when given, else by the run's
    root seed (stream ``STREAM_DATA``), so a seed sweep can keep the data fixed.
    """
    from .data import load_data

    data = load_data(spec.data, problem=spec.problem, seed=spec.seed)
    return make_problem(spec.problem, data, **dict(spec.problem_params))
