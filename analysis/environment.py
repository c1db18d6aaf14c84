"""What a report was produced on: the facts ``environment.json`` records.

Everything a colleague needs to judge whether a regenerated report should match: the CPU
(model, flags, cores, affinity), the OS, Python and package versions, Numba's own system
report (``numba -s``, through :func:`numba.misc.numba_sysinfo.get_sysinfo`), the git commit
and whether the working tree was dirty, the seeds, and the SHA-256 of every data file.

Each collector returns plain JSON-able values and never raises: a fact that cannot be
read is recorded as ``{"unavailable": "<why>"}`` rather than guessed.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

PACKAGES = ("wildcheck", "numpy", "scipy", "numba", "llvmlite", "simpy", "pandas", "matplotlib", "scikit-learn",
            "tqdm", "pyarrow", "tomli-w", "pytest", "hypothesis")

REPO_ROOT = Path(__file__).resolve().parent.parent


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_arrays(*arrays: np.ndarray) -> str:
    """SHA-256 of arrays' dtypes, shapes and C-order bytes (for generated data and models)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def cpu_info() -> dict[str, Any]:
    """CPU model, flags and counts from ``/proc/cpuinfo`` and the scheduler."""
    out: dict[str, Any] = {"machine": platform.machine(), "processor": platform.processor()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        fields: dict[str, str] = {}
        for line in text.splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                fields.setdefault(k.strip(), v.strip())
        out["model_name"] = fields.get("model name", "")
        out["vendor"] = fields.get("vendor_id", "")
        out["family"] = fields.get("cpu family", "")
        out["model"] = fields.get("model", "")
        out["stepping"] = fields.get("stepping", "")
        out["cache_size"] = fields.get("cache size", "")
        out["flags"] = sorted(fields.get("flags", "").split())
        out["logical_processors_listed"] = text.count("\nprocessor") + (1 if text.startswith("processor") else 0)
    except OSError as exc:
        out["cpuinfo"] = {"unavailable": f"/proc/cpuinfo: {exc}"}
    out["os_cpu_count"] = os.cpu_count()
    try:
        aff = sorted(os.sched_getaffinity(0))
        out["affinity"] = aff
        out["usable_cores"] = len(aff)
    except (AttributeError, OSError) as exc:
        out["affinity"] = {"unavailable": str(exc)}
        out["usable_cores"] = os.cpu_count()
    return out


def usable_cores() -> int:
    """Cores this process may run on (scheduler affinity; os.cpu_count as fallback)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def numba_sysinfo() -> dict[str, Any]:
    """Numba's system report (what ``numba -s`` prints), as JSON-able values."""
    try:
        import warnings

        from numba.misc.numba_sysinfo import get_sysinfo

        with warnings.catch_warnings():  # it pokes numpy internals that warn about themselves
            warnings.simplefilter("ignore")
            info = get_sysinfo()
    except Exception as exc:  # a diagnostic: record why it is missing, never fail the report
        return {"unavailable": f"{type(exc).__name__}: {exc}"}
    return {k: _jsonable(v) for k, v in info.items() if k != "Installed Packages"}


def git_state(root: str | Path = REPO_ROOT) -> dict[str, Any]:
    """Commit, branch and dirty flag of the repository the code runs from."""

    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"unavailable": head.stderr.strip() or "not a git repository"}
        status = git("status", "--porcelain", "--untracked-files=no")
        branch = git("rev-parse", "--abbrev-ref", "HEAD")
        dirty_files = [ln[3:] for ln in status.stdout.splitlines() if ln.strip()]
        return {"commit": head.stdout.strip(), "branch": branch.stdout.strip(), "dirty": bool(dirty_files),
                "dirty_files": dirty_files[:50]}
    except (OSError, subprocess.SubprocessError) as exc:
        return {"unavailable": f"{type(exc).__name__}: {exc}"}


def collect(*, seeds: Mapping[str, Any] | None = None, data_files: Iterable[str | Path] = (),
            data_hashes: Mapping[str, str] | None = None, argv: list[str] | None = None,
            with_numba: bool = True) -> dict[str, Any]:
    """The whole ``environment.json`` document."""
    files = {}
    for p in data_files:
        p = Path(p)
        files[str(p)] = sha256_file(p) if p.exists() else {"unavailable": "file not found"}
    return {
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": list(sys.argv if argv is None else argv),
        "cpu": cpu_info(),
        "os": {"system": platform.system(), "release": platform.release(), "version": platform.version(),
               "platform": platform.platform(), "libc": " ".join(platform.libc_ver())},
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable, "compiler": platform.python_compiler()},
        "packages": package_versions(),
        "numba_sysinfo": numba_sysinfo() if with_numba else {"unavailable": "not collected (with_numba=False)"},
        "git": git_state(),
        "seeds": dict(seeds or {}),
        "data_sha256": {**files, **dict(data_hashes or {})},
        "env_vars": {k: v for k, v in os.environ.items()
                     if k.startswith(("NUMBA_", "OMP_", "MKL_", "OPENBLAS_")) or k in ("PYTHONHASHSEED",)},
    }


def _jsonable(v):
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (_dt.datetime, _dt.date, _dt.timedelta)):
        return str(v)
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [_jsonable(x) for x in v]
    return str(v)
