"""The relay's pure parts: the AWS record format and the PutRecords call plan."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.relay.format import MAX_PUT_RECORDS, creation_stamps, partition_key, put_rounds, to_kinesis_record
from tests.unit.conftest import load_fixture

REFERENCE = load_fixture("ddb-kinesis-change-record.json")
ARN = "arn:aws:dynamodb:ddblocal:000000000000:table/Users/stream/2026-11-26T00:00:00.000"


def _streams_record(event="MODIFY", seq="000000000000000000042", **extra):
    """A DynamoDB Streams record as boto3's dynamodbstreams client returns it from DynamoDB Local."""
    return {
        "eventID": "local-id",
        "eventName": event,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "ddblocal",
        "dynamodb": {
            "ApproximateCreationDateTime": dt.datetime(2026, 11, 26, 10, 5, tzinfo=dt.UTC),
            "Keys": {"UserId": {"S": "12345"}},
            "NewImage": {
                "UserId": {"S": "12345"},
                "Avatar": {"B": b"\x89PNG"},
                "Version": {"N": "8"},
                "Empty": {},
                "None": {"L": []},
                "Deep": {"M": {"x": {}, "y": {"L": [{}]}}},
            },
            "OldImage": {"UserId": {"S": "12345"}, "Version": {"N": "7"}},
            "SequenceNumber": seq,
            "SizeBytes": 214,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
        **extra,
    }


@pytest.mark.parametrize("precision,digits", [("MICROSECOND", 16), ("MILLISECOND", 13)])
def test_record_has_exactly_the_aws_destination_shape(precision, digits):
    data, key = to_kinesis_record(
        _streams_record(),
        table="Users",
        region="eu-west-1",
        stream_arn=ARN,
        precision=precision,
        now_ns=1_795_731_005_123_456_789,
    )
    record = orjson.loads(data)
    assert set(record) == set(REFERENCE)
    assert set(record["dynamodb"]) == set(REFERENCE["dynamodb"])
    assert record["awsRegion"] == "eu-west-1"  # not DynamoDB Local's "ddblocal"
    assert record["tableName"] == "Users" and record["recordFormat"] == "application/json"
    assert record["userIdentity"] is None
    assert len(str(record["dynamodb"]["ApproximateCreationDateTime"])) == digits
    assert record["dynamodb"]["NewImage"]["Avatar"] == {"B": "iVBORw=="}  # base64, as on the wire
    # DynamoDB Local writes an empty map as {}; AWS as {"M": {}}
    assert record["dynamodb"]["NewImage"]["Empty"] == {"M": {}} and record["dynamodb"]["NewImage"]["None"] == {"L": []}
    assert record["dynamodb"]["NewImage"]["Deep"] == {"M": {"x": {"M": {}}, "y": {"L": [{"M": {}}]}}}
    assert "SequenceNumber" not in record["dynamodb"] and "StreamViewType" not in record["dynamodb"]
    assert key == partition_key("Users", {"UserId": {"S": "12345"}})


def test_event_id_is_a_uuid_stable_for_the_same_change_and_distinct_across_changes():
    first = orjson.loads(
        to_kinesis_record(
            _streams_record(), table="Users", region="r", stream_arn=ARN, precision="MICROSECOND", now_ns=1
        )[0]
    )
    again = orjson.loads(
        to_kinesis_record(
            _streams_record(), table="Users", region="r", stream_arn=ARN, precision="MICROSECOND", now_ns=2
        )[0]
    )
    other = orjson.loads(
        to_kinesis_record(
            _streams_record(seq="43"), table="Users", region="r", stream_arn=ARN, precision="MICROSECOND", now_ns=1
        )[0]
    )
    uuid.UUID(first["eventID"])
    assert first["eventID"] == again["eventID"] != other["eventID"]


def test_ttl_deletion_keeps_the_service_identity_in_aws_casing():
    change = _streams_record("REMOVE", userIdentity={"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"})
    del change["dynamodb"]["NewImage"]
    record = orjson.loads(
        to_kinesis_record(change, table="Users", region="r", stream_arn=ARN, precision="MICROSECOND", now_ns=1)[0]
    )
    assert record["userIdentity"] == {"principalId": "dynamodb.amazonaws.com", "type": "Service"}
    assert "NewImage" not in record["dynamodb"]


def test_partition_key_depends_on_table_and_key_not_on_key_order():
    a = partition_key("T", {"A": {"S": "1"}, "B": {"N": "2"}})
    assert a == partition_key("T", {"B": {"N": "2"}, "A": {"S": "1"}})
    assert a != partition_key("U", {"A": {"S": "1"}, "B": {"N": "2"}})
    assert a != partition_key("T", {"A": {"S": "1"}, "B": {"N": "3"}})
    assert len(a) == len(hashlib.md5().hexdigest())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=30), max_size=1500))
def test_rounds_keep_each_items_order_and_never_put_one_item_twice_in_a_call(keys):
    entries = [(f"{i}".encode(), f"k{k}") for i, k in enumerate(keys)]
    calls = put_rounds(entries)
    assert sorted(e for call in calls for e in call) == sorted(entries)
    position = {entry: (n, call.index(entry)) for n, call in enumerate(calls) for entry in call}
    for call in calls:
        assert len(call) <= MAX_PUT_RECORDS
        assert len({key for _, key in call}) == len(call)
    by_key: dict[str, list] = {}
    for entry in entries:
        by_key.setdefault(entry[1], []).append(position[entry][0])
    for calls_of_key in by_key.values():
        assert calls_of_key == sorted(calls_of_key) and len(set(calls_of_key)) == len(calls_of_key)


def test_rounds_split_by_size():
    big = b"x" * 1_000_000
    calls = put_rounds([(big, f"k{i}") for i in range(9)])
    assert [len(c) for c in calls] == [4, 4, 1]


@pytest.mark.parametrize("precision,unit", [("MICROSECOND", 1_000), ("MILLISECOND", 1_000_000)])
def test_creation_times_increase_in_stream_order_within_and_across_pages(precision, unit):
    now = 1_795_731_005_123_456_789
    first = creation_stamps(3, now_ns=now, after_ns=0, precision=precision)
    second = creation_stamps(2, now_ns=now, after_ns=first[-1], precision=precision)  # the clock did not move
    stamps = [stamp // unit for stamp in first + second]  # what the record carries
    assert stamps == sorted(set(stamps)) and first[0] == now
    for stamp in first + second:
        record, _ = to_kinesis_record(
            _streams_record(), table="Users", region="us-east-1", stream_arn=ARN, precision=precision, now_ns=stamp
        )
        assert orjson.loads(record)["dynamodb"]["ApproximateCreationDateTime"] == stamp // unit
