"""The coordinate trace streamed to Parquet (hwsim.coordtrace): the file is the in-memory
trace exactly, it is written atomically, an interrupted run leaves a readable, clearly named
partial file, the checks read it back, and the fast engine's memory stays bounded."""
import logging
import tracemalloc

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import hwsim
from conftest import small_terms
from hwsim import CoordTraceFile, checks
from hwsim.coordtrace import CoordTraceWriter
from hwsim.delays import Exponential
from hwsim.machine import Machine
from workload.problems import make_problem
from workload.spec import RunSpec

PINNED = Machine(cores=4, read_cost=1, write_cost=8, coherence_cost=3, delay=Exponential(5.0))
SLICED = Machine(cores=2, read_cost=1, write_cost=8, coherence_cost=3, delay=Exponential(5.0), quantum=20,
                 switch_cost=2)
#: a streamed run's peak of traced (numpy) allocations must stay below this fraction of the
#: same run's with the trace kept in memory (the trace is most of that memory here)
STREAMED_PEAK_FRACTION = 0.5


@pytest.fixture(scope="module")
def lsq():
    return make_problem("least-squares", small_terms(n_rows=150, n_features=14, density=0.3, seed=7, labels="real"),
                        lam=1e-2, reg="l2")


def spec_of(scheme="hogwild", write_mode="atomic", threads=4, dtype="fixed", epochs=2):
    return RunSpec(problem="least-squares", scheme=scheme, threads=threads, epochs=epochs, step=0.02, dtype=dtype,
                   write_mode=write_mode, seed=1)


def assert_file_is_the_trace(path, mem):
    f = pd.read_parquet(path)
    pd.testing.assert_frame_equal(f, pd.concat([mem.coords, mem.order], axis=1), check_exact=True)


@pytest.mark.parametrize("machine", [PINNED, SLICED], ids=["pinned", "time-sliced"])
@pytest.mark.parametrize("scheme, write_mode", [("hogwild", "atomic"), ("hogwild", "rmw"), ("lock-coord", "atomic"),
                                                ("round-robin", "atomic")])
@pytest.mark.parametrize("chunk_rows", [1, 37, 10**6])
def test_streamed_file_equals_the_in_memory_trace(tmp_path, lsq, machine, scheme, write_mode, chunk_rows):
    """Fast engine, every chunk size (1 forces a flush at nearly every START; with rmw writes
    rows that a pending store may still mark lost stay in the buffer): the file, read back,
    equals ``pd.concat([coords, order], axis=1)`` of the in-memory run exactly, and the two
    results hash the same."""
    spec = spec_of(scheme, write_mode)
    mem = hwsim.simulate(spec, machine, problem=lsq)
    path = tmp_path / "trace" / "coords.parquet"
    res = hwsim.simulate(spec, machine, problem=lsq, coord_trace=CoordTraceFile(path, chunk_rows=chunk_rows))
    assert res.coords is None and res.order is None and res.coords_path == path
    assert_file_is_the_trace(path, mem)
    assert hwsim.trace_hash(res) == hwsim.trace_hash(mem)
    assert np.array_equal(res.x, mem.x) and res.samples.equals(mem.samples)
    co, od = res.coord_frames()
    pd.testing.assert_frame_equal(co, mem.coords, check_exact=True)
    pd.testing.assert_frame_equal(od, mem.order, check_exact=True)
    assert not CoordTraceFile(path).partial_path.exists()
    meta = pq.read_metadata(path).metadata
    assert meta[b"wildcheck.complete"] == b"true" and int(meta[b"wildcheck.rows"]) == len(mem.coords)
    if write_mode == "rmw":
        assert mem.lost_updates > 0  # the lost marks (set after a row's store) made it into the file


@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_both_engines_write_the_same_file(tmp_path, lsq, engine):
    """A plain path works too; the reference engine builds the trace in memory and then
    writes the same file as the fast engine streams."""
    spec = spec_of("hogwild", "rmw")
    mem = hwsim.simulate(spec, PINNED, problem=lsq, engine="reference")
    res = hwsim.simulate(spec, PINNED, problem=lsq, engine=engine, coord_trace=str(tmp_path / "c.parquet"))
    assert_file_is_the_trace(tmp_path / "c.parquet", mem)
    assert hwsim.trace_hash(res) == hwsim.trace_hash(mem)


def test_checks_read_a_streamed_trace_back(tmp_path, lsq):
    spec = spec_of("hogwild", "rmw")
    mem = hwsim.simulate(spec, PINNED, problem=lsq)
    res = hwsim.simulate(spec, PINNED, problem=lsq, coord_trace=tmp_path / "c.parquet")
    for lab in ("start", "after-write"):
        pd.testing.assert_frame_equal(checks.identity(res, lab), checks.identity(mem, lab), check_exact=True)
        pd.testing.assert_frame_equal(checks.perturbations(res, lab), checks.perturbations(mem, lab))
    pd.testing.assert_frame_equal(checks.lost_updates(res), checks.lost_updates(mem))
    pd.testing.assert_frame_equal(checks.noise(res, problem=lsq), checks.noise(mem, problem=lsq), check_exact=True)
    off = hwsim.simulate(spec, PINNED, problem=lsq, coord_trace=False)
    with pytest.raises(ValueError, match="coord_trace=True"):
        checks.identity(off)


def test_an_interrupted_run_leaves_a_readable_partial_file(tmp_path, lsq, monkeypatch, caplog):
    """The target is never written; ``coords.partial.parquet`` holds the chunks written so
    far (marked incomplete), a warning names it and the exception carries a note."""
    real = CoordTraceWriter.write
    calls = []

    def write_then_stop(self, columns):
        calls.append(len(columns["sample"]))
        if len(calls) == 3:
            raise KeyboardInterrupt
        real(self, columns)

    monkeypatch.setattr(CoordTraceWriter, "write", write_then_stop)
    target = CoordTraceFile(tmp_path / "coords.parquet", chunk_rows=1)
    with caplog.at_level(logging.WARNING, logger="hwsim.coordtrace"), pytest.raises(KeyboardInterrupt) as exc:
        hwsim.simulate(spec_of(), PINNED, problem=lsq, coord_trace=target)
    assert not target.path.exists()
    partial = target.partial_path
    assert partial.name == "coords.partial.parquet" and partial.exists()
    f = pd.read_parquet(partial)
    assert len(f) == calls[0] + calls[1] > 0
    assert pq.read_metadata(partial).metadata[b"wildcheck.complete"] == b"false"
    assert any(str(partial) in n for n in getattr(exc.value, "__notes__", []))
    assert any("incomplete" in r.getMessage() and str(partial) in r.getMessage() for r in caplog.records)
    # the rows it holds are the first rows of the complete trace
    mem = hwsim.simulate(spec_of(), PINNED, problem=lsq)
    pd.testing.assert_frame_equal(f, pd.concat([mem.coords, mem.order], axis=1).iloc[:len(f)], check_exact=True)


def test_streaming_bounds_the_fast_engines_memory(tmp_path):
    """Peak numpy allocations of a streamed run (small chunks) are well below the in-memory
    run's, whose coordinate trace is most of its memory."""
    problem = make_problem("least-squares", small_terms(n_rows=4000, n_features=60, density=0.2, seed=3,
                                                        labels="real"), lam=1e-2, reg="l2")
    spec = spec_of(threads=4, epochs=2)
    hwsim.simulate(spec, PINNED, problem=problem, coord_trace=False)  # compile outside the measurement

    def peak(coord_trace):
        tracemalloc.start()
        hwsim.simulate(spec, PINNED, problem=problem, coord_trace=coord_trace)
        p = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return p

    in_memory = peak(True)
    streamed = peak(CoordTraceFile(tmp_path / "c.parquet", chunk_rows=2000))
    assert streamed < STREAMED_PEAK_FRACTION * in_memory, (streamed, in_memory)


def test_schemes_with_their_own_engines_write_the_file_too(tmp_path, lsq):
    spec = RunSpec(problem="least-squares", scheme="minibatch-sync", threads=2, epochs=1, step=0.02, dtype="float64",
                   seed=2, options={"batch_size": 4})
    mem = hwsim.simulate(spec, PINNED, problem=lsq)
    res = hwsim.simulate(spec, PINNED, problem=lsq, coord_trace=tmp_path / "s.parquet")
    f = pd.read_parquet(tmp_path / "s.parquet")
    pd.testing.assert_frame_equal(f, mem.coords, check_exact=True)  # minibatch-sync records no memory order
    co, od = res.coord_frames()
    assert od is None and co.equals(mem.coords)
    assert hwsim.trace_hash(res) == hwsim.trace_hash(mem)


@pytest.mark.parametrize("bad, match", [("trace.csv", r"\*\.parquet"), (3, "coord_trace = 3")])
def test_bad_coord_trace_values_are_named(tmp_path, lsq, bad, match):
    if isinstance(bad, str):
        bad = str(tmp_path / bad)
    with pytest.raises((TypeError, ValueError), match=match):
        hwsim.simulate(spec_of(), PINNED, problem=lsq, coord_trace=bad)
    with pytest.raises(ValueError, match="chunk_rows"):
        CoordTraceFile(tmp_path / "c.parquet", chunk_rows=0)


def test_cli_simulate_streams_the_coordinate_trace(tmp_path):
    from analysis.cli import main

    spec = tmp_path / "spec.toml"
    spec.write_text("""
[run]
problem = "svm"
scheme = "hogwild"
threads = 2
epochs = 1
step = 0.1

[run.data]
source = "synthetic-classification"
params = { n_rows = 200, n_features = 50, nnz_mean = 5, seed = 0 }
""")
    out = tmp_path / "sim"
    assert main(["simulate", str(spec), "--coords", "--out", str(out), "-q"]) == 0
    assert (out / "coords.parquet").is_file() and not (out / "coords.partial.parquet").exists()
    from workload.build import build_problem

    run = RunSpec.from_toml(spec)
    mem = hwsim.simulate(run, Machine(cores=2), problem=build_problem(run))
    assert_file_is_the_trace(out / "coords.parquet", mem)
