"""Runs the python code blocks of docs/property-testing.md, in order, in one namespace."""
import re
from pathlib import Path

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "property-testing.md"


def test_property_testing_guide_runs():
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    assert len(blocks) >= 2
    namespace = {"__name__": "guide"}
    for block in blocks:
        exec(compile(block, str(GUIDE), "exec"), namespace)
    assert namespace["claim"].n == 10 and not namespace["claim"].rejected
