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

Write strategies (``DynamoDbSinkConfig.write_strategy``; the app's ``sink.write_strategy``,
default chosen per target by ``consumers.runtime.wiring``), same puts, same conditions:

* ``CONDITIONAL_PUTS`` (the config's default; the default on AWS, where a transactional write
  costs 2 WCU per item, and on LocalStack, one DynamoDB Local for the sinks and the leases):
  one ``PutItem`` per write, in parallel on a thread pool.
* ``TRANSACTIONS`` (the default on the local stack, whose KCL lease tables have a DynamoDB Local
  of their own: DynamoDB Local takes ~2,000 items/s this way against 127-243 with single puts,
  but runs one transaction at a time): ``TransactWriteItems`` of up to 100 ``Put`` actions (and an estimated 4 MB of items), chunks in parallel. A transaction holds one
  action per item, so the batch is first collapsed to the newest write of each key (the order
  of ``planning.should_apply``: higher version, and a delete over an upsert of its version); a
  collapsed write is counted as ``should_apply`` says it would fare right after the newest one
  was applied: STALE (an identical duplicate delete: APPLIED), as if conditional puts had met
  it after the newest. A transaction fails whole: its ``CancellationReasons`` settle each
  action (``ConditionalCheckFailed`` -> STALE, ``ValidationError`` -> rejected, conflict and
  throttling -> retryable, ``None`` -> sent again in the next transaction), and when the newest
  write of a key is rejected, the next newest takes its place. A request refused as a whole
  (e.g. an item over 400 KB) or without usable reasons is applied again as conditional puts, so
  every write gets its own answer. For a batch with one write per key both strategies report
  the same counts; with several writes of a key, conditional puts' counts depend on the order
  the puts happen to arrive in (the total is the same), transactions count as above.

Outcomes: success -> APPLIED; ``ConditionalCheckFailedException`` -> STALE (counted, not an
error); throttling / 5xx / connection / timeout -> ``RetryableSinkError``; ``ValidationException``
and the like (and documents that cannot be encoded, e.g. floats) -> ``SinkRejectedWrite``
carrying the writes; anything else (missing table, access denied) -> ``SinkError``.
A batch raises only after every write has finished, so a retry re-applies at most the failed
ones (re-applying an applied write is harmless: STALE, or a re-written identical tombstone).
boto3 clients are thread-safe.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from enum import Enum
from functools import cmp_to_key
from typing import Any, TypeVar

from consumers.shared.codec import BinaryFormat, encode_image
from consumers.shared.errors import (
    DynamoJsonError,
    RetryableSinkError,
    SinkError,
    SinkRejectedWrite,
)
from consumers.shared.planning import Delete, Outcome, PlannedWrite, Skip, Upsert, WriteCounts, should_apply
from consumers.sinks import Disposition

__all__ = [
    "DELETE_CONDITION",
    "DEFAULT_TOMBSTONE_RETENTION",
    "DynamoDbSink",
    "DynamoDbSinkConfig",
    "MAX_TRANSACTION_BYTES",
    "MAX_TRANSACTION_ITEMS",
    "TOMBSTONE_ATTRIBUTE",
    "TOMBSTONE_TTL_ATTRIBUTE",
    "UPSERT_CONDITION",
    "WriteStrategy",
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
#: write is sent again. A code not listed is FAIL, as an unknown error code is.
_CANCELLATION_REASONS = {
    "ConditionalCheckFailed": Disposition.STALE,
    "TransactionConflict": Disposition.RETRY,
    "ThrottlingError": Disposition.RETRY,
    "ProvisionedThroughputExceeded": Disposition.RETRY,
    "RequestLimitExceeded": Disposition.RETRY,
    "ValidationError": Disposition.REJECT,
    "ItemCollectionSizeLimitExceeded": Disposition.REJECT,
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


def classify_error(exc: BaseException) -> Disposition:
    """Classify an exception raised by ``put_item`` (botocore ``ClientError`` and friends)."""
    if isinstance(exc, DynamoJsonError):
        return Disposition.REJECT
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):  # botocore.exceptions.ClientError
        code = _error_code(response)
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


class _ActionCancelled(Exception):
    """One action of a cancelled transaction, as its ``CancellationReasons`` entry names it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code


@dataclass(frozen=True, slots=True)
class _Action:
    """One write with its request: ``PutItem`` keyword arguments, also a transaction's ``Put``."""

    write: Upsert | Delete
    put: dict[str, Any]
    size: int  # estimated item size, bytes


_Result = Outcome | _WriteFailed
_T = TypeVar("_T")
_R = TypeVar("_R")


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

    def write(self, writes: Sequence[PlannedWrite]) -> WriteCounts:
        """Apply a batch; returns the counts or raises (see the module docstring)."""
        now = self._clock()
        pending = [w for w in writes if not isinstance(w, Skip)]
        skipped = len(writes) - len(pending)
        if self._config.write_strategy is WriteStrategy.TRANSACTIONS:
            results = self._transact(pending, now)
        else:
            results = self._map(lambda write: self._build_and_put(write, now), pending)
        outcomes = [r for r in results if isinstance(r, Outcome)]
        position = {id(write): i for i, write in enumerate(pending)}
        failures = sorted((r for r in results if isinstance(r, _WriteFailed)), key=lambda f: position[id(f.write)])
        counts = WriteCounts.of(outcomes) + WriteCounts(skipped=skipped)
        if failures:
            _raise_for(failures, counts, self._config.table_name)
        return counts

    def close(self) -> None:
        """Stop the writer threads (idempotent)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # ------------------------------------------------------------------------ both strategies
    def _map(self, function: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        """``function`` over ``items``, on the pool when there is more than one."""
        if len(items) <= 1 or self._config.max_workers == 1:
            return [function(item) for item in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._config.max_workers, thread_name_prefix="cdc-ddb-sink")
        futures = [self._pool.submit(function, item) for item in items]
        return [future.result() for future in futures]

    def _request(self, write: Upsert | Delete, now: float) -> dict[str, Any]:
        if isinstance(write, Upsert):
            return build_put_request(write, self._config)
        return build_tombstone_request(write, self._config, now)

    def _build_and_put(self, write: Upsert | Delete, now: float) -> _Result:
        try:
            request = self._request(write, now)
        except Exception as exc:  # noqa: BLE001 - classified: an unencodable document is rejected
            return _WriteFailed(classify_error(exc), write, exc)
        return self._put(write, request)

    def _put(self, write: Upsert | Delete, request: dict[str, Any]) -> _Result:
        """One conditional ``PutItem``."""
        try:
            self._client.put_item(**request)
        except Exception as exc:  # noqa: BLE001 - classified below; nothing is swallowed
            disposition = classify_error(exc)
            if disposition is Disposition.STALE:
                return Outcome.STALE
            return _WriteFailed(disposition, write, exc)
        return Outcome.APPLIED

    # ---------------------------------------------------------------------------- transactions
    def _transact(self, pending: Sequence[Upsert | Delete], now: float) -> list[_Result]:
        results: list[_Result] = []
        by_key: dict[tuple[Any, ...], list[_Action]] = {}
        for write in pending:
            try:
                put = self._request(write, now)
            except Exception as exc:  # noqa: BLE001 - classified, as a put would be
                results.append(_WriteFailed(classify_error(exc), write, exc))
                continue
            by_key.setdefault(_item_key(put["Item"], write.key), []).append(
                _Action(write, put, _item_size(put["Item"]))
            )
        # Each key's writes, newest first: the head is sent, the others wait for its outcome.
        queues = [sorted(actions, key=_NEWEST_FIRST) for actions in by_key.values()]
        heads = [(queue[0], queue[1:]) for queue in queues]
        while heads:
            chunks = _chunks([head for head, _ in heads])
            answers = {id(a): r for answers in self._map(self._send, chunks) for a, r in answers}
            retry: list[tuple[_Action, list[_Action]]] = []
            for head, waiting in heads:
                result = answers[id(head)]
                if result is None:  # its transaction was cancelled by another action: again
                    retry.append((head, waiting))
                elif isinstance(result, Outcome):
                    results.append(result)
                    applied = head.write.version if result is Outcome.APPLIED else None
                    results.extend(_superseded(w.write, applied) for w in waiting)
                elif result.disposition is Disposition.REJECT and waiting:
                    results.append(result)  # the next newest write of the key takes its place
                    retry.append((waiting[0], waiting[1:]))
                else:
                    results.append(result)
                    results.extend(_WriteFailed(result.disposition, w.write, result.cause) for w in waiting)
            heads = retry
        return results

    def _send(self, chunk: list[_Action]) -> list[tuple[_Action, _Result | None]]:
        """One ``TransactWriteItems``; each action's result, None = not applied, send again."""
        try:
            self._client.transact_write_items(TransactItems=[{"Put": a.put} for a in chunk])
        except Exception as exc:  # noqa: BLE001 - classified below; nothing is swallowed
            response = getattr(exc, "response", None)
            if isinstance(response, Mapping) and _error_code(response) == "TransactionCanceledException":
                reasons = _cancellation_reasons(response, len(chunk))
                if reasons is not None:
                    return [(a, _cancelled(a, reason, exc)) for a, reason in zip(chunk, reasons, strict=True)]
            else:
                disposition = classify_error(exc)
                if disposition in (Disposition.RETRY, Disposition.FAIL):
                    return [(a, _WriteFailed(disposition, a.write, exc)) for a in chunk]
            # refused as a whole (an item too large...), or cancelled without usable reasons:
            # find which write it is, put by put
            return [(a, self._put(a.write, a.put)) for a in chunk]
        return [(a, Outcome.APPLIED) for a in chunk]


def _newest_first(a: _Action, b: _Action) -> int:
    return -1 if _supersedes(a.write, b.write) else 1 if _supersedes(b.write, a.write) else 0


_NEWEST_FIRST = cmp_to_key(_newest_first)


def _supersedes(write: Upsert | Delete, other: Upsert | Delete) -> bool:
    """``write`` still applies after ``other`` did, and not the other way round (the guard's order)."""
    return should_apply(write, other.version) and not should_apply(other, write.version)


def _superseded(write: Upsert | Delete, applied_version: int | None) -> Outcome:
    """A collapsed write's outcome: what the guard says after the newest write of its key was
    applied (``applied_version``) or found stale (None: the item holds that version or newer)."""
    if applied_version is not None and should_apply(write, applied_version):
        return Outcome.APPLIED  # an identical delete: its tombstone is the one just written
    return Outcome.STALE


def _error_code(response: Mapping[str, Any]) -> str:
    return str((response.get("Error") or {}).get("Code", ""))


def _cancellation_reasons(response: Mapping[str, Any], actions: int) -> list[Mapping[str, Any]] | None:
    """A ``TransactionCanceledException``'s reasons, one per action, when they settle at least one."""
    reasons = response.get("CancellationReasons")
    if not isinstance(reasons, list) or len(reasons) != actions:
        return None
    if not all(isinstance(r, Mapping) for r in reasons) or all(r.get("Code") == "None" for r in reasons):
        return None
    return reasons


def _cancelled(action: _Action, reason: Mapping[str, Any], exc: BaseException) -> _Result | None:
    code = str(reason.get("Code"))
    if code == "None":
        return None
    disposition = _CANCELLATION_REASONS.get(code, Disposition.FAIL)
    if disposition is Disposition.STALE:
        return Outcome.STALE
    cause = _ActionCancelled(code, str(reason.get("Message") or ""))
    cause.__cause__ = exc
    return _WriteFailed(disposition, action.write, cause)


def _item_key(item: Mapping[str, Mapping[str, Any]], key: Mapping[str, Any]) -> tuple[Any, ...]:
    """The item's identity: its key attributes as DynamoDB compares them (numbers by value)."""
    parts = []
    for name in sorted(key):
        ((kind, value),) = item[name].items()
        parts.append((name, kind, Decimal(value).normalize() if kind == "N" else value))
    return tuple(parts)


def _item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """DynamoDB's item size, estimated from above (numbers count one byte per digit)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: Mapping[str, Any]) -> int:
    ((kind, v),) = value.items()
    if kind in ("S", "N"):
        return len(v.encode()) + 1
    if kind == "B":
        return len(v)
    if kind in ("SS", "NS", "BS"):
        return sum(_value_size({kind[0]: e}) for e in v)
    if kind == "L":
        return 3 + sum(1 + _value_size(e) for e in v)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + _value_size(e) for k, e in v.items())
    return 1  # BOOL, NULL


def _chunks(actions: Iterable[_Action]) -> list[list[_Action]]:
    """Transactions of at most MAX_TRANSACTION_ITEMS actions and MAX_TRANSACTION_BYTES of items."""
    chunks: list[list[_Action]] = []
    size = 0
    for action in actions:
        if not chunks or len(chunks[-1]) == MAX_TRANSACTION_ITEMS or size + action.size > MAX_TRANSACTION_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(action)
        size += action.size
    return chunks


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
