"""realrun: lock-free SGD on the machine's real cores (Numba nogil kernels on Python threads).

``run(spec)`` runs a spec's workload and measures it (:mod:`realrun.engine`);
``pingpong()`` and ``coord_cost()`` measure what hwsim's machine model is calibrated with
(:mod:`realrun.calibrate`).  realrun imports workload only, never hwsim.
"""
from .calibrate import CoordCost, PingPong, coord_cost, pingpong
from .engine import IMPLEMENTED as SCHEMES
from .engine import RealResult, run

__all__ = ["RealResult", "run", "pingpong", "coord_cost", "PingPong", "CoordCost", "SCHEMES"]
