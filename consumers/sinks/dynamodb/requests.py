"""The DynamoDB sink's requests: the conditional put of an upsert and of a delete's tombstone,
the sink's configuration, and what each error DynamoDB answers means for the write.

An ``Upsert`` becomes ``PutItem`` of ``document + key + {version_attribute: version}`` with
``ConditionExpression = UPSERT_CONDITION``: ``attribute_not_exists(#pk) OR #version < :version``.
A ``Delete`` puts a tombstone (``consumers.sinks.dynamodb.tombstones``) under
``DELETE_CONDITION``: ``attribute_not_exists(#pk) OR #version <= :version`` (deletes win version
ties, see ``consumers.shared.planning``).

Answers: success -> APPLIED; ``ConditionalCheckFailedException`` -> STALE; throttling / 5xx /
connection / timeout -> RETRY; ``ValidationException`` and the like (and documents that cannot
be encoded, e.g. floats) -> REJECTED; anything else (missing table, access denied) -> the sink
failed (``SinkError``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any

from consumers.shared.codec import BinaryFormat, encode_image
from consumers.shared.errors import DynamoJsonError
from consumers.shared.planning import Delete, Outcome, Upsert
from consumers.sinks import SINK_FAILED, Classified
from consumers.sinks.dynamodb.tombstones import TOMBSTONE_ATTRIBUTE, TOMBSTONE_TTL_ATTRIBUTE

__all__ = [
    "DEFAULT_TOMBSTONE_RETENTION",
    "DELETE_CONDITION",
    "MAX_TRANSACTION_BYTES",
    "MAX_TRANSACTION_ITEMS",
    "UPSERT_CONDITION",
    "DynamoDbSinkConfig",
    "WriteStrategy",
    "build_put_request",
    "build_tombstone_request",
    "classify_error",
]

UPSERT_CONDITION = "attribute_not_exists(#pk) OR #version < :version"
DELETE_CONDITION = "attribute_not_exists(#pk) OR #version <= :version"
DEFAULT_TOMBSTONE_RETENTION = timedelta(days=7)
#: TransactWriteItems limits: 100 actions, 4 MB of items (our size estimate errs high).
MAX_TRANSACTION_ITEMS = 100
MAX_TRANSACTION_BYTES = 4_000_000


class WriteStrategy(str, Enum):
    """How the sink sends a batch (see the module docstring)."""

    CONDITIONAL_PUTS = "conditional-puts"
    TRANSACTIONS = "transactions"


_STALE_CODES = frozenset({"ConditionalCheckFailedException"})
_RETRY_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "TransactionConflictException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
_REJECT_CODES = frozenset({"ValidationException", "SerializationException", "ItemCollectionSizeLimitExceededException"})
#: A cancelled transaction's reason code for one action -> what it means for that write.
#: "None" (the action was fine, the transaction was cancelled for another) is not here: the
#: write is sent again. A code not listed is a failure of the sink, as an unknown error code is.
CANCELLATION_REASONS = {
    "ConditionalCheckFailed": Outcome.STALE,
    "TransactionConflict": Outcome.RETRY,
    "ThrottlingError": Outcome.RETRY,
    "ProvisionedThroughputExceeded": Outcome.RETRY,
    "RequestLimitExceeded": Outcome.RETRY,
    "ValidationError": Outcome.REJECTED,
    "ItemCollectionSizeLimitExceeded": Outcome.REJECTED,
}


@dataclass(frozen=True, slots=True)
class DynamoDbSinkConfig:
    """Where and how to write. ``max_workers`` threads write one batch in parallel (puts, or
    transactions of distinct keys)."""

    table_name: str
    version_attribute: str = "Version"
    tombstone_attribute: str = TOMBSTONE_ATTRIBUTE
    ttl_attribute: str = TOMBSTONE_TTL_ATTRIBUTE
    tombstone_retention: timedelta = DEFAULT_TOMBSTONE_RETENTION
    max_workers: int = 8
    write_strategy: WriteStrategy = WriteStrategy.CONDITIONAL_PUTS

    def __post_init__(self) -> None:
        for name in ("table_name", "version_attribute", "tombstone_attribute", "ttl_attribute"):
            value = getattr(self, name)
            if type(value) is not str or not value:
                raise ValueError(f"DynamoDbSinkConfig.{name} must be a non-empty string, got {value!r}")
        if self.tombstone_retention <= timedelta(0):
            raise ValueError(f"DynamoDbSinkConfig.tombstone_retention must be positive, got {self.tombstone_retention}")
        if type(self.max_workers) is not int or self.max_workers < 1:
            raise ValueError(f"DynamoDbSinkConfig.max_workers must be >= 1, got {self.max_workers!r}")
        if not isinstance(self.write_strategy, WriteStrategy):
            raise ValueError(
                f"DynamoDbSinkConfig.write_strategy must be a WriteStrategy"
                f" ({[s.value for s in WriteStrategy]}), got {self.write_strategy!r}"
            )


def _guard(key: Mapping[str, Any], version: int, config: DynamoDbSinkConfig, condition: str) -> dict:
    # Any key attribute exists in every item, so attribute_not_exists on one means "no item".
    return {
        "ConditionExpression": condition,
        "ExpressionAttributeNames": {"#pk": next(iter(key)), "#version": config.version_attribute},
        "ExpressionAttributeValues": {":version": {"N": str(version)}},
    }


def build_put_request(write: Upsert, config: DynamoDbSinkConfig) -> dict[str, Any]:
    """``PutItem`` keyword arguments for an upsert (B values as bytes, for a boto3 client).

    Key attributes and the version override same-named document attributes. Raises
    ``DynamoJsonError`` when the document cannot be encoded (floats, unsupported types) or
    carries the tombstone attribute.
    """
    if config.tombstone_attribute in write.document:
        raise DynamoJsonError(config.tombstone_attribute, "an upsert document must not carry the tombstone attribute")
    item = {**write.document, **write.key, config.version_attribute: write.version}
    return {
        "TableName": config.table_name,
        "Item": encode_image(item, binary=BinaryFormat.RAW),
        **_guard(write.key, write.version, config, UPSERT_CONDITION),
    }


def build_tombstone_request(write: Delete, config: DynamoDbSinkConfig, now: float) -> dict[str, Any]:
    """``PutItem`` keyword arguments for the tombstone of a delete; ``now`` is epoch seconds."""
    expires_at = int(now + config.tombstone_retention.total_seconds())
    item = {
        **write.key,
        config.version_attribute: write.version,
        config.tombstone_attribute: True,
        config.ttl_attribute: expires_at,
    }
    return {
        "TableName": config.table_name,
        "Item": encode_image(item, binary=BinaryFormat.RAW),
        **_guard(write.key, write.version, config, DELETE_CONDITION),
    }


def classify_error(exc: BaseException) -> Classified:
    """Classify an exception raised by ``put_item`` (botocore ``ClientError`` and friends)."""
    if isinstance(exc, DynamoJsonError):
        return Outcome.REJECTED
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):  # botocore.exceptions.ClientError
        code = error_code(response)
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        if code in _STALE_CODES:
            return Outcome.STALE
        if code in _RETRY_CODES or (type(status) is int and (status == 429 or status >= 500)):
            return Outcome.RETRY
        if code in _REJECT_CODES:
            return Outcome.REJECTED
        return SINK_FAILED
    try:
        from botocore import exceptions as botocore_exceptions
    except ImportError:  # pragma: no cover - botocore ships with boto3
        return SINK_FAILED
    if isinstance(exc, (botocore_exceptions.ConnectionError, botocore_exceptions.HTTPClientError)):
        return Outcome.RETRY
    if isinstance(exc, botocore_exceptions.ParamValidationError):
        return Outcome.REJECTED
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return Outcome.RETRY
    return SINK_FAILED


def error_code(response: Mapping[str, Any]) -> str:
    return str((response.get("Error") or {}).get("Code", ""))
