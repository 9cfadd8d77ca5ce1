"""The delivery ledger: what each subscriber acknowledged, in a DynamoDB table of producer_config.

    Subscriber (hash)   Entry (range)              attributes
    crm                 last#<entity>              Version, EventId, AckedAt   the last acknowledged event
    crm                 acks#<ms>#<uuid>           Acks: [[eventID, entity, version, acked ms], ...]

``last#`` items guard the order (``WebhookSink`` sends nothing at or below ``Version``); they
only move forward (a conditional update). ``acks#`` items, one per subscriber and batch, are the
record `make verify` checks (each qualifying change acknowledged once per subscriber, in version
order); one item per batch, not per event, because DynamoDB Local takes one write at a time and
a write per event was half of the sink's time. DynamoDB TTL removes them after ``keep_s``
(``ExpiresAt``), well after the stream's retention.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from consumers.shared.errors import SinkError
from consumers.sinks.webhook.sink import Ack

__all__ = ["ACK_PREFIX", "LAST_PREFIX", "Acknowledgement", "DynamoDbLedger"]

LAST_PREFIX = "last#"
ACK_PREFIX = "acks#"
#: acknowledgements per item: ~100 bytes each, well under DynamoDB's 400 KB
_ACKS_PER_ITEM = 1000
_UNUSABLE = frozenset({"ResourceNotFoundException", "AccessDeniedException", "UnrecognizedClientException"})


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    subscriber: str
    event_id: str
    entity: str
    version: int
    acked_at_ms: int


def _error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


@dataclass(frozen=True, slots=True)
class DynamoDbLedger:
    client: Any  # boto3 DynamoDB client
    table: str
    keep_s: int = 7 * 24 * 3600
    now: Callable[[], float] = time.time
    _pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(8, thread_name_prefix="ledger"), repr=False, compare=False
    )

    def last_acknowledged(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        keys = [{"Subscriber": {"S": s}, "Entry": {"S": LAST_PREFIX + e}} for s, e in sorted(set(pairs))]
        found: dict[tuple[str, str], int] = {}
        for start in range(0, len(keys), 100):
            request = {self.table: {"Keys": keys[start : start + 100], "ConsistentRead": True}}
            while request:
                answer = self._call(self.client.batch_get_item, RequestItems=request)
                for item in answer["Responses"].get(self.table, ()):
                    entity = item["Entry"]["S"][len(LAST_PREFIX) :]
                    found[(item["Subscriber"]["S"], entity)] = int(item["Version"]["N"])
                request = answer.get("UnprocessedKeys") or {}
        return found

    def record(self, acks: Sequence[Ack]) -> None:
        """An ``acks#`` item per subscriber, then one conditional ``last#`` update per
        (subscriber, entity) with the highest version acknowledged."""
        now = self.now()
        by_subscriber: dict[str, list[list[Any]]] = {}
        for ack in acks:
            by_subscriber.setdefault(ack.subscriber, []).append(
                [ack.event_id, ack.entity, ack.version, int(ack.at * 1000)]
            )
        puts = [
            {
                "PutRequest": {
                    "Item": {
                        "Subscriber": {"S": subscriber},
                        "Entry": {"S": f"{ACK_PREFIX}{int(now * 1000)}#{uuid.uuid4().hex}"},
                        "Acks": {"S": json.dumps(rows[start : start + _ACKS_PER_ITEM])},
                        "ExpiresAt": {"N": str(int(now) + self.keep_s)},
                    }
                }
            }
            for subscriber, rows in by_subscriber.items()
            for start in range(0, len(rows), _ACKS_PER_ITEM)
        ]
        for start in range(0, len(puts), 25):
            request = {self.table: puts[start : start + 25]}
            while request:
                request = self._call(self.client.batch_write_item, RequestItems=request).get("UnprocessedItems") or {}
        highest: dict[tuple[str, str], Ack] = {}
        for ack in acks:
            pair = (ack.subscriber, ack.entity)
            if pair not in highest or highest[pair].version < ack.version:
                highest[pair] = ack
        # one conditional update per (subscriber, entity), several at a time: each is one small
        # request, and a batch of a few hundred events in a row took most of a batch's time
        list(self._pool.map(self._move_last, highest.values()))

    def _move_last(self, ack: Ack) -> None:
        try:
            self._call(
                self.client.update_item,
                TableName=self.table,
                Key={"Subscriber": {"S": ack.subscriber}, "Entry": {"S": LAST_PREFIX + ack.entity}},
                UpdateExpression="SET #v = :v, EventId = :e, AckedAt = :t",
                ConditionExpression="attribute_not_exists(#v) OR #v < :v",
                ExpressionAttributeNames={"#v": "Version"},
                ExpressionAttributeValues={
                    ":v": {"N": str(ack.version)},
                    ":e": {"S": ack.event_id},
                    ":t": {"N": str(int(ack.at * 1000))},
                },
            )
        except Exception as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise  # a newer one is recorded (another worker, during a lease move): it stays

    def acknowledgements(self) -> Iterator[Acknowledgement]:
        """Every acknowledgement the ``acks#`` items hold (for `make verify`)."""
        pages = self.client.get_paginator("scan").paginate(TableName=self.table, ConsistentRead=True)
        for page in pages:
            for item in page["Items"]:
                if item["Entry"]["S"].startswith(ACK_PREFIX):
                    for event_id, entity, version, acked_ms in json.loads(item["Acks"]["S"]):
                        yield Acknowledgement(item["Subscriber"]["S"], event_id, entity, version, acked_ms)

    def _call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except Exception as exc:
            if _error_code(exc) in _UNUSABLE:
                raise SinkError(f"delivery ledger {self.table}: {exc}") from exc
            raise
