"""DynamoDB sink: version-guarded conditional puts; deletes write tombstones.

An ``Upsert`` becomes ``PutItem`` of ``document + key + {version_attribute: version}`` with
``ConditionExpression = UPSERT_CONDITION``: ``attribute_not_exists(#pk) OR #version < :version``.

A ``Delete`` does not remove the item: it puts a *tombstone* -- the key, the version,
``tombstone_attribute = true`` and ``ttl_attribute = now + tombstone_retention`` (epoch seconds;
enable the table's TTL on that attribute) -- under ``DELETE_CONDITION``:
``attribute_not_exists(#pk) OR #version <= :version`` (deletes win version ties, see
``consumers.shared.planning``). A late, older upsert then fails its condition instead of
resurrecting the item. Keep the retention longer than the source stream's retention (Kinesis:
24 h by default, up to 365 days), or a replay older than the tombstone could resurrect an item.
Consumers of this table's own change stream see "item replaced by tombstone" as a MODIFY whose
NewImage carries ``TOMBSTONE_ATTRIBUTE``: such a consumer must treat it as a delete (see
``consumers.workplace_user_search.transform``).

The target table must only be written through this sink: an item without the version
attribute is never overwritten (its condition always fails, counted STALE).

Outcomes: success -> APPLIED; ``ConditionalCheckFailedException`` -> STALE (counted, not an
error); throttling / 5xx / connection / timeout -> ``RetryableSinkError``; ``ValidationException``
and the like (and documents that cannot be encoded, e.g. floats) -> ``SinkRejectedWrite``
carrying the writes; anything else (missing table, access denied) -> ``SinkError``.
Writes of a batch run in parallel on a thread pool (boto3 clients are thread-safe); a batch
raises only after every write has finished, so a retry re-applies at most the failed ones
(re-applying an applied write is harmless: STALE, or a re-written identical tombstone).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from consumers.shared.codec import BinaryFormat, encode_image
from consumers.shared.errors import (
    DynamoJsonError,
    RetryableSinkError,
    SinkError,
    SinkRejectedWrite,
)
from consumers.shared.planning import Delete, Outcome, PlannedWrite, Skip, Upsert, WriteCounts
from consumers.sinks import Disposition

__all__ = [
    "DELETE_CONDITION",
    "DEFAULT_TOMBSTONE_RETENTION",
    "DynamoDbSink",
    "DynamoDbSinkConfig",
    "TOMBSTONE_ATTRIBUTE",
    "TOMBSTONE_TTL_ATTRIBUTE",
    "UPSERT_CONDITION",
    "build_put_request",
    "build_tombstone_request",
    "classify_error",
]

#: Attribute that marks an item written by this sink as a logical delete (a tombstone). Its
#: value is ``{"BOOL": true}``; its presence alone makes the item a tombstone.
TOMBSTONE_ATTRIBUTE = "_cdc_tombstone"
#: Attribute holding a tombstone's expiry (epoch seconds); enable table TTL on it.
TOMBSTONE_TTL_ATTRIBUTE = "_cdc_expires_at"
UPSERT_CONDITION = "attribute_not_exists(#pk) OR #version < :version"
DELETE_CONDITION = "attribute_not_exists(#pk) OR #version <= :version"
DEFAULT_TOMBSTONE_RETENTION = timedelta(days=7)

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


@dataclass(frozen=True, slots=True)
class DynamoDbSinkConfig:
    """Where and how to write. ``max_workers`` threads write one batch in parallel."""

    table_name: str
    version_attribute: str = "Version"
    tombstone_attribute: str = TOMBSTONE_ATTRIBUTE
    ttl_attribute: str = TOMBSTONE_TTL_ATTRIBUTE
    tombstone_retention: timedelta = DEFAULT_TOMBSTONE_RETENTION
    max_workers: int = 8

    def __post_init__(self) -> None:
        for name in ("table_name", "version_attribute", "tombstone_attribute", "ttl_attribute"):
            value = getattr(self, name)
            if type(value) is not str or not value:
                raise ValueError(f"DynamoDbSinkConfig.{name} must be a non-empty string, got {value!r}")
        if self.tombstone_retention <= timedelta(0):
            raise ValueError(f"DynamoDbSinkConfig.tombstone_retention must be positive, got {self.tombstone_retention}")
        if type(self.max_workers) is not int or self.max_workers < 1:
            raise ValueError(f"DynamoDbSinkConfig.max_workers must be >= 1, got {self.max_workers!r}")


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


def classify_error(exc: BaseException) -> Disposition:
    """Classify an exception raised by ``put_item`` (botocore ``ClientError`` and friends)."""
    if isinstance(exc, DynamoJsonError):
        return Disposition.REJECT
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):  # botocore.exceptions.ClientError
        code = (response.get("Error") or {}).get("Code", "")
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        if code in _STALE_CODES:
            return Disposition.STALE
        if code in _RETRY_CODES or (type(status) is int and (status == 429 or status >= 500)):
            return Disposition.RETRY
        if code in _REJECT_CODES:
            return Disposition.REJECT
        return Disposition.FAIL
    try:
        from botocore import exceptions as botocore_exceptions
    except ImportError:  # pragma: no cover - botocore ships with boto3
        return Disposition.FAIL
    if isinstance(exc, (botocore_exceptions.ConnectionError, botocore_exceptions.HTTPClientError)):
        return Disposition.RETRY
    if isinstance(exc, botocore_exceptions.ParamValidationError):
        return Disposition.REJECT
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return Disposition.RETRY
    return Disposition.FAIL


class _WriteFailed(Exception):
    def __init__(self, disposition: Disposition, write: PlannedWrite, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.disposition = disposition
        self.write = write
        self.cause = cause


class DynamoDbSink:
    """Applies planned writes to one DynamoDB table through a boto3 DynamoDB *client*."""

    def __init__(
        self,
        client: Any,
        config: DynamoDbSinkConfig,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._config = config
        self._clock = clock
        self._pool: ThreadPoolExecutor | None = None

    @property
    def config(self) -> DynamoDbSinkConfig:
        return self._config

    def _apply(self, write: Upsert | Delete, now: float) -> Outcome:
        try:
            if isinstance(write, Upsert):
                request = build_put_request(write, self._config)
            else:
                request = build_tombstone_request(write, self._config, now)
            self._client.put_item(**request)
        except Exception as exc:  # classified below; nothing is swallowed
            disposition = classify_error(exc)
            if disposition is Disposition.STALE:
                return Outcome.STALE
            raise _WriteFailed(disposition, write, exc) from exc
        return Outcome.APPLIED

    def _apply_captured(self, write: Upsert | Delete, now: float) -> Outcome | _WriteFailed:
        try:
            return self._apply(write, now)
        except _WriteFailed as failure:
            return failure

    def write(self, writes: Sequence[PlannedWrite]) -> WriteCounts:
        """Apply a batch; returns the counts or raises (see the module docstring)."""
        now = self._clock()
        pending = [w for w in writes if not isinstance(w, Skip)]
        skipped = len(writes) - len(pending)
        if len(pending) <= 1 or self._config.max_workers == 1:
            results = [self._apply_captured(w, now) for w in pending]
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self._config.max_workers, thread_name_prefix="cdc-ddb-sink")
            futures = [self._pool.submit(self._apply_captured, w, now) for w in pending]
            results = [future.result() for future in futures]
        outcomes = [r for r in results if isinstance(r, Outcome)]
        failures = [r for r in results if isinstance(r, _WriteFailed)]
        counts = WriteCounts.of(outcomes) + WriteCounts(skipped=skipped)
        if failures:
            _raise_for(failures, counts, self._config.table_name)
        return counts

    def close(self) -> None:
        """Stop the writer threads (idempotent)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _raise_for(failures: list[_WriteFailed], counts: WriteCounts, target: str) -> None:
    by_kind: dict[Disposition, list[_WriteFailed]] = {}
    for failure in failures:
        by_kind.setdefault(failure.disposition, []).append(failure)
    if Disposition.FAIL in by_kind:
        first = by_kind[Disposition.FAIL][0]
        raise SinkError(f"DynamoDB sink {target}: {first.cause!r}") from first.cause
    if Disposition.RETRY in by_kind:
        retry = by_kind[Disposition.RETRY]
        raise RetryableSinkError(
            f"DynamoDB sink {target}: {len(retry)} write(s) failed transiently: {retry[0].cause!r}",
            writes=tuple(f.write for f in retry),
        ) from retry[0].cause
    rejected = by_kind[Disposition.REJECT]
    raise SinkRejectedWrite(tuple((f.write, str(f.cause)) for f in rejected), counts=counts) from rejected[0].cause
