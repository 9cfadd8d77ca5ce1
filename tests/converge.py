"""The stack tests' oracle: wait until every sink equals its source, or fail with the reports."""

from __future__ import annotations

import pytest

from consumers.verify import wait_converged


def assert_converges(stack, pipeline, timeout_s: float = 300) -> None:
    reports = wait_converged(stack, pipeline, timeout_s=timeout_s)
    if not all(report.ok for report in reports):
        pytest.fail("sinks did not converge:\n" + "\n".join(map(str, reports)))
