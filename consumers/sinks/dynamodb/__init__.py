"""The ``dynamodb`` sink kind: version-guarded conditional puts; deletes write tombstones.

    tombstones     the public convention (``TOMBSTONE_ATTRIBUTE``, ``is_tombstone``)
    requests       the conditional puts, the sink's configuration, what DynamoDB's errors mean
    sink           ``DynamoDbSink`` and its conditional-puts strategy
    transactions   the transactions strategy
    kind           the plug-in: app.toml options, builder, verify read-back, IAM

The names below are the kind's public API.
"""

from consumers.sinks.dynamodb.requests import (
    DEFAULT_TOMBSTONE_RETENTION,
    DELETE_CONDITION,
    MAX_TRANSACTION_BYTES,
    MAX_TRANSACTION_ITEMS,
    UPSERT_CONDITION,
    DynamoDbSinkConfig,
    WriteStrategy,
    build_put_request,
    build_tombstone_request,
    classify_error,
)
from consumers.sinks.dynamodb.sink import DynamoDbSink
from consumers.sinks.dynamodb.tombstones import TOMBSTONE_ATTRIBUTE, TOMBSTONE_TTL_ATTRIBUTE, is_tombstone

__all__ = [
    "DEFAULT_TOMBSTONE_RETENTION",
    "DELETE_CONDITION",
    "MAX_TRANSACTION_BYTES",
    "MAX_TRANSACTION_ITEMS",
    "TOMBSTONE_ATTRIBUTE",
    "TOMBSTONE_TTL_ATTRIBUTE",
    "UPSERT_CONDITION",
    "DynamoDbSink",
    "DynamoDbSinkConfig",
    "WriteStrategy",
    "build_put_request",
    "build_tombstone_request",
    "classify_error",
    "is_tombstone",
]
