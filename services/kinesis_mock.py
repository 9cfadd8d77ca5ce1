"""kinesis-mock's durability: what it acknowledged is stored only once a snapshot holds it.

kinesis-mock (the local stack's Kinesis) keeps records in memory and saves a snapshot of all of
them in a loop: take the snapshot, write it (atomically: ``infra/local/kinesis/preload.cjs``), wait
``CDC_KINESIS_PERSIST_INTERVAL``. A SIGKILL loses what it acknowledged since the last
snapshot, and it starts again without it. Worse, it then answers GetShardIterator at such a
record with ResourceNotFound, which the KCL takes for the end of the shard.

Only the end of a write is visible (the file's mtime). A record acknowledged at A is in every
snapshot taken after A; when two writes ended after A, the second snapshot was taken after the
first write ended, hence after A. So ``saved_before()`` is the end of the second-to-last write
seen: everything acknowledged before it is on disk.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

from botocore.exceptions import ClientError

from services.clients import error_code
from services.durability import KinesisDurability

__all__ = ["KinesisMockDurability", "SnapshotWatch"]


class SnapshotWatch:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._writes: deque[int] = deque(maxlen=2)  # the last two ends of writes seen (mtime, ns)

    def seen(self, mtime_ns: int | None) -> None:
        """Note the snapshot's mtime (None: no snapshot yet); older or repeated ones change nothing."""
        if mtime_ns is not None and (not self._writes or mtime_ns > self._writes[-1]):
            self._writes.append(mtime_ns)

    def saved_before(self) -> int | None:
        """Look at the file; every record acknowledged before the returned time (ns since the
        epoch, as `time.time_ns()`) is on disk. None while no such time is known."""
        try:
            self.seen(self.path.stat().st_mtime_ns)
        except FileNotFoundError:
            pass
        return self._writes[0] if len(self._writes) == 2 else None


class KinesisMockDurability(KinesisDurability):
    """`Durability` of a kinesis-mock that saves its snapshot to ``snapshot``."""

    def __init__(self, kinesis, stream_name: str, snapshot: Path) -> None:
        super().__init__(kinesis, stream_name)
        self.watch = SnapshotWatch(snapshot)

    def saved_before(self) -> float | None:
        return self.watch.saved_before()

    def still_stored(self, shard_id: str, sequence_number: str, data: bytes) -> bool:
        try:
            iterator = self._kinesis.get_shard_iterator(
                StreamName=self.stream_name,
                ShardId=shard_id,
                ShardIteratorType="AT_SEQUENCE_NUMBER",
                StartingSequenceNumber=sequence_number,
            )["ShardIterator"]
            found = self._kinesis.get_records(ShardIterator=iterator, Limit=1)["Records"]
        except ClientError as exc:
            if error_code(exc) in ("InvalidArgumentException", "ResourceNotFoundException"):
                return False
            raise
        return bool(found) and found[0]["SequenceNumber"] == sequence_number and found[0]["Data"] == data
