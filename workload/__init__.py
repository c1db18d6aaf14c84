"""workload: what is run -- problems, data, step schedules, run spec, trace schema, serial oracle.

Shared by both engines (hwsim, realrun); imports neither.
"""
from .spec import DataSpec, RunSpec, SpecError

__all__ = ["DataSpec", "RunSpec", "SpecError"]
