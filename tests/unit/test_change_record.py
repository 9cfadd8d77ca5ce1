"""ChangeRecord: the reference payload, time units, versions, every invalid reason."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from consumers.shared.errors import InvalidChangeRecord
from consumers.shared.records import (
    ChangeRecord,
    EventName,
    LazyImage,
    decode_image,
    normalise_creation_time,
)

ARRIVAL = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def build(payload: bytes, **kwargs) -> ChangeRecord:
    options = {"sequence_number": "4960001", "partition_key": "pk-1", "arrival_time": ARRIVAL}
    options.update(kwargs)
    return ChangeRecord.from_kinesis(payload, **options)


def test_reference_payload(reference_record):
    payload = orjson.dumps(reference_record)
    record = build(payload)
    body = reference_record["dynamodb"]
    assert record.table == reference_record["tableName"]
    assert record.event_name is EventName.MODIFY
    assert record.keys == decode_image(body["Keys"])
    assert dict(record.new_image) == decode_image(body["NewImage"])
    assert dict(record.old_image) == decode_image(body["OldImage"])
    assert record.version == int(body["NewImage"]["Version"]["N"])
    assert record.created_at_us == body["ApproximateCreationDateTime"]  # already microseconds
    assert (record.sequence_number, record.partition_key, record.arrival_time) == ("4960001", "pk-1", ARRIVAL)
    assert record.raw_payload == payload
    assert record.raw == reference_record
    assert record.event_name is EventName.MODIFY and not record.is_removal


def test_images_decode_lazily_and_cache(reference_record):
    record = build(orjson.dumps(reference_record))
    image = record.new_image
    assert isinstance(image, LazyImage)
    assert image._cache == {}
    first = image["WorkplaceIds"]
    assert list(image._cache) == ["WorkplaceIds"]
    assert image["WorkplaceIds"] is first
    assert len(image) == len(reference_record["dynamodb"]["NewImage"])
    assert "Email" in image and "Nope" not in image
    assert image.get("Nope", "default") == "default"
    with pytest.raises(KeyError):
        image["Nope"]


@pytest.mark.parametrize(
    ("stamp", "expected_us"),
    [
        (1795731005123456, 1795731005123456),  # microseconds
        (1795731005123, 1795731005123000),  # milliseconds
        (1795731005, 1795731005000000),  # seconds (DynamoDB Streams-shaped emulators)
        (1795731005.5, 1795731005500000),
        ("1678831218.0", 1678831218000000),  # Lambda's DynamoDB Streams example shape
        (100_000_000_000, 100_000_000_000_000),  # 1e11: smallest millisecond value
        (99_999_999_999_999, 99_999_999_999_999_000),  # largest millisecond value
        (100_000_000_000_000, 100_000_000_000_000),  # 1e14: smallest microsecond value
    ],
)
def test_creation_time_unit_is_decided_by_magnitude(make_payload, stamp, expected_us):
    record = build(make_payload(set={"dynamodb.ApproximateCreationDateTime": stamp}))
    assert record.created_at_us == expected_us
    assert normalise_creation_time(stamp) == expected_us


def test_version_falls_back_to_creation_time(make_payload):
    record = build(
        make_payload(
            drop=("dynamodb.NewImage.Version",),
            set={"dynamodb.ApproximateCreationDateTime": 1795731005123},
        )
    )
    assert record.version == 1795731005123000 == record.created_at_us


def test_remove_takes_version_from_old_image(make_payload):
    record = build(make_payload(eventName="REMOVE", drop=("dynamodb.NewImage",)))
    assert record.event_name is EventName.REMOVE and record.new_image is None
    assert record.version == 7
    assert record.is_removal


def test_insert_without_old_image(make_payload):
    record = build(make_payload(eventName="INSERT", drop=("dynamodb.OldImage",)))
    assert record.old_image is None and record.version == 8


def test_custom_version_attribute(make_payload):
    payload = make_payload(set={"dynamodb.NewImage.Rev": {"N": "42"}})
    assert build(payload, version_attribute="Rev").version == 42


def test_the_core_knows_no_sink_convention(make_payload):
    # an attribute that one sink uses to mark deletes is just an attribute here
    payload = make_payload(
        set={"dynamodb.NewImage": {"UserId": {"S": "12345"}, "Version": {"N": "9"}, "_cdc_tombstone": {"BOOL": True}}}
    )
    record = build(payload)
    assert record.event_name is EventName.MODIFY and not record.is_removal
    assert record.version == 9


def test_table_from_event_source_arn(make_payload):
    arn = "arn:aws:dynamodb:us-east-1:123456789012:table/Orders/stream/2026-11-26T00:00:00.000"
    assert build(make_payload(drop=("tableName",), eventSourceARN=arn)).table == "Orders"


INVALID = [
    (b"{not json", "<payload>", "not JSON"),
    (b"[1, 2]", "<payload>", "not a JSON object"),
    (b'"text"', "<payload>", "not a JSON object"),
]


@pytest.mark.parametrize(("payload", "field", "reason"), INVALID)
def test_invalid_payloads(payload, field, reason):
    with pytest.raises(InvalidChangeRecord, match=reason) as caught:
        build(payload)
    assert caught.value.field == field
    assert caught.value.sequence_number == "4960001"
    assert "4960001" in str(caught.value)


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"drop": ("eventName",)}, "eventName", "missing"),
        ({"eventName": "UPSERT"}, "eventName", "unknown event name"),
        ({"eventName": 3}, "eventName", "unknown event name"),
        ({"drop": ("tableName",)}, "tableName", "missing"),
        ({"drop": ("dynamodb",)}, "dynamodb", "missing"),
        ({"dynamodb": []}, "dynamodb", "not an object"),
        ({"drop": ("dynamodb.Keys",)}, "dynamodb.Keys", "missing"),
        ({"set": {"dynamodb.Keys": {}}}, "dynamodb.Keys", "not a non-empty object"),
        ({"set": {"dynamodb.Keys": {"UserId": {"S": 1}}}}, "dynamodb.Keys.UserId", "S value must be a string"),
        ({"drop": ("dynamodb.NewImage",)}, "dynamodb.NewImage", "missing on MODIFY"),
        ({"eventName": "INSERT", "drop": ("dynamodb.NewImage",)}, "dynamodb.NewImage", "missing on INSERT"),
        ({"set": {"dynamodb.NewImage": "x"}}, "dynamodb.NewImage", "not an object"),
        ({"set": {"dynamodb.OldImage": 5}}, "dynamodb.OldImage", "not an object"),
        ({"drop": ("dynamodb.ApproximateCreationDateTime",)}, "dynamodb.ApproximateCreationDateTime", "missing"),
        (
            {"set": {"dynamodb.ApproximateCreationDateTime": "soon"}},
            "dynamodb.ApproximateCreationDateTime",
            "not a number",
        ),
        ({"set": {"dynamodb.ApproximateCreationDateTime": -5}}, "dynamodb.ApproximateCreationDateTime", "positive"),
        (
            {"set": {"dynamodb.ApproximateCreationDateTime": True}},
            "dynamodb.ApproximateCreationDateTime",
            "must be a number",
        ),
        (
            {"set": {"dynamodb.ApproximateCreationDateTime": 10**18}},
            "dynamodb.ApproximateCreationDateTime",
            "too large",
        ),
        ({"set": {"dynamodb.NewImage.Version": {"S": "8"}}}, "dynamodb.NewImage.Version", "must be an N attribute"),
        ({"set": {"dynamodb.NewImage.Version": {"N": "8.5"}}}, "dynamodb.NewImage.Version", "integral"),
        ({"set": {"dynamodb.NewImage.Version": {"N": "-1"}}}, "dynamodb.NewImage.Version", "negative"),
        ({"set": {"dynamodb.NewImage.Version": {"N": "x"}}}, "dynamodb.NewImage.Version", "not a number"),
    ],
)
def test_each_invalid_reason(make_payload, changes, field, reason):
    changes = dict(changes)
    payload = make_payload(drop=changes.pop("drop", ()), set=changes.pop("set", None), **changes)
    with pytest.raises(InvalidChangeRecord, match=reason) as caught:
        build(payload)
    assert caught.value.field == field
    assert caught.value.sequence_number == "4960001"


def test_bad_version_on_remove_names_old_image(make_payload):
    payload = make_payload(
        eventName="REMOVE", drop=("dynamodb.NewImage",), set={"dynamodb.OldImage.Version": {"BOOL": True}}
    )
    with pytest.raises(InvalidChangeRecord) as caught:
        build(payload)
    assert caught.value.field == "dynamodb.OldImage.Version"


def test_malformed_image_attribute_is_reported_with_its_path_on_access(make_payload):
    payload = make_payload(set={"dynamodb.NewImage.Address": {"M": {"Lines": {"L": [{"S": "a"}, {"N": "x"}]}}}})
    record = build(payload)  # the envelope is valid; images decode lazily
    with pytest.raises(InvalidChangeRecord) as caught:
        record.new_image["Address"]
    assert caught.value.field == "dynamodb.NewImage.Address.Lines[1]"
    assert caught.value.sequence_number == "4960001"
    with pytest.raises(InvalidChangeRecord):
        record.validate()


def test_record_is_immutable(reference_record):
    record = build(orjson.dumps(reference_record))
    with pytest.raises(AttributeError):
        record.version = 1
