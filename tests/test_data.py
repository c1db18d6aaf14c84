"""workload.data: generators (seeded, shaped as asked), loaders (real sets, round trips,
every malformed-file case) and load_data's dispatch."""
import bz2
import gzip
import os

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
from sklearn.datasets import dump_svmlight_file

from workload.data import (DataError, Graph, Ratings, clear_cache, grid_graph, load_data, load_matrix_market,
                           load_ratings, load_svmlight, random_graph, synthetic_classification, synthetic_ratings,
                           synthetic_regression)
from workload.problems import Terms
from workload.spec import DataSpec, SpecError


def _contiguous(*arrays):
    return all(a.flags.c_contiguous for a in arrays)


# --------------------------------------------------------------------------------------
# synthetic classification / regression
# --------------------------------------------------------------------------------------
SMALL = dict(n_rows=3000, n_features=800, nnz_mean=12)


def test_classification_is_seeded_and_well_formed():
    a = synthetic_classification(**SMALL, seed=5)
    b = synthetic_classification(**SMALL, seed=5)
    c = synthetic_classification(**SMALL, seed=6)
    assert isinstance(a, Terms) and a.N == 3000 and a.n == 800
    for name in ("indptr", "indices", "values", "y"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.indices, c.indices)
    assert _contiguous(a.indptr, a.indices, a.values, a.y)
    assert (a.indptr.dtype, a.indices.dtype, a.values.dtype) == (np.int64, np.int32, np.float64)
    for e in range(0, a.N, 97):  # sorted, distinct supports
        s = a.support(e)
        assert s.size >= 1 and np.all(np.diff(s) > 0)
    assert np.all(a.values > 0)
    norms = np.sqrt(np.add.reduceat(a.values ** 2, a.indptr[:-1]))
    np.testing.assert_allclose(norms, 1.0, rtol=1e-12)
    assert set(np.unique(a.y)) == {-1.0, 1.0}


def test_generator_accepts_a_numpy_generator_and_consumes_only_it():
    a = synthetic_classification(**SMALL, seed=np.random.default_rng(9))
    b = synthetic_classification(**SMALL, seed=np.random.default_rng(9))
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.y, b.y)


def test_fixed_row_lengths_set_omega_exactly():
    t = synthetic_classification(500, 300, nnz_mean=17, row_lengths="fixed", seed=1)
    assert np.all(t.support_sizes() == 17)


@pytest.mark.parametrize("kind", ["poisson", "lognormal"])
def test_row_length_mean_matches_nnz_mean(kind):
    t = synthetic_classification(20000, 5000, nnz_mean=30, row_lengths=kind, seed=2)
    sizes = t.support_sizes()
    # the sample mean of 20,000 lengths (sd ≤ 0.66·30 ≈ 20) is within 4 standard errors (≈ 0.6)
    assert abs(sizes.mean() - 30) < 0.6
    assert sizes.min() >= 1
    if kind == "lognormal":  # the long right tail that RCV1's rows have
        assert sizes.max() > 4 * 30


def test_max_nnz_and_full_rows():
    t = synthetic_classification(200, 50, nnz_mean=30, row_lengths="lognormal", max_nnz=35, seed=3)
    assert t.support_sizes().max() <= 35
    full = synthetic_classification(50, 20, nnz_mean=20, row_lengths="fixed", skew=2.5, seed=3)
    assert all(np.array_equal(full.support(e), np.arange(20)) for e in range(full.N))


def test_single_feature_rows_follow_the_zipf_law():
    """k = 1: each row's feature is one draw from p_j ∝ 1/(j+1)^skew (permute=False: rank = id)."""
    n, skew, rows = 50, 1.2, 40000
    t = synthetic_classification(rows, n, nnz_mean=1, row_lengths="fixed", skew=skew, permute=False, seed=4)
    p = (np.arange(1, n + 1) ** -skew)
    p /= p.sum()
    freq = np.bincount(t.indices, minlength=n) / rows
    se = np.sqrt(p * (1 - p) / rows)
    assert np.all(np.abs(freq - p) < 5 * se + 1e-12)


def test_rows_are_successive_samples_without_replacement():
    """k = 2 of 4 features: P({i, j}) = p_i p_j / (1 − p_i) + p_j p_i / (1 − p_j) (successive sampling)."""
    n, skew, rows = 4, 1.5, 40000
    t = synthetic_classification(rows, n, nnz_mean=2, row_lengths="fixed", skew=skew, permute=False, seed=5)
    p = np.arange(1, n + 1) ** -skew
    p /= p.sum()
    pairs = t.indices.reshape(rows, 2)
    for i in range(n):
        for j in range(i + 1, n):
            want = p[i] * p[j] / (1 - p[i]) + p[j] * p[i] / (1 - p[j])
            got = np.mean((pairs[:, 0] == i) & (pairs[:, 1] == j))
            assert abs(got - want) < 5 * np.sqrt(want * (1 - want) / rows)


def test_skew_steers_delta():
    deltas = [synthetic_classification(4000, 2000, nnz_mean=10, skew=s, seed=6).degrees().max() / 4000
              for s in (0.0, 0.8, 1.5)]
    assert deltas[0] < deltas[1] < deltas[2]
    assert deltas[0] < 0.02  # uniform features: each in about 10/2000 of the rows


def test_permute_scatters_the_frequent_features():
    t = synthetic_classification(3000, 1000, nnz_mean=8, permute=False, seed=7)
    assert np.argmax(t.degrees()) == 0
    tp = synthetic_classification(3000, 1000, nnz_mean=8, permute=True, seed=7)
    assert np.argmax(tp.degrees()) != 0


def test_label_noise_and_planted_hyperplane():
    clean = synthetic_classification(**SMALL, label_noise=0.0, seed=8)
    noisy = synthetic_classification(**SMALL, label_noise=0.2, seed=8)
    assert np.array_equal(clean.indices, noisy.indices)
    flipped = np.mean(clean.y != noisy.y)
    assert abs(flipped - 0.2) < 5 * np.sqrt(0.2 * 0.8 / SMALL["n_rows"])
    assert 0.3 < np.mean(clean.y > 0) < 0.7


def test_regression_shares_the_design():
    c = synthetic_classification(**SMALL, seed=10, label_noise=0.0)
    r = synthetic_regression(**SMALL, seed=10, noise=0.0)
    r2 = synthetic_regression(**SMALL, seed=10, noise=0.5)
    assert np.array_equal(c.indices, r.indices) and np.array_equal(c.values, r.values)
    assert np.array_equal(np.where(r.y >= 0, 1.0, -1.0), c.y)  # same planted w*: y_class = sign(y_regr)
    assert np.std(r2.y - r.y) == pytest.approx(0.5, rel=0.1)


@pytest.mark.parametrize("bad, word", [
    (dict(n_rows=0), "n_rows"), (dict(skew=-1.0), "skew"), (dict(nnz_mean=0.5), "nnz_mean"),
    (dict(row_lengths="uniform"), "row_lengths"), (dict(label_noise=0.7), "label_noise"), (dict(seed=-1), "seed"),
])
def test_generator_parameter_errors_name_the_parameter(bad, word):
    kw = dict(SMALL)
    kw.update(bad)
    with pytest.raises(ValueError, match=word):
        synthetic_classification(**kw)


# --------------------------------------------------------------------------------------
# ratings and graphs
# --------------------------------------------------------------------------------------
def test_synthetic_ratings_are_distinct_low_rank_and_power_law():
    r = synthetic_ratings(2000, 300, rank=5, n_ratings=20000, degree_skew=1.0, seed=1, noise=0.0)
    assert isinstance(r, Ratings) and r.N == 20000
    keys = r.users * r.n_items + r.items
    assert np.unique(keys).size == r.N and np.all(np.diff(keys) > 0)  # distinct, sorted by (user, item)
    assert _contiguous(r.users, r.items, r.ratings)
    du = np.bincount(r.users, minlength=r.n_users)
    assert du.max() > 20 * du.mean()  # heavy-tailed user degrees
    assert np.var(r.ratings) == pytest.approx(1.0, rel=0.3)  # unit-variance planted ratings
    flat = synthetic_ratings(2000, 300, rank=5, n_ratings=20000, degree_skew=0.0, seed=1)
    assert np.bincount(flat.users).max() < 5 * 10  # uniform: mean degree 10
    again = synthetic_ratings(2000, 300, rank=5, n_ratings=20000, degree_skew=1.0, seed=1, noise=0.0)
    assert np.array_equal(again.ratings, r.ratings)


def test_synthetic_ratings_can_fill_the_matrix():
    r = synthetic_ratings(12, 9, rank=2, n_ratings=108, degree_skew=2.0, seed=2)
    assert r.N == 108
    with pytest.raises(ValueError, match="n_ratings"):
        synthetic_ratings(12, 9, rank=2, n_ratings=109, seed=2)


def test_grid_graph_is_a_6_connected_grid():
    nx, ny, nz = 5, 4, 3
    g = grid_graph((nx, ny, nz), n_labels=3, seed=1, n_terminals=7)
    assert isinstance(g, Graph) and g.n_nodes == nx * ny * nz
    assert g.E == 3 * nx * ny * nz - ny * nz - nx * nz - nx * ny
    cu = np.stack(np.unravel_index(g.u, (nx, ny, nz)), 1)
    cv = np.stack(np.unravel_index(g.v, (nx, ny, nz)), 1)
    assert np.all(np.abs(cu - cv).sum(1) == 1)
    assert np.all(g.u < g.v) and np.all(g.w > 0) and np.all(g.w <= 1)
    assert np.sum(g.terminal >= 0) == 7 and g.terminal.max() < 3
    assert grid_graph((nx, ny, nz), n_labels=3, seed=1, terminal_fraction=0.5).terminal.__ge__(0).sum() == 30


def test_grid_graph_weights_follow_the_planted_segmentation():
    g = grid_graph((12, 12, 6), n_labels=3, seed=4, contrast=10.0, noise=0.05)
    # strong edges (inside a region) outnumber weak ones (across a boundary)
    assert np.median(g.w) > 0.9 and g.w.min() < 0.2


def test_random_graph_has_distinct_edges_without_loops():
    g = random_graph(300, 2000, n_labels=4, seed=3, degree_skew=1.0, n_terminals=10)
    assert g.E == 2000 and np.all(g.u < g.v)
    assert np.unique(g.u * g.n_nodes + g.v).size == 2000
    deg = np.bincount(np.concatenate([g.u, g.v]), minlength=300)
    assert deg.max() > 5 * deg.mean()
    assert np.sum(g.terminal >= 0) == 10
    complete = random_graph(10, 45, n_labels=2, seed=3)
    assert complete.E == 45


def test_data_types_reject_bad_arrays():
    with pytest.raises(ValueError, match="more than once"):
        Ratings([0, 0], [1, 1], [1.0, 2.0], 1, 2)
    with pytest.raises(ValueError, match="finite"):
        Ratings([0], [1], [np.nan], 1, 2)
    with pytest.raises(ValueError, match="u < v"):
        Graph([1], [1], [1.0], 2, 2, [-1, -1])
    with pytest.raises(ValueError, match="weights"):
        Graph([0], [1], [0.0], 2, 2, [-1, -1])
    with pytest.raises(ValueError, match="terminal"):
        Graph([0], [1], [1.0], 2, 2, [-1, 2])


def test_ratings_and_graph_supports():
    r = Ratings([0, 2], [1, 0], [1.0, -1.0], 3, 2)
    t = r.to_terms(2)
    assert t.n == (3 + 2) * 2
    assert t.support(0).tolist() == [0, 1, 6 + 2, 6 + 3] and t.support(1).tolist() == [4, 5, 6, 7]
    g = Graph([0, 1], [2, 2], [0.5, 2.0], 3, 3, [-1, 0, -1])
    tg = g.to_terms()
    assert tg.support(0).tolist() == [0, 1, 2, 6, 7, 8] and tg.y.tolist() == [0.5, 2.0]


# --------------------------------------------------------------------------------------
# loaders: real data sets
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, rows, n_features, nnz_max, delta", [
    ("a8a.gz", 22696, 123, 14, 0.954), ("a9a.t.gz", 16281, 123, 14, 0.953), ("w8a.gz", 49749, 300, 114, 0.352),
])
def test_real_sets_load(shared_data, name, rows, n_features, nnz_max, delta):
    path = os.path.join(shared_data, name)
    if not os.path.exists(path):
        pytest.skip(f"{path} not present")
    t = load_svmlight(path, n_features=n_features)
    assert t.N == rows and t.n == n_features
    assert t.support_sizes().max() == nnz_max
    assert set(np.unique(t.y)) == {-1.0, 1.0} and np.all(t.values == 1.0)
    assert t.degrees().max() / t.N == pytest.approx(delta, abs=5e-4)


def test_a9a_t_needs_n_features(shared_data):
    path = os.path.join(shared_data, "a9a.t.gz")
    if not os.path.exists(path):
        pytest.skip(f"{path} not present")
    assert load_svmlight(path).n == 122
    assert load_svmlight(path, n_features=123).n == 123


# --------------------------------------------------------------------------------------
# loaders: round trips
# --------------------------------------------------------------------------------------
def _write(path, text: str):
    if str(path).endswith(".gz"):
        with gzip.open(path, "wt") as f:
            f.write(text)
    elif str(path).endswith(".bz2"):
        with bz2.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("suffix", ["", ".gz", ".bz2"])
def test_svmlight_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(0)
    A = sp.random(40, 25, density=0.2, random_state=rng, format="csr")
    A.data = rng.integers(1, 64, size=A.nnz) / 8.0  # exact in decimal, so the text round trip is exact
    y = rng.choice([-1.0, 1.0], size=40)
    plain = tmp_path / "d.svm"
    dump_svmlight_file(A, y, str(plain), zero_based=False)
    path = _write(tmp_path / f"d.svm{suffix}", plain.read_text())
    t = load_svmlight(path, n_features=30)
    assert t.n == 30 and t.N == 40
    np.testing.assert_array_equal(t.matrix().toarray()[:, :25], A.toarray())
    np.testing.assert_array_equal(t.y, y)


@pytest.mark.parametrize("suffix", ["", ".gz", ".bz2"])
def test_ratings_round_trip_remaps_ids(tmp_path, suffix):
    text = "# user item rating\n1000\t7\t4.5\n-5\t7\t1\n1000\t3\t2\n\n42\t3\t5\n"
    r = load_ratings(_write(tmp_path / f"r.tsv{suffix}", text))
    assert (r.n_users, r.n_items, r.N) == (3, 2, 4)
    assert r.user_ids.tolist() == [-5, 42, 1000] and r.item_ids.tolist() == [3, 7]
    got = {(int(r.user_ids[u]), int(r.item_ids[i])): v for u, i, v in zip(r.users, r.items, r.ratings)}
    assert got == {(1000, 7): 4.5, (-5, 7): 1.0, (1000, 3): 2.0, (42, 3): 5.0}


def test_ratings_csv_whitespace_header_and_extra_columns(tmp_path):
    csv = load_ratings(_write(tmp_path / "r.csv", "user,item,rating\n1,2,3\n2,2,4\n"), header=True)
    ws = load_ratings(_write(tmp_path / "r.txt", "1 2 3 881250949\n2  2 4 881250950\n"))
    for r in (csv, ws):
        assert r.N == 2 and r.ratings.tolist() == [3.0, 4.0]


@pytest.mark.parametrize("suffix", ["", ".gz", ".bz2"])
def test_matrix_market_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(1)
    A = sp.random(20, 8, density=0.3, random_state=rng, format="coo")
    plain = tmp_path / "m.mtx"
    scipy.io.mmwrite(plain, A)
    path = _write(tmp_path / f"m.mtx{suffix}", plain.read_text())
    t = load_matrix_market(path)
    np.testing.assert_allclose(t.matrix().toarray(), A.toarray())
    assert np.all(t.y == 0)
    lab = load_matrix_market(path, label_column=-1)
    assert lab.n == 7
    np.testing.assert_allclose(lab.y, A.toarray()[:, -1])
    np.testing.assert_allclose(lab.matrix().toarray(), A.toarray()[:, :-1])


# --------------------------------------------------------------------------------------
# loaders: malformed files
# --------------------------------------------------------------------------------------
SVM_CASES = [
    ("bad-token", "+1 1:1 3:1\n-1 2:x 3:0.5\n", 2, "bad token '2:x'"),
    ("no-colon", "+1 1:1 3:1\n-1 2:1 3\n", 2, "bad token '3'"),
    ("index-zero", "+1 1:1 3:1\n\n-1 0:1 3:0.5\n", 3, "feature index 0 < 1"),
    ("index-negative", "+1 1:1 3:1\n-1 -2:1 3:0.5\n", 2, "feature index -2 < 1"),
    ("label", "+1 1:1 3:1\nspam 2:1 3:0.5\n", 2, "label 'spam' is not a number"),
    ("nan-value", "+1 1:1 3:1\n# comment\n-1 2:1 3:nan\n", 3, "not finite"),
    ("inf-value", "+1 1:1 3:inf\n", 1, "not finite"),
    ("nan-label", "+1 1:1\nnan 1:1\n", 2, "label 'nan' is not finite"),
    ("unsorted", "+1 1:1 3:1\n-1 3:1 2:0.5\n", 2, "follows index 3"),
    ("empty", "", 1, "empty"),
    ("only-comments", "# nothing here\n\n", 1, "empty"),
]


@pytest.mark.parametrize("case, text, line, problem", SVM_CASES, ids=[c[0] for c in SVM_CASES])
def test_malformed_svmlight_names_file_line_and_problem(tmp_path, case, text, line, problem):
    path = _write(tmp_path / f"{case}.svm", text)
    with pytest.raises(DataError) as info:
        load_svmlight(path)
    msg = str(info.value)
    assert str(path) in msg and f"line {line}:" in msg and problem in msg, msg
    assert info.value.line == line and isinstance(info.value, ValueError)


def test_svmlight_index_above_n_features(tmp_path):
    path = _write(tmp_path / "big.svm", "+1 1:1\n-1 2:1 9:1\n")
    with pytest.raises(DataError, match=r"line 2: .*index 9 > n_features = 5"):
        load_svmlight(path, n_features=5)


def test_malformed_gz_svmlight_is_located_too(tmp_path):
    path = _write(tmp_path / "bad.svm.gz", "+1 1:1\n+1 1:1\n-1 0:2\n")
    with pytest.raises(DataError, match=r"bad.svm.gz, line 3: .*index 0"):
        load_svmlight(path)


RATING_CASES = [
    ("ragged-short", "1\t2\t3\n4\t5\n", 2, "ragged line: 2 fields"),
    ("ragged-long", "1\t2\t3\n4\t5\t6\t7\n", 2, "ragged line: 4 fields"),
    ("ragged-first", "1\t2\n4\t5\t6\n", 1, "ragged line: 2 fields"),
    ("bad-user", "1\t2\t3\nbob\t5\t6\n", 2, "bad token 'bob'"),
    ("bad-item", "1\t2\t3\n4\t5.5\t6\n", 2, "bad token '5.5'"),
    ("bad-rating", "1\t2\t3\n4\t5\tgood\n", 2, "bad token 'good'"),
    ("nan-rating", "# c\n1\t2\t3\n4\t5\tnan\n", 3, "not finite"),
    ("inf-rating", "1\t2\t-inf\n", 1, "not finite"),
    ("duplicate", "1\t2\t3\n4\t5\t6\n1\t2\t5\n", 3, "was rated before"),
    ("empty", "", 1, "empty"),
    ("header-unflagged", "user\titem\trating\n1\t2\t3\n", 1, "header=True"),
]


@pytest.mark.parametrize("case, text, line, problem", RATING_CASES, ids=[c[0] for c in RATING_CASES])
def test_malformed_ratings_names_file_line_and_problem(tmp_path, case, text, line, problem):
    path = _write(tmp_path / f"{case}.tsv", text)
    with pytest.raises(DataError) as info:
        load_ratings(path)
    msg = str(info.value)
    assert str(path) in msg and f"line {line}:" in msg and problem in msg, msg


MM_HEAD = "%%MatrixMarket matrix coordinate real general\n% comment\n3 3 3\n"
MM_CASES = [
    ("bad-token", MM_HEAD + "1 1 1.0\n2 x 1.0\n3 3 1.0\n", 5, "bad token"),
    ("nan", MM_HEAD + "1 1 1.0\n2 2 nan\n3 3 1.0\n", 5, "not finite"),
    ("outside", MM_HEAD + "1 1 1.0\n2 7 1.0\n3 3 1.0\n", 5, "outside"),
    ("header", "%%NotMatrixMarket\n3 3 0\n", 1, "bad header"),
    ("empty", "", 1, "empty"),
]


@pytest.mark.parametrize("case, text, line, problem", MM_CASES, ids=[c[0] for c in MM_CASES])
def test_malformed_matrix_market_names_file_line_and_problem(tmp_path, case, text, line, problem):
    path = _write(tmp_path / f"{case}.mtx", text)
    with pytest.raises(DataError) as info:
        load_matrix_market(path)
    msg = str(info.value)
    assert str(path) in msg and f"line {line}:" in msg and problem in msg, msg


def test_missing_file_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_svmlight(tmp_path / "nope.svm")


# --------------------------------------------------------------------------------------
# load_data
# --------------------------------------------------------------------------------------
def test_load_data_dispatches_and_seeds():
    clear_cache()
    spec = DataSpec(source="synthetic-classification", params={"n_rows": 300, "n_features": 100, "nnz_mean": 5})
    a = load_data(spec, "svm", seed=1)
    assert a is load_data(spec, "svm", seed=1)  # cached
    b = load_data(spec, "svm", seed=2)
    assert not np.array_equal(a.indices, b.indices)  # root seed → STREAM_DATA
    fixed = DataSpec(source="synthetic-classification",
                     params={"n_rows": 300, "n_features": 100, "nnz_mean": 5, "seed": 4})
    c, d = load_data(fixed, "svm", seed=1), load_data(fixed, "svm", seed=2)
    assert np.array_equal(c.indices, d.indices)  # data seed pinned by params
    assert np.array_equal(c.indices, synthetic_classification(300, 100, 5, seed=4).indices)
    g = load_data(DataSpec(source="grid-graph", params={"shape": [3, 3, 2], "n_labels": 2}), "multiway-cut", 0)
    assert isinstance(g, Graph) and g.n_nodes == 18
    r = load_data(DataSpec(source="synthetic-ratings", params={"n_users": 30, "n_items": 20, "n_ratings": 100}),
                  "matrix-completion", 0)
    assert isinstance(r, Ratings) and r.N == 100
    h = load_data(DataSpec(source="random-graph", params={"n_nodes": 30, "n_edges": 60}), "multiway-cut", 0)
    assert h.E == 60
    s = load_data(DataSpec(source="synthetic-regression", params={"n_rows": 50, "n_features": 20, "nnz_mean": 4}),
                  "least-squares", 0)
    assert s.N == 50


def test_load_data_reads_files(tmp_path):
    p = _write(tmp_path / "d.svm", "+1 1:1 2:1\n-1 2:0.5\n")
    t = load_data(DataSpec(source="svmlight", path=str(p), params={"n_features": 4}), "logistic", 0)
    assert t.n == 4 and t.N == 2
    q = _write(tmp_path / "r.csv", "1,2,3\n2,2,4\n")
    assert load_data(DataSpec(source="ratings", path=str(q)), "matrix-completion", 0).N == 2
    m = tmp_path / "m.mtx"
    scipy.io.mmwrite(m, sp.identity(3, format="coo"))
    assert load_data(DataSpec(source="matrix-market", path=str(m), params={"label_column": 0}), "svm", 0).n == 2


def test_load_data_errors_name_param_and_fix():
    with pytest.raises(SpecError, match=r"data.params.n_row.*allowed: n_rows, n_features"):
        load_data(DataSpec(source="synthetic-classification", params={"n_row": 10}), "svm", 0)
    with pytest.raises(SpecError, match=r"gives Graph but problem 'svm' needs Terms.*synthetic-classification"):
        load_data(DataSpec(source="grid-graph"), "svm", 0)
    with pytest.raises(SpecError, match="needs Ratings"):
        load_data(DataSpec(source="svmlight", path="x.svm"), "matrix-completion", 0)
    with pytest.raises(SpecError, match="seed"):
        load_data(DataSpec(source="svmlight", path="x.svm", params={"seed": 3}), "svm", 0)
    with pytest.raises(SpecError, match="data.path"):
        load_data(DataSpec(source="grid-graph", path="g.txt"), "multiway-cut", 0)
