"""The ``wildcheck`` command line.

Every subcommand reads a TOML spec (``RunSpec``: table ``[run]``; machines: table
``[machine]``; studies: ``[study]`` + ``[run]``) and/or flags, and writes its results into
a folder.  Bad input -- a missing file, a malformed spec, an unknown scheme, zero threads,
a negative step -- is reported as ONE line on stderr naming what, where and the fix, with
exit status 2; no traceback.  That translation happens in one place, :func:`main`.

Exit status: 0 success; 1 a study section failed or a rerun's simulated figure differs;
2 bad input; 3 a module the command needs is not available yet; 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import re
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any, Sequence

from . import sweep as _sw

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

log = logging.getLogger("wildcheck")


class CLIError(Exception):
    """Bad input found by the CLI itself; the message is the whole one-line diagnosis."""


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (what, and where to read more) and exit 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise CLIError(f"{message} (see `{self.prog} --help`)")


class _Fmt(argparse.RawDescriptionHelpFormatter):
    pass


def _stamp() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def _default_out(kind: str) -> Path:
    return Path("reports") / (_stamp() if kind == "report" else f"{kind}-{_stamp()}")


# ----------------------------------------------------------------------------------------
# Specs from files and flags
# ----------------------------------------------------------------------------------------
FLAG_FIELDS = {"scheme": "scheme", "threads": "threads", "epochs": "epochs", "step": "step",
               "schedule": "schedule", "order": "order", "dtype": "dtype", "seed": "seed",
               "write_mode": "write-mode", "problem": "problem"}


def _add_spec_args(p: argparse.ArgumentParser, *, positional: bool = True) -> None:
    if positional:
        p.add_argument("spec", nargs="?", help="TOML run spec (table [run]); without it the built-in RunSpec "
                                               "defaults on a small RCV1-shaped data set")
    g = p.add_argument_group("run spec overrides (applied on top of the spec file)")
    g.add_argument("--problem", help="svm, logistic, least-squares, matrix-completion, multiway-cut")
    g.add_argument("--scheme", help="serial, hogwild, hogwild-atomic, lock-global, lock-coord, round-robin, ...")
    g.add_argument("--threads", type=int, help="worker threads / simulated cores (>= 1)")
    g.add_argument("--epochs", type=int, help="passes over the data (>= 1)")
    g.add_argument("--step", type=float, help="initial step size γ_0 (> 0)")
    g.add_argument("--schedule", help="constant, backoff, inv-k")
    g.add_argument("--order", help="fixed-shuffle, epoch-shuffle, with-replacement")
    g.add_argument("--dtype", help="float64, float32, fixed")
    g.add_argument("--write-mode", dest="write_mode", help="atomic or rmw (hogwild's writes)")
    g.add_argument("--seed", type=int, help="root seed of every random stream (>= 0)")
    g.add_argument("--rows", type=int, help="rows of a synthetic data set (data.params.n_rows)")
    g.add_argument("--data", metavar="FILE", help="train on an svmlight/LIBSVM file instead (data.source = svmlight)")


def read_run_spec(path: str | Path) -> Any:
    """``RunSpec.from_toml`` whose every error names the file."""
    from workload.spec import RunSpec, SpecError

    try:
        return RunSpec.from_toml(Path(path))
    except SpecError as exc:
        if str(path) in str(exc):
            raise
        raise CLIError(f"{path} [run]: {exc}") from None


def load_run_spec(args) -> Any:
    """The run spec from ``args.spec`` (or defaults) with the flags applied, validated."""
    from workload.spec import DataSpec, RunSpec, SpecError

    path = getattr(args, "spec", None)
    spec = read_run_spec(path) if path else RunSpec(
        data=DataSpec(source="synthetic-classification", params={"n_rows": 10_000}))
    where = path or "built-in defaults"
    changes = {f: getattr(args, f) for f in FLAG_FIELDS if getattr(args, f, None) is not None}
    if getattr(args, "data", None):
        dpath = Path(args.data)
        if not dpath.is_file():
            raise FileNotFoundError(f"{dpath}: data file not found (given as --data); give an svmlight/LIBSVM file")
        changes["data"] = DataSpec(source="svmlight", path=str(dpath))
    if getattr(args, "rows", None) is not None:
        data = changes.get("data", spec.data)
        if args.rows < 1:
            raise SpecError("data.params.n_rows", args.rows, "must be an integer >= 1",
                            "give --rows a positive row count", where=f"{where} with --rows")
        changes["data"] = DataSpec(source=data.source, path=data.path, params={**dict(data.params),
                                                                               "n_rows": args.rows})
    if not changes:
        return spec
    try:
        return spec.replace(**changes)
    except SpecError as exc:
        flag = FLAG_FIELDS.get(exc.field)
        given = f" (given as --{flag})" if flag and exc.field in changes else ""
        raise CLIError(f"{where} with command-line flags: {exc}{given}") from None


def load_machine(path: str | Path) -> Any:
    """An ``hwsim.Machine`` from a TOML file (table ``[machine]``)."""
    from .study import need

    Machine = need("hwsim", "Machine")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: machine file not found; give a .toml with a [machine] table "
                                "(`wildcheck calibrate` writes one)")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise CLIError(f"{path}: not valid TOML ({exc}); fix the syntax at the position named") from None
    if "machine" not in doc:
        raise CLIError(f"{path}: no [machine] table; put the machine's fields under [machine]")
    try:
        return Machine.from_dict(doc["machine"])
    except (TypeError, ValueError) as exc:
        raise CLIError(f"{path} [machine]: {exc}") from None


def _write_json(path: Path, obj) -> None:
    from workload.trace import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(obj, indent=1, default=str) + "\n").encode())


def _out(args, kind: str) -> Path:
    out = Path(args.out) if getattr(args, "out", None) else _default_out(kind)
    if out.exists() and not out.is_dir():
        raise CLIError(f"{out}: exists and is not a folder (given as --out); name a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _progress(args):
    return False if getattr(args, "quiet", False) or getattr(args, "no_progress", False) else None


def _say(args, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(text)


# ----------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------
def _terms_of(source: str, args) -> Any:
    """Terms from a data file or a run spec."""
    from .study import need

    p = Path(source)
    if p.suffix == ".toml":
        from workload.build import build_problem
        from workload.spec import RunSpec

        need("workload.data", "load_data")
        return build_problem(read_run_spec(p)).terms
    if not p.is_file():
        raise FileNotFoundError(f"{p}: data file not found; give an svmlight/LIBSVM file (.gz/.bz2 ok) or a "
                                "run spec .toml")
    if p.name.endswith(".npz"):
        import numpy as np
        from workload.problems import Terms

        z = np.load(p)
        return Terms(z["indptr"], z["indices"], z["values"], z["y"], int(z["n"]))
    load = need("workload.data", "load_svmlight")
    kw = {"n_features": args.features} if getattr(args, "features", None) else {}
    return load(p, **kw)


def _write_terms(terms, out: Path) -> None:
    import io

    import numpy as np
    from workload.trace import atomic_write_bytes

    name = out.name
    buf = io.BytesIO()
    if name.endswith(".npz"):
        np.savez_compressed(buf, indptr=terms.indptr, indices=terms.indices, values=terms.values, y=terms.y,
                            n=np.int64(terms.n))
        atomic_write_bytes(out, buf.getvalue())
        return
    if not any(name.endswith(s) for s in (".svm", ".svm.gz", ".libsvm", ".libsvm.gz", ".txt", ".txt.gz")):
        raise CLIError(f"{out}: unknown output format; name it *.svm, *.svm.gz, *.libsvm(.gz), *.txt(.gz) "
                       "(svmlight) or *.npz (CSR arrays)")
    from sklearn.datasets import dump_svmlight_file

    dump_svmlight_file(terms.matrix(), terms.y, buf, zero_based=False)
    data = buf.getvalue()
    if name.endswith(".gz"):
        import gzip

        data = gzip.compress(data, mtime=0)
    atomic_write_bytes(out, data)


def cmd_data(args) -> int:
    if args.data_cmd == "generate":
        from .study import need

        if args.spec:
            terms = _terms_of(args.spec, args)
        else:
            gen = need("workload.data", "synthetic_classification")
            if args.rows < 1 or args.features < 1 or args.nnz_mean <= 0:
                raise CLIError(f"--rows {args.rows}, --features {args.features}, --nnz-mean {args.nnz_mean}: "
                               "all must be positive; give positive sizes")
            kw = dict(n_features=args.features, nnz_mean=args.nnz_mean, seed=args.seed)
            if args.skew is not None:
                kw["skew"] = args.skew
            terms = gen(args.rows, **kw)
        _write_terms(terms, Path(args.out))
        _say(args, f"wrote {terms.N} rows x {terms.n} features ({terms.nnz} nonzeros) to {args.out}")
        return EXIT_OK
    if args.data_cmd == "convert":
        terms = _terms_of(args.input, args)
        _write_terms(terms, Path(args.output))
        _say(args, f"wrote {terms.N} rows x {terms.n} features to {args.output}")
        return EXIT_OK
    if args.data_cmd == "stats":
        from .study import sparsity_row

        terms = _terms_of(args.input, args)
        row = sparsity_row(Path(args.input).name, terms)
        if args.out:
            _write_json(Path(args.out), row)
        width = max(len(k) for k in row)
        for k, v in row.items():
            _say(args, f"{k:<{width}}  {v}")
        return EXIT_OK
    raise CLIError("data: give a subcommand: generate, convert or stats (see `wildcheck data --help`)")


# ----------------------------------------------------------------------------------------
# simulate / run
# ----------------------------------------------------------------------------------------
def _build(spec):
    from workload.build import build_problem

    from .study import need

    if spec.data.source.startswith("synthetic") or spec.data.source in ("svmlight", "matrix-market", "ratings"):
        need("workload.data", "load_data")
    if spec.data.path and not Path(spec.data.path).is_file():
        raise FileNotFoundError(f"{spec.data.path}: data file not found (run spec data.path); fix the path")
    return build_problem(spec)


def cmd_simulate(args) -> int:
    from workload.trace import write_table

    from .environment import sha256_arrays
    from .study import need

    spec = load_run_spec(args)
    simulate = need("hwsim", "simulate")
    if args.coords and spec.scheme in need("hwsim", "NO_COORD_TRACE"):
        raise CLIError(f"--coords: scheme {spec.scheme!r} records no coordinate-level trace (its nodes exchange "
                       "whole models; samples.parquet and history.parquet are written); drop --coords")
    machine = load_machine(args.machine) if args.machine else None
    if machine is None:
        Machine = need("hwsim", "Machine")
        machine = Machine(cores=spec.threads)
    elif machine.quantum is None and machine.cores < spec.threads:
        # a calibrated machine is a 1-core template (analysis.calibrate): one core per thread
        machine = machine.replace(cores=spec.threads)
    out = _out(args, "simulate")
    problem = _build(spec)
    # the coordinate trace streams to coords.parquet in chunks (hwsim.coordtrace: atomic; an
    # interrupted run leaves coords.partial.parquet and says so)
    res = simulate(spec, machine, problem=problem, engine=args.engine,
                   coord_trace=(out / "coords.parquet") if args.coords else False)
    write_table(res.samples, out / "samples.parquet")
    write_table(res.history, out / "history.parquet")
    (out / "spec.toml").write_text(spec.to_toml())
    import tomli_w

    from .study import _toml_safe

    (out / "machine.toml").write_text(tomli_w.dumps({"machine": _toml_safe(machine.to_dict())}))
    summary = {"engine": args.engine, "ticks": int(res.ticks), "simulated_seconds": res.ticks * 1e-9,
               "samples": int(len(res.samples)), "lost_updates": int(res.lost_updates),
               "samples_per_s": len(res.samples) / (res.ticks * 1e-9) if res.ticks else None,
               "final_objective": float(res.history["objective"].iloc[-1]),
               "model_sha256": sha256_arrays(res.x)}
    _write_json(out / "result.json", summary)
    _say(args, f"simulated {summary['samples']} samples in {summary['simulated_seconds']:.4g} simulated s; "
               f"objective {summary['final_objective']:.6g}; results in {out}")
    return EXIT_OK


def cmd_run(args) -> int:
    from tqdm.auto import tqdm
    from workload.trace import write_table

    from .environment import collect, sha256_arrays
    from .study import need

    spec = load_run_spec(args)
    if args.repeats < 1:
        raise CLIError(f"--repeats {args.repeats}: must be >= 1; give a positive count")
    run = need("realrun", "run")
    out = _out(args, "run")
    problem = _build(spec)
    (out / "spec.toml").write_text(spec.to_toml())
    rows = []
    progress = _progress(args)
    for rep in tqdm(range(args.repeats), desc="realrun", disable=None if progress is None else not progress,
                    file=sys.stderr, leave=False):
        res = run(spec, problem=problem, instrument=not args.no_instrument, pin=not args.no_pin)
        sub = out if args.repeats == 1 else out / f"repeat-{rep}"
        write_table(res.samples, sub / "samples.parquet")
        write_table(res.history, sub / "history.parquet")
        rows.append({"repeat": rep, "samples_per_s": float(res.samples_per_s),
                     "epoch_seconds": [float(s) for s in res.epoch_seconds], "jit_seconds": float(res.jit_seconds),
                     "lost_updates": None if res.lost_updates is None else int(res.lost_updates),
                     "threads": int(res.threads), "cores": [list(c) if isinstance(c, (tuple, list)) else c for c in res.cores],
                     "interrupted": bool(res.interrupted), "relabel": bool((res.info or {}).get("relabel", False)),
                     "sort_rows": bool((res.info or {}).get("sort_rows", False)),
                     "final_objective": float(res.history["objective"].iloc[-1]),
                     "model_sha256": sha256_arrays(res.x)})
        if res.interrupted:
            break
    _write_json(out / "result.json", {"runs": rows})
    _write_json(out / "environment.json", collect(seeds={"run.seed": spec.seed}, with_numba=False))
    for r in rows:
        _say(args, f"repeat {r['repeat']}: {r['samples_per_s']:.4g} samples/s on {r['threads']} threads; "
                   f"objective {r['final_objective']:.6g}")
    _say(args, f"results in {out}")
    return EXIT_INTERRUPTED if rows and rows[-1]["interrupted"] else EXIT_OK


# ----------------------------------------------------------------------------------------
# calibrate / compare / check
# ----------------------------------------------------------------------------------------
def _read_run_dir(folder: str | Path):
    """(spec, samples, history) of a folder written by ``wildcheck run``."""
    from workload.spec import RunSpec
    from workload.trace import SAMPLE_SCHEMA, read_table

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such run folder; give a folder written by `wildcheck run`")
    sub = folder if (folder / "samples.parquet").is_file() else folder / "repeat-0"
    if not (sub / "samples.parquet").is_file():
        raise FileNotFoundError(f"{folder}: no samples.parquet; give a folder written by `wildcheck run`")
    spec = read_run_spec(folder / "spec.toml")
    return spec, read_table(sub / "samples.parquet", SAMPLE_SCHEMA), read_table(sub / "history.parquet")


def cmd_calibrate(args) -> int:
    from workload.trace import write_table

    from .study import need

    calibrate = need("analysis.calibrate", "calibrate")
    need("hwsim", "Machine")
    spec, samples, _ = _read_run_dir(args.run_dir)
    if spec.threads != 1:
        log.warning("calibrating on a %d-thread run; a prediction for %d threads will be in-sample",
                    spec.threads, spec.threads)
    problem = _build(spec)
    if args.probes < 1:
        raise CLIError(f"--probes {args.probes}: must be >= 1 (the coherence probes to take and pool); e.g. --probes 3")
    pingpong, overlap, probes = None, None, []
    if not args.no_pingpong:
        if args.coherence == "split":
            from .calibrate import coherence_drift, pooled_probes, probe_coherence, probe_table

            try:
                probes = [probe_coherence(f"calibrate probe {i}") for i in range(args.probes)]
            except (RuntimeError, ValueError, OSError) as exc:
                log.warning("calibrate: the coherence probes failed (%s); one ping-pong instead", exc)
        if probes:
            pingpong, overlap = pooled_probes(probes)
            drift = coherence_drift(probe_table(probes))
            for r in drift.itertuples():
                if r.verdict == "violated":
                    log.warning("calibrate: %s varied by %.0f%% over %d probes (more than %.0f%%): the machine did "
                                "not hold still; its median is used", r.figure, 100 * r.observed, r.probes,
                                100 * r.bound)
        else:
            pingpong = need("realrun", "pingpong")()
    res = json.loads((Path(args.run_dir) / "result.json").read_text())
    run0 = res["runs"][0]
    relabel = run0.get("relabel", dict(spec.options).get("relabel", spec.problem in ("svm", "logistic",
                                                                                     "least-squares")))
    kw = dict(problem=problem, spec=spec, epoch_seconds=run0["epoch_seconds"],
              layout="by-degree" if relabel else "as-given")
    # what a locked store and a lock take: 1-thread runs of hogwild-atomic / lock-coord against this (plain) run
    from .calibrate import atomic_write_ns, fit, lock_ns

    for flag, folder, estimate, field, scheme in (("--atomic-run", args.atomic_run, atomic_write_ns, "atomic_write",
                                                   "hogwild-atomic"),
                                                  ("--lock-run", args.lock_run, lock_ns, "lock", "lock-coord")):
        if not folder:
            continue
        xspec, xsamples, _ = _read_run_dir(folder)
        if "fitted" not in kw:  # the run's fit, once, for the calibration and the runs held against it
            kw["fitted"] = fit(samples, problem=problem, epoch_seconds=run0["epoch_seconds"])
        try:
            ns, src = estimate(xsamples, kw["fitted"], spec=xspec,
                               problem=problem if xspec.data == spec.data else _build(xspec))
        except ValueError as exc:
            raise CLIError(f"{flag} {folder}: {exc} (wildcheck run SPEC --scheme {scheme} --threads 1)") from None
        kw.update({f"{field}_cost": ns, f"{field}_source": f"{src}: {folder}"})
    if pingpong is not None and args.coherence == "split":
        from .calibrate import calibrate_split

        cal, how = calibrate_split(samples, pingpong=pingpong, overlap=overlap, hidden=args.hidden == "on",
                                   write_misses=args.write_misses, **kw)
        (log.info if cal.machine.atomic_coherence_cost is not None else log.warning)("calibrate: %s", how)
    else:
        cal = calibrate(samples, pingpong=pingpong, **kw)
    dest = Path(args.out)
    cal.save(dest)
    if probes:
        write_table(probe_table(probes), dest.with_name(dest.stem + ".probes.parquet"))
    if cal.table is not None and len(cal.table):
        write_table(cal.table, dest.with_name(dest.stem + ".fit.parquet"))
        if not args.quiet:
            cols = [c for c in ("item", "model", "value", "unit", "ks", "chosen") if c in cal.table.columns]
            print(cal.table[cols].to_string(index=False))
    _say(args, f"calibrated machine written to {dest}")
    return EXIT_OK


def _load_calibration(path: str | Path):
    """A calibrated machine (with its provenance) from a TOML file with a [machine] table."""
    from .study import need

    load = need("analysis.calibrate", "load_calibration")
    load_machine(path)  # one-line errors for a missing or malformed file
    return load(path)


def cmd_compare(args) -> int:
    import pandas as pd
    from workload.trace import write_table

    from .study import _tau_hist, need

    predict_detail = need("analysis.predict", "predict_detail")
    compare = need("analysis.compare", "compare")
    cal = _load_calibration(args.machine)
    out = _out(args, "compare")
    runs, hist, taus = [], [], []
    base_spec = None
    for d in args.run_dirs:
        spec, samples, history = _read_run_dir(d)
        if base_spec is not None and (spec.replace(threads=1) != base_spec.replace(threads=1)):
            raise CLIError(f"{d}: its spec differs from {args.run_dirs[0]}'s in more than the thread count; "
                           "compare runs of one spec")
        base_spec = base_spec or spec
        res = json.loads((Path(d) / "result.json").read_text())
        for r in res["runs"]:
            runs.append({"workload": "cli", "scheme": spec.scheme, "threads": spec.threads, "repeat": r["repeat"],
                         "samples_per_s": r["samples_per_s"], "final_objective": r["final_objective"]})
        hist.append(history.assign(workload="cli", scheme=spec.scheme, threads=spec.threads))
        taus.append(_tau_hist(samples).assign(workload="cli", scheme=spec.scheme, threads=spec.threads))
    problem = _build(base_spec)
    cores = _int_list(args.cores, "--cores") if args.cores else sorted({r["threads"] for r in runs})
    pred = predict_detail(base_spec, cal, cores=cores, problem=problem, max_samples=None)
    label = dict(workload="cli", scheme=base_spec.scheme)
    cmp = compare(pd.DataFrame(runs), pred.summary.assign(**label),
                  measured_history=pd.concat(hist, ignore_index=True),
                  predicted_history=pred.history.assign(**label),
                  measured_tau=pd.concat(taus, ignore_index=True), predicted_tau=pred.tau.assign(**label))
    write_table(pred.summary, out / "prediction.parquet")
    write_table(pd.DataFrame(cmp), out / "comparison.parquet")
    cols = [c for c in ("threads", "figure", "measured", "predicted", "observed", "bound", "verdict")
            if c in cmp.columns]
    _say(args, pd.DataFrame(cmp)[cols].to_string(index=False))
    _say(args, f"results in {out}")
    return EXIT_OK


def cmd_check(args) -> int:
    import pandas as pd
    from workload.trace import write_table

    from .study import need, sparsity_row

    check_all = need("analysis.theory", "check_all")
    theory_inputs = need("analysis.theory", "theory_inputs")
    spec = load_run_spec(args)
    if not (args.epsilon > 0):
        raise CLIError(f"--epsilon {args.epsilon}: must be > 0; give the target accuracy, e.g. --epsilon 0.01")
    out = _out(args, "check")
    problem = _build(spec)
    samples = history = None
    if args.machine:
        simulate = need("hwsim", "simulate")
        cal = _load_calibration(args.machine)
        res = simulate(spec, cal.machine.replace(cores=max(cal.machine.cores, spec.threads)), problem=problem,
                       coord_trace=False)
        samples, history = res.samples, res.history
    row = sparsity_row("check", problem.terms, seed=spec.seed)
    inputs = theory_inputs(problem, samples=samples, stats=row, seed=spec.seed)
    df = pd.DataFrame(check_all(inputs, epsilon=args.epsilon, history=history, step=float(spec.step)))
    write_table(df, out / "theory.parquet")
    cols = [c for c in ("theorem", "check", "observed", "bound", "verdict") if c in df.columns]
    _say(args, df[cols].to_string(index=False))
    _say(args, f"results in {out}")
    return EXIT_OK


# ----------------------------------------------------------------------------------------
# report / rerun
# ----------------------------------------------------------------------------------------
def _int_list(text: str, flag: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CLIError(f"{flag} {text!r}: not a comma-separated list of integers; write e.g. {flag} 1,2") from None
    if not out or min(out) < 1:
        raise CLIError(f"{flag} {text!r}: every entry must be an integer >= 1; write e.g. {flag} 1,2")
    return out


def _study_from_args(args):
    from .study import StudySpec, default_study

    if args.spec:
        spec = StudySpec.from_toml(Path(args.spec))
        changes = {}
        if args.threads:
            changes["threads"] = tuple(_int_list(args.threads, "--threads"))
        if args.repeats is not None:
            changes["repeats"] = args.repeats
        if args.budget is not None:
            changes["budget_s"] = float(args.budget)
        if args.no_a8a:
            changes["dense"] = None
        ignored = [f for f, v in (("--rows", args.rows), ("--a8a", args.a8a)) if v is not None]
        if ignored:
            raise CLIError(f"{', '.join(ignored)} with --spec: the spec file fixes the data; edit [run.data] / "
                           "[dense.run.data] in it instead")
        return _study_extras(args, spec.replace(**changes) if changes else spec)
    if args.a8a and not Path(args.a8a).is_file():
        raise FileNotFoundError(f"{args.a8a}: a8a data file not found (given as --a8a); give the path of a8a(.gz) "
                                "or leave --a8a out")
    spec = default_study(rows=args.rows, a8a=args.a8a, budget_s=600.0 if args.budget is None else args.budget,
                         seed=args.seed, repeats=3 if args.repeats is None else args.repeats,
                         threads=_int_list(args.threads, "--threads") if args.threads else None,
                         epochs=args.epochs)
    if args.no_a8a:
        spec = spec.replace(dense=None)
    return _study_extras(args, spec)


def _study_extras(args, spec):
    """``--buckwild`` and ``--sweep`` on top of a study spec; the sweep (from the flag or the
    spec) must name a sweep folder or a valid grid now, not after the real runs."""
    if args.buckwild:
        spec = spec.replace(buckwild=True)
    if args.sweep is not None:
        _sw.sweep_source(args.sweep)  # FileNotFoundError / GridError naming the path: exit 2
        spec = spec.replace(sweep=str(Path(args.sweep).resolve()))
    elif spec.sweep is not None:
        _sw.sweep_source(spec.sweep)
    return spec


def cmd_report(args) -> int:
    from .study import StudyInterrupted, run_study

    if args.render:
        from .report import render_report

        path = render_report(Path(args.render))
        _say(args, f"rendered {path}")
        return EXIT_OK
    spec = _study_from_args(args)
    if args.print_spec:
        sys.stdout.write(spec.to_toml())
        return EXIT_OK
    out = _out(args, "report")
    try:
        outcome = run_study(spec, out, progress=_progress(args))
    except StudyInterrupted as exc:
        print(f"wildcheck report: interrupted; kept what finished in {exc.outcome.out}/index.html", file=sys.stderr)
        return EXIT_INTERRUPTED
    return _study_summary(args, outcome)


def _study_summary(args, outcome) -> int:
    for s in outcome.sections:
        line = f"  {s.name:<10} {s.status:<14} {s.seconds:7.1f} s" + (f"  {s.reason}" if s.reason else "")
        _say(args, line)
    _say(args, f"report ({outcome.state}, {outcome.wall_seconds:.0f} s): {outcome.out / 'index.html'}")
    return EXIT_FAIL if outcome.failed else EXIT_OK


def cmd_rerun(args) -> int:
    from workload.trace import write_table

    from .report import render_report
    from .study import StudyInterrupted, compare_reports, load_manifest, rerun_spec, run_study

    orig = Path(args.report_dir)
    load_manifest(orig)
    spec = rerun_spec(orig)
    if args.budget is not None:
        spec = spec.replace(budget_s=float(args.budget))
    out = Path(args.out) if args.out else orig.parent / f"{orig.name}-rerun-{_stamp()}"
    out.mkdir(parents=True, exist_ok=True)
    try:
        outcome = run_study(spec, out, progress=_progress(args), rerun_of=str(orig))
    except StudyInterrupted as exc:
        print(f"wildcheck rerun: interrupted; kept what finished in {exc.outcome.out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    cmp = compare_reports(orig, out)
    write_table(cmp, out / "data" / "rerun_comparison.parquet")
    render_report(out)
    _study_summary(args, outcome)
    sim = cmp[cmp["kind"].isin(["simulated", "computed"])]
    bad = sim[sim["verdict"] != "identical"]
    meas = cmp[cmp["kind"] == "measured"]
    _say(args, f"simulated/computed figures: {len(sim) - len(bad)} of {len(sim)} identical; measured: "
               f"{int(meas['verdict'].isin(['within spread', 'identical']).sum())} of {len(meas)} within the original's "
               "spread (or identical where every original repeat was)")
    if len(bad):
        for _, r in bad.iterrows():
            print(f"wildcheck rerun: {r['figure']} {r['verdict']} (original {r['original']}, rerun {r['rerun']})",
                  file=sys.stderr)
        return EXIT_FAIL
    return EXIT_FAIL if outcome.failed else EXIT_OK


# ----------------------------------------------------------------------------------------
# The parser
# ----------------------------------------------------------------------------------------
def _sub(subs, name: str, help_: str, description: str, example: str):
    return subs.add_parser(name, help=help_, formatter_class=_Fmt,
                           description=textwrap.dedent(description).strip() + "\n\nexample:\n  " + example)


# ----------------------------------------------------------------------------------------
# wildcheck sweep (the library is analysis.sweep)
# ----------------------------------------------------------------------------------------
SWEEP_DESCRIPTION = """\
Run a parameter sweep: every point of a grid TOML ([run] base spec, [machine] base machine,
[grid] axes and/or [[points]]) simulated with hwsim -- on a local process pool sized to the
cores, or on a Dask cluster with --scheduler -- and real points (kind = "real") with realrun,
one at a time, afterwards. Results are committed as points finish (OUT/points/), failures
are recorded (OUT/failures/) and the sweep goes on; run the same command again to resume
(only missing points run). Writes OUT/results.parquet, history.parquet, summary.parquet.
Exit status 1 when a point failed.
"""


def _sweep_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("grid", help="sweep grid TOML (see examples/sweep_small.toml)")
    p.add_argument("--out", help="output folder (default reports/sweep-<grid name>; an existing one is resumed)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="Dask scheduler address (tcp://host:8786): run the simulations on that cluster")
    p.add_argument("--workers", type=int, help="local pool size (default: usable cores; 1 = in this process)")
    p.add_argument("--retry-failed", action="store_true", help="run points that failed before again")
    p.add_argument("--flush-seconds", type=float, default=_sw.DEFAULT_FLUSH_SECONDS,
                   help="commit finished points at least this often (default %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="check the grid and list its points; run nothing")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_sweep_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``sweep`` subcommand to an ``argparse`` subparsers object (dispatches to
    :func:`cmd_sweep` through ``set_defaults(func=...)``)."""
    p = subparsers.add_parser("sweep", help="run a parameter sweep (local pool or Dask cluster)",
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              description=SWEEP_DESCRIPTION + "\nexample:\n  wildcheck sweep examples/sweep_small.toml "
                                                        "--out reports/sweep-small")
    _sweep_arguments(p)
    p.set_defaults(func=cmd_sweep)
    return p


def cmd_sweep(args) -> int:
    """Run ``wildcheck sweep`` with parsed ``args``; the exit status (0 ok, 1 a point failed).

    Bad input raises :class:`GridError` (a ``SpecError``) or ``FileNotFoundError``; a
    missing ``distributed`` raises ``analysis.study.Unavailable``.
    """
    grid = _sw.load_grid(Path(args.grid))
    quiet = getattr(args, "quiet", False)
    if args.dry_run:
        plan = _sw.plan_frame(grid).drop(columns=["spec", "machine"])
        if not quiet:
            import pandas as pd

            with pd.option_context("display.max_rows", 200, "display.width", 160):
                print(plan.to_string(index=False))
            print(f"{len(plan)} points ({(plan['kind'] == 'real').sum()} real); nothing run (--dry-run)")
        return 0
    out = Path(args.out) if args.out else Path("reports") / f"sweep-{Path(args.grid).stem}"
    progress = False if quiet or getattr(args, "no_progress", False) else None
    if args.workers is not None and args.scheduler:
        raise _sw.GridError("command line", "--workers", "sizes the local pool, not a Dask cluster",
                        "leave out --workers with --scheduler (size the cluster instead)")
    if args.workers is not None and args.workers < 1:
        raise _sw.GridError("command line", "--workers", f"= {args.workers}: must be >= 1", "e.g. --workers 2")
    if not args.flush_seconds >= 0:
        raise _sw.GridError("command line", "--flush-seconds", f"= {args.flush_seconds}: must be >= 0", "e.g. 1.0")
    try:
        res = _sw.run_sweep(grid, out, scheduler=args.scheduler, workers=args.workers, progress=progress,
                        retry_failed=args.retry_failed, flush_seconds=args.flush_seconds)
    except _sw.SchedulerUnreachable as exc:
        print(f"wildcheck sweep: error: {exc}", file=sys.stderr)
        return 2
    n = len(res.results)
    if not quiet:
        print(f"sweep: {n} points: {int((res.results['status'] == 'done').sum())} done, {res.n_failed} failed "
              f"({res.computed} computed now, {res.reused} reused) in {res.seconds:.1f} s; results in "
              f"{out / 'results.parquet'}")
        if res.n_failed:
            print(f"sweep: failures in {out / 'failures'}; rerun with --retry-failed after fixing the cause")
    return 1 if res.n_failed else 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="wildcheck", formatter_class=_Fmt,
                description="Verify asynchronous lock-free SGD (Hogwild! and family) in simulation and on real "
                            "threads.\n\nexample:\n  wildcheck report            # the default study, "
                            "report in reports/<timestamp>/index.html")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress messages to stderr")
    subs = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)

    d = _sub(subs, "data", "generate, convert and describe data sets",
             "Generate a seeded RCV1-shaped data set, convert between svmlight and .npz, or print the sparsity "
             "statistics Ω, ρ, Δ, Δ̄_C of a data set.",
             "wildcheck data generate --rows 20000 --out rcv1-20k.svm.gz && wildcheck data stats rcv1-20k.svm.gz")
    ds = d.add_subparsers(dest="data_cmd", metavar="ACTION", parser_class=_Parser)
    g = _sub(ds, "generate", "write a seeded synthetic sparse classification set",
             "Write a synthetic sparse classification data set with Zipf-skewed feature frequencies "
             "(RCV1-shaped by default), or the data of a run spec.",
             "wildcheck data generate --rows 50000 --seed 1 --out rcv1.svm.gz")
    g.add_argument("--spec", help="generate the data this run spec describes instead of the flags below")
    g.add_argument("--rows", type=int, default=20_000, help="rows (terms; default %(default)s)")
    g.add_argument("--features", type=int, default=47_236, help="features (coordinates; default %(default)s)")
    g.add_argument("--nnz-mean", dest="nnz_mean", type=float, default=75, help="mean nonzeros per row (default %(default)s)")
    g.add_argument("--skew", type=float, default=None, help="Zipf exponent of feature frequencies (generator's "
                                                             "default when omitted)")
    g.add_argument("--seed", type=int, default=0, help="seed (default %(default)s)")
    g.add_argument("--out", required=True, help="output file: *.svm, *.svm.gz (svmlight) or *.npz")
    g.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    c = _sub(ds, "convert", "convert a data set between svmlight and .npz",
             "Read an svmlight/LIBSVM file (.gz/.bz2 fine) or .npz and write it as svmlight (.svm[.gz]) or .npz.",
             "wildcheck data convert ../shared/data/a8a.gz a8a.npz --features 123")
    c.add_argument("input")
    c.add_argument("output")
    c.add_argument("--features", type=int, help="number of features (when the file does not mention the last)")
    c.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    s = _sub(ds, "stats", "sparsity statistics Ω, ρ, Δ, Δ̄_C of a data set",
             "Print n, N, nnz and the sparsity statistics of Niu et al. 2011 (Ω, ρ, Δ) and Mania et al. 2015 "
             "(Δ̄_C) for a data file or a run spec's data.",
             "wildcheck data stats ../shared/data/a8a.gz --features 123")
    s.add_argument("input", help="svmlight file, .npz, or a run spec .toml")
    s.add_argument("--features", type=int, help="number of features")
    s.add_argument("--out", help="also write the statistics as JSON to this file")
    s.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    d.set_defaults(func=cmd_data)

    sim = _sub(subs, "simulate", "simulate a run on hwsim's machine model",
               "Simulate the run a spec describes on a simulated machine (a [machine] TOML, e.g. one written by "
               "`wildcheck calibrate`; default: hwsim.Machine defaults with --threads cores). Writes the sample "
               "trace, history, optional coordinate trace, result.json, spec.toml and machine.toml.",
               "wildcheck simulate spec.toml --machine machine.toml --threads 4 --out sim4")
    _add_spec_args(sim)
    sim.add_argument("--machine", help="hwsim machine TOML (table [machine])")
    sim.add_argument("--engine", default="fast", choices=("fast", "reference"), help="hwsim engine (default %(default)s)")
    sim.add_argument("--coords", action="store_true",
                     help="also record the coordinate-level trace, streamed in chunks to coords.parquet (with the "
                          "memory-order columns read_op, wread_op, write_op)")
    sim.add_argument("--out", help="output folder (default reports/simulate-<timestamp>)")
    sim.add_argument("-q", "--quiet", action="store_true")
    sim.set_defaults(func=cmd_simulate)

    run = _sub(subs, "run", "run on real threads (realrun) and measure",
               "Run the spec on real cores with realrun: Numba nogil kernels on threads over one shared model. "
               "JIT compilation is warmed outside the timed region and reported separately. Writes samples, "
               "history, result.json (samples/s, epoch seconds, lost updates), spec.toml, environment.json.",
               "wildcheck run spec.toml --scheme hogwild --threads 2 --repeats 3 --out run2")
    _add_spec_args(run)
    run.add_argument("--repeats", type=int, default=1, help="repeat the run to measure the run-to-run spread (default %(default)s)")
    run.add_argument("--no-pin", action="store_true", help="do not pin threads to cores")
    run.add_argument("--no-instrument", action="store_true", help="skip the τ counters (slightly faster)")
    run.add_argument("--out", help="output folder (default reports/run-<timestamp>)")
    run.add_argument("-q", "--quiet", action="store_true")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_run)

    cal = _sub(subs, "calibrate", "fit hwsim's machine to a real run",
               "Fit the simulated machine (delay model, per-coordinate read/write costs, coherence costs from "
               "ping-pong microbenchmarks: --coherence) to a folder written by `wildcheck run` -- ideally a "
               "1-thread run, so predictions for more threads stay out of sample. Writes the machine as TOML.",
               "wildcheck run spec.toml --threads 1 --out run1 && wildcheck calibrate run1 --out machine.toml")
    cal.add_argument("run_dir", help="folder written by `wildcheck run`")
    cal.add_argument("--out", default="machine.toml", help="machine TOML to write (default %(default)s)")
    cal.add_argument("--no-pingpong", action="store_true", help="skip the cache-line ping-pong microbenchmark")
    cal.add_argument("--coherence", choices=("split", "pingpong"), default="split",
                     help="split (default): reads and plain stores at the k-lines ping-pong's per-line cost with a "
                          "sample's misses in flight, atomic-instruction stores at the ping-pong's lone transfer; "
                          "pingpong: the lone transfer for every access")
    cal.add_argument("--hidden", choices=("on", "off"), default="on",
                     help="with --coherence split: on (default): a sample hides coherence misses under its 1-thread "
                          "memory stall (the run's mean cycle minus the kernel on cache-resident rows: "
                          "Machine.miss_overlap); off: every miss is charged")
    cal.add_argument("--atomic-run", default=None, metavar="RUN_DIR",
                     help="a 1-thread hogwild-atomic run (wildcheck run ... --scheme hogwild-atomic --threads 1): its "
                          "mean cycle beyond RUN_DIR's sets Machine.atomic_write_cost, what a locked store takes")
    cal.add_argument("--lock-run", default=None, metavar="RUN_DIR",
                     help="a 1-thread lock-coord run (wildcheck run ... --scheme lock-coord --threads 1): its mean "
                          "cycle beyond RUN_DIR's, per coordinate, sets Machine.lock_cost, what one lock costs")
    cal.add_argument("--write-misses", choices=("off-path", "charged"), default="off-path",
                     help="with --coherence split: off-path (default): a plain store's miss costs the core nothing "
                          "(nothing later waits for a plain store, nor for an rmw write's load: "
                          "Machine.store_coherence_cost = 0); charged: it costs what a read's does")
    cal.add_argument("--probes", type=int, default=3,
                     help="with --coherence split: take both ping-pongs this many times and calibrate on their "
                          "medians; a spread above analysis.calibrate.COHERENCE_DRIFT_MAX is warned about, and the "
                          "probes are written next to the machine as MACHINE.probes.parquet (default %(default)s)")
    cal.add_argument("-q", "--quiet", action="store_true")
    cal.set_defaults(func=cmd_calibrate)

    cmp = _sub(subs, "compare", "measured vs predicted speedup and convergence",
               "Predict the measured runs' thread counts (or --cores) with a calibrated machine and compare: "
               "speedup, τ distribution, lost updates, convergence, each with a verdict against a named "
               "threshold.",
               "wildcheck compare run1 run2 --machine machine.toml --out cmp")
    cmp.add_argument("run_dirs", nargs="+", help="folders written by `wildcheck run`")
    cmp.add_argument("--machine", required=True, help="calibrated machine TOML")
    cmp.add_argument("--cores", help="comma-separated core counts to predict (default: the measured ones)")
    cmp.add_argument("--out", help="output folder (default reports/compare-<timestamp>)")
    cmp.add_argument("-q", "--quiet", action="store_true")
    cmp.set_defaults(func=cmd_compare)

    chk = _sub(subs, "check", "check the theorems' assumptions and bounds on a run",
               "Evaluate Niu et al. 2011 (Prop. 4.1) and Mania et al. 2015 (Thm. 3.4) on the spec's problem: "
               "the prescribed step and iteration count, the τ conditions, each with a verdict (holds / "
               "violated by how much / not applicable and why). With --machine, τ and convergence come from "
               "an hwsim run.",
               "wildcheck check spec.toml --machine machine.toml --epsilon 1e-3")
    _add_spec_args(chk)
    chk.add_argument("--machine", help="simulate on this machine to observe τ and convergence")
    chk.add_argument("--epsilon", type=float, default=1e-2, help="target accuracy ε (default %(default)s)")
    chk.add_argument("--out", help="output folder (default reports/check-<timestamp>)")
    chk.add_argument("-q", "--quiet", action="store_true")
    chk.set_defaults(func=cmd_check)

    rep = _sub(subs, "report", "run the whole study and write a reproducibility report",
               "Without arguments: the embedded default study, sized for this machine -- the RCV1-shaped "
               "workload, real runs at 1..cores threads for serial, hogwild, hogwild-atomic, lock-coord and "
               "round-robin (each repeated to measure the run-to-run spread), calibration, prediction to 64 "
               "cores, the theory checks, and a8a as the dense-conflict case -- within a 10-minute budget. "
               "Writes index.html (self-contained), report.md, data/*.parquet, spec.toml, environment.json, "
               "manifest.json.",
               "wildcheck report --out reports/today && wildcheck rerun reports/today")
    rep.add_argument("--spec", help="study TOML ([study], [run], [dense.run]; e.g. a report's spec.toml)")
    rep.add_argument("--out", help="output folder (default reports/<timestamp>)")
    rep.add_argument("--rows", type=int, help="rows of the RCV1-shaped workload (default: sized for the budget)")
    rep.add_argument("--threads", help="comma-separated thread counts (default 1..usable cores)")
    rep.add_argument("--repeats", type=int, help="repeats of each real run (default 3)")
    rep.add_argument("--epochs", type=int, default=3, help="epochs per run (default %(default)s)")
    rep.add_argument("--budget", type=float, help="time budget in seconds (default 600)")
    rep.add_argument("--seed", type=int, default=0, help="root seed (default %(default)s)")
    rep.add_argument("--a8a", help="path of a8a(.gz) (default ../shared/data/a8a.gz next to the repository)")
    rep.add_argument("--no-a8a", action="store_true", help="leave out the dense-conflict case")
    rep.add_argument("--buckwild", action="store_true",
                     help="add the Buckwild! section: int16 / int8 against float64 (about 30 s more)")
    rep.add_argument("--sweep", metavar="DIR_OR_GRID",
                     help="add a sweep section: summarise a sweep folder, or run a (small) grid .toml and summarise it")
    rep.add_argument("--print-spec", action="store_true", help="print the study spec as TOML and exit")
    rep.add_argument("--render", metavar="REPORT_DIR", help="only re-render index.html/report.md of a report folder")
    rep.add_argument("-q", "--quiet", action="store_true")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar")
    rep.set_defaults(func=cmd_report)

    rr = _sub(subs, "rerun", "regenerate a report from its spec and compare",
              "Run a report's saved spec again (with its calibrated machine pinned) into a new folder and compare: "
              "simulated figures must be identical bit for bit; measured ones must fall within the run-to-run "
              "spread the original measured. Exits 1 if a simulated figure differs.",
              "wildcheck rerun reports/20250101-120000")
    rr.add_argument("report_dir", help="a folder written by `wildcheck report`")
    rr.add_argument("--out", help="output folder (default REPORT_DIR-rerun-<timestamp>)")
    rr.add_argument("--budget", type=float, help="override the time budget in seconds")
    rr.add_argument("-q", "--quiet", action="store_true")
    rr.add_argument("--no-progress", action="store_true", help="no progress bar")
    rr.set_defaults(func=cmd_rerun)
    add_sweep_parser(subs)
    return p


def _bad_input_types() -> tuple[type[BaseException], ...]:
    from workload.spec import SpecError
    from workload.trace import TraceError

    types: list[type[BaseException]] = [CLIError, SpecError, TraceError, FileNotFoundError, NotADirectoryError,
                                        IsADirectoryError, PermissionError, tomllib.TOMLDecodeError]
    for module, names in (("workload.data", ("DataError",)), ("hwsim.machine", ("MachineError",)),
                          ("hwsim.delays", ("DelayError",))):
        try:
            mod = __import__(module, fromlist=list(names))
        except ImportError:
            continue
        types.extend(getattr(mod, n) for n in names if isinstance(getattr(mod, n, None), type))
    return tuple(types)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError) and exc.filename and exc.strerror:
        msg = f"{exc.filename}: {exc.strerror.lower()}; check the path"
    elif isinstance(exc, (PermissionError, IsADirectoryError, NotADirectoryError)) and exc.filename:
        msg = f"{exc.filename}: {exc.strerror}; give a path you can read/write"
    else:
        msg = str(exc) or type(exc).__name__
        # workload.spec names whole-document problems as fields ("x.toml.toml = None: not valid TOML")
        msg = re.sub(r"\.(toml|run) = None: ", ": ", msg)
    return " ".join(msg.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``wildcheck`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    prog = "wildcheck"
    try:
        args = parser.parse_args(argv)
        if args.cmd is None:
            parser.print_help()
            return EXIT_USAGE
        prog = f"wildcheck {args.cmd}"
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="wildcheck: %(levelname)s: %(message)s")
        return int(args.func(args) or 0)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        from .study import Unavailable

        if isinstance(exc, Unavailable):
            print(f"{prog}: not available: {_one_line(exc)} (this part of wildcheck is not built yet)",
                  file=sys.stderr)
            return EXIT_UNAVAILABLE
        if isinstance(exc, _bad_input_types()):
            print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_USAGE
        raise


if __name__ == "__main__":
    sys.exit(main())
