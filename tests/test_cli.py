"""The `wildcheck` CLI: bad input is one line on stderr and exit status 2, never a traceback."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.cli import EXIT_USAGE, build_parser, main

REPO = Path(__file__).resolve().parent.parent


def run_main(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code == EXIT_USAGE, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


GOOD_SPEC = """
[run]
problem = "svm"
scheme = "hogwild"
threads = 2
epochs = 1
step = 0.1

[run.data]
source = "synthetic-classification"
params = { n_rows = 200, n_features = 50, nnz_mean = 5, seed = 0 }
"""


@pytest.fixture
def good_spec(tmp_path):
    p = tmp_path / "spec.toml"
    p.write_text(GOOD_SPEC)
    return p


@pytest.mark.parametrize("cmd", ["run", "simulate", "check"])
def test_missing_spec_file(cmd, tmp_path, capsys):
    missing = tmp_path / "nope.toml"
    code, _, err = run_main([cmd, str(missing)], capsys)
    assert_one_line_error(code, err, "nope.toml", "not found")


def test_malformed_spec(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nscheme = 'hogwild'\n")
    code, _, err = run_main(["run", str(bad)], capsys)
    assert_one_line_error(code, err, "bad.toml", "not valid TOML", "line 1")


def test_spec_with_unknown_field(tmp_path, capsys):
    bad = tmp_path / "typo.toml"
    bad.write_text("[run]\nthread = 2\n")
    code, _, err = run_main(["simulate", str(bad)], capsys)
    assert_one_line_error(code, err, "typo.toml", "thread", "fix its spelling")


def test_unknown_scheme_in_file(tmp_path, capsys):
    bad = tmp_path / "scheme.toml"
    bad.write_text(GOOD_SPEC.replace('"hogwild"', '"hogwlid"'))
    code, _, err = run_main(["run", str(bad)], capsys)
    assert_one_line_error(code, err, "scheme", "hogwlid", "must be one of")


def test_unknown_scheme_flag(good_spec, capsys):
    code, _, err = run_main(["run", str(good_spec), "--scheme", "hogwlid"], capsys)
    assert_one_line_error(code, err, "hogwlid", "--scheme", "spec.toml")


def test_zero_threads(good_spec, capsys):
    code, _, err = run_main(["simulate", str(good_spec), "--threads", "0"], capsys)
    assert_one_line_error(code, err, "threads = 0", ">= 1", "--threads")


def test_negative_step(good_spec, capsys):
    code, _, err = run_main(["run", str(good_spec), "--step", "-0.5"], capsys)
    assert_one_line_error(code, err, "step = -0.5", "> 0", "--step")


def test_negative_step_in_file(tmp_path, capsys):
    bad = tmp_path / "step.toml"
    bad.write_text(GOOD_SPEC.replace("step = 0.1", "step = -0.1"))
    code, _, err = run_main(["check", str(bad)], capsys)
    assert_one_line_error(code, err, "step.toml", "step = -0.1")


def test_report_bad_inputs(tmp_path, capsys):
    code, _, err = run_main(["report", "--threads", "0,1"], capsys)
    assert_one_line_error(code, err, "--threads", ">= 1")
    code, _, err = run_main(["report", "--spec", str(tmp_path / "missing.toml")], capsys)
    assert_one_line_error(code, err, "missing.toml", "not found")
    code, _, err = run_main(["report", "--a8a", str(tmp_path / "a8a.gz")], capsys)
    assert_one_line_error(code, err, "a8a.gz", "--a8a")
    study = tmp_path / "study.toml"
    study.write_text("[study]\nschemes = ['hogwlid']\n" + GOOD_SPEC)
    code, _, err = run_main(["report", "--spec", str(study)], capsys)
    assert_one_line_error(code, err, "study.toml", "hogwlid")
    study.write_text("[study]\nrepeats = 0\n" + GOOD_SPEC)
    code, _, err = run_main(["report", "--spec", str(study)], capsys)
    assert_one_line_error(code, err, "study.toml", "repeats")


def test_rerun_of_a_folder_that_is_not_a_report(tmp_path, capsys):
    code, _, err = run_main(["rerun", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "manifest.json", "wildcheck report")
    code, _, err = run_main(["rerun", str(tmp_path / "nowhere")], capsys)
    assert_one_line_error(code, err, "nowhere", "no such report folder")


def test_data_errors_are_one_line(tmp_path, capsys):
    pytest.importorskip("workload.data")
    bad = tmp_path / "bad.svm"
    bad.write_text("+1 1:1 2:x\n")
    code, _, err = run_main(["data", "stats", str(bad)], capsys)
    assert_one_line_error(code, err, "bad.svm")
    code, _, err = run_main(["data", "convert", str(tmp_path / "none.svm"), str(tmp_path / "o.npz")], capsys)
    assert_one_line_error(code, err, "none.svm")


def test_usage_errors_are_one_line(capsys):
    code, _, err = run_main(["frobnicate"], capsys)
    assert_one_line_error(code, err, "frobnicate", "--help")
    code, _, err = run_main(["run", "--threads", "two"], capsys)
    assert_one_line_error(code, err, "--threads", "two")


def test_every_subcommand_has_help_with_an_example(capsys):
    parser = build_parser()
    subs = next(a for a in parser._actions if a.dest == "cmd").choices
    assert set(subs) == {"data", "simulate", "run", "calibrate", "compare", "check", "report", "rerun", "sweep"}
    for name in subs:
        assert main([name, "--help"]) == 0
        out = capsys.readouterr().out
        assert "example:" in out and "wildcheck" in out, name
    for action in ("generate", "convert", "stats"):
        assert main(["data", action, "--help"]) == 0
        assert "example:" in capsys.readouterr().out


def test_console_script_bad_input_via_subprocess(tmp_path):
    """The installed entry point, as a user runs it: one line, exit 2, no traceback."""
    exe = Path(sys.executable).parent / "wildcheck"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "analysis.cli"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    p = subprocess.run(cmd + ["run", str(tmp_path / "missing.toml")], capture_output=True, text=True, cwd=REPO,
                       env=env, timeout=120)
    assert p.returncode == EXIT_USAGE
    assert len(p.stderr.strip().splitlines()) == 1 and "missing.toml" in p.stderr, p.stderr


def test_cli_happy_path_on_tiny_data(tmp_path, capsys):
    """data generate/stats/convert, run, calibrate, simulate, compare and check, each writing
    its folder, on a data set small enough for the default test run."""
    pytest.importorskip("realrun")
    pytest.importorskip("hwsim")
    data = tmp_path / "tiny.svm.gz"
    assert main(["data", "generate", "--rows", "300", "--features", "500", "--nnz-mean", "8", "--seed", "1",
                 "--out", str(data)]) == 0
    assert main(["data", "convert", str(data), str(tmp_path / "tiny.npz"), "-q"]) == 0
    assert main(["data", "stats", str(tmp_path / "tiny.npz"), "--out", str(tmp_path / "stats.json")]) == 0
    stats = __import__("json").loads((tmp_path / "stats.json").read_text())
    assert stats["N"] == 300 and stats["n"] == 500 and 0 < stats["Delta"] <= 1
    spec = tmp_path / "spec.toml"
    spec.write_text(f"""
[run]
problem = "svm"
scheme = "hogwild"
epochs = 2
step = 0.2

[run.data]
source = "svmlight"
path = "{data}"
params = {{ n_features = 500 }}
""")
    capsys.readouterr()
    assert main(["run", str(spec), "--threads", "1", "--repeats", "2", "--out", str(tmp_path / "run1"), "-q"]) == 0
    assert main(["run", str(spec), "--threads", "2", "--out", str(tmp_path / "run2"), "-q"]) == 0
    assert (tmp_path / "run1" / "repeat-1" / "samples.parquet").is_file()
    assert main(["calibrate", str(tmp_path / "run1"), "--out", str(tmp_path / "machine.toml"), "-q"]) == 0
    assert "[machine]" in (tmp_path / "machine.toml").read_text()
    # realrun renumbered the SVM's coordinates by degree: predictions simulate that layout
    assert 'memory_layout = "by-degree"' in (tmp_path / "machine.toml").read_text()
    # the default split: plain accesses at the in-flight cost, atomic-instruction stores at the lone transfer
    assert "atomic_coherence_cost" in (tmp_path / "machine.toml").read_text()
    # and a sample hides misses under its 1-thread memory stall (the figure may round to 0 here)
    assert "miss_overlap_source" in (tmp_path / "machine.toml").read_text()
    # plain stores' misses off the critical path by default; --write-misses charged charges them
    assert "store_coherence_cost = 0" in (tmp_path / "machine.toml").read_text()
    assert main(["calibrate", str(tmp_path / "run1"), "--out", str(tmp_path / "m-off.toml"), "--hidden", "off",
                 "--write-misses", "charged", "-q"]) == 0
    assert "miss_overlap" not in (tmp_path / "m-off.toml").read_text()
    assert "store_coherence_cost" not in (tmp_path / "m-off.toml").read_text()
    # what a locked store takes, from a 1-thread hogwild-atomic run; a plain run is refused by name
    assert main(["run", str(spec), "--threads", "1", "--scheme", "hogwild-atomic", "--out", str(tmp_path / "run1a"),
                 "-q"]) == 0
    assert main(["calibrate", str(tmp_path / "run1"), "--out", str(tmp_path / "m-atomic.toml"), "--atomic-run",
                 str(tmp_path / "run1a"), "--probes", "1", "-q"]) == 0
    text = (tmp_path / "m-atomic.toml").read_text()
    assert "atomic_write_cost = " in text and "atomic_write_source" in text
    # what a lock costs, from a 1-thread lock-coord run (the figure may round to 0 here)
    assert main(["run", str(spec), "--threads", "1", "--scheme", "lock-coord", "--out", str(tmp_path / "run1l"),
                 "-q"]) == 0
    assert main(["calibrate", str(tmp_path / "run1"), "--out", str(tmp_path / "m-lock.toml"), "--lock-run",
                 str(tmp_path / "run1l"), "--probes", "1", "-q"]) == 0
    assert "lock_source" in (tmp_path / "m-lock.toml").read_text()
    capsys.readouterr()
    assert main(["calibrate", str(tmp_path / "run1"), "--out", str(tmp_path / "m-bad.toml"), "--lock-run",
                 str(tmp_path / "run1a"), "-q"]) == EXIT_USAGE
    assert "--lock-run" in capsys.readouterr().err and not (tmp_path / "m-bad.toml").exists()
    capsys.readouterr()
    assert main(["calibrate", str(tmp_path / "run1"), "--out", str(tmp_path / "m-bad.toml"), "--atomic-run",
                 str(tmp_path / "run1"), "-q"]) == EXIT_USAGE
    assert "--atomic-run" in capsys.readouterr().err and not (tmp_path / "m-bad.toml").exists()
    if len(os.sched_getaffinity(0)) >= 2:  # three coherence probes, pooled, kept next to the machine
        probes = __import__("pandas").read_parquet(tmp_path / "machine.probes.parquet")
        assert len(probes) == 3 and (probes["pingpong_ns"] > 0).all()
    capsys.readouterr()
    code = main(["calibrate", str(tmp_path / "run1"), "--out", str(tmp_path / "m0.toml"), "--probes", "0"])
    assert code == EXIT_USAGE
    assert "--probes 0: must be >= 1" in capsys.readouterr().err and not (tmp_path / "m0.toml").exists()
    assert main(["simulate", str(spec), "--machine", str(tmp_path / "machine.toml"), "--threads", "2",
                 "--out", str(tmp_path / "sim"), "-q"]) == 0
    res = __import__("json").loads((tmp_path / "sim" / "result.json").read_text())
    assert res["samples"] == 600 and len(res["model_sha256"]) == 64
    assert main(["compare", str(tmp_path / "run1"), str(tmp_path / "run2"), "--machine",
                 str(tmp_path / "machine.toml"), "--out", str(tmp_path / "cmp"), "-q"]) == 0
    cmp = __import__("pandas").read_parquet(tmp_path / "cmp" / "comparison.parquet")
    assert {"speedup", "tau_ks", "convergence"} <= set(cmp["figure"])
    assert main(["check", str(spec), "--machine", str(tmp_path / "machine.toml"), "--threads", "2",
                 "--out", str(tmp_path / "chk"), "-q"]) == 0
    th = __import__("pandas").read_parquet(tmp_path / "chk" / "theory.parquet")
    assert set(th["verdict"]) <= {"holds", "violated", "not applicable"}


def test_simulate_coords_on_a_scheme_without_a_coordinate_trace_names_the_flag(good_spec, tmp_path, capsys):
    """decentralized nodes exchange whole models: --coords is refused up front, naming the flag."""
    code, _, err = run_main(["simulate", str(good_spec), "--scheme", "decentralized", "--coords",
                             "--out", str(tmp_path / "sim")], capsys)
    assert_one_line_error(code, err, "--coords", "decentralized", "drop --coords")
    assert not (tmp_path / "sim" / "samples.parquet").exists()
