"""`cdc dlq`: read an app's dead letters, and send them back through the app (redrive).

A redrive gives each letter to the app's own `BatchProcessor` (decode, filter, transform,
version-guarded write; built by ``consumers.runtime.wiring``), one letter at a time, so each
gets its own outcome:

* settled (applied, found stale, filtered out, skipped by its transform) -> the letter is
  deleted, under the condition that nobody dead-lettered the record again meanwhile;
* dead-lettered again -> the letter stays, with the new error, ``RedriveCount`` + 1 and
  ``LastRedriveAt``; its payload, arrival time and first failure time (``FirstFailedAt``) stay;
* truncated payload (over ``MAX_STORED_PAYLOAD``) -> the whole record is read again from the
  stream at its shard and sequence number (and checked against the stored SHA-256); once the
  record has left the stream's retention the letter is reported ``not redrivable`` and kept.

A letter is deleted only after its writes were settled, so an interrupted redrive can be run
again and loses nothing: the letters it had settled are gone, a letter settled again is a
stale no-op. Transient sink errors are retried ``REDRIVE_ATTEMPTS`` times (not the app's
policy, which may retry forever), then the letter stays with that error. The record's age does
not count: a redrive is always of old records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson
from botocore.exceptions import ClientError

from consumers.runtime.batch import BatchProcessor, BatchStats, InputRecord, RetryPolicy
from consumers.runtime.deadletter import DeadLetter
from consumers.shared.planning import PlannedWrite, WriteCounts
from services.clients import error_code
from services.config import StackError

__all__ = ["REDRIVE_ATTEMPTS", "Letter", "RedriveReport", "discard", "letters", "read_letter", "redrive"]

REDRIVE_ATTEMPTS = 5
_REDRIVE_RETRY = RetryPolicy(
    max_attempts=REDRIVE_ATTEMPTS, base_delay_ms=200, max_delay_ms=5_000, maximum_record_age_s=-1
)


@dataclass(frozen=True, slots=True)
class Letter:
    """One dead-letter item, decoded."""

    shard_id: str
    sequence_number: str
    partition_key: str
    payload: bytes  # as stored: cut to MAX_STORED_PAYLOAD when ``truncated``
    payload_bytes: int
    truncated: bool
    sha256: str | None
    error_class: str
    error_message: str
    failed_at: str
    arrival_time: datetime | None
    redrive_count: int
    first_failed_at: str

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Letter:
        size = int(item["PayloadBytes"]["N"])
        arrival = item.get("ArrivalTime", {}).get("S")
        return cls(
            shard_id=item["ShardId"]["S"],
            sequence_number=item["SequenceNumber"]["S"],
            partition_key=item.get("PartitionKey", {}).get("S", ""),
            payload=item["Payload"]["B"] if size else b"",  # an empty payload is stored as one NUL byte
            payload_bytes=size,
            truncated=item.get("PayloadTruncated", {}).get("BOOL", False),
            sha256=item.get("PayloadSha256", {}).get("S"),
            error_class=item["ErrorClass"]["S"],
            error_message=item["ErrorMessage"]["S"],
            failed_at=item["FailedAt"]["S"],
            arrival_time=datetime.fromisoformat(arrival) if arrival else None,
            redrive_count=int(item.get("RedriveCount", {}).get("N", "0")),
            first_failed_at=item.get("FirstFailedAt", item["FailedAt"])["S"],
        )

    @property
    def key(self) -> dict[str, Any]:
        return {"ShardId": {"S": self.shard_id}, "SequenceNumber": {"S": self.sequence_number}}

    def row(self) -> dict[str, Any]:
        """For `cdc dlq list`."""
        return {
            "shard": self.shard_id,
            "sequence": self.sequence_number,
            "error_class": self.error_class,
            "failed_at": self.failed_at,
            "redrives": self.redrive_count,
            "bytes": self.payload_bytes,
            "error": self.error_message if len(self.error_message) <= 80 else self.error_message[:77] + "...",
        }

    def detail(self) -> dict[str, Any]:
        """For `cdc dlq show`: everything, the payload decoded when it parses as JSON."""
        try:
            payload: Any = orjson.loads(self.payload) if not self.truncated else None
        except orjson.JSONDecodeError:
            payload = None
        return {
            **self.row(),
            "error": self.error_message,
            "partition_key": self.partition_key,
            "arrival_time": self.arrival_time.isoformat() if self.arrival_time else None,
            "first_failed_at": self.first_failed_at,
            "truncated": self.truncated,
            "sha256": self.sha256,
            "payload": payload,
            "payload_text": None if payload is not None else self.payload[:2_000].decode("utf-8", "replace"),
        }


def letters(
    dynamodb: Any, table: str, *, since: datetime | None = None, error_class: str | None = None
) -> Iterator[Letter]:
    """The letters of ``table`` (a consistent scan) that failed at or after ``since`` with ``error_class``."""
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    for page in dynamodb.get_paginator("scan").paginate(**kwargs):
        for item in page["Items"]:
            letter = Letter.from_item(item)
            if error_class is not None and letter.error_class != error_class:
                continue
            if since is not None and datetime.fromisoformat(letter.failed_at) < since:
                continue
            yield letter


def read_letter(dynamodb: Any, table: str, shard_id: str, sequence_number: str) -> Letter | None:
    key = {"ShardId": {"S": shard_id}, "SequenceNumber": {"S": sequence_number}}
    item = dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
    return Letter.from_item(item) if item else None


def discard(dynamodb: Any, table: str, chosen: Iterable[Letter]) -> int:
    """Delete letters (judged unrecoverable); each only if it did not change since it was read."""
    deleted = 0
    for letter in chosen:
        if _delete(dynamodb, table, letter):
            deleted += 1
    return deleted


# ----------------------------------------------------------------------------------- redrive
@dataclass(slots=True)
class RedriveReport:
    """Letters by outcome, and the writes of the settled ones (`BatchStats` semantics)."""

    letters: int = 0
    settled: int = 0  # deleted from the dead letters
    failed: int = 0  # dead-lettered again: kept with the new error
    not_redrivable: int = 0  # truncated and gone from the stream: kept
    changed_meanwhile: int = 0  # settled, but re-dead-lettered meanwhile by a worker: kept
    stats: BatchStats = field(default_factory=BatchStats)
    outcomes: list[dict[str, Any]] = field(default_factory=list)  # one row per letter

    def row(self) -> dict[str, Any]:
        s = self.stats
        return {
            "letters": self.letters,
            "settled": self.settled,
            "failed_again": self.failed,
            "not_redrivable": self.not_redrivable,
            "changed_meanwhile": self.changed_meanwhile,
            "applied": s.applied,
            "stale": s.stale,
            "skipped": s.skipped,
            "filtered_out": s.filtered_out,
        }


class _Collected:
    """The processor's dead-letter destination during a redrive: kept here, written by us."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    def put(self, letter: DeadLetter) -> None:
        self.letters.append(letter)


class _DrySink:
    """A dry run's sink: counts the writes it would send; sends nothing."""

    def __init__(self) -> None:
        self.writes: list[PlannedWrite] = []

    def write(self, writes: Sequence[PlannedWrite]) -> WriteCounts:
        self.writes.extend(writes)
        return WriteCounts()


def redrive(
    dynamodb: Any,
    kinesis: Any,
    table: str,
    stream: str,
    chosen: Iterable[Letter],
    build: Callable[[str], BatchProcessor],
    *,
    dry_run: bool = False,
    progress: Callable[[dict[str, Any]], None] = lambda outcome: None,
) -> RedriveReport:
    """Send ``chosen`` letters back through the app's processing (see the module docstring).
    ``build(shard_id)`` is the app's processor factory; ``dry_run`` decodes, filters and plans
    each letter and reports what it would write, writing and deleting nothing."""
    report = RedriveReport()
    processors: dict[str, BatchProcessor] = {}
    for letter in sorted(chosen, key=lambda x: (x.shard_id, len(x.sequence_number), x.sequence_number)):
        report.letters += 1
        outcome: dict[str, Any] = {"shard": letter.shard_id, "sequence": letter.sequence_number}
        payload = _whole_payload(kinesis, stream, letter)
        if payload is None:
            report.not_redrivable += 1
            outcome["outcome"] = "not redrivable: the payload was truncated and the record left the stream"
            report.outcomes.append(outcome)
            progress(outcome)
            continue
        if letter.shard_id not in processors:
            processors[letter.shard_id] = replace(build(letter.shard_id), retry=_REDRIVE_RETRY)
        collected, sink = _Collected(), _DrySink()
        processor = replace(processors[letter.shard_id], dead_letters=collected)
        if dry_run:
            processor = replace(processor, sink=sink)
        record = InputRecord(payload, letter.sequence_number, None, letter.partition_key, letter.arrival_time)
        stats = processor.process([record])
        if collected.letters:
            again = collected.letters[-1]
            report.failed += 1
            outcome["outcome"] = f"fails: {again.error_class}: {again.error_message}"
            if not dry_run:
                _record_failure(dynamodb, table, letter, again)
        elif dry_run:
            report.settled += 1
            outcome["outcome"] = "filtered out" if stats.filtered_out else f"would write {len(sink.writes)}"
        elif _delete(dynamodb, table, letter):
            report.settled += 1
            report.stats += replace(stats, dead_lettered=0, received=0)
            outcome["outcome"] = _settled(stats)
        else:
            report.changed_meanwhile += 1
            report.stats += replace(stats, dead_lettered=0, received=0)
            outcome["outcome"] = _settled(stats) + "; kept: it was dead-lettered again meanwhile"
        report.outcomes.append(outcome)
        progress(outcome)
    return report


def _settled(stats: BatchStats) -> str:
    if stats.filtered_out:
        return "filtered out"
    return f"applied {stats.applied}, stale {stats.stale}, skipped {stats.skipped}"


def _whole_payload(kinesis: Any, stream: str, letter: Letter) -> bytes | None:
    """The record's bytes: the stored payload, or for a truncated one the record read again
    from the stream (None when it is no longer there, or is not the record that failed)."""
    if not letter.truncated:
        return letter.payload
    try:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream,
            ShardId=letter.shard_id,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            StartingSequenceNumber=letter.sequence_number,
        )["ShardIterator"]
        records = kinesis.get_records(ShardIterator=iterator, Limit=1)["Records"]
    except ClientError as exc:
        if error_code(exc) in ("ResourceNotFoundException", "InvalidArgumentException"):
            return None
        raise
    if not records or records[0]["SequenceNumber"] != letter.sequence_number:
        return None
    data = bytes(records[0]["Data"])
    if letter.sha256 is not None and hashlib.sha256(data).hexdigest() != letter.sha256:
        raise StackError(
            f"record {letter.sequence_number} of shard {letter.shard_id} in stream {stream} does not match the "
            f"SHA-256 its dead letter stored: not redriven"
        )
    return data


def _delete(dynamodb: Any, table: str, letter: Letter) -> bool:
    """Delete ``letter`` unless it was written again since it was read (False then)."""
    try:
        dynamodb.delete_item(
            TableName=table,
            Key=letter.key,
            ConditionExpression="FailedAt = :read",
            ExpressionAttributeValues={":read": {"S": letter.failed_at}},
        )
        return True
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise


def _record_failure(dynamodb: Any, table: str, letter: Letter, again: DeadLetter) -> None:
    """Keep the letter with its new error; payload, arrival time and first failure stay."""
    dynamodb.update_item(
        TableName=table,
        Key=letter.key,
        UpdateExpression=(
            "SET ErrorClass = :class, ErrorMessage = :message, FailedAt = :now, LastRedriveAt = :now, "
            "FirstFailedAt = if_not_exists(FirstFailedAt, :first) ADD RedriveCount :one"
        ),
        ExpressionAttributeValues={
            ":class": {"S": again.error_class},
            ":message": {"S": again.error_message[:10_000] or "-"},
            ":now": {"S": datetime.now(UTC).isoformat()},
            ":first": {"S": letter.failed_at},
            ":one": {"N": "1"},
        },
    )
