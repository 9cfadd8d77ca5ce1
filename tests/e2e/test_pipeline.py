"""End to end on the real stack: Users -> relay -> Kinesis -> KCL MultiLangDaemon workers ->
AppUsers_V2, WorkplaceUsers_V2 -> relay -> Kinesis -> worker -> OpenSearch. The oracle is
`consumers.verify`, which recomputes every sink from the Users table."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter, defaultdict

import orjson
import pytest

from consumers.runtime.stats import read_stats, stats_dir
from consumers.verify import verify
from scripts.changes.generator import UserChangeGenerator
from scripts.changes.writer import apply_changes
from services.clients import aws_client, aws_resource, lease_client
from tests.cli import cdc
from tests.converge import wait_for
from tests.records import user_insert
from tests.scenarios import versionless_edits_within_one_second

# on an emptied stack: the exact counts below need no re-delivery of an earlier module's records
# (a worker killed there re-reads from its checkpoint when it restarts, at any moment after)
pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("emptied_stack")]

CONVERGE_TIMEOUT_S = 420


def _totals(stack) -> dict[str, Counter]:
    """Each app's counters, summed over its record processors' stats files."""
    totals: dict[str, Counter] = defaultdict(Counter)
    for folder in (stack.state_dir / "apps").glob("*"):
        for stats in read_stats(stats_dir(stack.state_dir, folder.name)):
            totals[stats.app].update(stats.counts)
    return totals


def _converge(stack, pipeline, timeout_s: float = CONVERGE_TIMEOUT_S):
    """Wait until every sink equals its source and the workers have gone quiet."""
    deadline = time.monotonic() + timeout_s
    quiet_since, last = None, None
    while True:
        reports = verify(stack, pipeline)
        totals = _totals(stack)
        if all(r.ok for r in reports) and totals == last:
            if quiet_since and time.monotonic() - quiet_since >= 3:
                return reports
            quiet_since = quiet_since or time.monotonic()
        else:
            quiet_since = None
        last = totals
        if time.monotonic() > deadline:
            pytest.fail("sinks did not converge:\n" + "\n".join(map(str, reports)))
        time.sleep(1)


def _delta(after: dict[str, Counter], before: dict[str, Counter]) -> dict[str, Counter]:
    return {app: after[app] - before.get(app, Counter()) for app in after}


def test_thousands_of_random_changes_reach_every_sink_and_filters_drop_what_they_should(stack, pipeline):
    _converge(stack, pipeline)  # whatever earlier tests wrote is processed
    before = _totals(stack)
    generator = UserChangeGenerator(users=250, seed=42, prefix=f"e-{uuid.uuid4().hex[:6]}-")
    changes = list(generator.changes(2000))
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    started = time.monotonic()
    apply_changes(users, iter(changes), total=len(changes), progress=False)
    written = time.monotonic()
    reports = _converge(stack, pipeline)
    print(
        f"\n2000 changes written in {written - started:.1f}s; all sinks equal {time.monotonic() - written:.1f}s later"
    )
    for report in reports:
        print(report)
        assert report.ok

    delta = _delta(_totals(stack), before)
    app, workplace = delta["app-user-management"], delta["workplace-user-v2"]
    assert app["received"] == workplace["received"] == len(changes)
    # the filters drop exactly what the generator says cannot matter to each app
    assert app["filtered_out"] == generator.tally["touch"] > 0
    assert workplace["filtered_out"] == generator.tally["no_membership_effect"] > 0
    assert all(d["dead_lettered"] == 0 for d in delta.values())


def test_versionless_edits_of_an_item_within_one_second_leave_every_sink_at_the_last(stack, pipeline):
    """The relay stamps each change at the destination's precision (microseconds), so the time
    fallback orders them; `verify` fails while any sink holds an earlier edit."""
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    versionless_edits_within_one_second(users, f"nv-{uuid.uuid4().hex[:8]}")
    _converge(stack, pipeline, timeout_s=120)


def test_a_poison_record_mid_batch_is_dead_lettered_its_neighbours_applied_and_checkpointed_past(stack, pipeline):
    ddb, leases = aws_client("dynamodb", stack, pipeline.region), lease_client(stack, pipeline.region)
    kinesis = aws_client("kinesis", stack, pipeline.region)
    run = uuid.uuid4().hex[:6]
    before_id, after_id = f"p-{run}-before", f"p-{run}-after"
    poison = b'{"eventName": "MODIFY", "tableName": "Users", "dynamodb": {"Keys": "not a map"}}'
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    try:
        # GIVEN three records in one PutRecords call, one partition key: one shard, in this order
        response = kinesis.put_records(
            StreamName="users-changes",
            Records=[
                {"Data": user_insert(before_id, 1), "PartitionKey": run},
                {"Data": poison, "PartitionKey": run},
                {"Data": user_insert(after_id, 1), "PartitionKey": run},
            ],
        )
        shard, poison_seq = response["Records"][1]["ShardId"], response["Records"][1]["SequenceNumber"]
        assert {r["ShardId"] for r in response["Records"]} == {shard}

        # THEN the records around it are applied
        for user_id in (before_id, after_id):
            wait_for(
                f"{user_id} in AppUsers_V2",
                lambda u=user_id: ddb.get_item(TableName="AppUsers_V2", Key={"UserId": {"S": u}}).get("Item"),
            )
        # AND it is in every Users app's dead-letter table, with what is needed to redrive it
        for app, table in (
            ("app-user-management", "app-user-management-deadletters"),
            ("workplace-user-v2", "workplace-user-v2-deadletters"),
            ("user-notifications", "user-notifications-deadletters"),
        ):
            item = wait_for(
                f"the poison record in {table}",
                lambda t=table: ddb.get_item(
                    TableName=t, Key={"ShardId": {"S": shard}, "SequenceNumber": {"S": poison_seq}}
                ).get("Item"),
            )
            assert item["App"]["S"] == app and item["PartitionKey"]["S"] == run
            assert item["Payload"]["B"] == poison
            assert item["ErrorClass"]["S"] == "InvalidChangeRecord"
            assert "dynamodb.Keys" in item["ErrorMessage"]["S"] and poison_seq in item["ErrorMessage"]["S"]
            assert item["FailedAt"]["S"]
            # AND the app's checkpoint moved past it
            wait_for(
                f"{app}'s checkpoint past the poison record",
                lambda a=app: (
                    int(leases.get_item(TableName=a, Key={"leaseKey": {"S": shard}})["Item"]["checkpoint"]["S"])
                    > int(poison_seq)
                ),
            )
    finally:
        # the neighbours were injected into the stream only: make Users say the same
        for user_id in (before_id, after_id):
            users.put_item(Item={"UserId": user_id, "Email": "x@example.com", "Version": 2})
            users.delete_item(Key={"UserId": user_id})
    _converge(stack, pipeline)


def _lease_owners(leases, app_name: str) -> dict[str, str]:
    items = leases.scan(TableName=app_name, ConsistentRead=True)["Items"]
    return {i["leaseKey"]["S"]: i.get("leaseOwner", {}).get("S", "") for i in items}


@pytest.mark.full
def test_a_worker_killed_mid_stream_hands_its_leases_over_and_nothing_is_lost(stack, pipeline):
    """app-user-management's worker is SIGKILLed (supervisor, JVM and record processors at once)
    while changes flow; another worker (another workerId) takes its expired leases over and
    resumes from the checkpoints; every sink ends equal to Users.

    `make test-all` only: the killed worker held the leader lock, which KCL 3.1.3 keeps for 2
    minutes. `make test` proves the takeover by another worker with the non-leader killed
    (tests/integration/test_operations.py) and the restart of a killed worker (chaos,
    worker-jvm-kill)."""
    from consumers.runtime.config import load_app
    from infra.local.components import wait_healthy
    from infra.local.stack import up, worker

    app = load_app("app_user_management", pipeline)
    first, second = worker(stack, app, 1), worker(stack, app, 2)
    leases = lease_client(stack, pipeline.region)
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    changes = list(UserChangeGenerator(users=200, seed=7, prefix=f"lm-{uuid.uuid4().hex[:6]}-").changes(800))
    _converge(stack, pipeline)
    try:
        apply_changes(users, iter(changes[:300]), total=300, progress=False)
        assert first.process.kill()
        second.process.start()
        wait_healthy(second, 30)
        apply_changes(users, iter(changes[300:]), total=500, progress=False)
        wait_for(
            "the leases to move to the second worker",
            lambda: set(_lease_owners(leases, app.name).values()) == {f"{app.name}-worker-2"},
            timeout_s=180,
        )
        for report in _converge(stack, pipeline):
            assert report.ok, report
    finally:
        second.process.stop(timeout_s=60)
        up(stack, pipeline)  # back to the configured worker


def _reshard(stream: str, shards: int) -> dict:
    """`cdc reshard`, as an operator runs it: returns its JSON report."""
    result = cdc("reshard", stream, "--shards", str(shards), "--json", "--timeout", "300")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def _order_breaks(kinesis, stream: str, prefix: str) -> list[str]:
    """Per item of ``prefix``, its records in the stream in the order a consumer reads them
    (each shard in sequence order, every parent before its children): versions that go back."""
    from services.kinesis import list_shards, read_stream

    parents = {
        s["ShardId"]: {p for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")) if p}
        for s in list_shards(kinesis, stream)
    }

    def depth(shard: str) -> int:
        return 1 + max((depth(p) for p in parents.get(shard, ()) if p in parents), default=0)

    by_key: dict[str, list[tuple[int, int, str, str]]] = defaultdict(list)
    for position, record in enumerate(read_stream(kinesis, stream)):
        try:
            change = orjson.loads(record.data)
            user_id = change["dynamodb"]["Keys"]["UserId"]["S"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue  # a poison record another test put on the stream
        if user_id.startswith(prefix):
            image = change["dynamodb"].get("NewImage") or change["dynamodb"]["OldImage"]
            version = int(image["Version"]["N"])
            by_key[user_id].append((depth(record.shard_id), position, change["eventName"], str(version)))
    breaks = []
    for user_id, records in by_key.items():
        records.sort()  # ancestors first; within a shard, sequence order
        for (_, _, _, before), (_, _, event, after) in zip(records, records[1:], strict=False):
            if int(after) < int(before) or (after == before and event != "REMOVE"):
                breaks.append(f"{user_id}: version {before} then {after} ({event})")
    return breaks


def test_the_users_stream_resharded_while_changes_flow_loses_nothing(stack, pipeline):
    """`cdc reshard` splits every shard of the Users stream while changes flow, then merges them
    back: it reports the parents closed and the children opened and waits until every app drained
    the parents; per item, the stream holds the changes in order across the reshards; every sink
    ends equal to Users."""
    from consumers.runtime.config import discover_apps

    kinesis, leases = aws_client("kinesis", stack, pipeline.region), lease_client(stack, pipeline.region)
    stream = pipeline.table("Users").change_stream
    configured = pipeline.streams[stream].shards
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    prefix = f"rs-{uuid.uuid4().hex[:6]}-"
    changes = list(UserChangeGenerator(users=120, seed=13, prefix=prefix).changes(900))
    readers = sorted(app.name for app in discover_apps(pipeline) if app.stream_name == stream)
    _converge(stack, pipeline)
    try:
        for target, part in ((configured * 2, changes[:500]), (configured, changes[500:])):
            writer = threading.Thread(
                target=apply_changes, args=(users, iter(part)), kwargs={"total": len(part), "progress": False}
            )
            writer.start()
            time.sleep(1.0)  # mid-stream
            report = _reshard(stream, target)
            writer.join()
            print(
                f"\ncdc reshard {stream} -> {target}: ACTIVE in {report['active_after_s']}s, parents drained "
                f"in {report['drained_after_s']}s"
            )
            assert len(report["parents"]) == report["before"] and len(report["children"]) == report["after"] == target
            drained = {(row["app"], row["parent"]) for row in report["leases"] if row["drained"]}
            assert drained == {(app, parent) for app in readers for parent in report["parents"]}
            for result in _converge(stack, pipeline):
                assert result.ok, result
            for app_name in readers:  # each app went on to the new shards
                wait_for(
                    f"{app_name} to lease the new shards",
                    lambda a=app_name, wanted=set(report["children"]): wanted <= set(_lease_owners(leases, a)),
                    timeout_s=60,
                )
        assert not _order_breaks(kinesis, stream, prefix)
    finally:
        summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        if summary["OpenShardCount"] != configured:
            _reshard(stream, configured)
