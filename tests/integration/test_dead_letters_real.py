"""The dead-letter table against DynamoDB Local: every poison record fits, the largest too."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import pytest

from consumers.runtime.deadletter import MAX_STORED_PAYLOAD, DeadLetter, DeadLetterTable
from services.clients import aws_client

pytestmark = pytest.mark.stack

TABLE = "app-user-management-deadletters"


@pytest.mark.parametrize("size", [0, 1_000, 1_048_576])  # nothing, a usual record, the Kinesis maximum
def test_a_poison_record_of_any_kinesis_size_is_dead_lettered(stack, pipeline, size):
    client = aws_client("dynamodb", stack, pipeline.region)
    payload = bytes(index % 251 for index in range(size))
    letter = DeadLetter(
        app="app-user-management",
        shard_id=f"shardId-test-{uuid.uuid4().hex[:8]}",
        sequence_number="4960",
        partition_key="pk",
        payload=payload,
        error_class="InvalidChangeRecord",
        error_message="dynamodb.Keys: missing " * 1000,
        arrival_time=datetime.now(UTC),
    )
    DeadLetterTable(client, TABLE, attempts=1).put(letter)
    item = client.get_item(
        TableName=TABLE, Key={"ShardId": {"S": letter.shard_id}, "SequenceNumber": {"S": "4960"}}, ConsistentRead=True
    )["Item"]
    assert item["PayloadBytes"] == {"N": str(size)}
    stored = item["Payload"]["B"]
    if size > MAX_STORED_PAYLOAD:
        assert stored == payload[:MAX_STORED_PAYLOAD] and item["PayloadTruncated"] == {"BOOL": True}
        assert item["PayloadSha256"]["S"] == hashlib.sha256(payload).hexdigest()
    else:
        assert stored == (payload or b"\0") and "PayloadTruncated" not in item
