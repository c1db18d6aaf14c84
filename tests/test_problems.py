"""All five problems: term gradients vs finite differences, the stated constants on random
points, slow oracle ≡ jitted serial SGD bit for bit, and the problem-specific pieces
(simplex projection and terminals for multiway cut, seeded start for matrix completion)."""
import numpy as np
import pytest
import scipy.sparse as sp

from workload.data import Graph, grid_graph, random_graph, synthetic_classification, synthetic_ratings, \
    synthetic_regression
from workload.problems import fd_gradient, make_problem
from workload.problems.cut import cut_update
from workload.serial import serial_oracle, serial_sgd
from workload.spec import RunSpec

# Tolerances, named once.
FD_RTOL, FD_ATOL = 1e-5, 1e-7  # central differences, h = 1e-6, on O(1) gradients
CONST_SLACK = 1e-9  # relative slack for inequalities that hold in exact arithmetic
N_POINTS = 6  # random points per constant check


def build(name: str, reg: str = "l2"):
    """A small instance of problem ``name`` (every coordinate touched by some term)."""
    if name in ("svm", "logistic"):
        t = synthetic_classification(150, 20, nnz_mean=5, skew=0.5, seed=1)
        return make_problem(name, t, lam=0.05, reg=reg)
    if name == "least-squares":
        t = synthetic_regression(150, 20, nnz_mean=5, skew=0.5, seed=2)
        return make_problem(name, t, lam=0.05, reg=reg)
    if name == "matrix-completion":
        r = synthetic_ratings(25, 15, rank=3, n_ratings=160, degree_skew=0.5, seed=3)
        return make_problem(name, r, rank=3, lam=0.5, reg=reg)
    g = grid_graph((3, 3, 2), n_labels=3, seed=4, n_terminals=4)
    return make_problem(name, g)


PROBLEMS = ["svm", "logistic", "least-squares", "matrix-completion", "multiway-cut"]
CASES = [(p, r) for p in PROBLEMS[:4] for r in ("l2", "hogwild")] + [("multiway-cut", "-")]


def generic_point(problem, rng, scale=0.5):
    """A random point away from the kinks of the nonsmooth problems."""
    for _ in range(100):
        x = rng.normal(0.0, scale, problem.n)
        if problem.name == "svm":
            s = problem.info["A"] @ x
            if np.min(np.abs(1.0 - problem.terms.y * s)) < 1e-3:
                continue
        if problem.name == "multiway-cut":
            gr = problem.info["graph"]
            X = x.reshape(gr.n_nodes, gr.n_labels)
            if np.min(np.abs(X[gr.u] - X[gr.v])) < 1e-3:
                continue
        return x
    raise AssertionError("no generic point found")


@pytest.mark.parametrize("name, reg", CASES)
def test_gradient_matches_finite_differences(name, reg):
    p = build(name, reg)
    rng = np.random.default_rng(0)
    for _ in range(2):
        x = generic_point(p, rng)
        np.testing.assert_allclose(p.full_gradient(x), fd_gradient(p.objective, x), rtol=FD_RTOL, atol=FD_ATOL)


def _active(p):
    return p.terms.degrees() > 0


@pytest.mark.parametrize("name, reg", [(p, r) for p in PROBLEMS[:3] for r in ("l2", "hogwild")])
def test_strong_convexity(name, reg):
    """f(y) ≥ f(x) + ⟨g(x), y − x⟩ + (m/2)‖y − x‖² (g a subgradient), y − x on the touched coordinates."""
    p = build(name, reg)
    m = p.constants(radius=5.0).m
    assert m is not None and m > 0
    rng = np.random.default_rng(1)
    act = _active(p)
    for _ in range(N_POINTS):
        x = generic_point(p, rng)
        y = x.copy()
        y[act] += rng.normal(0.0, 0.5, act.sum())
        lower = p.objective(x) + p.full_gradient(x) @ (y - x) + 0.5 * m * np.sum((y - x) ** 2)
        assert p.objective(y) >= lower - CONST_SLACK * abs(lower)


@pytest.mark.parametrize("name, reg", [(p, r) for p in ("logistic", "least-squares", "matrix-completion")
                                       for r in ("l2", "hogwild")])
def test_smoothness(name, reg):
    """‖∇f(x) − ∇f(y)‖ ≤ L‖x − y‖ (for matrix completion on the ball where L is stated)."""
    p = build(name, reg)
    radius = 3.0
    c = p.constants(radius=radius)
    rng = np.random.default_rng(2)
    for _ in range(N_POINTS):
        x, y = (_in_ball(rng, p.n, radius) for _ in range(2))
        lhs = np.linalg.norm(p.full_gradient(x) - p.full_gradient(y))
        assert lhs <= c.L * np.linalg.norm(x - y) * (1 + CONST_SLACK)


def _in_ball(rng, n, radius):
    v = rng.normal(size=n)
    return v / np.linalg.norm(v) * radius * rng.uniform(0.3, 1.0)


def test_least_squares_L_and_m_are_attained():
    """For least squares ∇f is linear, so its largest / smallest stretch is exactly L / m."""
    p = build("least-squares", "l2")
    c = p.constants(radius=1.0)
    assert c.notes["L"].startswith("exact") and c.notes["m"].startswith("exact")
    A = p.info["A"].toarray()
    H = A.T @ A / p.N + p.info["mu"] * np.eye(p.n)
    w, V = np.linalg.eigh(H)
    x = np.zeros(p.n)
    for value, v in ((c.L, V[:, -1]), (c.m, V[:, 0])):
        stretch = np.linalg.norm(p.full_gradient(x + v) - p.full_gradient(x))
        assert stretch == pytest.approx(value, rel=1e-8)


@pytest.mark.parametrize("name, reg", CASES)
def test_gradient_bound_M(name, reg):
    """max_e ‖∇f_e(x)‖ ≤ M for ‖x‖ ≤ radius (everywhere for multiway cut)."""
    p = build(name, reg)
    radius = 2.0
    c = p.constants(radius=radius) if name != "multiway-cut" else p.constants()
    rng = np.random.default_rng(3)
    for _ in range(N_POINTS):
        x = _in_ball(rng, p.n, radius) if np.isfinite(c.radius) else rng.normal(0.0, 10.0, p.n)
        worst = max(np.linalg.norm(p.term_gradient(x, e)) for e in range(p.N))
        assert worst <= c.M * (1 + CONST_SLACK)
    assert set(c.notes) == {"m", "L", "M"}
    assert all(note.split(":")[0].split()[0] in ("exact", "bound", "none") for note in c.notes.values())


def test_cut_M_is_attained_at_generic_points():
    p = build("multiway-cut")
    x = generic_point(p, np.random.default_rng(4))
    e = int(np.argmax(p.info["graph"].w))
    assert np.linalg.norm(p.term_gradient(x, e)) == pytest.approx(p.constants().M, rel=1e-14)


SPEC_VARIANTS = [dict(scheme="serial", threads=1, order="epoch-shuffle", schedule="backoff"),
                 dict(scheme="round-robin", threads=3, order="with-replacement", schedule="inv-k")]


@pytest.mark.parametrize("name", PROBLEMS)
@pytest.mark.parametrize("dtype", ["float64", "float32", "fixed"])
def test_serial_oracle_and_jitted_agree_bit_for_bit(name, dtype):
    p = build(name, "hogwild")
    for variant in SPEC_VARIANTS:
        spec = RunSpec(problem=name, epochs=2, step=0.05, dtype=dtype, seed=5, **variant)
        a, b = serial_oracle(p, spec), serial_sgd(p, spec)
        assert a.x.dtype == b.x.dtype
        assert np.array_equal(a.x, b.x), variant
        assert np.array_equal(a.history["objective"], b.history["objective"])


# --------------------------------------------------------------------------------------
# multiway cut
# --------------------------------------------------------------------------------------
def _simplex_projection_reference(v):
    """argmin_{p ∈ Δ} ‖p − v‖ by bisection on θ in Σ max(v − θ, 0) = 1 (independent of the kernel)."""
    lo, hi = v.min() - 1.0, v.max()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.maximum(v - mid, 0.0).sum() > 1.0:
            lo = mid
        else:
            hi = mid
    return np.maximum(v - 0.5 * (lo + hi), 0.0)


@pytest.mark.parametrize("D", [2, 3, 5, 8])
def test_cut_update_projects_free_nodes_onto_the_simplex(D):
    rng = np.random.default_rng(D)
    idx = np.arange(2 * D, dtype=np.int32)
    aux = np.full(2 * D, -1.0)
    for _ in range(50):
        xr = rng.normal(0.0, 1.0, 2 * D)
        gamma = rng.uniform(0.0, 1.0)
        w = rng.uniform(0.1, 2.0)
        g, u = np.empty(2 * D), np.empty(2 * D)
        cut_update(np.array([float(D)]), aux, idx, np.ones(2 * D), w, xr, gamma, g, u)
        np.testing.assert_array_equal(g[:D], -g[D:])
        expected = np.where(xr[:D] != xr[D:], w, 0.0)
        np.testing.assert_array_equal(np.abs(g), np.concatenate([expected, expected]))
        v = xr - gamma * g
        for b in (slice(0, D), slice(D, 2 * D)):
            np.testing.assert_allclose(xr[b] + u[b], _simplex_projection_reference(v[b]), atol=1e-12)


def test_cut_update_holds_terminals_at_their_vertex():
    D = 3
    aux = np.array([0.0, 1.0, 0.0, -1.0, -1.0, -1.0])  # node 0 terminal with label 1, node 1 free
    xr = np.array([0.0, 1.0, 0.0, 0.6, 0.3, 0.1])
    g, u = np.empty(6), np.empty(6)
    cut_update(np.array([3.0]), aux, np.arange(6, dtype=np.int32), np.ones(6), 2.0, xr, 0.1, g, u)
    assert np.array_equal(u[:D], np.zeros(D))  # exactly at the vertex: no change
    assert np.array_equal(g, np.array([-2.0, 2.0, -2.0, 2.0, -2.0, 2.0]))
    np.testing.assert_allclose((xr + u)[D:].sum(), 1.0)


def test_cut_sgd_stays_feasible_and_approaches_the_lp_optimum():
    g = grid_graph((4, 4, 2), n_labels=3, seed=6, n_terminals=6)
    p = make_problem("multiway-cut", g)
    x0 = p.initial_point(0)
    X0 = x0.reshape(g.n_nodes, 3)
    t = g.terminal >= 0
    assert np.all(X0[~t] == 1 / 3) and np.all(X0[t, g.terminal[t]] == 1.0) and np.all(X0[t].sum(1) == 1.0)
    spec = RunSpec(problem="multiway-cut", scheme="serial", epochs=60, step=0.5, schedule="backoff", beta=0.92,
                   seed=1)
    res = serial_sgd(p, spec)
    X = res.x.reshape(g.n_nodes, 3)
    assert np.all(X >= 0) and np.allclose(X.sum(1), 1.0, atol=1e-12)
    assert np.array_equal(X[t], X0[t])  # terminals never move
    sol = p.solution()
    assert sol is not None and np.allclose(sol.x.reshape(-1, 3).sum(1), 1.0, atol=1e-7)
    assert sol.f <= res.history["objective"].iloc[-1] + 1e-7
    f0 = res.history["objective"].iloc[0]
    # the projected subgradient method closes most of the gap f(x_0) − f* (a loose, named bound)
    assert res.history["objective"].iloc[-1] - sol.f < 0.25 * (f0 - sol.f)


def test_cut_random_graph_and_errors():
    p = make_problem("multiway-cut", random_graph(30, 60, n_labels=4, seed=2, n_terminals=4))
    assert p.n == 120 and p.terms.support_sizes().max() == 8
    with pytest.raises(TypeError, match="needs a Graph"):
        make_problem("multiway-cut", synthetic_classification(10, 5, nnz_mean=2, seed=0))
    big = make_problem("multiway-cut", Graph([0], [1], [1.0], 2, 2, [0, -1]), max_lp_vars=1)
    assert big.solution() is None


# --------------------------------------------------------------------------------------
# matrix completion
# --------------------------------------------------------------------------------------
def test_matrix_completion_layout_and_regularisation():
    r = synthetic_ratings(25, 15, rank=3, n_ratings=160, seed=3)
    for reg, coef in (("hogwild", lambda d, N: 0.5 / d), ("l2", lambda d, N: 0.5 * N / d)):
        p = make_problem("matrix-completion", r, rank=3, lam=0.5, reg=reg)
        e = 7
        u, i = r.users[e], r.items[e]
        assert p.terms.support(e).tolist() == [u * 3 + k for k in range(3)] + [75 + i * 3 + k for k in range(3)]
        d = p.terms.degrees()
        act = d > 0
        np.testing.assert_allclose(p.aux[act], coef(d[act], p.N))
        assert np.all(p.aux[~act] == 0)


def test_matrix_completion_initial_point_is_seeded_and_small():
    p = build("matrix-completion")
    a, b, c = p.initial_point(1), p.initial_point(1), p.initial_point(2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.std(a) == pytest.approx(0.1, rel=0.2) and np.all(np.isfinite(a))
    assert p.solution() is None and p.constants().m is None


def test_matrix_completion_sgd_fits_the_ratings():
    r = synthetic_ratings(40, 30, rank=2, n_ratings=600, degree_skew=0.0, seed=8, noise=0.0)
    p = make_problem("matrix-completion", r, rank=2, lam=1e-3, reg="hogwild", init_scale=0.3)
    spec = RunSpec(problem="matrix-completion", scheme="serial", epochs=40, step=0.05, seed=0)
    h = serial_sgd(p, spec).history
    # a rank-2 fit of noise-free rank-2 ratings: the loss falls by two orders of magnitude
    assert h["objective"].iloc[-1] < 1e-2 * h["objective"].iloc[0]


def test_matrix_completion_errors():
    r = synthetic_ratings(5, 5, rank=2, n_ratings=10, seed=0)
    with pytest.raises(ValueError, match="rank"):
        make_problem("matrix-completion", r, rank=0)
    with pytest.raises(ValueError, match="reg"):
        make_problem("matrix-completion", r, reg="l1")
    with pytest.raises(TypeError, match="needs Ratings"):
        make_problem("matrix-completion", grid_graph((2, 2, 2), seed=0))


def test_terms_rejects_unsorted_or_repeated_supports_naming_the_term():
    from workload.problems.base import Terms

    indptr = np.array([0, 2, 5, 7])
    ok = np.array([0, 3, 1, 2, 4, 0, 5], dtype=np.int32)
    Terms(indptr, ok, np.ones(7), np.zeros(3), 6)  # a drop across a term boundary is fine
    unsorted = np.array([0, 3, 1, 4, 2, 0, 5], dtype=np.int32)
    with pytest.raises(ValueError, match=r"term 1's support is not sorted: coordinate 2 follows 4.*sort_indices"):
        Terms(indptr, unsorted, np.ones(7), np.zeros(3), 6)
    repeated = np.array([0, 3, 1, 2, 4, 5, 5], dtype=np.int32)
    with pytest.raises(ValueError, match=r"term 2's support repeats: coordinate 5 follows 5.*sum_duplicates"):
        Terms(indptr, repeated, np.ones(7), np.zeros(3), 6)
    with pytest.raises(ValueError, match="indptr decreases at term 1"):
        Terms(np.array([0, 5, 2, 7]), ok, np.ones(7), np.zeros(3), 6)
    # from_csr sorts and merges, so the same entries are accepted through it
    A = sp.csr_matrix((np.ones(7), unsorted, indptr), shape=(3, 6))
    assert Terms.from_csr(A, np.zeros(3)).support(1).tolist() == [1, 2, 4]


@pytest.mark.parametrize("name", ["svm", "logistic", "least-squares"])
def test_linear_objective_at_zero_is_the_loss_of_zero_margins(name):
    """objective(0) skips the product A·0 (every run's first history row): the value is the
    mean loss at margin 0 -- 1 (hinge), log 2 (logistic), mean(y²)/2 (least squares) -- and
    the general path agrees at a point one ulp away from 0."""
    p = build(name)
    y = p.terms.y
    expected = {"svm": 1.0, "logistic": float(np.log(2.0)), "least-squares": float(0.5 * np.mean(y ** 2))}[name]
    assert p.objective(np.zeros(p.n)) == pytest.approx(expected, rel=1e-15)
    tiny = np.full(p.n, np.finfo(float).tiny)
    assert p.objective(tiny) == pytest.approx(expected, rel=1e-12)
