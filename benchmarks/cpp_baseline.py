"""The side-by-side C++ baseline: build, feed and run ``benchmarks/cpp/hogwild_svm.cc``.

``hogwild_svm.cc`` reproduces the algorithm and data layout of the original C++ Hogwild!
SVM (Niu, Recht, Ré, Wright 2011, the Hogwild! code's SVM; its header lists what is kept),
so that realrun's ``hogwild`` can be timed against it on the same host, in the same
benchmark loop, instead of against figures measured elsewhere::

    from cpp_baseline import build, write_data, run      # with benchmarks/ on sys.path

    binary = build()                                     # None (and a logged reason) without g++
    write_data(problem, "/tmp/svm.bin")                  # a Problem or its Terms
    out = run(binary, "/tmp/svm.bin", threads=2, epochs=20, step=0.1, decay=1.0, mu=1.0, seed=0)
    out["samples_per_s"], out["epoch_seconds"], out["loss"]

Notes
    The original's μ is the coefficient in its shrink step w_j ← w_j (1 − γ μ / d_j).  A
    wildcheck SVM with ``reg = "hogwild"`` and ``lam = λ`` carries λ Σ_{j∈e} x_j² / d_j per
    term, whose gradient step is the same shrink with μ = 2λ (so ``lam = 0.5`` is μ = 1);
    it is not ``workload.problems.linear``'s ``info["mu"]`` = 2λ/N, the strong convexity
    of the averaged objective.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SOURCE = Path(__file__).resolve().parent / "cpp" / "hogwild_svm.cc"
DEFAULT_CACHE = Path(__file__).resolve().parent / "cpp" / "build"  # ignored by git (``build/``)
FLAGS = ("-Wall", "-g", "-O3")  # the original's Makefile: no -march, no -ffast-math
LIBS = ("-lpthread",)
MAGIC = b"WCHWSVM1"  # the data file's first 8 bytes (hogwild_svm.cc's kMagic)
COMPILE_TIMEOUT_S = 120


class BuildError(RuntimeError):
    """The baseline could not be compiled; the message says why and what to do."""


def compiler() -> str | None:
    """The C++ compiler ``build`` uses: ``g++``, else ``c++`` on PATH, else None."""
    return shutil.which("g++") or shutil.which("c++")


def compile_binary(cache_dir: str | Path | None = None) -> Path:
    """Compile ``hogwild_svm.cc`` with the original's flags, or reuse a cached binary.

    The binary lives in ``cache_dir`` (default ``benchmarks/cpp/build``) under a folder
    named by the hash of the source, the flags and the compiler's version, so an edit to
    the source rebuilds it.  Raises :class:`BuildError` naming the cause and the fix.
    """
    cxx = compiler()
    if cxx is None:
        raise BuildError("no C++ compiler (g++ or c++) on PATH; install g++ (apt-get install g++) to get the "
                         "side-by-side baseline")
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
        source = SOURCE.read_bytes()
    except (OSError, subprocess.SubprocessError) as exc:
        raise BuildError(f"{cxx} --version or reading {SOURCE} failed: {exc}") from exc
    key = hashlib.sha256(b"\0".join([source, " ".join(FLAGS + LIBS).encode(), version.encode()])).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
    binary = folder / key / "hogwild_svm"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    try:
        binary.parent.mkdir(parents=True, exist_ok=True)
        tmp = binary.with_name(f".hogwild_svm.{os.getpid()}")
        cmd = [cxx, *FLAGS, str(SOURCE), "-o", str(tmp), *LIBS]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
        if res.returncode != 0:
            first = next((ln for ln in res.stderr.splitlines() if "error" in ln), res.stderr.strip()[:200])
            raise BuildError(f"compiling {SOURCE} failed ({' '.join(cmd)}): {first}")
        os.replace(tmp, binary)  # atomic: a concurrent build finds a whole binary or none
    except (OSError, subprocess.SubprocessError) as exc:
        raise BuildError(f"building {binary} failed: {exc}; check that {folder} is writable "
                         "(or pass cache_dir)") from exc
    return binary


def build(cache_dir: str | Path | None = None) -> Path | None:
    """:func:`compile_binary`, but never raises: None, and the reason logged as one warning line."""
    try:
        return compile_binary(cache_dir)
    except BuildError as exc:
        log.warning("C++ Hogwild! baseline skipped: %s", exc)
        return None


def write_data(problem_or_terms, path: str | Path) -> Path:
    """Write a Problem's (or a Terms') examples in hogwild_svm's binary format.

    Little-endian: ``b"WCHWSVM1"``; uint64 N, n_features, nnz; int64 indptr[N+1];
    int32 indices[nnz]; float64 values[nnz]; float64 labels[N].
    """
    terms = getattr(problem_or_terms, "terms", problem_or_terms)
    for name in ("indptr", "indices", "values", "y", "n"):
        if not hasattr(terms, name):
            raise TypeError(f"write_data: {type(problem_or_terms).__name__} has no .{name}; pass a "
                            "workload Problem or workload.problems.Terms")
    path = Path(path)
    with path.open("wb") as f:
        f.write(MAGIC)
        np.array([terms.N, terms.n, terms.indices.size], dtype="<u8").tofile(f)
        np.asarray(terms.indptr, dtype="<i8").tofile(f)
        np.asarray(terms.indices, dtype="<i4").tofile(f)
        np.asarray(terms.values, dtype="<f8").tofile(f)
        np.asarray(terms.y, dtype="<f8").tofile(f)
    return path


def run(binary: str | Path, data_path: str | Path, *, threads: int, epochs: int, step: float, decay: float,
        mu: float, seed: int, pin: bool = False, orders: str | Path | None = None,
        model_out: str | Path | None = None, timeout: float | None = None) -> dict:
    """Run the baseline once and return its JSON line as a dict.

    Keys: ``samples_per_s`` (samples over the summed train seconds: reshuffle + parallel
    pass per epoch), ``oncpu_samples_per_s``, ``train_seconds``, ``epoch_seconds``,
    ``loss`` (the hinge loss summed over the examples after the last epoch; N at w = 0),
    ``epoch_loss``, ``threads``, ``epochs``, ``N``, ``n_features``, ``nnz``, ``step`` /
    ``decay`` / ``mu`` (as the float32 the program used), ``seed``, ``pinned``,
    ``shuffle`` ("lazy" or "orders"), ``load_seconds``.

    ``orders``: a file of int64[epochs][N] permutations used instead of the lazy shuffle
    (tests); ``model_out``: where to write the final weights (float64[n_features]).  The
    program checks every argument; its one-line complaint is raised as RuntimeError.
    """
    cmd = [str(binary), str(data_path), "--threads", str(threads), "--epochs", str(epochs), "--step", repr(step),
           "--decay", repr(decay), "--mu", repr(mu), "--seed", str(seed)]
    if pin:
        cmd.append("--pin")
    if orders is not None:
        cmd += ["--orders", str(orders)]
    if model_out is not None:
        cmd += ["--model-out", str(model_out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"{binary} exited with {res.returncode}: {res.stderr.strip() or '(no message)'}")
    lines = res.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"{binary} printed nothing on stdout; stderr: {res.stderr.strip()}")
    return json.loads(lines[-1])


def write_orders(orders: np.ndarray, path: str | Path) -> Path:
    """Write int64[epochs][N] visit orders for ``run(..., orders=path)``."""
    orders = np.asarray(orders)
    if orders.ndim != 2:
        raise ValueError(f"write_orders: orders has shape {orders.shape}; need (epochs, N)")
    path = Path(path)
    np.ascontiguousarray(orders, dtype="<i8").tofile(path)
    return path

