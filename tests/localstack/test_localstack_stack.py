"""The pipeline on LocalStack 4.9.2 in host mode: the same code path as the local stack, driven
by the endpoint; the native streaming destination instead of the relay.

The oracle is `consumers.verify` (every sink recomputed from Users). Run by `make test` in its
own session (tests/localstack/conftest.py starts the stack on private ports).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from consumers.runtime.config import discover_apps, load_app
from infra.local import localstack
from infra.local import stack as stacks
from infra.local.components import components
from infra.local.provision import COARSE_STAMPS_NOTE, provision
from scripts.changes.generator import UserChangeGenerator
from scripts.changes.writer import apply_changes
from services.clients import aws_client, aws_resource, lease_client
from services.config import StackConfig
from services.kinesis import read_stream
from tests.cli import cdc
from tests.converge import assert_converges
from tests.procfs import descendants, listening, loopback
from tests.scenarios import versionless_edits_within_one_second

pytestmark = pytest.mark.localstack


def test_installed_localstack_files_carry_the_patches(stack):
    site = sorted(localstack.venv(stack).glob("lib/python3*/site-packages"))
    assert site, f"no LocalStack venv under {localstack.venv(stack)}"
    for name, (_, after) in localstack.PATCHES.checksums().items():
        target = site[-1] / localstack.PATCHES.patched_file(name)
        assert hashlib.sha256(target.read_bytes()).hexdigest() == after, name


def test_every_socket_the_stack_listens_on_is_bound_toloopback(stack, pipeline):
    """LocalStack's gateway, its DynamoDB Local and kinesis-mock, OpenSearch, the webhook receiver."""
    aws_client("kinesis", stack, pipeline.region).list_streams()  # kinesis-mock runs
    servers = components(stack, pipeline)
    assert [c.external for c in servers] == [None] * len(servers), "host mode: every server is ours"
    assert len(servers) == 3  # LocalStack, OpenSearch, the webhook receiver
    pids = set().union(*(descendants(c.process.pid()) for c in servers))
    sockets = listening(pids)
    commands = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode() for pid, _ in sockets}
    print("\n".join(f"{commands[pid]:>50} {address}" for pid, address in sockets))
    kinds = {Path(command).name for command in commands.values()}
    assert {"python", "java", "node"} <= kinds, f"expected LocalStack, DynamoDB Local, kinesis-mock, got {kinds}"
    port = stack.localstack_host.rsplit(":", 1)[1]
    assert any(address == f"127.0.0.1:{port}" for _, address in sockets), "the gateway listens on its own port"
    exposed = [(commands[pid], address) for pid, address in sockets if not loopback(address)]
    assert not exposed, f"listening beyond 127.0.0.1: {exposed}"


def test_a_localstack_already_answering_is_used_as_it_is_and_left_running(stack, pipeline, tmp_path, capsys):
    """Another state folder pointed at the same LOCALSTACK_HOST finds it answering: external,
    healthy, never started nor stopped by that stack's `down`."""
    other = StackConfig.from_env({**os.environ, "CDC_LOCALSTACK_MODE": "auto", "CDC_STATE_DIR": str(tmp_path)})
    server = components(other, pipeline)[0]
    assert server.external == localstack.Mode.EXTERNAL.value and server.healthy()
    stacks.down(other)
    assert f"left running LocalStack at {stack.localstack_endpoint}" in capsys.readouterr().err
    assert localstack.host_process(stack).pid() is not None and localstack.health(stack) is not None


def test_provisioning_twice_changes_nothing(stack, pipeline):
    """...and says nothing about coarse timestamps: the patched destination reports its precision."""
    apps = discover_apps(pipeline)
    said: list[str] = []
    provision(pipeline, stack, apps, say=said.append)
    assert provision(pipeline, stack, apps, say=said.append) == []
    assert COARSE_STAMPS_NOTE not in said
    destinations = aws_client("dynamodb", stack, pipeline.region).describe_kinesis_streaming_destination(
        TableName="Users"
    )["KinesisDataStreamDestinations"]
    assert [d["ApproximateCreationDateTimePrecision"] for d in destinations] == [pipeline.creation_time_precision]


def test_changes_reach_every_sink_through_the_native_destination_on_one_shard(stack, pipeline):
    """The generator's changes converge in all three sinks. What LocalStack's destination
    writes differs from AWS (one shard per table, 8-character eventID); each difference is
    pinned here as seen on the stream. Its timestamps have the precision asked (the project's
    patch: unpatched, whole seconds)."""
    since = datetime.now(UTC)
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    generator = UserChangeGenerator(users=120, seed=11, prefix=f"ls-{uuid.uuid4().hex[:6]}-")
    changes = list(generator.changes(600))
    apply_changes(users, iter(changes), total=len(changes), progress=False)
    assert_converges(stack, pipeline, timeout_s=300)

    records = list(read_stream(aws_client("kinesis", stack, pipeline.region), "users-changes", since))
    ours = [(r, orjson.loads(r.data)) for r in records]
    ours = [(r, body) for r, body in ours if next(iter(body["dynamodb"]["Keys"]["UserId"].values())).startswith("ls-")]
    assert len(ours) == len(changes)
    assert {r.shard_id for r, _ in ours} == {ours[0][0].shard_id}, "every change of Users on one shard"
    assert {r.partition_key for r, _ in ours} == {hashlib.md5(b"UsersUserId").hexdigest()}
    assert {len(body["eventID"]) for _, body in ours} == {8}
    stamps = [body["dynamodb"]["ApproximateCreationDateTime"] for _, body in ours]
    assert pipeline.creation_time_precision == "MICROSECOND"
    assert all(isinstance(s, int) and 1e15 < s < 1e17 for s in stamps), "microseconds, as asked"
    assert len(set(stamps)) == len(stamps), "one change, one stamp"


def test_versionless_edits_of_an_item_within_one_second_leave_every_sink_at_the_last(stack, pipeline):
    """Unpatched, LocalStack stamps all three edits with the same second: the time fallback
    ties and every sink keeps the first edit, so `verify` never passes."""
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    versionless_edits_within_one_second(users, f"nv-{uuid.uuid4().hex[:8]}")
    assert_converges(stack, pipeline, timeout_s=120)


def _is_daemon_jvm(cmdline: bytes) -> bool:
    return cmdline.startswith(b"java") and b"MultiLangDaemon" in cmdline


def _cmdline(pid: int) -> bytes:
    """A process's command line; empty for one that ended since it was listed (the killed JVM's
    record processors exit while the test looks for its replacement)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def _worker_jvm(stack, app) -> int:
    """The MultiLangDaemon JVM under the app's first worker supervisor."""
    supervisor = stacks.worker(stack, app, 1).process.pid()
    assert supervisor is not None
    jvms = [pid for pid in descendants(supervisor) if _is_daemon_jvm(_cmdline(pid))]
    assert len(jvms) == 1, jvms
    return jvms[0]


def test_a_worker_jvm_killed_mid_stream_is_restarted_and_nothing_is_lost(stack, pipeline, full_length):
    app = load_app("workplace_user_v2", pipeline)
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    generator = UserChangeGenerator(users=150, seed=5, prefix=f"lk-{uuid.uuid4().hex[:6]}-")
    changes = list(generator.changes(700 if full_length else 360))
    writer = threading.Thread(
        target=apply_changes, args=(users, iter(changes)), kwargs={"total": len(changes), "rate": 60, "progress": False}
    )
    writer.start()
    try:
        time.sleep(4)  # mid-stream
        killed = _worker_jvm(stack, app)
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                replacement = _worker_jvm(stack, app)
            except AssertionError:
                replacement = None
            if replacement not in (None, killed):
                break
            time.sleep(0.5)
        else:
            pytest.fail("the supervisor did not start a new MultiLangDaemon within 60 s")
    finally:
        writer.join()
    assert_converges(stack, pipeline, timeout_s=300)


def test_one_app_replayed_from_the_start_of_its_stream_into_correct_sinks(stack, pipeline):
    assert_converges(stack, pipeline)
    done = cdc("replay", "workplace-user-search", "--from-trim-horizon", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = json.loads(done.stdout)
    assert row["records"] > 0 and row["received"] == row["records"]
    assert row["dead_lettered"] == 0
    assert_converges(stack, pipeline)


def test_status_apps_scale_stop_and_start_work_on_localstack(stack, pipeline):
    """The same `cdc` commands as on the local stack, reaching LocalStack through the endpoint."""
    status = cdc("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "LocalStack 4.9.2 (host mode)" in status.stdout and stacks.ONE_SHARD_NOTE in status.stdout
    apps = json.loads(cdc("apps", "--json").stdout)
    assert {row["app"]: row["state"] for row in apps} == {app.name: "running" for app in discover_apps(pipeline)}

    scaled = cdc("scale", "app-user-management", "2", "--json")
    assert scaled.returncode == 0, scaled.stderr[-3000:]
    assert sorted(row["open_leases"] for row in json.loads(scaled.stdout)) == [2, 2]  # 4 shards, even
    scaled = cdc("scale", "app-user-management", "1", "--json")
    assert scaled.returncode == 0, scaled.stderr[-3000:]
    assert [row["open_leases"] for row in json.loads(scaled.stdout)] == [4]

    stopped = cdc("stop", "workplace-user-search")
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    apps = {row["app"]: row for row in json.loads(cdc("apps", "--json").stdout)}
    assert apps["workplace-user-search"]["workers"] == 0
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    changes = list(UserChangeGenerator(users=30, seed=4, prefix=f"lo-{uuid.uuid4().hex[:6]}-").changes(120))
    apply_changes(users, iter(changes), total=len(changes), progress=False)
    started = cdc("start", "workplace-user-search")
    assert started.returncode == 0, started.stderr[-3000:]
    assert_converges(stack, pipeline)


def _item_counts(stack, pipeline) -> Counter:
    ddb = aws_client("dynamodb", stack, pipeline.region)
    counts = Counter()
    for name in ("Users", *(app.name for app in discover_apps(pipeline))):
        pages = ddb.get_paginator("scan").paginate(TableName=name, Select="COUNT", ConsistentRead=True)
        counts[name] = sum(page["Count"] for page in pages)
    return counts


def _positions(kinesis, pipeline) -> dict[str, set[tuple[str, str]]]:
    """Per stream, the (shard, sequence number) of every record in it."""
    return {name: {(r.shard_id, r.sequence_number) for r in read_stream(kinesis, name)} for name in pipeline.streams}


def _checkpoints(stack, pipeline) -> dict[tuple[str, str], str]:
    """(app, shard) -> the checkpoint in the app's lease table."""
    ddb = lease_client(stack, pipeline.region)
    return {
        (app.name, item["leaseKey"]["S"]): item["checkpoint"]["S"]
        for app in discover_apps(pipeline)
        for item in ddb.scan(TableName=app.name, ConsistentRead=True)["Items"]
    }


def test_localstack_restarted_keeps_items_records_and_checkpoints_and_cdc_up_restores_the_rest(stack, pipeline, capsys):
    """What survives a restart of LocalStack (SIGTERM, then `cdc up`): tables and items
    (DynamoDB Local's files), stream records (kinesis-mock's snapshot, saved on the way out),
    the apps' lease tables and checkpoints. What does not: the streaming destinations and the
    TTL settings (LocalStack's own in-memory state; its persistence of them is not in the
    open-source build): `cdc up` provisions them again before any worker starts."""
    assert_converges(stack, pipeline)
    kinesis = aws_client("kinesis", stack, pipeline.region)
    items = _item_counts(stack, pipeline)
    records = _positions(kinesis, pipeline)
    checkpoints = _checkpoints(stack, pipeline)

    assert localstack.host_process(stack).stop(timeout_s=60)
    capsys.readouterr()
    stacks.up(stack, pipeline)
    said = capsys.readouterr().err

    for table in ("Users", "WorkplaceUsers_V2"):
        assert f"table {table}: Kinesis streaming destination ->" in said, said
    assert "table AppUsers_V2: TTL on ExpiresAt" in said
    assert "created" not in said, "no table, stream or index was lost"
    assert _item_counts(stack, pipeline) == items
    kinesis = aws_client("kinesis", stack, pipeline.region)
    after = _positions(kinesis, pipeline)
    # every record is still there; the workers' resumption from their checkpoints may add
    # some (a rewritten tombstone is a new change of WorkplaceUsers_V2)
    assert all(records[name] <= after[name] for name in records), {n: records[n] - after[n] for n in records}
    resumed = _checkpoints(stack, pipeline)
    assert resumed.keys() == checkpoints.keys()
    for lease, checkpoint in checkpoints.items():
        assert not checkpoint.isdigit() or int(resumed[lease]) >= int(checkpoint), (lease, checkpoint, resumed[lease])

    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    changes = list(UserChangeGenerator(users=40, seed=9, prefix=f"lr-{uuid.uuid4().hex[:6]}-").changes(150))
    apply_changes(users, iter(changes), total=len(changes), progress=False)
    assert_converges(stack, pipeline)
