"""Problems: sums of sparse terms (see :mod:`workload.problems.base` for the protocol)."""
from .base import Constants, Problem, Solution, Terms, fd_gradient
from .linear import LinearProblem, make_linear

LINEAR = ("svm", "logistic", "least-squares")


def make_problem(name: str, data, **params) -> Problem:
    """Build problem ``name`` over ``data`` (Terms for linear problems, Ratings for
    matrix completion, Graph for multiway cut) with keyword ``params``."""
    if name in LINEAR:
        return make_linear(name, data, **params)
    if name == "matrix-completion":
        from .matrix_completion import make_matrix_completion

        return make_matrix_completion(data, **params)
    if name == "multiway-cut":
        from .cut import make_multiway_cut

        return make_multiway_cut(data, **params)
    raise ValueError(f"problem = {name!r}: unknown; use one of {', '.join(LINEAR + ('matrix-completion', 'multiway-cut'))}")


__all__ = ["Constants", "Problem", "Solution", "Terms", "fd_gradient", "LinearProblem", "make_linear", "make_problem"]
