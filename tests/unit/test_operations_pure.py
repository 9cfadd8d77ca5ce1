"""The pure parts of `cdc dlq`, `cdc backfill` and `cdc reshard`: a dead letter read back as
stored, a backfilled item as the INSERT the relay would write, the shard count written back."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from consumers.runtime.deadletter import MAX_STORED_PAYLOAD, DeadLetter
from consumers.shared.records import ChangeRecord, parse_payload
from infra.ops import deadletters
from infra.ops.backfill import synthetic_insert
from infra.ops.reshard import write_shard_count
from services.config import StackError

FAILED = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def _letter(payload: bytes) -> DeadLetter:
    return DeadLetter("app", "shardId-1", "4960", "pk", payload, "InvalidChangeRecord", "bad", FAILED)


@pytest.mark.parametrize("size", [0, 10, MAX_STORED_PAYLOAD + 1])
def test_a_dead_letter_reads_back_as_it_was_stored(size):
    payload = bytes(i % 251 for i in range(size))
    letter = DeadLetter.from_item(_letter(payload).item(FAILED))
    assert (letter.shard_id, letter.sequence_number, letter.partition_key) == ("shardId-1", "4960", "pk")
    assert letter.payload_bytes == size and letter.arrival_time == FAILED and letter.redrive_count == 0
    assert letter.truncated == (size > MAX_STORED_PAYLOAD)
    assert letter.payload == payload[:MAX_STORED_PAYLOAD]  # an empty one is stored as b"\0": read back empty
    assert letter.sha256 == (hashlib.sha256(payload).hexdigest() if letter.truncated else None)
    assert letter.first_failed_at == FAILED.isoformat()


def test_show_decodes_a_json_payload_and_shows_other_bytes_as_text():
    assert deadletters.detail(DeadLetter.from_item(_letter(b'{"a": 1}').item(FAILED)))["payload"] == {"a": 1}
    shown = deadletters.detail(DeadLetter.from_item(_letter(b"\xffnot json").item(FAILED)))
    assert shown["payload"] is None and shown["payload_text"].endswith("not json")


def test_a_backfilled_item_is_an_insert_carrying_the_items_own_version():
    item = {"UserId": {"S": "u-1"}, "Email": {"S": "a@example.com"}, "Version": {"N": "41"}, "Tags": {"M": {}}}
    record = synthetic_insert(item, ("UserId",), table="Users", region="us-east-1", precision="MICROSECOND", run="r")
    change = ChangeRecord.from_parsed(
        parse_payload(record.data, sequence_number=record.sequence_number),
        record.data,
        sequence_number=record.sequence_number,
        partition_key=record.partition_key,
        arrival_time=record.arrival_time,
        version_attribute="Version",
    )
    assert change.event_name == "INSERT" and change.version == 41
    assert change.keys == {"UserId": "u-1"} and change.after["Email"] == "a@example.com"
    again = synthetic_insert(item, ("UserId",), table="Users", region="us-east-1", precision="MICROSECOND", run="r")
    assert again.partition_key == record.partition_key == record.sequence_number  # stable per item


PIPELINE = """[streams.a]
shards = 4
retention_hours = 24

[streams.b]
shards  =  2   # comment kept
retention_hours = 24
"""


def test_the_shard_count_is_written_in_its_streams_section_only(tmp_path):
    path = tmp_path / "pipeline.toml"
    path.write_text(PIPELINE)
    assert write_shard_count(path, "b", 8) == ("shards = 8", True)
    assert path.read_text() == PIPELINE.replace("shards  =  2", "shards = 8")
    assert write_shard_count(path, "b", 8) == ("shards = 8", False)
    with pytest.raises(StackError, match=r"no \[streams.c\] section"):
        write_shard_count(path, "c", 2)
