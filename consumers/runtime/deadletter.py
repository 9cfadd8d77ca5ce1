"""The dead-letter destination of an app: one DynamoDB table, one item per poison record. This
module owns the item's format, written by the workers and read by `cdc dlq` (``infra.ops``).

Key: ``ShardId`` (hash) + ``SequenceNumber`` (range), so a record dead-lettered twice (a
replay, a lease move) is one item. The item holds everything needed to understand and redrive
it: app, shard, sequence number, partition key, the payload bytes, the error class and
message, when it failed and when the record arrived.

A Kinesis record holds up to 1 MiB, a DynamoDB item 400 KB: a payload longer than
``MAX_STORED_PAYLOAD`` is stored cut to that length, with ``PayloadTruncated``, its full length
and its SHA-256. The whole record stays readable from the stream at (``ShardId``,
``SequenceNumber``) for the stream's retention; an unstorable dead letter would otherwise stop
the shard for good.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from base.errors import CdcError
from base.retry import Backoff, retrying

__all__ = ["DEAD_LETTER_KEY", "MAX_STORED_PAYLOAD", "DeadLetter", "DeadLetterTable", "DeadLetterUnavailable"]

DEAD_LETTER_KEY = ({"name": "ShardId", "type": "S"}, {"name": "SequenceNumber", "type": "S"})
#: payload bytes kept in the item: the rest of the item (message capped at 10,000 characters,
#: at most 40 KB in UTF-8) stays well under DynamoDB's 400 KB
MAX_STORED_PAYLOAD = 300_000
#: between tries of a put (botocore has retried each try already): 0.2, 0.4, 0.8, 1.6 s
_BACKOFF = Backoff(first_s=0.2, cap_s=5.0)


class DeadLetterUnavailable(CdcError):
    """A poison record could not be written to the dead-letter table: nothing may be
    checkpointed past it, so the worker stops and resumes from its last checkpoint."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter: what a worker writes (``item``) and what the operations read back
    (``from_item``: the fields after ``arrival_time`` are the stored item's)."""

    app: str
    shard_id: str
    sequence_number: str
    partition_key: str
    payload: bytes  # read back: cut to MAX_STORED_PAYLOAD when ``truncated``
    error_class: str
    error_message: str
    arrival_time: datetime | None
    failed_at: str = ""  # ISO time of the last failure (set when stored)
    payload_bytes: int = -1  # the record's whole length; -1: len(payload)
    truncated: bool = False
    sha256: str | None = None  # of the whole payload, when truncated
    redrive_count: int = 0
    first_failed_at: str = ""

    @property
    def key(self) -> dict[str, Any]:
        return {"ShardId": {"S": self.shard_id}, "SequenceNumber": {"S": self.sequence_number}}

    def item(self, failed_at: datetime) -> dict[str, Any]:
        """The item in DynamoDB JSON (for a boto3 client)."""
        item = {
            **self.key,
            "App": {"S": self.app},
            "PartitionKey": {"S": self.partition_key},
            "Payload": {"B": self.payload[:MAX_STORED_PAYLOAD] or b"\0"},  # DynamoDB rejects empty binaries
            "PayloadBytes": {"N": str(len(self.payload))},
            "ErrorClass": {"S": self.error_class},
            "ErrorMessage": {"S": self.error_message[:10_000] or "-"},
            "FailedAt": {"S": failed_at.isoformat()},
        }
        if len(self.payload) > MAX_STORED_PAYLOAD:
            item["PayloadTruncated"] = {"BOOL": True}
            item["PayloadSha256"] = {"S": hashlib.sha256(self.payload).hexdigest()}
        if self.arrival_time is not None:
            item["ArrivalTime"] = {"S": self.arrival_time.isoformat()}
        return item

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> DeadLetter:
        """A stored item (DynamoDB JSON, B values as bytes), as ``item`` wrote it and a redrive
        updated it (``RedriveCount``, ``FirstFailedAt``)."""
        size = int(item["PayloadBytes"]["N"])
        arrival = item.get("ArrivalTime", {}).get("S")
        return cls(
            app=item.get("App", {}).get("S", ""),
            shard_id=item["ShardId"]["S"],
            sequence_number=item["SequenceNumber"]["S"],
            partition_key=item.get("PartitionKey", {}).get("S", ""),
            payload=bytes(item["Payload"]["B"]) if size else b"",  # an empty payload is stored as one NUL byte
            error_class=item["ErrorClass"]["S"],
            error_message=item["ErrorMessage"]["S"],
            arrival_time=datetime.fromisoformat(arrival) if arrival else None,
            failed_at=item["FailedAt"]["S"],
            payload_bytes=size,
            truncated=item.get("PayloadTruncated", {}).get("BOOL", False),
            sha256=item.get("PayloadSha256", {}).get("S"),
            redrive_count=int(item.get("RedriveCount", {}).get("N", "0")),
            first_failed_at=item.get("FirstFailedAt", item["FailedAt"])["S"],
        )


class DeadLetterTable:
    def __init__(self, client, table_name: str, *, attempts: int = 5, sleep=time.sleep) -> None:
        self._client = client
        self.table_name = table_name
        self._attempts = attempts
        self._sleep = sleep

    def put(self, letter: DeadLetter) -> None:
        item = letter.item(datetime.now(UTC))
        try:
            retrying(
                lambda: self._client.put_item(TableName=self.table_name, Item=item),
                retry_on=lambda exc: True,  # whatever it is, the shard cannot go on without the letter
                backoff=_BACKOFF,
                attempts=self._attempts,
                sleep=self._sleep,
            )
        except Exception as exc:
            raise DeadLetterUnavailable(
                f"cannot write record {letter.sequence_number} of shard {letter.shard_id} to dead-letter "
                f"table {self.table_name} after {self._attempts} attempts: {exc!r}"
            ) from exc
