"""The local stack against its real servers: relay format, ordering, durability, provisioning."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from consumers.runtime.config import discover_apps
from infra.local.components import components, wait_healthy
from infra.local.preflight import free_opensearch_port, free_port
from infra.local.provision import provision
from infra.local.stack import workers
from scripts.changes.generator import UserChangeGenerator
from scripts.changes.writer import apply_changes
from services.clients import aws_client, aws_resource, opensearch_client
from services.config import REPO_ROOT
from tests.converge import assert_converges
from tests.integration.streams import StreamFollower

pytestmark = pytest.mark.stack

REFERENCE = orjson.loads((REPO_ROOT / "tests" / "fixtures" / "ddb-kinesis-change-record.json").read_bytes())


@pytest.fixture()
def users_table(stack, pipeline):
    return aws_resource("dynamodb", stack, pipeline.region).Table("Users")


@pytest.fixture()
def follower(stack, pipeline):
    kinesis = aws_client("kinesis", stack, pipeline.region)
    since = datetime.now(UTC) - timedelta(seconds=2)
    return StreamFollower(kinesis, pipeline.table("Users").change_stream, since)


def _user_id(change: dict) -> str:
    return change["dynamodb"]["Keys"]["UserId"]["S"]


def _version(change: dict) -> int:
    image = change["dynamodb"].get("NewImage") or change["dynamodb"]["OldImage"]
    return int(image["Version"]["N"])


def test_put_update_delete_give_three_aws_format_records_in_order_on_one_shard(users_table, follower, pipeline):
    # GIVEN a new user; WHEN it is created, updated and deleted
    user_id = f"t-{uuid.uuid4().hex[:12]}"
    users_table.put_item(
        Item={
            "UserId": user_id,
            "Email": "A@Example.com",
            "Version": 1,
            "Tags": {"x", "y"},
            "Blob": b"\x00\x01",
            "Score": "1.5",
            "NoMap": {},
            "NoList": [],
        }
    )
    users_table.put_item(
        Item={
            "UserId": user_id,
            "Email": "b@example.com",
            "Version": 2,
            "Tags": {"x"},
            "Blob": b"\x00\x01",
            "Score": "2",
        }
    )
    users_table.delete_item(Key={"UserId": user_id})

    # THEN exactly three records for it arrive, in order, on one shard, in AWS's format
    seen = follower.collect(lambda c: _user_id(c) == user_id, count=3, timeout_s=20)
    time.sleep(1.0)  # and no fourth one trails behind
    seen = follower.collect(lambda c: _user_id(c) == user_id, count=4, timeout_s=0)
    assert [s.change["eventName"] for s in seen] == ["INSERT", "MODIFY", "REMOVE"]
    assert len({s.shard_id for s in seen}) == 1
    assert len({s.partition_key for s in seen}) == 1
    assert [int(s.sequence_number) for s in seen] == sorted(int(s.sequence_number) for s in seen)
    insert, modify, remove = (s.change for s in seen)
    for change in (insert, modify, remove):
        assert set(change) == set(REFERENCE)
        assert set(change["dynamodb"]) <= set(REFERENCE["dynamodb"])
        assert change["tableName"] == "Users"
        assert change["recordFormat"] == "application/json"
        assert change["eventSource"] == "aws:dynamodb"
        assert change["awsRegion"] == pipeline.region
        assert change["userIdentity"] is None
        uuid.UUID(change["eventID"])
        assert change["dynamodb"]["Keys"] == {"UserId": {"S": user_id}}
        assert change["dynamodb"]["SizeBytes"] > 0
        # MICROSECOND precision: 16 digits, close to now
        assert abs(change["dynamodb"]["ApproximateCreationDateTime"] / 1e6 - time.time()) < 60
    assert "OldImage" not in insert["dynamodb"] and "NewImage" not in remove["dynamodb"]
    assert insert["dynamodb"]["NewImage"]["Tags"]["SS"] in (["x", "y"], ["y", "x"])
    assert insert["dynamodb"]["NewImage"]["Blob"] == {"B": "AAE="}
    assert insert["dynamodb"]["NewImage"]["NoMap"] == {"M": {}} and insert["dynamodb"]["NewImage"]["NoList"] == {
        "L": []
    }
    assert modify["dynamodb"]["OldImage"]["Email"] == {"S": "A@Example.com"}
    assert modify["dynamodb"]["NewImage"]["Version"] == {"N": "2"}
    assert remove["dynamodb"]["OldImage"]["Version"] == {"N": "2"}
    assert len({c["eventID"] for c in (insert, modify, remove)}) == 3


def _check_complete_and_ordered(seen, generated_versions: dict[str, list[int]]) -> None:
    per_key = defaultdict(list)
    shards = defaultdict(set)
    for s in sorted(seen, key=lambda s: (s.shard_id, int(s.sequence_number))):
        per_key[_user_id(s.change)].append(_version(s.change))
        shards[_user_id(s.change)].add(s.shard_id)
    assert dict(per_key) == generated_versions, "every change arrives once, each key's changes in order"
    assert all(len(v) == 1 for v in shards.values()), "all changes of one item on one shard"


def _generated_versions(changes) -> dict[str, list[int]]:
    versions = defaultdict(list)
    for change in changes:
        versions[change.user_id].append(change.version)
    return dict(versions)


def test_a_thousand_changes_over_many_users_arrive_once_each_in_order(users_table, follower):
    prefix = f"m-{uuid.uuid4().hex[:8]}-"
    changes = list(UserChangeGenerator(users=150, seed=11, prefix=prefix).changes(1000))
    started = time.monotonic()
    apply_changes(users_table, iter(changes), total=len(changes), progress=False)
    seen = follower.collect(lambda c: _user_id(c).startswith(prefix), count=len(changes), timeout_s=240)
    elapsed = time.monotonic() - started
    print(f"\n1000 changes written and relayed in {elapsed:.1f}s")
    assert len(seen) == len(changes)
    assert len({s.change["eventID"] for s in seen}) == len(changes)
    _check_complete_and_ordered(seen, _generated_versions(changes))


def test_relay_killed_with_sigkill_mid_stream_loses_nothing(stack, pipeline, users_table, follower):
    relay = components(stack, pipeline)[-1]
    prefix = f"k-{uuid.uuid4().hex[:8]}-"
    changes = list(UserChangeGenerator(users=80, seed=5, prefix=prefix).changes(600))
    writer = threading.Thread(
        target=apply_changes, args=(users_table, iter(changes)), kwargs={"total": len(changes), "progress": False}
    )
    writer.start()
    # kill it while changes are flowing: after some have arrived, before all of them
    partial = follower.collect(lambda c: _user_id(c).startswith(prefix), count=150, timeout_s=30)
    assert relay.process.kill()
    killed_after = len(partial)
    writer.join()
    time.sleep(0.5)
    assert relay.process.pid() is None
    relay.process.start()
    wait_healthy(relay, 30)

    seen = follower.collect(lambda c: _user_id(c).startswith(prefix), count=len(changes), timeout_s=240)
    unique = {s.change["eventID"]: s for s in seen}
    print(f"\nkilled after {killed_after} relayed; {len(seen) - len(unique)} duplicate(s) after restart")
    assert killed_after < len(changes), "the kill happened mid-stream"
    assert len(unique) == len(changes)
    # at-least-once: a repeat is the batch in flight, re-sent with the same eventIDs
    _check_complete_and_ordered(unique.values(), _generated_versions(changes))


def _relay_log_since(stack, pipeline, offset: int) -> str:
    return components(stack, pipeline)[-1].process.log_file.read_text(errors="replace")[offset:]


def _log_size(component) -> int:
    return component.process.log_file.stat().st_size


def test_kinesis_killed_before_saving_what_it_acknowledged_the_relay_writes_it_again(
    stack, pipeline, users_table, follower
):
    """kinesis-mock forgets on SIGKILL what it acknowledged since its last snapshot. The relay's
    saved position stays behind until kinesis-mock saved the records; then it reads the newest
    record back, and when it is gone writes everything since its saved position again. The
    consumers' checkpoints wait for the save too."""
    kinesis, relay = components(stack, pipeline)[1], components(stack, pipeline)[-1]
    relay_log_at = _log_size(relay)
    prefix = f"kk-{uuid.uuid4().hex[:8]}-"
    changes = list(UserChangeGenerator(users=40, seed=6, prefix=prefix).changes(200))

    def mine(change: dict) -> bool:
        return _user_id(change).startswith(prefix)

    # GIVEN kinesis-mock cannot save (its snapshot's temporary file name is taken by a folder)
    blocker = stack.kinesis_snapshot.with_name(stack.kinesis_snapshot.name + ".tmp")
    _block(blocker)
    try:
        # AND changes it acknowledged
        apply_changes(users_table, iter(changes), total=len(changes), progress=False)
        assert len({s.change["eventID"] for s in follower.collect(mine, count=len(changes), timeout_s=60)}) == len(
            changes
        )
        # WHEN it is killed, and starts again from its last snapshot
        assert kinesis.process.kill()
    finally:
        blocker.rmdir()
    kinesis.process.start()
    wait_healthy(kinesis, 60)
    # AND the consumer workers crash too: they start again from their checkpoints, which must
    # not be at records kinesis-mock forgot (the KCL would take them for the end of the shard)
    for consumer in workers(stack, pipeline):
        assert consumer.process.kill()
        consumer.process.start()
    survived = StreamFollower(follower.kinesis, follower.stream, follower.since).collect(
        mine, count=len(changes), timeout_s=0
    )
    assert len(survived) < len(changes), "kinesis-mock lost acknowledged records (the premise)"

    # THEN the relay notices and writes them again: the stream as it now stands has them all
    seen = StreamFollower(follower.kinesis, follower.stream, follower.since).collect(
        mine, count=len(changes), timeout_s=180
    )
    unique = {s.change["eventID"]: s for s in seen}
    print(f"\n{len(survived)} of {len(changes)} survived the kill; {len(seen) - len(unique)} repeat(s) after")
    assert len(unique) == len(changes)
    _check_complete_and_ordered(unique.values(), _generated_versions(changes))
    assert "KinesisLostRecords" in _relay_log_since(stack, pipeline, relay_log_at)
    # AND every consumer app still reads its shards (none took the lost records for a shard
    # end): changes made now reach every sink
    later = list(UserChangeGenerator(users=40, seed=7, prefix=f"{prefix}later-").changes(100))
    apply_changes(users_table, iter(later), total=len(later), progress=False)
    assert_converges(stack, pipeline, timeout_s=300)


def _block(path: Path, timeout_s: float = 30) -> None:
    """Create a folder at `path` (retrying while a save writes a file there)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            path.mkdir()
            return
        except FileExistsError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def test_dynamodb_local_killed_with_sigkill_the_relay_waits_and_goes_on(stack, pipeline, users_table, follower):
    dynamodb, relay = components(stack, pipeline)[0], components(stack, pipeline)[-1]
    relay_log_at = _log_size(relay)
    prefix = f"kd-{uuid.uuid4().hex[:8]}-"
    changes = list(UserChangeGenerator(users=40, seed=8, prefix=prefix).changes(300))
    apply_changes(users_table, iter(changes[:150]), total=150, progress=False)
    follower.collect(lambda c: _user_id(c).startswith(prefix), count=50, timeout_s=60)
    assert dynamodb.process.kill()
    time.sleep(3.0)  # the relay fails meanwhile and retries with back-off
    dynamodb.process.start()
    wait_healthy(dynamodb, 60)
    apply_changes(users_table, iter(changes[150:]), total=150, progress=False)

    seen = follower.collect(lambda c: _user_id(c).startswith(prefix), count=len(changes), timeout_s=240)
    unique = {s.change["eventID"]: s for s in seen}
    assert len(unique) == len(changes)
    _check_complete_and_ordered(unique.values(), _generated_versions(changes))
    assert "starting again from its saved position" in _relay_log_since(stack, pipeline, relay_log_at)
    assert relay.healthy()


def test_provisioning_twice_changes_nothing(stack, pipeline):
    messages = []
    assert provision(pipeline, stack, discover_apps(pipeline), say=messages.append) == []
    assert "nothing to change" in messages[-1]
    kinesis = aws_client("kinesis", stack, pipeline.region)
    for spec in pipeline.streams.values():
        summary = kinesis.describe_stream_summary(StreamName=spec.name)["StreamDescriptionSummary"]
        assert (summary["OpenShardCount"], summary["RetentionPeriodHours"]) == (spec.shards, spec.retention_hours)
    ddb = aws_client("dynamodb", stack, pipeline.region)
    for table in pipeline.tables.values():
        described = ddb.describe_table(TableName=table.name)["Table"]
        assert [k["AttributeName"] for k in described["KeySchema"]] == list(table.key_names)
        assert bool(described.get("StreamSpecification", {}).get("StreamEnabled")) == bool(table.change_stream)


def test_opensearch_answers_cluster_health_and_has_the_index(stack, pipeline):
    search = opensearch_client(stack)
    assert search.cluster.health()["status"] in ("green", "yellow")
    for name, index in pipeline.indexes.items():
        settings = search.indices.get_settings(index=name)[name]["settings"]["index"]
        assert settings["gc_deletes"] == index.settings["gc_deletes"]


# ------------------------------------------------------------------ start-up failures


def _make_up(tmp_path: Path, path_env: str, **ports: int) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": path_env,
        "CDC_STATE_DIR": str(tmp_path / "state"),
        "CDC_DYNAMODB_PORT": str(ports.get("dynamodb", free_port())),
        "CDC_LEASES_PORT": str(free_port()),
        "CDC_KINESIS_PORT": str(free_port()),
        "CDC_KINESIS_TLS_PORT": str(free_port()),
        "CDC_OPENSEARCH_PORT": str(free_opensearch_port()),
        "CDC_OPENSEARCH_TRANSPORT_PORT": str(free_port()),
    }
    make = shutil.which("make")
    return subprocess.run([make, "-s", "up"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_make_up_names_a_port_that_is_taken(stack, tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = _make_up(tmp_path, os.environ["PATH"], dynamodb=port)
    assert result.returncode != 0
    assert (
        f"port {port}" in result.stderr and "DynamoDB Local" in result.stderr and "CDC_DYNAMODB_PORT" in result.stderr
    )
    assert not (tmp_path / "state" / "pids" / "dynamodb.pid").exists()


@pytest.mark.parametrize("missing,present", [("java", "node"), ("node", "java")])
def test_make_up_names_a_missing_tool(stack, tmp_path, missing, present):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / present).symlink_to(shutil.which(present))
    result = _make_up(tmp_path, str(bin_dir))
    assert result.returncode != 0
    assert f"{missing} not found on PATH" in result.stderr, result.stderr


def test_status_reports_every_component_stream_and_table(stack, pipeline):
    result = subprocess.run(
        [sys.executable, "-m", "infra.ops.cli", "status"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CDC_STATE_DIR": str(stack.state_dir)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in (
        *pipeline.streams,
        *pipeline.tables,
        *pipeline.indexes,
        "DynamoDB Local",
        "OpenSearch",
        "app-user-management worker 1",
    ):
        assert name in result.stdout
    assert "down" not in result.stdout.split("streams:")[0]
