"""The chaos suite on the session stack with the stack supervisor running: every fault once in
`make test`, three rounds of each in `make test-all` (pauses of 5 s; `make chaos` runs it with
30 s pauses). Nothing lost, nothing older than it was,
every fault recovered from by itself (the harness restarts nothing)."""

from __future__ import annotations

import time

import pytest

from consumers.runtime.config import load_app
from infra.local.stack import held, supervisor_process, worker
from scripts.chaos.faults import FAULTS
from scripts.chaos.results import table
from scripts.chaos.runner import Chaos
from tests.cli import cdc

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("emptied_stack")]


@pytest.mark.timeout(2700)  # three rounds of thirteen faults in make test-all (~6.5 min for one round)
def test_every_fault_under_load_loses_nothing_and_heals_by_itself(stack, pipeline, full_length):
    rounds = 3 if full_length else 1
    supervisor = supervisor_process(stack)
    supervisor.start()
    try:
        chaos = Chaos(stack, pipeline, rounds=rounds, pause_s=5, rate=10, users=60, seed=13)
        results = chaos.run(list(FAULTS))
    finally:
        supervisor.stop(timeout_s=15)
    print("\n" + table(results))
    assert [r.fault for r in results] == list(FAULTS)
    for result in results:
        assert result.rounds == rounds and result.written > 0, result.row()
        assert result.ok, (result.row(), result.notes)
    assert sum(r.stale for r in results if r.fault == "stale-repeated-records") > 0  # the repeats arrived


def test_an_app_stopped_on_purpose_stays_stopped_under_the_supervisor_until_started(stack, pipeline):
    app, supervisor = load_app("workplace_user_v2", pipeline), supervisor_process(stack)
    supervisor.start()
    try:
        assert cdc("stop", app.package).returncode == 0
        assert held(stack, app.package) is not None
        time.sleep(5)  # five supervisor rounds
        assert worker(stack, app, 1).process.pid() is None
        assert "held" in cdc("status").stdout
        assert cdc("start", app.package).returncode == 0
        assert held(stack, app.package) is None
        # AND once started, a worker that dies is started again
        assert worker(stack, app, 1).process.kill()
        deadline = time.monotonic() + 30
        while worker(stack, app, 1).process.pid() is None:
            assert time.monotonic() < deadline, "the supervisor did not restart the killed worker"
            time.sleep(0.5)
    finally:
        supervisor.stop(timeout_s=15)
        cdc("start", app.package)
