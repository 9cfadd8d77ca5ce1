"""The dead-letter destination of an app: one DynamoDB table, one item per poison record.

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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from base.errors import CdcError

__all__ = ["DEAD_LETTER_KEY", "MAX_STORED_PAYLOAD", "DeadLetter", "DeadLetterTable", "DeadLetterUnavailable"]

DEAD_LETTER_KEY = ({"name": "ShardId", "type": "S"}, {"name": "SequenceNumber", "type": "S"})
#: payload bytes kept in the item: the rest of the item (message capped at 10,000 characters,
#: at most 40 KB in UTF-8) stays well under DynamoDB's 400 KB
MAX_STORED_PAYLOAD = 300_000


class DeadLetterUnavailable(CdcError):
    """A poison record could not be written to the dead-letter table: nothing may be
    checkpointed past it, so the worker stops and resumes from its last checkpoint."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    app: str
    shard_id: str
    sequence_number: str
    partition_key: str
    payload: bytes
    error_class: str
    error_message: str
    arrival_time: datetime | None

    def item(self, failed_at: datetime) -> dict[str, Any]:
        """The item in DynamoDB JSON (for a boto3 client)."""
        item = {
            "ShardId": {"S": self.shard_id},
            "SequenceNumber": {"S": self.sequence_number},
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


class DeadLetterTable:
    def __init__(self, client, table_name: str, *, attempts: int = 5, sleep=time.sleep) -> None:
        self._client = client
        self.table_name = table_name
        self._attempts = attempts
        self._sleep = sleep

    def put(self, letter: DeadLetter) -> None:
        item = letter.item(datetime.now(UTC))
        for attempt in range(1, self._attempts + 1):
            try:
                self._client.put_item(TableName=self.table_name, Item=item)
                return
            except Exception as exc:
                if attempt == self._attempts:
                    raise DeadLetterUnavailable(
                        f"cannot write record {letter.sequence_number} of shard {letter.shard_id} to dead-letter "
                        f"table {self.table_name} after {attempt} attempts: {exc!r}"
                    ) from exc
                self._sleep(min(0.2 * 2**attempt, 5.0))
