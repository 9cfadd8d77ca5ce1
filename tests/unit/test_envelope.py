"""The change envelope: built as DynamoDB's Kinesis streaming destination writes it, and read
back into a ChangeRecord (each event name, missing images, times, the table from an ARN)."""

from __future__ import annotations

import uuid

import orjson
import pytest

from consumers.shared import envelope
from consumers.shared.envelope import EventName
from consumers.shared.errors import InvalidChangeRecord
from consumers.shared.records import ChangeRecord, decode_image
from tests.unit.conftest import load_fixture

REFERENCE = load_fixture("ddb-kinesis-change-record.json")
KEYS = {"UserId": {"S": "12345"}}
NEW = {"UserId": {"S": "12345"}, "Email": {"S": "new@example.com"}, "Version": {"N": "8"}}
OLD = {"UserId": {"S": "12345"}, "Email": {"S": "old@example.com"}, "Version": {"N": "7"}}


def _parsed(data: bytes) -> ChangeRecord:
    raw = envelope.parse_payload(data, sequence_number="9")
    return ChangeRecord.from_parsed(raw, data, sequence_number="9", partition_key="pk")


def test_the_reference_record_is_rebuilt_byte_for_byte():
    body = REFERENCE["dynamodb"]
    built = envelope.build(
        REFERENCE["eventName"],
        REFERENCE["tableName"],
        body["Keys"],
        new_image=body["NewImage"],
        old_image=body["OldImage"],
        created_at=body["ApproximateCreationDateTime"],
        region=REFERENCE["awsRegion"],
        event_id=REFERENCE["eventID"],
        size_bytes=body["SizeBytes"],
    )
    assert list(built) == list(REFERENCE) and list(built["dynamodb"]) == list(body)  # the destination's order
    assert envelope.to_bytes(built) == orjson.dumps(REFERENCE)


@pytest.mark.parametrize(
    ("event", "new", "old"),
    [(EventName.INSERT, NEW, None), (EventName.MODIFY, NEW, OLD), (EventName.REMOVE, None, OLD)],
)
def test_round_trip_of_each_event_name(event, new, old):
    built = envelope.build(event, "Users", KEYS, new_image=new, old_image=old, created_at=1_795_731_005_123_456)
    assert (envelope.NEW_IMAGE in built[envelope.BODY]) is (new is not None)
    assert (envelope.OLD_IMAGE in built[envelope.BODY]) is (old is not None)
    record = _parsed(envelope.to_bytes(built))
    assert record.event_name is event and record.table == "Users"
    assert record.keys == {"UserId": "12345"}
    assert record.new_image == (None if new is None else decode_image(new))
    assert record.old_image == (None if old is None else decode_image(old))
    assert record.version == (8 if new is not None else 7)
    assert record.created_at_us == 1_795_731_005_123_456
    assert record.raw == built


@pytest.mark.parametrize("event", ["INSERT", "MODIFY"])
def test_a_missing_new_image_is_built_but_refused_when_read(event):
    data = envelope.to_bytes(envelope.build(event, "Users", KEYS, old_image=OLD))
    with pytest.raises(InvalidChangeRecord, match=f"missing on {event}") as caught:
        _parsed(data)
    assert caught.value.field == "dynamodb.NewImage"


def test_a_remove_without_any_image_takes_its_creation_time_as_version():
    record = _parsed(envelope.to_bytes(envelope.build("REMOVE", "Users", KEYS, created_at=1_795_731_005_123)))
    assert record.new_image is None and record.old_image is None
    assert record.version == record.created_at_us == 1_795_731_005_123_000  # milliseconds, read as such


def test_unknown_event_names_are_not_built():
    with pytest.raises(ValueError):
        envelope.build("UPSERT", "Users", KEYS, new_image=NEW)


def test_defaults_are_now_a_random_event_id_and_no_identity():
    built = envelope.build("INSERT", "Users", KEYS, new_image=NEW)
    uuid.UUID(built[envelope.EVENT_ID])
    assert built[envelope.USER_IDENTITY] is None and built[envelope.AWS_REGION] == "us-east-1"
    assert built[envelope.RECORD_FORMAT] == "application/json" and built[envelope.EVENT_SOURCE] == "aws:dynamodb"
    assert envelope.normalise_creation_time(built[envelope.BODY][envelope.CREATED]) > 1_700_000_000_000_000
    ttl = envelope.build("REMOVE", "Users", KEYS, old_image=OLD, user_identity=envelope.identity("dynamodb", "Service"))
    assert ttl[envelope.USER_IDENTITY] == {"principalId": "dynamodb", "type": "Service"}


def test_bytes_are_written_as_base64():
    built = envelope.build("INSERT", "Users", KEYS, new_image={**NEW, "Avatar": {"B": b"\x89PNG"}})
    assert orjson.loads(envelope.to_bytes(built))["dynamodb"]["NewImage"]["Avatar"] == {"B": "iVBORw=="}


@pytest.mark.parametrize(
    ("precision", "stamp"), [("MICROSECOND", 1_795_731_005_123_456), ("MILLISECOND", 1_795_731_005_123)]
)
def test_creation_stamp_in_the_destinations_precision(precision, stamp):
    assert envelope.creation_stamp(1_795_731_005_123_456_789, precision) == stamp
    assert envelope.normalise_creation_time(stamp) // 1000 == 1_795_731_005_123


def test_table_name_falls_back_to_the_stream_arn():
    arn = "arn:aws:dynamodb:us-east-1:000000000000:table/Users/stream/2026-11-26T00:00:00.000"
    assert envelope.table_name({"tableName": "Orders", "eventSourceARN": arn}) == "Orders"
    assert envelope.table_name({"eventSourceARN": arn}) == "Users"
    assert envelope.table_name({"tableName": "", "eventSourceARN": "arn:aws:kinesis:x"}) is None
