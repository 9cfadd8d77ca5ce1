"""The stack tests' oracle: wait until every sink equals its source, or fail with the reports;
and `wait_for`, the one way a stack test waits for something."""

from __future__ import annotations

import time

import pytest

from consumers.verify import wait_converged


def assert_converges(stack, pipeline, timeout_s: float = 300) -> None:
    reports = wait_converged(stack, pipeline, timeout_s=timeout_s)
    if not all(report.ok for report in reports):
        pytest.fail("sinks did not converge:\n" + "\n".join(map(str, reports)))


def wait_for(what: str, predicate, timeout_s: float = 180):
    """``predicate()``'s first true answer, polled every 0.5 s; fails the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not (result := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.5)
    return result
