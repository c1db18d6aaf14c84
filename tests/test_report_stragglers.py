"""The straggler section of the report (issue 10): present when minibatch-sync is studied."""
import json

import pandas as pd

from analysis.study import SECTIONS, run_study
from test_report import tiny_spec


def test_straggler_section_plots_iteration_time_and_time_to_accuracy(tmp_path):
    spec = tiny_spec(schemes=("hogwild", "minibatch-sync"))
    sections = [s for s in SECTIONS if s.name in ("workload", "stragglers")]
    outcome = run_study(spec, tmp_path / "r", progress=False, sections=sections, with_numba_sysinfo=False)
    assert outcome.state == "complete", outcome.sections
    it = pd.read_parquet(tmp_path / "r" / "data" / "straggler_iterations.parquet")
    assert list(it["n"]) == [10, 100, 1000, 10000]
    assert it["agrees"].all()  # simulated means within their CI of c + H_n / λ
    html = (tmp_path / "r" / "index.html").read_text()
    assert "straggler_iterations" in html and "straggler_tta" in html


def test_straggler_section_is_not_requested_without_the_scheme(tmp_path):
    sections = [s for s in SECTIONS if s.name == "stragglers"]
    outcome = run_study(tiny_spec(), tmp_path / "r", progress=False, sections=sections, with_numba_sysinfo=False)
    assert outcome.state == "complete"
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["sections"][0]["status"] == "not requested"
