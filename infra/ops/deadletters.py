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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson
from botocore.exceptions import ClientError

from consumers.runtime.batch import BatchHooks, BatchProcessor, BatchStats, InputRecord, RetryPolicy
from consumers.runtime.deadletter import DeadLetter
from consumers.shared.planning import PlannedWrite
from services.clients import error_code
from services.config import StackError

__all__ = ["REDRIVE_ATTEMPTS", "RedriveReport", "detail", "discard", "letters", "read_letter", "redrive", "row"]

REDRIVE_ATTEMPTS = 5
_REDRIVE_RETRY = RetryPolicy(
    max_attempts=REDRIVE_ATTEMPTS, base_delay_ms=200, max_delay_ms=5_000, maximum_record_age_s=-1
)


def row(letter: DeadLetter) -> dict[str, Any]:
    """For `cdc dlq list`."""
    return {
        "shard": letter.shard_id,
        "sequence": letter.sequence_number,
        "error_class": letter.error_class,
        "failed_at": letter.failed_at,
        "redrives": letter.redrive_count,
        "bytes": letter.payload_bytes,
        "error": letter.error_message if len(letter.error_message) <= 80 else letter.error_message[:77] + "...",
    }


def detail(letter: DeadLetter) -> dict[str, Any]:
    """For `cdc dlq show`: everything, the payload decoded when it parses as JSON."""
    try:
        payload: Any = orjson.loads(letter.payload) if not letter.truncated else None
    except orjson.JSONDecodeError:
        payload = None
    return {
        **row(letter),
        "error": letter.error_message,
        "partition_key": letter.partition_key,
        "arrival_time": letter.arrival_time.isoformat() if letter.arrival_time else None,
        "first_failed_at": letter.first_failed_at,
        "truncated": letter.truncated,
        "sha256": letter.sha256,
        "payload": payload,
        "payload_text": None if payload is not None else letter.payload[:2_000].decode("utf-8", "replace"),
    }


def letters(
    dynamodb: Any, table: str, *, since: datetime | None = None, error_class: str | None = None
) -> Iterator[DeadLetter]:
    """The letters of ``table`` (a consistent scan) that failed at or after ``since`` with ``error_class``."""
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    for page in dynamodb.get_paginator("scan").paginate(**kwargs):
        for item in page["Items"]:
            letter = DeadLetter.from_item(item)
            if error_class is not None and letter.error_class != error_class:
                continue
            if since is not None and datetime.fromisoformat(letter.failed_at) < since:
                continue
            yield letter


def read_letter(dynamodb: Any, table: str, shard_id: str, sequence_number: str) -> DeadLetter | None:
    key = {"ShardId": {"S": shard_id}, "SequenceNumber": {"S": sequence_number}}
    item = dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
    return DeadLetter.from_item(item) if item else None


def discard(dynamodb: Any, table: str, chosen: Iterable[DeadLetter]) -> int:
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


def redrive(
    dynamodb: Any,
    kinesis: Any,
    table: str,
    stream: str,
    chosen: Iterable[DeadLetter],
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
        again_letters: list[DeadLetter] = []
        planned: list[PlannedWrite] = []
        hooks = BatchHooks(planned=_into(planned), dead_lettered=again_letters.append)
        # the letters go to the hook only: the letter being redriven is updated in place below
        processor = replace(processors[letter.shard_id], dead_letters=None, hooks=hooks)
        record = InputRecord(payload, letter.sequence_number, None, letter.partition_key, letter.arrival_time)
        stats = processor.process([record], dry_run=dry_run)
        if again_letters:
            again = again_letters[-1]
            report.failed += 1
            outcome["outcome"] = f"fails: {again.error_class}: {again.error_message}"
            if not dry_run:
                _record_failure(dynamodb, table, letter, again)
        elif dry_run:
            report.settled += 1
            outcome["outcome"] = "filtered out" if stats.filtered_out else f"would write {len(planned)}"
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


def _into(planned: list[PlannedWrite]) -> Callable[[InputRecord, tuple[PlannedWrite, ...]], None]:
    return lambda _record, writes: planned.extend(writes)


def _settled(stats: BatchStats) -> str:
    if stats.filtered_out:
        return "filtered out"
    return f"applied {stats.applied}, stale {stats.stale}, skipped {stats.skipped}"


def _whole_payload(kinesis: Any, stream: str, letter: DeadLetter) -> bytes | None:
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


def _delete(dynamodb: Any, table: str, letter: DeadLetter) -> bool:
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


def _record_failure(dynamodb: Any, table: str, letter: DeadLetter, again: DeadLetter) -> None:
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
