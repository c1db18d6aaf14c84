"""Parameter sweeps (analysis.sweep, issue 12): the grid format, execution locally, in a
pool and on a Dask LocalCluster (identical tables), resume after a kill (no point lost,
none recomputed), failures recorded while the rest completes, summaries and plots.

Every simulation here is a real ``hwsim.simulate`` call on a tiny problem.  What costs
time is the fast engine's JIT compilation, paid once per fresh process (this one, each pool
worker, each Dask worker: ~10-20 s each on two shared cores); so most tests run the sweep
with ``engine = "reference"`` (the SimPy engine: nothing big to compile, identical
results), the tests that start fresh processes again with the default fast engine under
``-m slow``, and the summary / plot tests with the default engine in this process.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from analysis import sweep as sw
from workload.spec import SpecError

REPO = Path(__file__).resolve().parents[1]

BASE = """
[sweep]
with_opt = true
{engine}

[run]
problem = "least-squares"
problem_params = { lam = 1e-3 }
scheme = "hogwild"
write_mode = "rmw"
epochs = {epochs}
step = 0.02

[run.data]
source = "synthetic-regression"
params = { n_rows = {rows}, n_features = 40, nnz_mean = 5 }

[machine]
cores = 2
read_cost = 2
write_cost = 3
coherence_cost = 20
delay = { kind = "constant", ticks = 60 }
"""


def grid_text(axes: str, *, rows: int = 120, epochs: int = 2, extra: str = "", engine: str | None = None) -> str:
    text = BASE.replace("{rows}", str(rows)).replace("{epochs}", str(epochs))
    text = text.replace("{engine}", f'engine = "{engine}"' if engine else "")
    return text + extra + "\n[grid]\n" + axes


#: Engines for the tests that start fresh processes (module docstring).
FRESH_PROCESS_ENGINES = [pytest.param("reference", id="reference"),
                         pytest.param("fast", id="fast", marks=pytest.mark.slow)]


#: 8 points: threads × seed × delay model.
EIGHT_AXES = ('threads = [1, 2]\nseed = [0, 1]\n'
              '"machine.delay" = [{ kind = "constant", ticks = 60 }, '
              '{ kind = "shifted-exponential", shift = 30.0, rate = 0.05 }]\n')
EIGHT = grid_text(EIGHT_AXES)


def write(tmp_path: Path, text: str, name: str = "grid.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its new parent) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def journal(out: Path) -> list[tuple[str, str]]:
    """(event, point id) pairs of a sweep folder's journal, in order."""
    lines = (out / "journal.log").read_text().splitlines()
    return [(ln.split()[1], ln.split()[2]) for ln in lines]


# ----------------------------------------------------------------------------------------
# The grid format
# ----------------------------------------------------------------------------------------
def test_cartesian_grid_plan_and_stable_ids():
    g = sw.load_grid(EIGHT)
    assert len(g) == 8
    assert [p.index for p in g.plan] == list(range(8))
    assert len({p.id for p in g.plan}) == 8
    # values: last axis varies fastest, in the order written
    assert [(p.values["threads"], p.values["seed"]) for p in g.plan[:4]] == [(1, 0), (1, 0), (1, 1), (1, 1)]
    # ids hash the resolved run, not how the grid spells it: reorder axes, nest the key
    other = sw.load_grid(grid_text('seed = [1, 0]\nmachine = { delay = [{ kind = "shifted-exponential", '
                                   'shift = 30.0, rate = 0.05 }, { kind = "constant", ticks = 60 }] }\n'
                                   'threads = [2, 1]\n'))
    assert {p.id for p in other.plan} == {p.id for p in g.plan}
    p = g.plan[5]  # threads=2, seed=0, shifted-exponential
    assert (p.spec.threads, p.spec.seed, p.machine.delay.to_dict()["kind"]) == (2, 0, "shifted-exponential")
    assert p.machine.cores == 2 and p.spec.problem_params == {"lam": 1e-3}


def test_points_crossed_with_grid_and_merge_rules():
    text = grid_text('seed = [0, 1]\n"problem_params.lam" = [1e-2, 1e-1]\n', extra="""
[[points]]
threads = 1
"machine.cores" = 1

[[points]]
threads = 4
machine = { cores = 4, delay = { kind = "exponential", mean_ticks = 40.0 } }
"data.params.skew" = 0.5
""")
    g = sw.load_grid(text)
    assert len(g) == 2 * 2 * 2
    first, last = g.plan[0], g.plan[-1]
    assert (first.spec.threads, first.machine.cores) == (1, 1)
    assert (last.spec.threads, last.machine.cores) == (4, 4)
    # a table value for a namespace merges into the base; a delay model is replaced whole
    assert last.machine.read_cost == 2 and last.machine.delay.to_dict() == {"kind": "exponential", "mean_ticks": 40.0}
    assert dict(last.spec.data.params) == {"n_rows": 120, "n_features": 40, "nnz_mean": 5, "skew": 0.5}
    assert last.spec.problem_params == {"lam": 1e-1}
    plan = sw.plan_frame(g)
    assert list(plan.columns[:3]) == ["point_id", "index", "kind"]
    axes = {"threads", "machine.cores", "machine.delay", "data.params.skew", "seed", "problem_params.lam"}
    assert axes <= set(plan.columns)


@pytest.mark.parametrize("extra, axes, where, words", [
    ("", "threads = [1, 0]\n", "[grid] 'threads'", "integer >= 1"),
    ("", "thread = [1, 2]\n", "[grid] 'thread'", "not a key a point can set"),
    ("", "seed = []\n", "[grid] 'seed'", "empty"),
    ("", "seed = 3\n", "[grid] 'seed'", "needs a list"),
    ("", "threads = [1, 4]\n", "[grid] 'threads'", "time slicing"),
    ("", 'scheme = ["hogwild", "cyclades"]\n', "[grid] 'scheme'", "does not simulate"),
    ("", '"machine.delay" = [{ kind = "constant" }]\n', "[grid] 'machine.delay'", "ticks"),
    ("", 'seed = [0, 0]\n', "point #1", "same run as point #0"),
    ("\n[checks]\ntau = 3\n", "seed = [0]\n", "[checks] 'tau'", "not a numeric result column"),
    ("\n[sweeps]\nx = 1\n", "seed = [0]\n", "[sweeps]", "not a grid table"),
])
def test_grid_errors_name_file_key_and_fix(tmp_path, extra, axes, where, words):
    path = write(tmp_path, grid_text(axes, extra=extra))
    with pytest.raises(sw.GridError) as info:
        sw.load_grid(path)
    msg = str(info.value)
    assert str(path) in msg and where in msg and words in msg, msg
    assert ";" in msg  # "...: what is wrong; the fix"
    assert isinstance(info.value, SpecError)  # the CLI reports it as bad input (exit 2)


def test_grid_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="grid file not found"):
        sw.load_grid(tmp_path / "missing.toml")
    with pytest.raises(sw.GridError, match="not valid TOML"):
        sw.load_grid(write(tmp_path, "[run\n"))


# ----------------------------------------------------------------------------------------
# Running: in this process, in a pool, on a LocalCluster
# ----------------------------------------------------------------------------------------
def test_failing_point_is_recorded_and_the_rest_complete(tmp_path):
    # nnz_mean 500 > n_features 40: the data generator raises inside the point's run
    g = sw.load_grid(grid_text('seed = [0, 1]\n"data.params.nnz_mean" = [5, 500]\n', engine="reference"))
    out = tmp_path / "out"
    res = sw.run_sweep(g, out, workers=1, progress=False)
    r = res.results
    assert list(r["status"]) == ["done", "failed", "done", "failed"]
    assert res.n_failed == 2 and res.computed == 4 and not res.ok
    bad = r[r["status"] == "failed"]
    assert (bad["error_type"] == "ValueError").all() and bad["error_message"].str.contains("nnz_mean").all()
    assert r.loc[r["status"] == "done", "final_objective"].notna().all()
    for pid in bad["point_id"]:
        doc = json.loads((out / "failures" / f"{pid}.json").read_text())
        assert doc["error_type"] == "ValueError" and "Traceback" in doc["traceback"] and "nnz_mean" in doc["traceback"]
    assert set(res.failures["point_id"]) == set(bad["point_id"])
    summary = pd.read_parquet(out / "summary.parquet")
    assert sorted(summary.loc[summary["check"] == "completed", "verdict"]) == ["done", "done", "failed", "failed"]
    # resuming keeps failures (nothing recomputed) unless asked to retry them
    again = sw.run_sweep(g, out, workers=1, progress=False)
    assert again.computed == 0 and again.reused == 4 and again.n_failed == 2
    retry = sw.run_sweep(g, out, workers=1, progress=False, retry_failed=True)
    assert retry.computed == 2 and retry.n_failed == 2
    pd.testing.assert_frame_equal(sw.comparable(retry.results), sw.comparable(res.results))


@pytest.mark.parametrize("engine", FRESH_PROCESS_ENGINES)
def test_local_pool_and_local_cluster_give_identical_tables(tmp_path, engine):
    distributed = pytest.importorskip("distributed")
    g = sw.load_grid(grid_text(EIGHT_AXES, engine=engine))
    inline = sw.run_sweep(g, tmp_path / "inline", workers=1, progress=False)
    pool = sw.run_sweep(g, tmp_path / "pool", workers=2, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        dask = sw.run_sweep(g, tmp_path / "dask", scheduler=client, progress=False)
        workers = {w.split(":")[0] for w in dask.results["worker"]}
    for res in (inline, pool, dask):
        assert res.ok and len(res.results) == 8 and res.computed == 8
        assert set(res.results["engine"]) == {engine}
    expected = sw.comparable(inline.results)
    pd.testing.assert_frame_equal(sw.comparable(pool.results), expected)
    pd.testing.assert_frame_equal(sw.comparable(dask.results), expected)
    key = ["point_id", "epoch"]
    for res in (pool, dask):
        pd.testing.assert_frame_equal(res.history.sort_values(key).reset_index(drop=True),
                                      inline.history.sort_values(key).reset_index(drop=True))
    assert len(workers) == 1  # same host: the workers wrote the journal too
    assert sum(e == "start" for e, _ in journal(tmp_path / "dask")) == 8
    # the tables on disk are the returned ones
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "dask" / "results.parquet"), dask.results)


@pytest.mark.parametrize("engine", FRESH_PROCESS_ENGINES)
def test_killed_sweep_resumes_without_losing_or_recomputing(tmp_path, engine):
    # 32 points of some 20-60 ms each on a 2-process pool in a subprocess; SIGKILL the whole
    # process group as soon as the first batch is committed, then resume here.
    text = grid_text('threads = [1, 2]\nseed = [0, 1, 2, 3, 4, 5, 6, 7]\nstep = [0.01, 0.02]\n',
                     rows=300, epochs=2, engine=engine)
    path = write(tmp_path, text)
    g = sw.load_grid(path)
    out = tmp_path / "out"
    log = tmp_path / "sweep.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "analysis.sweep", str(path), "--out", str(out), "--workers",
                                 "2", "--flush-seconds", "0.1", "-q"], cwd=REPO, start_new_session=True,
                                stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    try:
        while not list((out / "points").glob("*.parquet")):
            assert proc.poll() is None, f"the sweep ended before it was killed: {log.read_text()}"
            assert time.monotonic() < deadline, "no point was committed in time"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)  # the driver only: its pool workers must notice and exit
        proc.wait()
        workers = {int(ln.rsplit(":", 1)[1].split()[0]) for ln in (out / "journal.log").read_text().splitlines()
                   if " start " in ln}
        assert workers and proc.pid not in workers
        until = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < until:
            time.sleep(0.05)
        assert not any(_alive(w) for w in workers), "pool workers outlived the killed sweep"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    before = sw.load_results(out)
    n_before = int((before["status"] == "done").sum())
    assert 0 < n_before < len(g), "the kill must land mid-sweep"
    assert (before["status"] != "failed").all()

    res = sw.run_sweep(g, out, workers=1, progress=False)
    assert res.ok and res.reused == n_before and res.computed == len(g) - n_before

    # none lost, none committed twice: every point has exactly one row across all committed
    # batches (a point recomputed after its commit would have a second one)
    rows = pd.concat([pd.read_parquet(f) for f in (out / "points").glob("*.parquet")])
    assert sorted(rows["point_id"]) == sorted(p.id for p in g.plan)
    # and the resumed run computed exactly the points that were not committed, once each
    events = journal(out)
    resumed = max(i for i, (e, _) in enumerate(events) if e == "begin")
    started = sorted(pid for e, pid in events[resumed:] if e == "start")
    assert started == sorted(set(before["point_id"][before["status"] == "pending"]))
    # and the resumed table is the one an uninterrupted sweep gives
    fresh = sw.run_sweep(g, tmp_path / "fresh", workers=1, progress=False)
    pd.testing.assert_frame_equal(sw.comparable(res.results), sw.comparable(fresh.results))
    key = ["point_id", "epoch"]
    pd.testing.assert_frame_equal(res.history.sort_values(key).reset_index(drop=True),
                                  fresh.history.sort_values(key).reset_index(drop=True))


def test_load_results_reads_a_partial_sweep(tmp_path):
    g = sw.load_grid(grid_text("seed = [0, 1, 2]\n", engine="reference"))
    out = tmp_path / "out"
    res = sw.run_sweep(g, out, workers=1, progress=False)
    pd.testing.assert_frame_equal(sw.load_results(out), res.results)
    pd.testing.assert_frame_equal(sw.load_history(out), res.history)
    # forget one committed batch's point: it is pending again, and a resume computes only it
    files = sorted((out / "points").glob("*.parquet"))
    rows = pd.concat([pd.read_parquet(f) for f in files])
    victim = rows["point_id"].iloc[-1]
    for f in files:
        df = pd.read_parquet(f)
        df[df["point_id"] != victim].to_parquet(f, index=False)
    r = sw.load_results(out)
    assert list(r.loc[r["point_id"] == victim, "status"]) == ["pending"]
    again = sw.run_sweep(g, out, workers=1, progress=False)
    assert again.computed == 1 and again.ok


# ----------------------------------------------------------------------------------------
# For the report
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_results(tmp_path_factory):
    """A sweep in this process with hwsim's default engine (the one default-run test of it)."""
    g = sw.load_grid(grid_text('threads = [1, 2]\nseed = [0, 1]\n', extra="\n[checks]\ntau_max = 2\n"))
    return g, sw.run_sweep(g, tmp_path_factory.mktemp("sweep") / "out", workers=1, progress=False)


def test_summarise_sweep_verdicts(small_results):
    g, res = small_results
    s = sw.summarise_sweep(res.results, {"tau_max": 2, "samples_per_s": {"at_least": 1.0}})
    assert len(s) == 3 * len(res.results)
    tau = s[s["check"] == "tau_max <= 2"].merge(res.results[["point_id", "tau_max"]], on="point_id")
    assert ((tau["verdict"] == "holds") == (tau["tau_max"] <= 2)).all()
    assert (tau.loc[tau["threads"] == 1, "verdict"] == "holds").all()  # one thread: τ = 0
    assert (s.loc[s["check"] == "samples_per_s >= 1", "verdict"] == "holds").all()
    assert {"threads", "seed", "observed", "bound", "verdict", "note"} <= set(s.columns)
    on_disk = pd.read_parquet(res.out_dir / "summary.parquet")  # the grid's [checks]
    assert set(on_disk["check"]) == {"completed", "tau_max <= 2"}
    with pytest.raises(sw.GridError, match="not a numeric result column"):
        sw.summarise_sweep(res.results, {"bogus": 1})


def test_plot_sweep_figure(small_results):
    from matplotlib.figure import Figure

    _, res = small_results
    fig = sw.plot_sweep(res.results, "threads", "tau_mean", hue="seed")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "threads" and len(ax.get_legend().get_texts()) == 2
    fig2 = sw.plot_sweep(res.results, "seed", "final_objective")
    assert len(fig2.axes[0].lines) >= 1
    with pytest.raises(ValueError, match="not a column"):
        sw.plot_sweep(res.results, "threads", "nope")


# ----------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------
def test_cli_parser_dry_run_and_bad_input(tmp_path, capsys):
    from analysis.cli import main

    path = write(tmp_path, EIGHT)
    assert main(["sweep", str(path), "--dry-run"]) == 0
    assert "8 points (0 real)" in capsys.readouterr().out
    bad = write(tmp_path, grid_text("threads = [0]\n"), "bad.toml")
    assert main(["sweep", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err and "[grid] 'threads'" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_real_points_run_alone_after_the_simulations(tmp_path):
    pytest.importorskip("realrun")
    g = sw.load_grid(grid_text('seed = [0, 1]\nkind = ["sim", "real"]\n', rows=300))
    res = sw.run_sweep(g, tmp_path / "out", workers=2, progress=False)
    assert res.ok, res.failures
    r = res.results
    assert set(r.loc[r["kind"] == "real", "engine"]) == {"realrun"}
    assert r.loc[r["kind"] == "real", "samples_per_s"].gt(0).all()
    events = [(e, p) for e, p in journal(tmp_path / "out") if e in ("start", "finish", "fail")]
    kinds = {p.id: p.kind for p in g.plan}
    first_real = next(i for i, (e, p) in enumerate(events) if kinds[p] == "real")
    assert all(kinds[p] == "sim" for _, p in events[:first_real])  # every simulation finished first
    reals = events[first_real:]
    assert all(kinds[p] == "real" for _, p in reals)
    assert [e for e, _ in reals] == ["start", "finish"] * 2  # one at a time
