"""`cdc scale`, `cdc replay`, `cdc status` and their error paths, run as a user runs them
(the `cdc` command line, JSON output) against the real stack and the real MultiLangDaemon."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest

from consumers.runtime.config import discover_apps, load_app
from consumers.runtime.control import ControlStore
from infra.local.preflight import free_port
from infra.ops.leases import leader, read_leases
from scripts.changes.generator import UserChangeGenerator
from scripts.changes.writer import apply_changes
from services.clients import aws_client, aws_resource, lease_client, opensearch_client
from services.kinesis import read_stream
from tests.cli import cdc, cdc_json
from tests.converge import assert_converges

pytestmark = pytest.mark.stack

APP = "app_user_management"


def _lease_picture(ddb, app_name: str) -> dict[str, tuple]:
    """What an operation on another app must not change: each lease's owner and checkpoint."""
    return {lease.shard_id: (lease.owner, lease.checkpoint) for lease in read_leases(ddb, app_name)}


def _settled_pictures(stack, ddb, names: list[str]) -> dict[str, dict[str, tuple]]:
    """The apps' lease pictures once their checkpoints stopped moving: on the local stack a
    checkpoint waits until kinesis-mock saved the records (up to two persist intervals)."""
    quiet_for = 2 * float(stack.kinesis_persist_interval.rstrip("s")) + 5
    last, since = None, time.monotonic()
    while True:
        pictures = {name: _lease_picture(ddb, name) for name in names}
        if pictures != last:
            last, since = pictures, time.monotonic()
        elif time.monotonic() - since >= quiet_for:
            return pictures
        time.sleep(1)


def _other_apps(pipeline) -> list[str]:
    return [app.name for app in discover_apps(pipeline) if app.package != APP]


@pytest.mark.parametrize("load", [pytest.param(False, marks=pytest.mark.full), True], ids=["idle", "under-load"])
def test_scale_spreads_the_leases_evenly_at_every_step(stack, pipeline, load):
    """1 -> 2 -> 4 -> 1 workers on the 4-shard Users stream: after each step every open lease
    is held, each worker holds the same number; idle, the other apps' leases do not move (in
    `make test-all`; `make test` scales under load, and its replays check the other apps)."""
    ddb = lease_client(stack, pipeline.region)
    assert_converges(stack, pipeline)
    others = _settled_pictures(stack, ddb, _other_apps(pipeline)) if not load else {}
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    stop = threading.Event()
    writer = None
    if load:
        changes = UserChangeGenerator(users=100, seed=21, prefix=f"sc-{uuid.uuid4().hex[:6]}-").changes(100_000)

        def write() -> None:
            while not stop.is_set():
                apply_changes(users, (next(changes) for _ in range(10)), total=10, rate=40, progress=False)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
    timings = []
    try:
        for count in (1, 2, 4, 1):
            started = time.monotonic()
            spread = cdc_json("scale", APP, str(count))
            timings.append((count, round(time.monotonic() - started, 1)))
            held = {row["worker"]: row["open_leases"] for row in spread}
            assert "(unassigned)" not in held, spread
            assert len(held) == count and sum(held.values()) == 4 and max(held.values()) - min(held.values()) <= 1
    finally:
        stop.set()
        if writer is not None:
            writer.join(timeout=30)
    print(f"\nscale steps (workers, seconds to settle), {'under load' if load else 'idle'}: {timings}")
    assert_converges(stack, pipeline)
    if not load:  # under load the other apps checkpoint on
        assert {name: _lease_picture(ddb, name) for name in others} == others


def test_a_killed_worker_of_two_hands_its_leases_to_the_other(stack, pipeline):
    """The worker that is not the leader is SIGKILLed: the leader assigns its leases to itself
    once they expire (failoverTimeMillis 10 s, then assignment rounds). (When the leader dies,
    KCL 3.1.3 first waits for its 2-minute leader lock: tests/e2e kills that one.)"""
    from infra.local.stack import worker

    app = load_app(APP, pipeline)
    ddb = lease_client(stack, pipeline.region)
    cdc_json("scale", APP, "2")
    try:
        ids = {n: f"{app.name}-worker-{n}" for n in (1, 2)}
        started = time.monotonic()
        while leader(ddb, app.name) not in ids.values():  # the lock was released by the scale
            assert time.monotonic() - started < 30, "no worker took the leader lock"
            time.sleep(0.5)
        survivor = next(n for n, wid in ids.items() if wid == leader(ddb, app.name))
        assert worker(stack, app, 3 - survivor).process.kill()
        started = time.monotonic()
        while {lease.owner for lease in read_leases(ddb, app.name) if not lease.ended} != {ids[survivor]}:
            assert time.monotonic() - started < 120, f"{ids[survivor]} did not take the leases over"
            time.sleep(1)
        print(f"\nleases moved to the surviving worker in {time.monotonic() - started:.1f}s")
        users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
        changes = list(UserChangeGenerator(users=30, seed=5, prefix=f"kw-{uuid.uuid4().hex[:6]}-").changes(200))
        apply_changes(users, iter(changes), total=len(changes), progress=False)
        assert_converges(stack, pipeline)
    finally:
        cdc_json("scale", APP, "1")


def test_stop_waits_for_the_leases_to_expire_and_start_brings_the_app_back(stack, pipeline):
    ddb = lease_client(stack, pipeline.region)
    app = load_app(APP, pipeline)
    result = cdc("stop", APP)
    assert result.returncode == 0, result.stderr
    assert "waited for each processor to checkpoint" in result.stderr
    (row,) = [r for r in cdc_json("apps") if r["package"] == APP]
    assert row["workers"] == 0 and row["state"] == "stopped"
    counters = {lease.shard_id: lease.counter for lease in read_leases(ddb, app.name)}
    time.sleep(3)  # nobody renews them any more
    assert {lease.shard_id: lease.counter for lease in read_leases(ddb, app.name)} == counters
    result = cdc("start", APP)
    assert result.returncode == 0, result.stderr
    (row,) = [r for r in cdc_json("apps") if r["package"] == APP]
    assert row["state"] == "running"
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    changes = list(UserChangeGenerator(users=10, seed=8, prefix=f"ss-{uuid.uuid4().hex[:6]}-").changes(50))
    apply_changes(users, iter(changes), total=len(changes), progress=False)
    assert_converges(stack, pipeline)


def _sink_snapshot(stack, pipeline) -> dict:
    ddb = aws_client("dynamodb", stack, pipeline.region)
    items = {}
    for page in ddb.get_paginator("scan").paginate(TableName="AppUsers_V2", ConsistentRead=True):
        for item in page["Items"]:
            if "_cdc_tombstone" not in item:
                items[item["UserId"]["S"]] = item
    return items


@pytest.mark.full  # make test replays from the trim horizon in the search-index and resharded-stream tests
def test_a_replay_from_the_trim_horizon_changes_no_correct_sink(stack, pipeline):
    ddb = lease_client(stack, pipeline.region)
    assert_converges(stack, pipeline)
    before = _sink_snapshot(stack, pipeline)
    others = _settled_pictures(stack, ddb, _other_apps(pipeline))
    kinesis = aws_client("kinesis", stack, pipeline.region)
    in_stream = sum(1 for _ in read_stream(kinesis, pipeline.table("Users").stream))
    (report,) = cdc_json("replay", APP, "--from-trim-horizon")
    print(f"\nreplay of {report['records']} records: {report['seconds']}s, {report}")
    assert report["records"] == in_stream and report["received"] >= in_stream
    assert report["dead_lettered"] == 0 and report["stale"] > 0
    assert _sink_snapshot(stack, pipeline) == before  # every write stale, or a tombstone written again
    assert {name: _lease_picture(ddb, name) for name in others} == others
    assert_converges(stack, pipeline)


def test_the_search_index_deleted_is_rebuilt_by_a_replay_of_the_search_app_only(stack, pipeline):
    from infra.local.provision import provision

    ddb = lease_client(stack, pipeline.region)
    assert_converges(stack, pipeline)
    (index,) = pipeline.indexes
    search = opensearch_client(stack)
    documents = search.count(index=index)["count"]
    assert documents > 0
    others = _settled_pictures(stack, ddb, ["app-user-management", "workplace-user-v2"])
    search.indices.delete(index=index)
    provision(pipeline, stack, discover_apps(pipeline), say=lambda message: None)  # recreated, empty
    assert search.count(index=index)["count"] == 0
    (report,) = cdc_json("replay", "workplace-user-search", "--from-trim-horizon")
    assert report["dead_lettered"] == 0
    assert_converges(stack, pipeline, timeout_s=60)
    search.indices.refresh(index=index)
    assert search.count(index=index)["count"] == documents
    assert {name: _lease_picture(ddb, name) for name in others} == others


def test_a_replay_at_a_time_reprocesses_exactly_the_records_from_that_second_on(stack, pipeline):
    kinesis = aws_client("kinesis", stack, pipeline.region)
    stream = pipeline.table("Users").stream
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    prefix = f"at-{uuid.uuid4().hex[:6]}-"
    changes = iter(UserChangeGenerator(users=20, seed=9, prefix=prefix).changes(240))
    apply_changes(users, (next(changes) for _ in range(120)), total=120, progress=False)
    time.sleep(2.5)
    middle = datetime.now(UTC)
    apply_changes(users, changes, total=120, progress=False)
    assert_converges(stack, pipeline)
    (report,) = cdc_json("replay", APP, "--at", middle.isoformat())
    start = datetime.fromisoformat(report["from"])
    assert start.timestamp() == int(middle.timestamp())  # whole seconds, as the KCL takes them
    # the stream itself, read from its start: the records that arrived at or after the start
    wanted = Counter(r.shard_id for r in read_stream(kinesis, stream) if r.arrival and r.arrival >= start)
    assert report["records"] == sum(wanted.values())
    assert report["received"] == sum(wanted.values()), report
    assert_converges(stack, pipeline)


@pytest.mark.full  # a KCL quirk's regression test; make test replays at a time, of one app, after a reshard
def test_an_app_restarted_after_a_replay_reads_the_shards_that_had_no_record_since_its_start(stack, pipeline):
    """A lease created AT_TIMESTAMP keeps that sentinel until its first record: a restart must
    still give the KCL the time (it fails the shard's initialization without it, forever)."""
    ddb = lease_client(stack, pipeline.region)
    app = load_app(APP, pipeline)
    (report,) = cdc_json("replay", APP, "--since", "1s")
    assert report["records"] == 0
    control = ControlStore(aws_client("dynamodb", stack, pipeline.region))
    # published in the target's DynamoDB, where every worker reads it (not in the state folder)
    assert control.start_at(app.name) == datetime.fromisoformat(report["from"]).timestamp()
    assert {lease.checkpoint for lease in read_leases(ddb, app.name)} == {"AT_TIMESTAMP"}
    stopped, started = cdc_json("stop", APP), cdc_json("start", APP)  # each command's result, for scripts
    assert stopped["app"] == app.name and stopped["stopped"] and stopped["waited_s"] >= 0
    assert started["workers"] == started["desired"] >= 1
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    changes = list(UserChangeGenerator(users=40, seed=21, prefix=f"ra-{uuid.uuid4().hex[:6]}-").changes(80))
    apply_changes(users, iter(changes), total=len(changes), progress=False)
    assert_converges(stack, pipeline)
    deadline = time.monotonic() + 60
    while "AT_TIMESTAMP" in {lease.checkpoint for lease in read_leases(ddb, app.name)}:
        assert time.monotonic() < deadline, "a shard never checkpointed past its AT_TIMESTAMP start"
        time.sleep(1)
    assert cdc("stop", APP).returncode == 0 and cdc("start", APP).returncode == 0  # now without the time
    assert control.start_at(app.name) is None


# ---------------------------------------------------------------------------- error paths
def _fails(result: subprocess.CompletedProcess, *words: str, code: int = 1) -> None:
    assert result.returncode == code, result.stdout + result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_an_unknown_app_is_named_with_the_known_ones(stack):
    _fails(cdc("scale", "no_such_app", "2"), "unknown app 'no_such_app'", "app_user_management")


def test_a_time_outside_the_retention_window_is_refused_with_the_window(stack):
    _fails(cdc("replay", APP, "--at", "2000-01-01T00:00:00Z"), "outside the retention window", "users-changes")
    _fails(cdc("replay", APP, "--at", "2999-01-01T00:00:00Z"), "outside the retention window")


def test_a_time_without_zone_and_a_bad_duration_are_refused(stack):
    _fails(cdc("replay", APP, "--at", "2026-12-01T10:00:00"), "give a time zone")
    _fails(cdc("replay", APP, "--since", "ten minutes"), "not a duration", code=2)


def test_a_negative_worker_count_is_refused(stack):
    _fails(cdc("scale", APP, "-1"), "0 or more")


def test_a_stack_that_is_down_is_named(stack, tmp_path):
    import os

    env = dict(
        os.environ, CDC_STATE_DIR=str(tmp_path), CDC_DYNAMODB_PORT=str(free_port()), CDC_KINESIS_PORT=str(free_port())
    )
    _fails(cdc("apps", env=env), "cannot reach", "is the stack up")
    _fails(cdc("replay", APP, "--since", "1h", env=env), "cannot reach", "is the stack up")


def test_a_missing_stream_says_to_provision(stack, pipeline, tmp_path):
    """A private, empty kinesis-mock: the app's stream does not exist there."""
    import os

    from infra.local.components import components, wait_healthy
    from services.config import StackConfig

    env = dict(
        os.environ,
        CDC_STATE_DIR=str(tmp_path),
        CDC_KINESIS_PORT=str(free_port()),
        CDC_KINESIS_TLS_PORT=str(free_port()),
    )
    kinesis = components(StackConfig.from_env(env), pipeline)[1]
    kinesis.prepare()
    kinesis.process.start()
    try:
        wait_healthy(kinesis, 30)
        _fails(cdc("replay", APP, "--from-trim-horizon", env=env), "users-changes", "make provision")
    finally:
        kinesis.process.stop()
