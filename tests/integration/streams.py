"""Test helpers: follow a Kinesis stream from a point in time and collect matching records."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import orjson
from botocore.exceptions import ClientError

from services.kinesis import list_shards


@dataclass(frozen=True, slots=True)
class Seen:
    shard_id: str
    sequence_number: str
    partition_key: str
    change: dict


class StreamFollower:
    """Reads every shard of a stream from a timestamp on, incrementally, across calls."""

    def __init__(self, kinesis, stream_name: str, since: datetime):
        self.kinesis = kinesis
        self.stream = stream_name
        self.since = since
        self.iterators: dict[str, str | None] = {}
        self.seen: list[Seen] = []

    def _poll(self) -> int:
        for shard in list_shards(self.kinesis, self.stream):
            sid = shard["ShardId"]
            if sid not in self.iterators:
                self.iterators[sid] = self.kinesis.get_shard_iterator(
                    StreamName=self.stream, ShardId=sid, ShardIteratorType="AT_TIMESTAMP", Timestamp=self.since
                )["ShardIterator"]
        got = 0
        for sid, iterator in list(self.iterators.items()):
            while iterator:
                try:
                    page = self.kinesis.get_records(ShardIterator=iterator, Limit=10_000)
                except ClientError:  # e.g. an iterator from before a restart of the emulator
                    iterator = self._iterator_after_last_seen(sid)
                    page = self.kinesis.get_records(ShardIterator=iterator, Limit=10_000)
                iterator = page.get("NextShardIterator")
                for r in page["Records"]:
                    self.seen.append(Seen(sid, r["SequenceNumber"], r["PartitionKey"], orjson.loads(r["Data"])))
                got += len(page["Records"])
                if not page["Records"]:
                    break
            self.iterators[sid] = iterator
        return got

    def _iterator_after_last_seen(self, sid: str) -> str:
        last = next((s.sequence_number for s in reversed(self.seen) if s.shard_id == sid), None)
        position = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": last}
            if last
            else {"ShardIteratorType": "AT_TIMESTAMP", "Timestamp": self.since}
        )
        return self.kinesis.get_shard_iterator(StreamName=self.stream, ShardId=sid, **position)["ShardIterator"]

    def collect(self, keep: Callable[[dict], bool], count: int, timeout_s: float) -> list[Seen]:
        """Poll until `count` distinct kept changes (by eventID) were seen, or the timeout;
        returns every kept record, repeats included. Counting repeats would stop early: after a
        crash the relay re-sends its batch in flight, and those repeats must not stand in for
        changes still on their way."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._poll()
            kept = [s for s in self.seen if keep(s.change)]
            if len({s.change["eventID"] for s in kept}) >= count or time.monotonic() > deadline:
                return kept
            time.sleep(0.1)
