"""The record processor through amazon-kclpy's KCLProcess, with in-memory protocol streams.

No Java: the daemon's side of the protocol is replayed as JSON lines, and what the processor
answers (checkpoints, status) is read back. The sink is the in-memory model of the shared
core; the dead-letter table a list.
"""

from __future__ import annotations

import base64
import io
import json
import math
import time
from dataclasses import dataclass, field, replace

import orjson
import pytest
from amazon_kclpy import kcl

from consumers.runtime.batch import BatchProcessor
from consumers.runtime.config import load_app
from consumers.runtime.deadletter import DeadLetterUnavailable
from consumers.runtime.worker import (
    EXIT_DEAD_LETTER_UNAVAILABLE,
    EXIT_SHARD_STILL_OPEN,
    EXIT_SINK_UNUSABLE,
    EXIT_UNEXPECTED,
    KclRecordProcessor,
)
from consumers.shared import envelope
from consumers.shared.errors import SinkError
from consumers.shared.planning import WriteResult
from consumers.sinks.memory import InMemorySink
from producer_config import load_pipeline
from tests.records import payload

SHARD = "shardId-000000000001"


@dataclass
class ListDeadLetters:
    letters: list = field(default_factory=list)
    fail: bool = False

    def put(self, letter) -> None:
        if self.fail:
            raise DeadLetterUnavailable("dead-letter table unreachable (test)")
        self.letters.append(letter)


class FlakySink(InMemorySink):
    """Fails the first `failures` writes transiently, then behaves."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def write(self, writes):
        if self.failures:
            self.failures -= 1
            return [WriteResult.retry("throttled (test)")] * len(writes)
        return super().write(writes)


def change(user_id: str, version: int, event: str = "MODIFY", **attributes) -> bytes:
    image = {
        "UserId": {"S": user_id},
        "Version": {"N": str(version)},
        "Email": {"S": f"{user_id}@Example.com"},
        **{k: {"S": v} for k, v in attributes.items()},
    }
    return payload(
        event,
        "Users",
        {"UserId": {"S": user_id}},
        new_image=image if event != "REMOVE" else None,
        old_image=None
        if event == "INSERT"
        else {**image, "Version": {"N": str(version - 1)}, "Email": {"S": "old@example.com"}},
        event_id=f"e-{user_id}-{version}",
        size_bytes=100,
    )


ARRIVAL_MS = int(time.time() * 1000)  # the records arrived as the tests start


def kinesis_record(data: bytes, seq: int) -> dict:
    return {
        "action": "record",
        "data": base64.b64encode(data).decode(),
        "sequenceNumber": str(seq),
        "subSequenceNumber": 0,
        "partitionKey": "pk",
        "approximateArrivalTimestamp": ARRIVAL_MS,
    }


class UnusableSink(InMemorySink):
    """The sink's table is gone: every write fails for good."""

    def write(self, writes):
        raise SinkError("AppUsers_V2: ResourceNotFoundException (test)")


class StreamDouble:
    """A `services.durability.Durability` answering from the given functions (default: Kinesis
    itself: everything acknowledged is stored, every reported shard end is real)."""

    stream_name = "users-changes"

    def __init__(self, saved_before=lambda: math.inf, shard_closed=lambda shard_id: True):
        self.saved_before, self.shard_closed = saved_before, shard_closed

    def still_stored(self, shard_id, sequence_number, data):
        return True


class Daemon:
    """Plays the MultiLangDaemon's side: the lines it sends, then what the processor wrote.

    ``retry`` overrides the app's retry policy; with ``clock`` (a one-element list, epoch
    seconds) the batch reads that time and every back-off sleep moves it 10 s on."""

    def __init__(self, sink, dead_letters, app="app_user_management", retry=None, clock=None, **stream):
        pipeline = load_pipeline()
        self.app = load_app(app, pipeline)
        if retry:
            self.app = replace(self.app, retry=replace(self.app.retry, **retry))
        self.clock = clock
        self.stream = StreamDouble(**stream)
        self.sink, self.dead_letters, self.exits = sink, dead_letters, []
        self.lines: list[dict] = [
            {"action": "initialize", "shardId": SHARD, "sequenceNumber": "TRIM_HORIZON", "subSequenceNumber": 0}
        ]

    def send(self, message: dict, checkpoint_answers: list[str | None] = ()) -> Daemon:
        self.lines.append(message)
        for error in checkpoint_answers:
            self.lines.append(
                {"action": "checkpoint", "sequenceNumber": None, "subSequenceNumber": None, "error": error}
            )
        return self

    def run(self) -> list[dict]:
        def build(shard_id):
            timing = {"sleep": lambda seconds: None}
            if self.clock is not None:
                timing = {
                    "now": lambda: self.clock[0],
                    "sleep": lambda seconds: self.clock.__setitem__(0, self.clock[0] + 10),
                }
            return BatchProcessor(
                self.app.name,
                shard_id,
                self.sink,
                self.dead_letters,
                self.app.load_transform(),
                self.app.compile_filter(),
                retry=self.app.retry,
                version_attribute=self.app.source.version_attribute or "Version",
                **timing,
            )

        processor = KclRecordProcessor(self.app.name, build, self.stream, exit=self.exits.append)
        stdin = io.StringIO("".join(json.dumps(line) + "\n" for line in self.lines))
        stdout, stderr = io.StringIO(), io.StringIO()
        kcl.KCLProcess(processor, input_file=stdin, output_file=stdout, error_file=stderr).run()
        self.stderr = stderr.getvalue()
        return [json.loads(line) for line in stdout.getvalue().splitlines() if line.strip()]


def checkpoints(output: list[dict]) -> list[str | None]:
    return [m["sequenceNumber"] for m in output if m["action"] == "checkpoint"]


def test_a_batch_is_applied_then_checkpointed_at_its_last_record():
    sink = InMemorySink()
    daemon = Daemon(sink, ListDeadLetters())
    daemon.send(
        {
            "action": "processRecords",
            "millisBehindLatest": 0,
            "records": [
                kinesis_record(change("u1", 1, "INSERT"), 10),
                kinesis_record(change("u1", 2), 11),
                kinesis_record(change("u2", 5, "INSERT"), 12),
            ],
        },
        checkpoint_answers=[None],
    )
    output = daemon.run()
    assert checkpoints(output) == ["12"]
    assert output[-1] == {"action": "status", "responseFor": "processRecords"}
    assert sink.get({"UserId": "u1"}).version == 2 and sink.get({"UserId": "u2"}).version == 5
    assert sink.get({"UserId": "u1"}).document["Email"] == "u1@example.com"  # lower-cased projection


def test_a_poison_record_in_the_middle_is_dead_lettered_and_the_rest_applied():
    sink, dead = InMemorySink(), ListDeadLetters()
    records = [
        kinesis_record(change("u1", 1, "INSERT"), 20),
        kinesis_record(b'{"eventName": "MODIFY"', 21),
        kinesis_record(change("u2", 1, "INSERT"), 22),
    ]
    output = (
        Daemon(sink, dead)
        .send({"action": "processRecords", "millisBehindLatest": 0, "records": records}, checkpoint_answers=[None])
        .run()
    )
    assert [letter.sequence_number for letter in dead.letters] == ["21"]
    letter = dead.letters[0]
    assert letter.shard_id == SHARD and letter.app == "app-user-management"
    assert letter.error_class == "InvalidChangeRecord" and letter.payload == b'{"eventName": "MODIFY"'
    assert "21" in letter.error_message
    assert sink.get({"UserId": "u1"}) is not None and sink.get({"UserId": "u2"}) is not None
    assert checkpoints(output) == ["22"]  # the checkpoint moves past the poison record


def test_transient_sink_errors_are_retried_before_the_checkpoint():
    sink = FlakySink(failures=3)
    output = (
        Daemon(sink, ListDeadLetters())
        .send(
            {
                "action": "processRecords",
                "millisBehindLatest": 0,
                "records": [kinesis_record(change("u1", 1, "INSERT"), 30)],
            },
            checkpoint_answers=[None],
        )
        .run()
    )
    assert sink.failures == 0 and sink.get({"UserId": "u1"}).version == 1
    assert checkpoints(output) == ["30"]


def test_retries_exhausted_dead_letter_the_batch_and_move_on():
    sink, dead = FlakySink(failures=100), ListDeadLetters()
    output = (
        Daemon(sink, dead, retry={"max_attempts": 10})
        .send(
            {
                "action": "processRecords",
                "millisBehindLatest": 0,
                "records": [kinesis_record(change("u1", 1, "INSERT"), 31)],
            },
            checkpoint_answers=[None],
        )
        .run()
    )
    assert [(d.sequence_number, d.error_class) for d in dead.letters] == [("31", "RetryableSinkError")]
    assert "retries exhausted (10)" in dead.letters[0].error_message
    assert checkpoints(output) == ["31"]


def test_records_outgrowing_the_maximum_age_while_retried_are_dead_lettered():
    sink, dead = FlakySink(failures=1000), ListDeadLetters()
    daemon = Daemon(sink, dead, retry={"max_attempts": -1, "maximum_record_age_s": 120}, clock=[ARRIVAL_MS / 1000 + 30])
    output = daemon.send(
        {
            "action": "processRecords",
            "millisBehindLatest": 0,
            "records": [kinesis_record(change("u1", 1, "INSERT"), 32)],
        },
        checkpoint_answers=[None],
    ).run()
    assert [(d.sequence_number, d.error_class) for d in dead.letters] == [("32", "RecordExpired")]
    assert 900 < sink.failures < 1000  # retried until it expired, ~10 back-offs of 10 s
    assert checkpoints(output) == ["32"]


def test_an_unusable_sink_stops_the_processor_without_dead_letters_or_checkpoint():
    dead = ListDeadLetters()
    daemon = Daemon(UnusableSink(), dead)
    output = daemon.send(
        {
            "action": "processRecords",
            "millisBehindLatest": 0,
            "records": [kinesis_record(change("u1", 1, "INSERT"), 33), kinesis_record(change("u2", 1, "INSERT"), 34)],
        }
    ).run()
    assert dead.letters == []  # no record is at fault: dead-lettering them would lose them
    assert checkpoints(output) == []
    assert daemon.exits == [EXIT_SINK_UNUSABLE]


def test_no_checkpoint_when_a_poison_record_cannot_be_dead_lettered():
    daemon = Daemon(InMemorySink(), ListDeadLetters(fail=True))
    output = daemon.send(
        {"action": "processRecords", "millisBehindLatest": 0, "records": [kinesis_record(b"not json", 40)]}
    ).run()
    assert checkpoints(output) == []
    assert daemon.exits == [EXIT_DEAD_LETTER_UNAVAILABLE]


class BrokenDeadLetters(ListDeadLetters):
    def put(self, letter) -> None:
        raise RuntimeError("a bug in the dead-letter adapter (test)")


def test_an_unexpected_error_stops_the_processor_without_a_checkpoint():
    daemon = Daemon(InMemorySink(), BrokenDeadLetters())
    output = daemon.send(
        {
            "action": "processRecords",
            "millisBehindLatest": 0,
            "records": [kinesis_record(change("u1", 1, "INSERT"), 41), kinesis_record(b"{", 42)],
        }
    ).run()
    assert daemon.exits == [EXIT_UNEXPECTED]
    assert checkpoints(output) == []


def test_filtered_records_are_checkpointed_without_writes():
    sink = InMemorySink()
    touch = orjson.loads(change("u1", 2))  # made a LastSeenAt-only change: no projected attribute differs
    body = touch[envelope.BODY]
    body[envelope.OLD_IMAGE]["Email"] = body[envelope.NEW_IMAGE]["Email"]
    body[envelope.NEW_IMAGE]["LastSeenAt"] = {"N": "123"}
    output = (
        Daemon(sink, ListDeadLetters())
        .send(
            {"action": "processRecords", "millisBehindLatest": 0, "records": [kinesis_record(orjson.dumps(touch), 50)]},
            checkpoint_answers=[None],
        )
        .run()
    )
    assert sink.items() == {}
    assert checkpoints(output) == ["50"]


def test_shard_end_checkpoints_at_the_end():
    output = Daemon(InMemorySink(), ListDeadLetters()).send({"action": "shardEnded"}, checkpoint_answers=[None]).run()
    assert checkpoints(output) == [None]  # null: the end of the shard, so the children may start
    assert output[-1] == {"action": "status", "responseFor": "shardEnded"}


def test_an_end_of_a_shard_the_stream_reports_open_stops_the_processor_without_checkpoint():
    # kinesis-mock, restarted without records it had acknowledged, answers the KCL's read
    # position with ResourceNotFound, and the KCL reports the end of the (open) shard
    asked = []
    daemon = Daemon(InMemorySink(), ListDeadLetters(), shard_closed=lambda shard_id: asked.append(shard_id) or False)
    output = daemon.send({"action": "shardEnded"}).run()
    assert asked == [SHARD]
    assert checkpoints(output) == []
    assert daemon.exits == [EXIT_SHARD_STILL_OPEN]


def test_requested_shutdown_checkpoints_the_last_applied_record_once_saved():
    answers = iter([None])  # not saved yet after the batch; saved by the shutdown
    daemon = Daemon(InMemorySink(), ListDeadLetters(), saved_before=lambda: next(answers, (ARRIVAL_MS + 1) * 1_000_000))
    daemon.send(
        {
            "action": "processRecords",
            "millisBehindLatest": 0,
            "records": [kinesis_record(change("u1", 1, "INSERT"), 60)],
        }
    )
    daemon.send({"action": "shutdownRequested"}, checkpoint_answers=[None])
    assert checkpoints(daemon.run()) == ["60"]


def test_no_checkpoint_after_a_lost_lease():
    daemon = Daemon(InMemorySink(), ListDeadLetters())
    daemon.send(
        {
            "action": "processRecords",
            "millisBehindLatest": 0,
            "records": [kinesis_record(change("u1", 1, "INSERT"), 70)],
        },
        checkpoint_answers=[None],
    )
    daemon.send({"action": "leaseLost"})
    output = daemon.run()
    assert checkpoints(output) == ["70"]
    assert output[-1] == {"action": "status", "responseFor": "leaseLost"}


@pytest.mark.parametrize("error", ["ThrottlingException", "KinesisClientLibDependencyException"])
def test_a_throttled_or_unreachable_checkpoint_is_retried(error):
    output = (
        Daemon(InMemorySink(), ListDeadLetters())
        .send(
            {
                "action": "processRecords",
                "millisBehindLatest": 0,
                "records": [kinesis_record(change("u1", 1, "INSERT"), 80)],
            },
            checkpoint_answers=[error, None],
        )
        .run()
    )
    assert checkpoints(output) == ["80", "80"]


def test_a_refused_checkpoint_is_not_retried():
    output = (
        Daemon(InMemorySink(), ListDeadLetters())
        .send(
            {
                "action": "processRecords",
                "millisBehindLatest": 0,
                "records": [kinesis_record(change("u1", 1, "INSERT"), 80)],
            },
            checkpoint_answers=["InvalidStateException"],
        )
        .run()
    )
    assert checkpoints(output) == ["80"]


def test_a_checkpoint_waits_until_kinesis_saved_the_records_and_an_empty_poll_writes_it():
    # GIVEN a stream that saves records now and then (the local stack's kinesis-mock): asked
    # after each of the first three polls, it has saved nothing yet; from the fourth on, them all
    answers = iter([None, None, None])
    arrived = (ARRIVAL_MS + 1) * 1_000_000  # the records arrived before this (ns)
    daemon = Daemon(InMemorySink(), ListDeadLetters(), saved_before=lambda: next(answers, arrived))

    def batch(*seqs):
        return {
            "action": "processRecords",
            "millisBehindLatest": 0,
            "records": [kinesis_record(change("u1", n, "MODIFY"), n) for n in seqs],
        }

    empty = {"action": "processRecords", "millisBehindLatest": 0, "records": []}
    # WHEN two batches are processed, then polls come back empty
    daemon.send(batch(1, 2)).send(batch(3)).send(empty)
    daemon.send(empty, checkpoint_answers=[None]).send(empty)
    output = daemon.run()
    # THEN the only checkpoint is at the newest record, written on the first poll after the save
    assert checkpoints(output) == ["3"]
    assert [m["responseFor"] for m in output if m["action"] == "status"][-3:] == ["processRecords"] * 3


def test_a_checkpoint_waits_only_for_records_not_yet_saved():
    daemon = Daemon(InMemorySink(), ListDeadLetters(), saved_before=lambda: (ARRIVAL_MS + 1) * 1_000_000)
    daemon.send(
        {
            "action": "processRecords",
            "millisBehindLatest": 0,
            "records": [kinesis_record(change("u1", 1, "INSERT"), 10)],
        },
        checkpoint_answers=[None],
    )
    assert checkpoints(daemon.run()) == ["10"]
    held = Daemon(InMemorySink(), ListDeadLetters(), saved_before=lambda: ARRIVAL_MS * 1_000_000)
    held.send(
        {
            "action": "processRecords",
            "millisBehindLatest": 0,
            "records": [kinesis_record(change("u1", 1, "INSERT"), 10)],
        }
    )
    held.send({"action": "shutdownRequested"})
    output = held.run()
    assert checkpoints(output) == [], "arrived in the millisecond the save began: maybe not in it"
    assert output[-1] == {"action": "status", "responseFor": "shutdownRequested"}


@pytest.mark.parametrize("app", ["workplace_user_v2", "workplace_user_search", "app_user_management"])
def test_every_app_config_loads_and_its_transform_runs(app):
    sink = InMemorySink()
    data = (
        change("u9", 3, "INSERT")
        if app != "workplace_user_search"
        else payload(
            "INSERT",
            "WorkplaceUsers_V2",
            {"WorkplaceId": {"S": "w-1"}, "UserId": {"S": "u9"}},
            new_image={
                "WorkplaceId": {"S": "w-1"},
                "UserId": {"S": "u9"},
                "Role": {"S": "staff"},
                "Version": {"N": "3"},
            },
            event_id="x",
            size_bytes=10,
        )
    )
    output = (
        Daemon(sink, ListDeadLetters(), app=app)
        .send(
            {"action": "processRecords", "millisBehindLatest": 0, "records": [kinesis_record(data, 90)]},
            checkpoint_answers=[None],
        )
        .run()
    )
    assert checkpoints(output) == ["90"]
