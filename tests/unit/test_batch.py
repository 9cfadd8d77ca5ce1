"""BatchProcessor's failure handling, through in-memory doubles of its real interfaces.

The sink is ``InMemorySink`` (the real version guard) scripted to fail as the real adapters
do; the dead-letter table a list behind ``put(letter)``; time and sleep are injected. Every
case asserts the exact counts: each record ends once (filtered out, dead-lettered or written),
each write is counted once, with the outcome the sink reported for it first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import pytest

from consumers.runtime.batch import BatchProcessor, BatchStats, InputRecord, RetryPolicy
from consumers.runtime.config import RetryPolicy as ConfigRetryPolicy
from consumers.shared import envelope
from consumers.shared.errors import SinkError
from consumers.shared.filtering import compile_filter_criteria
from consumers.shared.planning import APPLIED, Upsert, WriteResult, delete, upsert
from consumers.sinks.memory import InMemorySink
from tests.records import payload

APP, SHARD = "test-app", "shardId-000000000007"
RETRY = RetryPolicy(max_attempts=3, base_delay_ms=100, max_delay_ms=1_000, maximum_record_age_s=-1)
T0 = 1_800_000_000.0  # the injected clock's start, epoch seconds


# ------------------------------------------------------------------------------ doubles
@dataclass
class ListDeadLetters:
    """The dead-letter table's interface (``put``), into a list."""

    letters: list = field(default_factory=list)

    def put(self, letter) -> None:
        self.letters.append(letter)

    def by_sequence(self) -> dict[str, tuple[str, str]]:
        return {letter.sequence_number: (letter.error_class, letter.error_message) for letter in self.letters}


def user_of(write) -> str:
    return write.key["UserId"]


class ScriptedSink(InMemorySink):
    """``InMemorySink`` failing as scripted, the way the real adapters answer.

    * ``rejects``: user ids whose writes the sink finds invalid: answered REJECTED with a
      reason, the other writes applied (as ``DynamoDbSink`` and ``OpenSearchSink`` answer).
    * ``throttles``: user ids whose writes are answered RETRY on the first ``transient`` calls,
      the other writes applied; empty: every write of those calls (nothing applied).
    * ``poison``: user ids that make the whole call raise a plain ``Exception``, nothing
      applied (a request that breaks as a whole, no write named).
    * ``unusable``: every call raises ``SinkError``.

    ``calls`` lists the user ids of every call, in order.
    """

    def __init__(self, *, rejects=(), poison=(), transient=0, throttles=(), unusable=False):
        super().__init__()
        self.rejects, self.poison, self.unusable = set(rejects), set(poison), unusable
        self.transient, self.throttles = transient, set(throttles)
        self.calls: list[list[str]] = []

    def write(self, writes):
        self.calls.append([user_of(w) for w in writes])
        if self.unusable:
            raise SinkError("Target: ResourceNotFoundException (test)")
        if any(user_of(w) in self.poison for w in writes):
            raise Exception("the request broke (test)")
        throttled = self.transient > 0
        self.transient -= 1
        results = []
        for w in writes:
            if throttled and (not self.throttles or user_of(w) in self.throttles):
                results.append(WriteResult.retry("throttled (test)"))
            elif user_of(w) in self.rejects:
                results.append(WriteResult.rejected(f"invalid {user_of(w)} (test)"))
            else:
                results.append(self.apply(w))
        return results


# ------------------------------------------------------------------------------ records
def change(user_id: str, version: int, event: str = "INSERT", **attributes) -> bytes:
    """A DynamoDB -> Kinesis change record of the Users table."""
    image = {
        "UserId": {"S": user_id},
        "Version": {"N": str(version)},
        "Email": {"S": f"{user_id}@example.com"},
        **{name: {"N": str(value)} for name, value in attributes.items()},
    }
    return payload(
        event,
        "Users",
        {"UserId": {"S": user_id}},
        new_image=image if event != "REMOVE" else None,
        old_image=image if event != "INSERT" else None,
        event_id=f"e-{user_id}-{version}",
        size_bytes=100,
    )


def record(data: bytes, seq: int, arrived: float | None = None) -> InputRecord:
    arrival = datetime.fromtimestamp(arrived, tz=UTC) if arrived is not None else None
    return InputRecord(data, str(seq), None, "pk", arrival)


def users(*ids: str, event: str = "INSERT", version: int = 1) -> list[InputRecord]:
    """One record per user, sequence numbers 1, 2, ..."""
    return [record(change(user_id, version, event), seq) for seq, user_id in enumerate(ids, start=1)]


def transform(change_record):
    """Mirror UserId + Email; a record whose image has `Explode` makes it raise."""
    key = {"UserId": change_record.keys["UserId"]}
    if change_record.is_removal:
        return (delete(change_record, key),)
    if "Explode" in change_record.new_image:
        raise ValueError("cannot project this user (test)")
    return (upsert(change_record, key, {"Email": change_record.new_image["Email"]}),)


def processor(sink, dead_letters, *, retry=RETRY, version_attribute="Version", **seams) -> BatchProcessor:
    seams.setdefault("sleep", lambda seconds: None)
    return BatchProcessor(
        APP,
        SHARD,
        sink,
        dead_letters,
        transform,
        compile_filter_criteria(None),
        retry=retry,
        version_attribute=version_attribute,
        **seams,
    )


def held(sink: InMemorySink) -> dict[str, int]:
    """User id -> the version the sink holds."""
    return {dict(key)["UserId"]: item.version for key, item in sink.items().items()}


# ------------------------------------------------------------------------------ doubles' own check
def test_the_scripted_sink_answers_each_write_in_order_as_the_real_sinks_do():
    sink = ScriptedSink(rejects={"u2"}, transient=1, throttles={"u3"})
    writes = [Upsert({"UserId": u}, {}, 1) for u in ("u1", "u2", "u3")]
    assert sink.write(writes) == [
        APPLIED,
        WriteResult.rejected("invalid u2 (test)"),
        WriteResult.retry("throttled (test)"),
    ]
    assert held(sink) == {"u1": 1}


# ------------------------------------------------------------------------------ rejections
@pytest.mark.parametrize("event", ["INSERT", "REMOVE"])
def test_a_rejection_naming_some_writes_dead_letters_their_records_and_counts_the_others_once(event):
    # GIVEN a sink that finds u2's and u4's writes invalid, applies the others and says so
    sink, dead = ScriptedSink(rejects={"u2", "u4"}), ListDeadLetters()
    # WHEN a batch of four records is processed
    stats = processor(sink, dead).process(users("u1", "u2", "u3", "u4", event=event))
    # THEN u2's and u4's records are dead-lettered with the sink's reason
    assert dead.by_sequence() == {
        "2": ("SinkRejectedWrite", "invalid u2 (test)"),
        "4": ("SinkRejectedWrite", "invalid u4 (test)"),
    }
    assert {(letter.app, letter.shard_id) for letter in dead.letters} == {(APP, SHARD)}
    # AND u1 and u3, applied by the first call, are counted applied once: not sent again, so
    # never counted again as stale (an upsert) or applied (a delete's tombstone)
    assert stats == BatchStats(received=4, applied=2, dead_lettered=2)
    assert sink.calls == [["u1", "u2", "u3", "u4"]]
    assert held(sink) == {"u1": 1, "u3": 1}
    assert all(item.is_tombstone == (event == "REMOVE") for item in sink.items().values())


def test_a_sink_error_no_write_explains_is_bisected_until_the_poison_record_is_alone():
    # GIVEN a sink whose request breaks as a whole (a plain Exception) whenever u3 is in it
    sink, dead = ScriptedSink(poison={"u3"}), ListDeadLetters()
    # WHEN a batch of five records is processed
    stats = processor(sink, dead).process(users("u1", "u2", "u3", "u4", "u5"))
    # THEN bisection isolates u3, dead-lettered with the sink's error; the others are applied once
    assert dead.by_sequence() == {"3": ("Exception", "the request broke (test)")}
    assert sink.calls == [["u1", "u2", "u3", "u4", "u5"], ["u1", "u2"], ["u3", "u4", "u5"], ["u3"], ["u4", "u5"]]
    assert stats == BatchStats(received=5, applied=4, dead_lettered=1)
    assert held(sink) == {"u1": 1, "u2": 1, "u4": 1, "u5": 1}


# ------------------------------------------------------------------------------ transient errors
def test_only_the_writes_answered_retry_are_sent_again_and_each_write_is_counted_once():
    # GIVEN a sink that throttles u2's write on the first call and applies the others
    sink, dead, slept = ScriptedSink(transient=1, throttles={"u2"}), ListDeadLetters(), []
    # WHEN a batch of three records is processed
    stats = processor(sink, dead, sleep=slept.append).process(users("u1", "u2", "u3"))
    # THEN only u2 is sent again, after one back-off, and every write is counted applied once
    assert sink.calls == [["u1", "u2", "u3"], ["u2"]]
    assert len(slept) == 1 and 0 <= slept[0] <= 0.1
    assert stats == BatchStats(received=3, applied=3, retries=1)
    assert dead.letters == []
    assert held(sink) == {"u1": 1, "u2": 1, "u3": 1}


def test_retries_exhausted_dead_letter_every_record_of_the_batch():
    # GIVEN a sink that is throttled on every call, and at most 3 attempts
    sink, dead, slept = ScriptedSink(transient=1_000), ListDeadLetters(), []
    # WHEN a batch of three records is processed
    stats = processor(sink, dead, sleep=slept.append).process(users("u1", "u2", "u3"))
    # THEN the batch was tried 3 times, with 2 back-offs under the exponential ceilings
    assert len(sink.calls) == 3
    assert len(slept) == 2 and 0 <= slept[0] <= 0.1 and 0 <= slept[1] <= 0.2
    # AND every record is dead-lettered as exhausted, and nothing is counted written
    assert dead.by_sequence() == {
        seq: ("RetryableSinkError", "retries exhausted (3): throttled (test)") for seq in ("1", "2", "3")
    }
    assert stats == BatchStats(received=3, dead_lettered=3, retries=2)
    assert held(sink) == {}


def test_records_outgrowing_the_maximum_age_while_retried_are_dead_lettered_and_the_rest_written():
    # GIVEN a sink throttled twice, records at most 60 s old, and a clock every back-off moves 10 s
    sink, dead, clock = ScriptedSink(transient=2), ListDeadLetters(), [T0]
    retry = RetryPolicy(max_attempts=-1, base_delay_ms=100, max_delay_ms=1_000, maximum_record_age_s=60)
    batch = [
        record(change("u1", 1), 1, arrived=T0 - 55),
        record(change("u2", 1), 2, arrived=T0 - 45),
        record(change("u3", 1), 3, arrived=T0 - 5),
    ]
    core = processor(
        sink, dead, retry=retry, now=lambda: clock[0], sleep=lambda seconds: clock.__setitem__(0, clock[0] + 10)
    )
    # WHEN the batch is processed
    stats = core.process(batch)
    # THEN u1 expires after the first back-off (65 s), u2 after the second (65 s)
    assert dead.by_sequence() == {
        "1": ("RecordExpired", "older than maximum_record_age_s=60"),
        "2": ("RecordExpired", "older than maximum_record_age_s=60"),
    }
    # AND u3 is written once the sink recovers, counted once
    assert sink.calls == [["u1", "u2", "u3"], ["u2", "u3"], ["u3"]]
    assert stats == BatchStats(received=3, applied=1, dead_lettered=2, retries=2)
    assert held(sink) == {"u3": 1}


# ------------------------------------------------------------------------------ unusable sink
def test_an_unusable_sink_propagates_and_nothing_is_dead_lettered():
    # GIVEN a sink whose table is gone
    sink, dead = ScriptedSink(unusable=True), ListDeadLetters()
    # WHEN a batch is processed THEN the SinkError propagates, after a single call
    with pytest.raises(SinkError, match="ResourceNotFoundException") as raised:
        processor(sink, dead).process(users("u1", "u2"))
    assert type(raised.value) is SinkError
    assert sink.calls == [["u1", "u2"]]
    # AND no record is dead-lettered: none is at fault
    assert dead.letters == []


# ------------------------------------------------------------------------------ poison records
def test_records_that_fail_to_decode_or_to_transform_are_dead_lettered_and_the_others_applied():
    # GIVEN a batch with a truncated payload (2) and a record its transform cannot project (3)
    sink, dead = ScriptedSink(), ListDeadLetters()
    batch = [
        record(change("u1", 1), 1),
        record(b'{"eventName": "MODIFY"', 2),
        record(change("u2", 1, Explode=1), 3),
        record(change("u3", 4, "MODIFY"), 4),
    ]
    # WHEN it is processed
    stats = processor(sink, dead).process(batch)
    # THEN both are dead-lettered with their error, payload kept; the others written in one call
    assert {seq: error_class for seq, (error_class, _) in dead.by_sequence().items()} == {
        "2": "InvalidChangeRecord",
        "3": "ValueError",
    }
    assert dead.by_sequence()["3"][1] == "cannot project this user (test)"
    assert [letter.payload for letter in dead.letters] == [batch[1].data, batch[2].data]
    assert sink.calls == [["u1", "u3"]]
    assert stats == BatchStats(received=4, applied=2, dead_lettered=2)
    assert held(sink) == {"u1": 1, "u3": 4}


def _with_image_attribute(data: bytes, name: str, raw: dict) -> bytes:
    document = orjson.loads(data)
    document[envelope.BODY][envelope.NEW_IMAGE][name] = raw
    return orjson.dumps(document)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"X": "1"}, "unknown DynamoDB type 'X'"),
        ({"SS": []}, "empty set"),
        ({"SS": ["a", "a"]}, "duplicates"),
        ({"N": "abc"}, "is not a number"),
    ],
)
def test_a_malformed_attribute_the_transform_never_reads_still_dead_letters_its_record(raw, reason):
    # GIVEN a record whose image holds a malformed attribute the transform does not read
    sink, dead = ScriptedSink(), ListDeadLetters()
    batch = [record(change("u1", 1), 1), record(_with_image_attribute(change("u2", 1), "Extra", raw), 2)]
    # WHEN it is processed
    stats = processor(sink, dead).process(batch)
    # THEN it is a dead letter naming the attribute and the problem; its neighbour is applied
    error_class, message = dead.by_sequence()["2"]
    assert error_class == "InvalidChangeRecord" and "NewImage.Extra" in message and reason in message, message
    assert stats == BatchStats(received=2, applied=1, dead_lettered=1)
    assert held(sink) == {"u1": 1}


# ------------------------------------------------------------------------------ what it is given
def test_the_version_comes_from_the_version_attribute_it_is_given():
    # GIVEN a source table whose version attribute is Rev (its items also carry a Version)
    data = change("u1", 3, Rev=7)
    # WHEN the record is processed with version_attribute Rev, and with Version
    for attribute, expected in (("Rev", 7), ("Version", 3)):
        sink = ScriptedSink()
        stats = processor(sink, ListDeadLetters(), version_attribute=attribute).process([record(data, 1)])
        # THEN the write carries that attribute's value
        assert stats == BatchStats(received=1, applied=1)
        assert held(sink) == {"u1": expected}


def test_the_retry_policy_is_the_batch_processors_and_config_re_exports_it():
    assert ConfigRetryPolicy is RetryPolicy
    with pytest.raises(ValueError, match="version_attribute"):
        processor(ScriptedSink(), ListDeadLetters(), version_attribute="")
