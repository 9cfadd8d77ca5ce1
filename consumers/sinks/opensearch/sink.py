"""OpenSearch sink: one ``_bulk`` request per batch, guarded by external versions.

An ``Upsert`` is an ``index`` action with ``version=<write.version>``, ``version_type=external``
(OpenSearch indexes only if the stored version is lower); a ``Delete`` is a ``delete`` action
with the same version and ``version_type=external_gte`` (deletes win version ties, see
``consumers.shared.planning``; a delete of a missing document still records its version).

**Index setting required**: OpenSearch forgets the version of a deleted document after
``index.gc_deletes`` (default 60 s); a replayed older upsert arriving later would resurrect the
document. Set ``index.gc_deletes`` to at least the source stream's retention (e.g. ``"24h"``).

Per-item results: 2xx -> APPLIED (a delete answered 404 ``not_found`` too: the document is
absent, as wanted); 409 -> STALE (counted, not an error); 429, 5xx and a cluster block -> RETRY;
401, 403 and 404 ``index_not_found`` -> ``SinkError`` (the index is unusable: nothing is
dead-lettered); other 4xx (mapping errors...) -> REJECTED with the reason. The request as a
whole: connection errors, timeouts, 429 and 5xx -> RETRY for every write sent; other statuses
(401, 403, 404 missing index...) -> ``SinkError``. Documents that cannot be serialised are
REJECTED before the request is sent.

Documents are serialised with orjson: ``Decimal`` -> JSON number (int when integral, else
float: beyond 15-17 significant digits precision is lost), ``set``/``frozenset`` -> sorted
array, ``bytes`` -> base64 text. Document ids come from ``config.document_id(key)``.
"""

from __future__ import annotations

import base64
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from consumers.shared.errors import SinkError
from consumers.shared.planning import APPLIED, SKIPPED, STALE, Delete, Outcome, PlannedWrite, Skip, Upsert, WriteResult
from consumers.sinks import SINK_FAILED, Classified

__all__ = [
    "DELETE_VERSION_TYPE",
    "INDEX_VERSION_TYPE",
    "OpenSearchSink",
    "OpenSearchSinkConfig",
    "build_bulk_body",
    "classify_bulk_item",
    "classify_transport_error",
    "default_document_id",
    "serialise_document",
    "template_document_id",
]

INDEX_VERSION_TYPE = "external"
DELETE_VERSION_TYPE = "external_gte"
# per-item statuses that say the index cannot be written at all (missing index, no permission)
_UNUSABLE_STATUSES = frozenset({401, 403, 404})
# except a block (an index set read-only by an operator, or by the disk watermark): it is
# lifted when the cause is fixed, so the writes wait for it, backing off, like a throttled sink
_TRANSIENT_ERRORS = frozenset({"cluster_block_exception"})


def _id_part(value: Any) -> str:
    if type(value) is str:
        return value
    if type(value) is int or type(value) is Decimal:
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.urlsafe_b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"key values must be str, int, Decimal or bytes, got {type(value).__name__}")


def default_document_id(key: Mapping[str, Any]) -> str:
    """A single-attribute key -> its value as text; a composite key -> compact JSON of the
    attribute names and values, sorted by name (unambiguous)."""
    if len(key) == 1:
        return _id_part(next(iter(key.values())))
    return orjson.dumps([[name, _id_part(key[name])] for name in sorted(key)]).decode()


def template_document_id(template: str) -> Callable[[Mapping[str, Any]], str]:
    """Document ids from a template over the key, e.g. ``"{WorkplaceId}#{UserId}"``.

    Each value is rendered as by `default_document_id`, then ``%`` and every character of the
    template's own text are percent-encoded in it, so ids stay distinct: ``("a#b", "c")`` and
    ``("a", "b#c")`` give ``a%23b#c`` and ``a#b%23c``. Values without those characters appear
    unchanged (ids written by a plain ``format`` of the template stay valid).
    """
    parsed = list(string.Formatter().parse(template))
    fields = [name for _, name, _, _ in parsed if name is not None]
    if not fields or any(
        not name or spec or conversion or "." in name or "[" in name
        for _, name, spec, conversion in parsed
        if name is not None
    ):
        raise ValueError(
            f"document id template {template!r}: expected plain {{Attribute}} fields, e.g. '{{WorkplaceId}}#{{UserId}}'"
        )
    literal = "".join(text for text, *_ in parsed)
    escaped = {ord(c): "".join(f"%{byte:02X}" for byte in c.encode()) for c in {"%", *literal}}

    def document_id(key: Mapping[str, Any]) -> str:
        try:
            return template.format_map({name: _id_part(key[name]).translate(escaped) for name in fields})
        except KeyError as exc:
            raise ValueError(f"document id template {template!r}: the key has no attribute {exc}") from None

    return document_id


def _json_default(value: Any) -> Any:
    if type(value) is Decimal:
        if not value.is_finite():
            raise TypeError(f"Decimal {value} is not finite")
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"type {type(value).__name__} is not JSON serialisable")


def serialise_document(document: Mapping[str, Any]) -> bytes:
    """JSON bytes for one document (see the module docstring); raises TypeError."""
    try:
        return orjson.dumps(document, default=_json_default)
    except orjson.JSONEncodeError as exc:
        raise TypeError(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class OpenSearchSinkConfig:
    """``refresh``: None (default), ``"true"``, ``"false"`` or ``"wait_for"``.
    ``include_key``: add the key attributes to the indexed document."""

    index: str
    document_id: Callable[[Mapping[str, Any]], str] = default_document_id
    refresh: str | None = None
    include_key: bool = True

    def __post_init__(self) -> None:
        if type(self.index) is not str or not self.index:
            raise ValueError(f"OpenSearchSinkConfig.index must be a non-empty string, got {self.index!r}")
        if self.refresh not in (None, "true", "false", "wait_for"):
            raise ValueError(
                f"OpenSearchSinkConfig.refresh must be None, true, false or wait_for, got {self.refresh!r}"
            )


def build_bulk_body(
    writes: Sequence[Upsert | Delete], config: OpenSearchSinkConfig
) -> tuple[bytes, list[tuple[PlannedWrite, str]]]:
    """NDJSON ``_bulk`` body for the writes (Skips must be removed first).

    Returns ``(body, rejected)``: writes whose id or document cannot be serialised are left out
    of the body and returned with the reason; the body's actions follow the order of the other
    writes.
    """
    lines: list[bytes] = []
    rejected: list[tuple[PlannedWrite, str]] = []
    for write in writes:
        try:
            doc_id = config.document_id(write.key)
            if type(write) is Upsert:
                document = {**write.document, **write.key} if config.include_key else write.document
                source = serialise_document(document)
                action = {
                    "index": {
                        "_id": doc_id,
                        "version": write.version,
                        "version_type": INDEX_VERSION_TYPE,
                    }
                }
                lines.append(orjson.dumps(action))
                lines.append(source)
            else:
                action = {
                    "delete": {
                        "_id": doc_id,
                        "version": write.version,
                        "version_type": DELETE_VERSION_TYPE,
                    }
                }
                lines.append(orjson.dumps(action))
        except (TypeError, ValueError) as exc:
            rejected.append((write, f"cannot serialise: {exc}"))
    body = b"\n".join(lines) + b"\n" if lines else b""
    return body, rejected


def classify_bulk_item(item: Mapping[str, Any]) -> Classified:
    """Classify one entry of a ``_bulk`` response's ``items``."""
    ((action, result),) = item.items()
    status = result.get("status")
    if type(status) is not int:
        return SINK_FAILED
    if 200 <= status < 300:
        return Outcome.APPLIED
    if status == 404 and action == "delete" and "error" not in result:
        return Outcome.APPLIED  # not_found: already absent; the version is recorded
    if status == 409:
        return Outcome.STALE
    error = result.get("error")
    if status == 429 or status >= 500 or (isinstance(error, Mapping) and error.get("type") in _TRANSIENT_ERRORS):
        return Outcome.RETRY
    if status in _UNUSABLE_STATUSES:
        return SINK_FAILED  # the index, not the document: stop, dead-letter nothing
    if 400 <= status < 500:
        return Outcome.REJECTED
    return SINK_FAILED


def classify_transport_error(exc: BaseException) -> Classified:
    """Classify an exception raised by ``client.bulk`` for the request as a whole."""
    status = getattr(exc, "status_code", None)
    if type(status) is int:
        return Outcome.RETRY if status == 429 or status >= 500 else SINK_FAILED
    from opensearchpy import exceptions as os_exceptions

    if isinstance(exc, os_exceptions.ConnectionError):
        return Outcome.RETRY  # includes ConnectionTimeout (status 'N/A')
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return Outcome.RETRY
    return SINK_FAILED


def _reason(result: Mapping[str, Any]) -> str:
    error = result.get("error")
    if isinstance(error, Mapping):
        return f"{result.get('status')} {error.get('type')}: {error.get('reason')}"
    return f"{result.get('status')} {error or result.get('result')}"


class OpenSearchSink:
    """Applies planned writes to one index through an opensearch-py ``OpenSearch`` client."""

    def __init__(self, client: Any, config: OpenSearchSinkConfig) -> None:
        self._client = client
        self._config = config

    @property
    def config(self) -> OpenSearchSinkConfig:
        return self._config

    def write(self, writes: Sequence[PlannedWrite]) -> list[WriteResult]:
        """Apply a batch with one ``_bulk`` request: one result per write, in order."""
        results: list[WriteResult | None] = [SKIPPED if isinstance(w, Skip) else None for w in writes]
        pending = [(i, w) for i, w in enumerate(writes) if not isinstance(w, Skip)]
        body, unserialisable = build_bulk_body([w for _, w in pending], self._config)
        refused = {id(w): reason for w, reason in unserialisable}
        sent = []
        for i, write in pending:
            if id(write) in refused:
                results[i] = WriteResult.rejected(refused[id(write)])
            else:
                sent.append(i)
        if sent:
            for i, result in zip(sent, self._bulk(body, len(sent)), strict=True):
                results[i] = result
        return [r for r in results if r is not None]

    def _bulk(self, body: bytes, actions: int) -> list[WriteResult]:
        # POST /<index>/_bulk, the actions naming no index: a grant on the index path (IAM,
        # fine-grained access control) covers it, and the domain may forbid explicit indexes
        index = self._config.index
        kwargs: dict[str, Any] = {"body": body, "index": index}
        if self._config.refresh is not None:
            kwargs["refresh"] = self._config.refresh
        try:
            response = self._client.bulk(**kwargs)
        except Exception as exc:  # classified; nothing is swallowed
            if classify_transport_error(exc) is Outcome.RETRY:
                return [WriteResult.retry(f"bulk request failed: {exc!r}")] * actions
            raise SinkError(f"OpenSearch sink {index}: bulk request failed: {exc!r}") from exc
        items = response.get("items") if isinstance(response, Mapping) else None
        if not isinstance(items, list) or len(items) != actions:
            raise SinkError(
                f"OpenSearch sink {index}: bulk response has "
                f"{len(items) if isinstance(items, list) else 'no'} items for {actions} actions"
            )
        results = []
        for item in items:
            outcome = classify_bulk_item(item)
            if outcome is SINK_FAILED:
                ((_action, result),) = item.items()
                raise SinkError(f"OpenSearch sink {index}: unexpected bulk item result {_reason(result)}")
            if outcome is Outcome.APPLIED:
                results.append(APPLIED)
            elif outcome is Outcome.STALE:
                results.append(STALE)
            else:
                ((_action, result),) = item.items()
                results.append(WriteResult(outcome, _reason(result)))
        return results
