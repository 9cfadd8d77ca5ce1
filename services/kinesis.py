"""Reading a Kinesis stream directly (operations and tests; consumers use the KCL)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

__all__ = ["StreamRecord", "list_shards", "read_stream"]


@dataclass(frozen=True, slots=True)
class StreamRecord:
    shard_id: str
    sequence_number: str
    partition_key: str
    data: bytes
    arrival: datetime | None = None  # Kinesis' ApproximateArrivalTimestamp


def list_shards(kinesis, stream_name: str) -> list[dict]:
    return [s for page in kinesis.get_paginator("list_shards").paginate(StreamName=stream_name) for s in page["Shards"]]


def read_stream(kinesis, stream_name: str, since: datetime | None = None) -> Iterator[StreamRecord]:
    """Every record in the stream's retention (or from `since`), shard by shard (parents first)."""
    start = (
        {"ShardIteratorType": "AT_TIMESTAMP", "Timestamp": since} if since else {"ShardIteratorType": "TRIM_HORIZON"}
    )
    for shard in list_shards(kinesis, stream_name):
        iterator = kinesis.get_shard_iterator(StreamName=stream_name, ShardId=shard["ShardId"], **start)[
            "ShardIterator"
        ]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            for record in page["Records"]:
                yield StreamRecord(
                    shard["ShardId"],
                    record["SequenceNumber"],
                    record["PartitionKey"],
                    record["Data"],
                    record.get("ApproximateArrivalTimestamp"),
                )
            # An open shard has a next iterator forever: stop once it is drained.
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")
