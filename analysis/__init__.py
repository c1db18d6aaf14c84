"""analysis: where simulation and hardware meet -- DataFrame → DataFrame functions.

* :mod:`analysis.overlap` -- τ per sample (any trace, both engines), per labelling,
  summaries, histograms, and distances between τ distributions (Wasserstein, KS).
* :mod:`analysis.calibrate` -- fit an ``hwsim.Machine`` to a realrun trace (per-coordinate
  costs regressed on support size, the compute-delay distribution with parametric fits and
  their KS statistics, the coherence cost from the ping-pong or a contention
  microbenchmark), with the provenance that keeps predictions out of sample.
* :mod:`analysis.predict` -- simulate the calibrated machine at any core counts
  (``kind = "predicted"``); :func:`analysis.predict.measured` gives realrun results the
  same tables (``kind = "measured"``).
* :mod:`analysis.compare` -- measured vs predicted, one verdict per figure against named
  thresholds.
* :mod:`analysis.theory` -- Niu et al. 2011 Prop. 4.1, Mania et al. 2015 Thm. 3.4 (explicit
  constants), the lecture's τ ≤ N/(2Δ̄_C), and the measured noise terms, each with inputs,
  bound, observed value and verdict.
* :mod:`analysis.verdicts` -- the check-row format all of them share.
* :mod:`analysis.synthetic` -- traces from known timings (the oracle of the tests).
* :mod:`analysis.testing`, :mod:`analysis.strategies` -- the public property-testing API
  (docs/property-testing.md).
* :mod:`analysis.stragglers`, :mod:`analysis.buckwild`, :mod:`analysis.decentralized` --
  the scheme-specific studies.
* :mod:`analysis.sweep` -- parameter sweeps (local pool or Dask).
* :mod:`analysis.study`, :mod:`analysis.report`, :mod:`analysis.environment`,
  :mod:`analysis.cli` -- the default study, the reproducibility report, the ``wildcheck`` CLI.

Submodules are imported on use (``from analysis import theory``), so importing the
package costs nothing.
"""
