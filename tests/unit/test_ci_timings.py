"""`.ci/timed` and `.ci/timings.py`: each phase's time and exit status, the slowest tests of every
pytest session's JUnit XML."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

_CI = Path(__file__).resolve().parents[2] / ".ci"
_spec = importlib.util.spec_from_file_location("ci_timings", _CI / "timings.py")
assert _spec and _spec.loader
timings = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(timings)

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.e2e.test_chaos" name="test_every_fault" time="612.5" />
<testcase classname="tests.unit.test_batch" name="test_counts[a]" time="0.01" />
<testcase classname="tests.e2e.test_pipeline" name="test_reshard" time="95.25"><failure message="x"/></testcase>
</testsuite></testsuites>"""


def test_timed_records_the_phase_and_passes_the_exit_status_on(tmp_path):
    env = dict(os.environ, CDC_TIMINGS_DIR=str(tmp_path))
    assert subprocess.run([_CI / "timed", "lint", "true"], env=env).returncode == 0
    assert subprocess.run([_CI / "timed", "pytest: local stack", "sh", "-c", "exit 3"], env=env).returncode == 3
    rows = timings.phases(tmp_path)
    assert [(name, status) for name, _, status in rows] == [("lint", 0), ("pytest: local stack", 3)]
    assert all(seconds >= 0 for _, seconds, _ in rows)


def test_the_report_lists_phases_with_their_total_and_the_slowest_tests_first(tmp_path):
    (tmp_path / "phases.tsv").write_text("installs\t95.0\t0\npytest: local stack\t1200.5\t1\n")
    (tmp_path / "local.xml").write_text(JUNIT)
    text = timings.report(tmp_path, slowest=2, markdown=False)
    assert "1 min 35.0 s" in text and "20 min 00.5 s" in text
    assert "21 min 35.5 s" in text  # all phases
    slow = text.split("slowest of 3 tests")[1].splitlines()[1:]
    assert len(slow) == 2
    assert "tests/e2e/test_chaos.py::test_every_fault" in slow[0] and "10 min 12.5 s" in slow[0]
    assert "tests/e2e/test_pipeline.py::test_reshard" in slow[1]


def test_the_markdown_report_is_a_table(tmp_path):
    (tmp_path / "phases.tsv").write_text("lint\t12.0\t0\n")
    text = timings.report(tmp_path, slowest=25, markdown=True)
    assert text.splitlines()[:3] == ["| phase | time | exit |", "| --- | ---: | ---: |", "| lint | 12.0 s | 0 |"]
