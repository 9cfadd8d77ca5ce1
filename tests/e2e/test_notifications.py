"""user-notifications on the real stack: changes written to Users reach the local webhook
receiver (a real HTTP server that verifies every Standard Webhooks signature), through the relay,
kinesis-mock, the KCL MultiLangDaemon and the webhook sink, with the delivery ledger in DynamoDB
Local. The receiver is told to fail (500 for 30 s, 410) the way a subscriber does; `cdc dlq
redrive` and `cdc replay` are run as a user runs them. The receiver killed under load is one of
the chaos faults (tests/e2e/test_chaos.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from infra.local.webhooks import ReceiverClient, worker_environment
from infra.ops import deadletters
from services.clients import aws_client, aws_resource
from tests.cli import cdc, cdc_json
from tests.converge import assert_converges, wait_for

pytestmark = pytest.mark.stack

APP, LETTERS = "user-notifications", "user-notifications-deadletters"
PRIVATE = ("PasswordHash", "LastSeenAt")


def _of(receiver: ReceiverClient, user_id: str, subscriber: str) -> list[dict]:
    return [
        r
        for r in receiver.deliveries(subscriber)
        if r["verified"] and ((r.get("event") or {}).get("data") or {}).get("user_id") == user_id
    ]


def _acked(receiver: ReceiverClient, user_id: str, subscriber: str) -> list[dict]:
    return [r for r in _of(receiver, user_id, subscriber) if r["first"]]


def _wait_acked(receiver: ReceiverClient, user_id: str, subscriber: str, count: int, timeout_s: float = 120):
    """The first ``count`` events ``subscriber`` acknowledged for the user, once it has them all."""

    def enough():
        acked = _acked(receiver, user_id, subscriber)
        return acked if len(acked) >= count else None

    return wait_for(f"{count} event(s) for {user_id} at {subscriber}", enough, timeout_s)


def _user(user_id: str, version: int, **attributes) -> dict:
    return {
        "UserId": user_id,
        "Email": f"{user_id}@example.com",
        "FirstName": "Ann",
        "Status": "active",
        "PasswordHash": "$2b$12$never-sent",
        "LastSeenAt": version,
        "Version": version,
        **attributes,
    }


@pytest.fixture()
def receiver(stack):
    client = ReceiverClient(stack)
    assert client.healthy()
    yield client
    for subscriber in ("crm", "security"):
        client.behave(subscriber)


def test_each_kind_of_change_reaches_the_subscribers_that_want_it_signed_in_order_without_private_attributes(
    stack, pipeline, receiver
):
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    user_id = f"n-{uuid.uuid4().hex[:6]}"
    joined = {"w-1": {"Role": "member", "Title": "", "JoinedAt": 1}}
    steps = [
        ("created", _user(user_id, 1)),
        ("email", _user(user_id, 2, Email=f"new-{user_id}@example.com")),
        ("status", _user(user_id, 3, Email=f"new-{user_id}@example.com", Status="suspended")),
        (
            "name only: filtered",
            _user(user_id, 4, Email=f"new-{user_id}@example.com", Status="suspended", FirstName="Bo"),
        ),
        (
            "joined",
            _user(
                user_id,
                5,
                Email=f"new-{user_id}@example.com",
                Status="suspended",
                FirstName="Bo",
                Workplaces=joined,
                WorkplaceIds={"w-1"},
            ),
        ),
        ("left", _user(user_id, 6, Email=f"new-{user_id}@example.com", Status="suspended", FirstName="Bo")),
    ]
    for _, item in steps:
        users.put_item(Item=item)
    users.delete_item(Key={"UserId": user_id})

    crm = _wait_acked(receiver, user_id, "crm", 6)
    security = _wait_acked(receiver, user_id, "security", 5)
    events = [r["event"] for r in crm]
    assert [e["type"] for e in events] == ["user.created", *["user.updated"] * 4, "user.deleted"]
    assert [e["data"]["version"] for e in events] == [1, 2, 3, 5, 6, 6]  # version 4 changed FirstName only
    assert events[1]["data"]["changes"]["Email"] == {
        "before": f"{user_id}@example.com",
        "after": f"new-{user_id}@example.com",
    }
    assert events[2]["data"]["changes"]["Status"] == {"before": "active", "after": "suspended"}
    assert events[3]["data"]["workplaces"] == {"joined": ["w-1"], "left": []}
    assert events[4]["data"]["workplaces"] == {"joined": [], "left": ["w-1"]}
    assert [r["event"]["type"] for r in security] == [*["user.updated"] * 4, "user.deleted"]  # no creations
    for record in crm + security:
        assert record["status"] == 200 and record["verified"]
        assert not any(name in json.dumps(record["event"]) for name in PRIVATE), record["event"]
    # the webhook-id is the change's eventID: one id per change, the same for both subscribers
    assert len({r["id"] for r in crm}) == 6 and {r["id"] for r in security} < {r["id"] for r in crm}
    # nothing sent twice
    assert len(_of(receiver, user_id, "crm")) == 6 and len(_of(receiver, user_id, "security")) == 5
    assert_converges(stack, pipeline)


def test_a_subscriber_failing_for_30_s_gets_every_event_in_order_once_it_recovers_nothing_lost(
    stack, pipeline, receiver
):
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    user_id = f"n500-{uuid.uuid4().hex[:6]}"
    users.put_item(Item=_user(user_id, 1))
    _wait_acked(receiver, user_id, "crm", 1)  # the app is running: the outage starts now
    receiver.misbehave("crm", 500, for_s=30)
    recovers = time.time() + 30
    for version in range(2, 7):
        users.put_item(Item=_user(user_id, version, Status=f"s{version}"))
        time.sleep(1)
    crm = _wait_acked(receiver, user_id, "crm", 6)
    security = _wait_acked(receiver, user_id, "security", 5)
    assert [r["event"]["data"]["version"] for r in crm] == [1, 2, 3, 4, 5, 6]
    assert [r["event"]["data"]["version"] for r in security] == [2, 3, 4, 5, 6]
    failed = [r for r in _of(receiver, user_id, "crm") if r["status"] == 500]
    assert len(failed) >= 2, "crm was not retried during its outage"
    assert min(r["received_at"] for r in crm[1:]) >= max(r["received_at"] for r in failed) >= recovers - 10
    # the hold is bounded by the budget (60 s): the shard went on soon after crm recovered
    assert max(r["received_at"] for r in crm) - recovers < 30
    ddb = aws_client("dynamodb", stack, pipeline.region)
    letters = ddb.scan(TableName=LETTERS, ConsistentRead=True)["Items"]
    assert not [x for x in letters if user_id.encode() in x.get("Payload", {}).get("B", b"")], "a letter for it"
    assert_converges(stack, pipeline)


def test_a_gone_subscriber_is_dead_lettered_at_once_then_redriven_after_it_is_fixed(stack, pipeline, receiver):
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    ddb = aws_client("dynamodb", stack, pipeline.region)
    user_id = f"n410-{uuid.uuid4().hex[:6]}"
    users.put_item(Item=_user(user_id, 1))
    _wait_acked(receiver, user_id, "crm", 1)
    receiver.misbehave("security", 410)
    users.put_item(Item=_user(user_id, 2, Status="suspended"))
    _wait_acked(receiver, user_id, "crm", 2)

    def letter():
        return next((x for x in deadletters.letters(ddb, LETTERS) if user_id.encode() in x.payload), None)

    found = wait_for("the dead letter", letter, timeout_s=60)
    assert "security answered 410" in found.error_message and "received" in found.error_message, found.error_message
    assert [r["status"] for r in _of(receiver, user_id, "security")] == [410]  # not retried
    receiver.behave("security")
    crm_before = len(_of(receiver, user_id, "crm"))
    redriven = cdc("dlq", "redrive", APP, found.shard_id, found.sequence_number, "--json")
    assert redriven.returncode == 0, redriven.stderr
    assert [r["event"]["data"]["version"] for r in _acked(receiver, user_id, "security")] == [2]
    assert len(_of(receiver, user_id, "crm")) == crm_before  # crm had it: not sent again
    assert letter() is None
    assert_converges(stack, pipeline)


def test_a_replay_sends_nothing_a_subscriber_already_acknowledged(stack, pipeline, receiver):
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    user_id = f"nr-{uuid.uuid4().hex[:6]}"
    start = datetime.now(UTC) - timedelta(seconds=1)
    for version in (1, 2):
        users.put_item(Item=_user(user_id, version, Status=f"s{version}"))
    _wait_acked(receiver, user_id, "crm", 2)
    assert_converges(stack, pipeline)
    before = receiver.deliveries()
    acknowledged = {(r["subscriber"], r["id"]) for r in before if r["first"]}
    (report,) = cdc_json("replay", APP, "--at", start.isoformat())
    assert report["records"] > 0 and report["stale"] > 0 and report["dead_lettered"] == 0, report
    again = [r for r in receiver.deliveries()[len(before) :] if (r["subscriber"], r["id"]) in acknowledged]
    assert again == [], f"{len(again)} acknowledged event(s) sent again"
    assert_converges(stack, pipeline)


def test_a_worker_given_a_bad_signing_secret_refuses_to_start_and_says_which_key(stack):
    env = {**os.environ, **worker_environment(stack), "NOTIFY_SECRET_SECURITY": "not-a-secret"}
    started = subprocess.run(
        [sys.executable, "-m", "consumers.runtime.daemon", "--app", "user_notifications", "--worker", "9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 2, started.stderr
    assert (
        "user_notifications/app.toml: sink.subscribers.security.secret_env: NOTIFY_SECRET_SECURITY is not a "
        "Standard Webhooks secret" in started.stderr
    )
    assert "not-a-secret" not in started.stderr and "MultiLangDaemon" not in started.stderr
