"""The sweep section of the report (issue 12): a sweep folder or a grid summarised -- points
done / failed / not run, the verdicts across the grid, plots over its axes, the failures --
and what ``wildcheck rerun`` does with it (re-reads the folder; runs the grid again).

Every sweep here is a real ``run_sweep`` of a few tiny simulations with hwsim's reference
engine (nothing big to compile), in this process; each study runs the sweep section only.
"""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from analysis import sweep as sw
from analysis.study import (SECTIONS, StudySpec, compare_reports, default_study, load_manifest, rerun_spec,
                            run_study, table_sha256)
from test_cli import assert_one_line_error, run_main
from test_report import tiny_spec
from workload.spec import SpecError

SWEEP_ONLY = [s for s in SECTIONS if s.name == "sweep"]
TAU_BOUND = 2  # the grid's [checks] bound on τ = max_k τ_k

GRID = f"""
[sweep]
with_opt = true
engine = "reference"

[run]
problem = "least-squares"
problem_params = {{ lam = 1e-3 }}
scheme = "hogwild"
write_mode = "rmw"
epochs = 2
step = 0.02

[run.data]
source = "synthetic-regression"
params = {{ n_rows = 120, n_features = 40, nnz_mean = 5 }}

[machine]
cores = 2
read_cost = 2
write_cost = 3
coherence_cost = 20
delay = {{ kind = "constant", ticks = 60 }}

[checks]
tau_max = {TAU_BOUND}
"""
AXES = "[grid]\nthreads = [1, 2]\nseed = [0, 1]\n"  # 4 points
VERDICT_COLUMNS = ["index", "point_id", "kind", "threads", "seed", "completed", f"tau_max <= {TAU_BOUND}", "note"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """(grid path, sweep folder) of a finished 4-point sweep."""
    d = tmp_path_factory.mktemp("sweep")
    grid = d / "grid.toml"
    grid.write_text(GRID + AXES)
    res = sw.run_sweep(sw.load_grid(grid), d / "out", workers=1, progress=False)
    assert res.ok and len(res.results) == 4
    return grid, d / "out"


def study(out, sweep, **changes):
    outcome = run_study(tiny_spec(sweep=str(sweep), **changes), out, progress=False, sections=SWEEP_ONLY,
                        with_numba_sysinfo=False)
    (section,) = outcome.sections
    return outcome, section


def table(out, name) -> pd.DataFrame:
    return pd.read_parquet(out / "data" / f"{name}.parquet")


def test_a_finished_sweep_folder_is_summarised(finished, tmp_path):
    _, folder = finished
    out = tmp_path / "r"
    outcome, sec = study(out, folder)
    assert outcome.state == "complete" and sec.status == "done" and sec.reason == ""
    st = table(out, "sweep_status").iloc[0]
    assert (st["source"], st["source_kind"]) == (str(folder), "folder")
    assert (st["points"], st["done"], st["failed"], st["pending"], bool(st["partial"])) == (4, 4, 0, 0, False)
    assert st["checks"] == f"tau_max <= {TAU_BOUND}"

    # the verdict table: one row per point, a column per check, verdicts from the results
    v = table(out, "sweep_verdicts")
    assert list(v.columns) == VERDICT_COLUMNS
    results = sw.load_results(folder)
    assert list(v["point_id"]) == list(results["point_id"])
    assert (v["completed"] == "done").all()
    tau = v.merge(results[["point_id", "tau_max"]], on="point_id")
    expected = tau["tau_max"].map(lambda t: "holds" if t <= TAU_BOUND else "violated")
    assert list(tau[f"tau_max <= {TAU_BOUND}"]) == list(expected)
    assert (tau.loc[tau["threads"] == 1, f"tau_max <= {TAU_BOUND}"] == "holds").all()  # one thread: τ = 0
    # the long form: one row per point and check, the observed τ against the bound
    checks = table(out, "sweep_checks")
    assert len(checks) == 2 * 4 and set(checks["check"]) == {"completed", f"tau_max <= {TAU_BOUND}"}
    obs = checks[checks["check"] != "completed"].merge(results[["point_id", "tau_max"]], on="point_id")
    assert (obs["observed"] == obs["tau_max"].astype(float)).all() and (obs["bound"] == TAU_BOUND).all()

    # the points, without the columns that vary run to run, tagged simulated and hashed
    points = table(out, "sweep_points")
    assert not {"wall_s", "cpu_s", "worker"} & set(points.columns)
    pd.testing.assert_frame_equal(points, results.drop(columns=["wall_s", "cpu_s", "worker"]))
    man = load_manifest(out)
    assert {n: m["kind"] for n, m in man["tables"].items()} == dict.fromkeys(
        ["sweep_status", "sweep_points", "sweep_checks", "sweep_verdicts"], "simulated")
    for name, meta in man["tables"].items():
        assert table_sha256(pd.read_parquet(out / meta["file"])) == meta["sha256"], name
    assert "sweep_failures" not in man["tables"]

    # one plot per varying axis, hued by the other, embedded in the page and written to plots/
    assert sw.plot_axes(results) == [("threads", "seed"), ("seed", "threads")]
    html = (out / "index.html").read_text()
    for axis in ("threads", "seed"):
        assert f"<img alt='sweep_{axis}' src='data:image/png;base64," in html
        png = (out / "plots" / f"sweep_{axis}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "Of 4 points, 4 done, 0 failed, 0 not run" in html
    assert "partial sweep" not in html
    md = (out / "report.md").read_text()
    assert "## Parameter sweep" in md and "![sweep_threads](plots/sweep_threads.png)" in md
    # the summary counts the sweep's verdicts with the others
    assert "| sweep_checks |" in md


def test_a_partial_sweep_is_reported_as_partial(finished, tmp_path):
    _, folder = finished
    part = tmp_path / "partial"
    shutil.copytree(folder, part)
    # forget one committed point (as if the sweep had been killed before it): it is pending
    files = sorted((part / "points").glob("*.parquet"))
    victim = pd.concat([pd.read_parquet(f) for f in files])["point_id"].iloc[-1]
    for f in files:
        df = pd.read_parquet(f)
        df[df["point_id"] != victim].to_parquet(f, index=False)
    out = tmp_path / "r"
    outcome, sec = study(out, part)
    assert sec.status == "done" and outcome.state == "complete"
    assert sec.reason == "partial sweep: 3 of 4 points done, 0 failed, 1 not run"
    st = table(out, "sweep_status").iloc[0]
    assert (st["points"], st["done"], st["failed"], st["pending"], bool(st["partial"])) == (4, 3, 0, 1, True)
    v = table(out, "sweep_verdicts").set_index("point_id")
    assert v.loc[victim, "completed"] == "not run"
    assert v.loc[victim, f"tau_max <= {TAU_BOUND}"] == "not applicable"
    assert (v.drop(index=victim)["completed"] == "done").all()
    man = load_manifest(out)
    assert man["tables"]["sweep_points"]["complete"] is False
    html = (out / "index.html").read_text()
    assert "partial sweep: 1 of 4 points not run" in html and "Of 4 points, 3 done, 0 failed, 1 not run" in html
    assert "<img alt='sweep_threads'" in html  # the done points are still plotted


def test_a_grid_is_run_and_its_failures_listed(tmp_path):
    # nnz_mean 500 > n_features 40: the data generator raises inside that point's run
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID + '[grid]\n"data.params.nnz_mean" = [5, 500]\n')
    out = tmp_path / "r"
    outcome, sec = study(out, grid)
    assert sec.status == "done", sec.reason
    assert (out / "sweep" / "plan.parquet").is_file()  # run by the study, inside the report folder
    st = table(out, "sweep_status").iloc[0]
    assert (st["source_kind"], st["points"], st["done"], st["failed"], st["pending"]) == ("grid", 2, 1, 1, 0)
    f = table(out, "sweep_failures")
    assert len(f) == 1 and f["error_type"].item() == "ValueError" and "nnz_mean" in f["error_message"].item()
    assert f["data.params.nnz_mean"].item() == 500
    v = table(out, "sweep_verdicts").set_index("data.params.nnz_mean")
    assert v.loc[5, "completed"] == "done" and v.loc[500, "completed"] == "failed"
    assert "nnz_mean" in v.loc[500, "note"] and v.loc[500, f"tau_max <= {TAU_BOUND}"] == "not applicable"
    doc = json.loads((out / "sweep" / "failures" / f"{f['point_id'].item()}.json").read_text())
    assert "Traceback" in doc["traceback"]
    html = (out / "index.html").read_text()
    assert "Failed points (1)" in html and "Of 2 points, 1 done, 1 failed, 0 not run" in html


@pytest.mark.parametrize("source", ["folder", "grid"])
def test_rerun_of_a_sweep_report(finished, tmp_path, source):
    grid, folder = finished
    first, again = tmp_path / "first", tmp_path / "again"
    study(first, folder if source == "folder" else grid)
    run_study(rerun_spec(first), again, progress=False, sections=SWEEP_ONLY, rerun_of=str(first),
              with_numba_sysinfo=False)
    cmp = compare_reports(first, again)
    rows = cmp[cmp["figure"].str.startswith("sweep_")]
    assert sorted(rows["figure"]) == ["sweep_checks", "sweep_points", "sweep_status", "sweep_verdicts"]
    assert (rows["verdict"] == "identical").all(), rows
    if source == "grid":  # the grid ran again, every point computed anew, into the rerun's folder
        journal = (again / "sweep" / "journal.log").read_text().splitlines()
        assert sum(" start " in ln for ln in journal) == 4
    else:  # the folder was read, not written
        assert not (again / "sweep").exists()


def test_not_requested_without_a_sweep(tmp_path):
    assert default_study(cores=2, a8a="/nonexistent/a8a.gz").sweep is None
    outcome = run_study(tiny_spec(), tmp_path, progress=False, sections=SWEEP_ONLY, with_numba_sysinfo=False)
    assert outcome.state == "complete"
    (sec,) = outcome.sections
    assert sec.status == "not requested" and "--sweep" in sec.reason
    assert "Not part of this study: no sweep given" in (tmp_path / "index.html").read_text()


def test_sweep_in_the_study_spec(finished):
    _, folder = finished
    spec = tiny_spec(sweep=str(folder))
    text = spec.to_toml()
    assert f'sweep = "{folder}"' in text
    assert StudySpec.from_toml(text) == spec
    assert "sweep" not in tiny_spec().to_toml()
    for bad in ("", 3):
        with pytest.raises(SpecError) as err:
            tiny_spec(sweep=bad)
        assert f"sweep = {bad!r}" in str(err.value) and "e.g. sweep =" in str(err.value)


def test_cli_sweep_flag(finished, tmp_path, capsys):
    grid, folder = finished
    code, out, _ = run_main(["report", "--sweep", str(folder), "--print-spec"], capsys)
    assert code == 0 and StudySpec.from_toml(out).sweep == str(folder.resolve())
    code, out, _ = run_main(["report", "--sweep", str(grid), "--print-spec"], capsys)
    assert code == 0 and StudySpec.from_toml(out).sweep == str(grid.resolve())


def test_cli_bad_sweep_path_is_one_line_and_exit_2(tmp_path, capsys):
    report = tmp_path / "report"
    missing = tmp_path / "nowhere"
    code, _, err = run_main(["report", "--sweep", str(missing), "--out", str(report)], capsys)
    assert_one_line_error(code, err, str(missing), "no such sweep folder or grid file")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_main(["report", "--sweep", str(empty), "--out", str(report)], capsys)
    assert_one_line_error(code, err, str(empty), "not a sweep folder")
    text = tmp_path / "notes.txt"
    text.write_text("x")
    code, _, err = run_main(["report", "--sweep", str(text), "--out", str(report)], capsys)
    assert_one_line_error(code, err, str(text), "grid .toml")
    bad = tmp_path / "bad.toml"
    bad.write_text(GRID + "[grid]\nthreads = [0]\n")
    code, _, err = run_main(["report", "--sweep", str(bad), "--out", str(report)], capsys)
    assert_one_line_error(code, err, str(bad), "threads")
    assert not report.exists()  # checked before anything ran
