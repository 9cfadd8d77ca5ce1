"""`cdc status` shows the lag there is: the relay's backlog as a stage of the pipeline, each
shard's lag measured from the records, and each app's end-to-end freshness. Tested by holding
the relay and one app back while changes are written."""

from __future__ import annotations

import time
import uuid

from infra.local.components import components, wait_healthy
from scripts.changes.generator import UserChangeGenerator
from scripts.changes.writer import apply_changes
from services.clients import aws_resource
from tests.cli import cdc_json
from tests.converge import assert_converges

APP = "app-user-management"


def _write(stack, pipeline, count: int, seed: int) -> None:
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    changes = list(UserChangeGenerator(users=20, seed=seed, prefix=f"lag-{uuid.uuid4().hex[:6]}-").changes(count))
    apply_changes(users, iter(changes), total=len(changes), progress=False)


def _status() -> dict:
    report = cdc_json("status")
    return {
        "relay": {row["table"]: row for row in report["relay"]},
        "apps": {row["app"]: row for row in report["apps"]},
        "shards": [row for row in report["shards"] if row["app"] == APP],
    }


def test_status_shows_a_held_relays_backlog_and_a_stopped_apps_lag_growing_and_none_once_they_run(stack, pipeline):
    """One pass (two would cost CI a second convergence): hold the relay and stop one app, write;
    the relay's backlog grows older; let the relay go: the app's lag, measured from its records,
    grows; start the app: every figure goes back to nothing, and the app's change-to-apply
    latency shows what its changes waited."""
    assert_converges(stack, pipeline)
    relay = next(c for c in components(stack, pipeline) if c.process.name == "relay")
    cdc_json("stop", "app_user_management")
    try:
        assert relay.process.stop(timeout_s=30)
        try:
            _write(stack, pipeline, 30, seed=41)
            held = _status()
            users = held["relay"]["Users"]
            assert users["waiting"] >= 30 and users["oldest_age_s"] is not None, users
            # every app downstream is as stale as the oldest change the relay holds
            assert held["apps"][APP]["freshness_ms"] >= users["oldest_age_s"] * 1000
            time.sleep(2)
            assert _status()["relay"]["Users"]["oldest_age_s"] > users["oldest_age_s"]
        finally:
            relay.process.start()
            wait_healthy(relay, 60)
        deadline = time.monotonic() + 60
        while (first := _status())["relay"]["Users"]["waiting"]:  # relayed: on the stream, unread
            assert time.monotonic() < deadline, first["relay"]
        lags = [row["lag_ms"] for row in first["shards"] if row["shard_state"] == "open"]
        assert max(lags) >= 2000, first["shards"]
        time.sleep(2)
        later = _status()
        assert later["apps"][APP]["lag_ms"] > first["apps"][APP]["lag_ms"]
        assert later["apps"][APP]["freshness_ms"] >= later["apps"][APP]["lag_ms"]
    finally:
        cdc_json("start", "app_user_management")
    assert_converges(stack, pipeline)
    done = _status()
    assert done["relay"]["Users"]["waiting"] == 0 and done["apps"][APP]["lag_ms"] == 0
    # the processors' own change-to-apply latency: the held changes waited >= 2 s for the app
    app = done["apps"][APP]
    assert app["latency_p99_ms"] >= 2000 and 0 <= app["latency_p50_ms"] <= app["latency_p99_ms"], app
