"""Reading a Kinesis stream directly (operations and tests; consumers use the KCL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from botocore.exceptions import ClientError

__all__ = ["StreamHistory", "StreamRecord", "list_shards", "read_stream", "stream_history"]


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
        yield from _read_shard(kinesis, stream_name, shard["ShardId"], start)


def _record(shard_id: str, record: dict) -> StreamRecord:
    return StreamRecord(
        shard_id,
        record["SequenceNumber"],
        record["PartitionKey"],
        record["Data"],
        record.get("ApproximateArrivalTimestamp"),
    )


def _read_shard(kinesis, stream_name: str, shard_id: str, start: dict) -> Iterator[StreamRecord]:
    iterator = kinesis.get_shard_iterator(StreamName=stream_name, ShardId=shard_id, **start)["ShardIterator"]
    while iterator:
        page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
        for record in page["Records"]:
            yield _record(shard_id, record)
        # An open shard has a next iterator forever: stop once it is drained.
        if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
            break
        iterator = page.get("NextShardIterator")


def _first(kinesis, stream_name: str, shard_id: str, start: dict) -> StreamRecord | None:
    """The first record from ``start`` on, or None (none there, or the position is refused)."""
    try:
        iterator = kinesis.get_shard_iterator(StreamName=stream_name, ShardId=shard_id, **start)["ShardIterator"]
        records = kinesis.get_records(ShardIterator=iterator, Limit=1)["Records"]
    except ClientError:
        return None
    return _record(shard_id, records[0]) if records else None


class StreamHistory:
    """Every record in a stream's retention, like `read_stream`, read whole once and then only
    what is new: for a process that reads it again and again (verify, polled until converged, on
    a stream of tens of thousands of records). Per shard, before reading on after the last record
    it holds, it checks that this record is still there, unchanged (an emulator restarted without
    its latest records is read again from the shard's start), and drops what the stream no
    longer holds (trimmed out of retention, or a shard gone)."""

    def __init__(self, kinesis, stream_name: str) -> None:
        self.kinesis, self.stream = kinesis, stream_name
        self._shards: dict[str, list[StreamRecord]] = {}
        self._lock = threading.Lock()

    def records(self) -> list[StreamRecord]:
        """The whole history now, shard by shard (parents first), each shard in order."""
        with self._lock:
            self._shards = {
                shard["ShardId"]: self._catch_up(shard["ShardId"]) for shard in list_shards(self.kinesis, self.stream)
            }
            return [record for held in self._shards.values() for record in held]

    def _catch_up(self, shard_id: str) -> list[StreamRecord]:
        held = self._shards.get(shard_id, [])
        if held:
            last = held[-1]
            at_last = {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": last.sequence_number}
            again = _first(self.kinesis, self.stream, shard_id, at_last)
            if again is None or (again.sequence_number, again.data) != (last.sequence_number, last.data):
                held = []
        if not held:
            return list(_read_shard(self.kinesis, self.stream, shard_id, {"ShardIteratorType": "TRIM_HORIZON"}))
        oldest = _first(self.kinesis, self.stream, shard_id, {"ShardIteratorType": "TRIM_HORIZON"})
        if oldest is not None and oldest.sequence_number != held[0].sequence_number:
            held = [r for r in held if int(r.sequence_number) >= int(oldest.sequence_number)]
        after = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": held[-1].sequence_number}
        return held + list(_read_shard(self.kinesis, self.stream, shard_id, after))


_histories: dict[tuple[str, str, str], StreamHistory] = {}
_histories_lock = threading.Lock()


def stream_history(kinesis, stream_name: str) -> StreamHistory:
    """This process's `StreamHistory` of the stream at the client's endpoint."""
    key = (kinesis.meta.endpoint_url, kinesis.meta.region_name, stream_name)
    with _histories_lock:
        if key not in _histories:
            _histories[key] = StreamHistory(kinesis, stream_name)
        return _histories[key]
