"""Dead letters on the real stack: the bad-input catalogue put on the Users stream among good
records lands in app-user-management's dead letters (the neighbours applied); `cdc dlq list`,
`show` and a dry run report them; once the cause is fixed (here: a test double of the app's
transform) a redrive applies what can be applied, finds a superseded change stale, keeps the
undecodable letters with their new error, and a second redrive changes nothing."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import pytest

from consumers.app_user_management import transform as app
from consumers.runtime.wiring import build_batch_processor
from consumers.shared.planning import upsert
from infra.ops import deadletters
from services.clients import aws_client, aws_resource, opensearch_client
from tests.cli import cdc
from tests.converge import assert_converges, wait_for
from tests.records import change_record, edited, user_insert

pytestmark = pytest.mark.stack

APP, TABLE, SINK = "app_user_management", "app-user-management-deadletters", "AppUsers_V2"


def fixed_transform(record):
    """The app's transform with the cause fixed: Roles that are not a list, oversized Emails."""
    if record.is_removal:
        return app.transform(record)
    user = dict(record.after)
    if not isinstance(user.get("Roles"), (list, set, frozenset, tuple)):
        user["Roles"] = []
    user["Email"] = str(user.get("Email", ""))[:200]
    return (upsert(record, {"UserId": record.keys["UserId"]}, app.project_user(user)),)


def test_the_bad_input_catalogue_is_dead_lettered_then_redriven_once_the_cause_is_fixed(stack, pipeline):
    ddb, kinesis = aws_client("dynamodb", stack, pipeline.region), aws_client("kinesis", stack, pipeline.region)
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    run = uuid.uuid4().hex[:6]
    ids = {name: f"dl-{run}-{name}" for name in ("before", "after", "stale", "roles", "big")}
    catalogue = {  # name -> (payload, what its error must say)
        "not-json": (b"\xff\xfe this is not JSON", "InvalidChangeRecord"),
        "not-a-change": (b'{"hello": "world"}', "InvalidChangeRecord"),
        "bad-number": (user_insert(f"dl-{run}-n", 1, Version={"N": "abc"}), "Version"),
        "unknown-event": (edited(user_insert(f"dl-{run}-e", 1), lambda d: d.update(eventName="UPSERT")), "eventName"),
        "no-keys": (edited(user_insert(f"dl-{run}-k", 1), lambda d: d["dynamodb"].pop("Keys")), "dynamodb.Keys"),
        "unknown-type": (user_insert(f"dl-{run}-t", 1, Nickname={"X": "1"}), "unknown DynamoDB type"),
        "empty-set": (user_insert(f"dl-{run}-s", 1, Tags={"SS": []}), "empty set"),
        "duplicated-set": (user_insert(f"dl-{run}-d", 1, Tags={"SS": ["a", "a"]}), "duplicates"),
        "stale": (user_insert(ids["stale"], 1, Roles={"N": "5"}), "TypeError"),
        "roles": (user_insert(ids["roles"], 1, Roles={"N": "5"}), "TypeError"),
        "big": (user_insert(ids["big"], 1, Email={"S": "x" * 1_040_000}), "SinkRejectedWrite"),
    }
    undecodable = [name for name in catalogue if name not in ("stale", "roles", "big")]
    entries = [
        user_insert(ids["before"], 1),
        *(payload for payload, _ in catalogue.values()),
        user_insert(ids["after"], 1),
    ]
    response = kinesis.put_records(
        StreamName="users-changes", Records=[{"Data": data, "PartitionKey": run} for data in entries]
    )
    assert not response.get("FailedRecordCount")
    shard = response["Records"][0]["ShardId"]
    seqs = {name: r["SequenceNumber"] for name, r in zip(catalogue, response["Records"][1:-1], strict=True)}
    try:
        # THEN every good record around them is applied, every bad one is a letter naming its problem
        for user_id in (ids["before"], ids["after"]):
            wait_for(
                f"{user_id} in {SINK}",
                lambda u=user_id: ddb.get_item(TableName=SINK, Key={"UserId": {"S": u}}).get("Item"),
            )
        letters = {
            name: wait_for(f"the {name} letter", lambda s=seq: deadletters.read_letter(ddb, TABLE, shard, s))
            for name, seq in seqs.items()
        }
        for name, (_, reason) in catalogue.items():
            letter = letters[name]
            assert reason in f"{letter.error_class}: {letter.error_message}", (name, letter.error_message)
            assert letter.redrive_count == 0
        assert letters["big"].truncated and letters["big"].payload_bytes > 1_000_000

        # GIVEN a newer version of one of them applied meanwhile
        users.put_item(Item={"UserId": ids["stale"], "Email": "v2@example.com", "Version": 2})
        wait_for(
            "the stale user's v2", lambda: ddb.get_item(TableName=SINK, Key={"UserId": {"S": ids["stale"]}}).get("Item")
        )

        # the CLI reports them
        listed = cdc("dlq", "list", APP, "--json")
        assert listed.returncode == 0, listed.stderr
        assert set(seqs.values()) <= {row["sequence"] for row in json.loads(listed.stdout)}
        shown = cdc("dlq", "show", APP, shard, seqs["roles"], "--json")
        assert shown.returncode == 0 and json.loads(shown.stdout)["payload"]["eventName"] == "INSERT"
        dry = cdc("dlq", "redrive", APP, shard, seqs["roles"], "--dry-run", "--json")
        assert dry.returncode == 1 and "TypeError" in json.loads(dry.stdout)["outcomes"][0]["outcome"], dry.stdout
        assert deadletters.read_letter(ddb, TABLE, shard, seqs["roles"]).redrive_count == 0  # a dry run writes nothing

        # WHEN the cause is fixed and every letter redriven
        real, _ = build_batch_processor(APP, stack)
        build = lambda shard_id: replace(real(shard_id), transform=fixed_transform)  # noqa: E731
        report = deadletters.redrive(ddb, kinesis, TABLE, "users-changes", letters.values(), build)

        # THEN the fixable ones are settled and removed: two applied, the superseded one stale
        assert (report.letters, report.settled, report.failed) == (len(catalogue), 3, len(undecodable)), report.outcomes
        assert (report.stats.applied, report.stats.stale) == (2, 1), report.row()
        assert ddb.get_item(TableName=SINK, Key={"UserId": {"S": ids["stale"]}})["Item"]["Version"] == {"N": "2"}
        assert ddb.get_item(TableName=SINK, Key={"UserId": {"S": ids["roles"]}})["Item"]["Roles"] == {"L": []}
        big = ddb.get_item(TableName=SINK, Key={"UserId": {"S": ids["big"]}})["Item"]
        assert len(big["Email"]["S"]) == 200  # re-read whole from the stream, then fixed
        # AND the undecodable ones stay, with their new error and the first failure kept
        for name in undecodable:
            kept = deadletters.read_letter(ddb, TABLE, shard, seqs[name])
            assert kept.redrive_count == 1 and kept.first_failed_at == letters[name].failed_at
            assert catalogue[name][1] in f"{kept.error_class}: {kept.error_message}"
        for name in ("stale", "roles", "big"):
            assert deadletters.read_letter(ddb, TABLE, shard, seqs[name]) is None

        # WHEN redriven again: the settled ones are gone (a no-op), the others fail again
        again = cdc("dlq", "redrive", APP, *(x for n in ("stale", "roles", "big") for x in (shard, seqs[n])), "--json")
        assert json.loads(again.stdout)["letters"] == 0 and "not in" in again.stderr
        # AND the unrecoverable ones can be discarded
        bad = [x for n in undecodable for x in (shard, seqs[n])]
        assert cdc("dlq", "discard", APP, *bad).returncode == 0
        assert all(deadletters.read_letter(ddb, TABLE, shard, s) is None for s in seqs.values())
    finally:
        # the records were put on the stream only: make Users say the same, and drop the other
        # apps' letters of them
        for user_id in ids.values():
            users.put_item(Item={"UserId": user_id, "Email": "x@example.com", "Version": 3})
            users.delete_item(Key={"UserId": user_id})
        for other in ("workplace-user-v2-deadletters", "user-notifications-deadletters"):
            deadletters.discard(
                ddb, other, [x for s in seqs.values() if (x := deadletters.read_letter(ddb, other, shard, s))]
            )
    assert_converges(stack, pipeline)


def test_a_document_the_strict_mapping_refuses_is_dead_lettered_and_its_neighbours_indexed(stack, pipeline):
    """workplace-user-search among good records on its stream: a membership whose JoinedAt is
    no date, which the index's strict mapping (epoch_second) refuses."""
    ddb, kinesis = aws_client("dynamodb", stack, pipeline.region), aws_client("kinesis", stack, pipeline.region)
    search, index, table = opensearch_client(stack), "workplace-users-v2", "workplace-user-search-deadletters"
    run = uuid.uuid4().hex[:6]

    def membership(user: str, version: int, event: str = "INSERT", **fields) -> bytes:
        keys = {"WorkplaceId": {"S": f"w-{run}"}, "UserId": {"S": user}}
        image = {**keys, "Email": {"S": f"{user}@example.com"}, "Role": {"S": "staff"}, "Version": {"N": str(version)}}
        return change_record("WorkplaceUsers_V2", keys, {**image, "JoinedAt": {"N": "1700000000"}, **fields}, event)

    users = {name: f"sm-{run}-{name}" for name in ("before", "bad", "after")}
    entries = [
        membership(users["before"], 1),
        membership(users["bad"], 1, JoinedAt={"S": "yesterday"}),
        membership(users["after"], 1),
    ]
    response = kinesis.put_records(
        StreamName="workplace-users-v2-changes", Records=[{"Data": data, "PartitionKey": run} for data in entries]
    )
    assert not response.get("FailedRecordCount")
    shard, seq = response["Records"][1]["ShardId"], response["Records"][1]["SequenceNumber"]
    try:
        letter = wait_for("the refused document's letter", lambda: deadletters.read_letter(ddb, table, shard, seq))
        assert letter.error_class == "SinkRejectedWrite" and "JoinedAt" in letter.error_message, letter.error_message
        for name in ("before", "after"):
            doc_id = f"w-{run}#{users[name]}"
            wait_for(f"{doc_id} indexed", lambda d=doc_id: search.exists(index=index, id=d))
        assert not search.exists(index=index, id=f"w-{run}#{users['bad']}")
    finally:  # the records were put on the stream only: take the documents out again
        removals = [membership(user, 2, "REMOVE") for user in users.values()]
        kinesis.put_records(
            StreamName="workplace-users-v2-changes", Records=[{"Data": d, "PartitionKey": run} for d in removals]
        )
        deadletters.discard(ddb, table, [x for x in (deadletters.read_letter(ddb, table, shard, seq),) if x])
    assert_converges(stack, pipeline)
