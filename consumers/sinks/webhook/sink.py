"""Webhook sink: each event to every subscriber that wants its type, signed as Standard Webhooks
(https://www.standardwebhooks.com), in order per (subscriber, entity), never behind what the
subscriber already acknowledged.

An event is an ``Upsert``: ``key`` names the entity (a user), ``version`` is the event's place in
that entity's history, ``document`` the event (``id``: the change's eventID, sent as the
``webhook-id`` header and the subscriber's idempotency key; ``type``: what subscribers choose by;
the rest is the body as it is). A ``Delete`` carries no event: it is rejected.

What it promises, per (subscriber, entity):
  * **Order.** Events go out one after the other in ``version`` order; an event that is not yet
    acknowledged holds the ones after it back (they are answered RETRY with it).
  * **Never older after newer.** The delivery ledger (a DynamoDB table) keeps the last
    acknowledged version; an event at or below it is not sent (STALE). A replay, a duplicate
    record or a redriven dead letter therefore never sends an event older than one acknowledged.
  * **At least once, exact repeats only.** The acknowledgements of a batch are recorded together
    once its deliveries are done. An event is sent again only when its acknowledgement was not
    recorded (the worker died before, or the ledger write failed): the same body, the same
    ``webhook-id``. Subscribers de-duplicate on it.

Answers: 2xx acknowledges (APPLIED, recorded in the ledger); 408, 429, 5xx, a timeout or a
connection error are retried (RETRY; ``Retry-After`` is honoured: the subscriber gets nothing
before it); any other status is final (REJECTED, dead-lettered at once, with the status and the
first bytes of the answer).

The bound on a failing subscriber: within one batch each (subscriber, entity) chain is delivered
on its own, so the other subscribers get their events at the first attempt; but the batch is
retried until every delivery settles, so the shard's next batches wait, for all subscribers,
at most ``retry_budget_s``. A subscriber failing longer stops holding the shard: its events are
then REJECTED (dead-lettered; ``cdc dlq redrive`` sends them again), with one probe delivery per
batch, until it acknowledges again.

Keys named private (``private``) are removed from every event, at any depth, before it is
signed: they never leave the process.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import orjson

from consumers.shared.errors import SinkError
from consumers.shared.planning import APPLIED, SKIPPED, STALE, Delete, Outcome, PlannedWrite, Skip, Upsert, WriteResult

__all__ = [
    "RETRYABLE_STATUSES",
    "Ack",
    "Endpoint",
    "Ledger",
    "WebhookSink",
    "check_secret",
    "classify_status",
    "entity_id",
    "retry_after_s",
    "strip_private",
]

#: answers that are retried; any other non-2xx is final
RETRYABLE_STATUSES = frozenset({408, 429})
#: how much of a refusing answer's body goes into the dead letter
BODY_EXCERPT = 200
_SECRET_PREFIX = "whsec_"


def check_secret(secret: str) -> bytes:
    """The key of a Standard Webhooks secret: base64 of 24 to 64 bytes, ``whsec_`` in front or
    not (the libraries take both); ValueError saying what is wrong (never the secret itself)."""
    encoded = secret.removeprefix(_SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not a Standard Webhooks secret: whsec_ + base64 of 24-64 random bytes") from None
    if not 24 <= len(key) <= 64:
        raise ValueError(f"decodes to {len(key)} bytes: a Standard Webhooks secret has 24 to 64")
    return key


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A subscriber, resolved: where it is, what it wants, how to sign for it."""

    name: str
    url: str
    events: frozenset[str]
    sign: Callable[[str, datetime, bytes], str]  # (webhook-id, timestamp, body) -> webhook-signature


@dataclass(frozen=True, slots=True)
class Ack:
    """A subscriber acknowledged an event (2xx)."""

    subscriber: str
    entity: str
    version: int
    event_id: str
    at: float  # when the 2xx came (epoch seconds): `make verify` checks the order by it


class Ledger(Protocol):
    """What each subscriber acknowledged (``consumers.sinks.webhook.ledger``)."""

    def last_acknowledged(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]: ...
    def record(self, acks: Sequence[Ack]) -> None: ...


class Response(Protocol):
    status: int
    headers: Mapping[str, str]
    data: bytes


#: (url, body, headers, timeout_s) -> response; raises on a transport failure
Post = Callable[[str, bytes, Mapping[str, str], float], Response]


def entity_id(key: Mapping[str, Any]) -> str:
    """The entity of an event key as text: the values in key order, joined by '#'."""
    return "#".join(str(value) for value in key.values())


def strip_private(value: Any, private: frozenset[str]) -> Any:
    """``value`` without any mapping key in ``private``, at any depth."""
    if isinstance(value, Mapping):
        return {k: strip_private(v, private) for k, v in value.items() if k not in private}
    if isinstance(value, (list, tuple)):
        return [strip_private(v, private) for v in value]
    return value


def classify_status(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome.APPLIED
    if status in RETRYABLE_STATUSES or status >= 500:
        return Outcome.RETRY
    return Outcome.REJECTED


def retry_after_s(value: str | None, now: float) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds from ``now``; None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


@dataclass(slots=True)
class _Health:
    """One subscriber's failure streak."""

    failing_since: float | None = None
    last_failed: float = 0.0
    not_before: float = 0.0
    last_error: str = ""

    def spent(self, now: float, budget_s: float) -> bool:
        """Failing for longer than the budget, and lately: a streak with no failure for a
        budget's length (its record dead-lettered for another reason, say) is over."""
        return (
            self.failing_since is not None
            and now - self.failing_since > budget_s
            and now - self.last_failed <= budget_s
        )


class _Acked(WriteResult):
    """APPLIED, with the time of the 2xx (for the ledger)."""

    __slots__ = ("at",)
    at: float

    def __init__(self, at: float) -> None:
        super().__init__(Outcome.APPLIED)
        object.__setattr__(self, "at", at)


@dataclass(frozen=True, slots=True)
class _Delivery:
    index: int  # of the write
    endpoint: Endpoint
    entity: str
    version: int
    event_id: str
    body: bytes


@dataclass(slots=True)
class WebhookSink:
    """``post`` sends one request (``consumers.sinks.webhook.kind`` gives urllib3's); ``clock``
    is a seam for the budget and ``Retry-After``."""

    endpoints: Sequence[Endpoint]
    ledger: Ledger
    post: Post
    timeout_s: float = 5.0
    retry_budget_s: float = 120.0
    private: frozenset[str] = frozenset()
    concurrency: int = 16
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    _health: dict[str, _Health] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pool: ThreadPoolExecutor | None = None

    def write(self, writes: Sequence[PlannedWrite]) -> list[WriteResult]:
        answers: list[list[WriteResult]] = [[] for _ in writes]
        deliveries: list[_Delivery] = []
        for i, write in enumerate(writes):
            if type(write) is Skip:
                answers[i].append(SKIPPED)
            elif type(write) is Delete:
                answers[i].append(WriteResult.rejected("a webhook sink sends events (Upsert): a Delete has none"))
            else:
                found = self._deliveries(i, write)  # type: ignore[arg-type]
                if isinstance(found, WriteResult):
                    answers[i].append(found)
                elif not found:
                    answers[i].append(SKIPPED)  # no subscriber wants this type
                deliveries.extend(found if isinstance(found, list) else ())
        if deliveries:
            for delivery, result in self._deliver(deliveries):
                answers[delivery.index].append(result)
        return [_combine(results) for results in answers]

    def _deliveries(self, index: int, write: Upsert) -> list[_Delivery] | WriteResult:
        event = write.document
        event_id, event_type = event.get("id"), event.get("type")
        if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str):
            return WriteResult.rejected("an event needs a non-empty string 'id' (the webhook-id) and a string 'type'")
        try:
            body = orjson.dumps(strip_private(event, self.private), default=_json_default)
        except (TypeError, orjson.JSONEncodeError) as exc:
            return WriteResult.rejected(f"event {event_id} cannot be serialised: {exc}")
        entity = entity_id(write.key)
        return [
            _Delivery(index, endpoint, entity, write.version, event_id, body)
            for endpoint in self.endpoints
            if event_type in endpoint.events
        ]

    def _deliver(self, deliveries: list[_Delivery]) -> list[tuple[_Delivery, WriteResult]]:
        try:
            acked = self.ledger.last_acknowledged({(d.endpoint.name, d.entity) for d in deliveries})
        except SinkError:
            raise
        except Exception as exc:  # noqa: BLE001 - the ledger answers later (throttling, a timeout)
            return [(d, WriteResult.retry(f"delivery ledger unreadable: {exc!r}")) for d in deliveries]
        chains: dict[tuple[str, str], list[_Delivery]] = {}
        for delivery in deliveries:
            chains.setdefault((delivery.endpoint.name, delivery.entity), []).append(delivery)
        probes: set[str] = set()  # the subscribers past their budget that got their one try
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="webhook")
        futures = [
            self._pool.submit(self._chain, sorted(chain, key=lambda d: d.version), acked.get(pair), probes)
            for pair, chain in chains.items()
        ]
        answers = [answer for future in futures for answer in future.result()]
        delivered = [(d, r) for d, r in answers if isinstance(r, _Acked)]
        if not delivered:
            return answers
        try:  # once per batch: a worker that dies before this sends them again, exact repeats
            self.ledger.record([Ack(d.endpoint.name, d.entity, d.version, d.event_id, r.at) for d, r in delivered])
        except SinkError:
            raise
        except Exception as exc:  # noqa: BLE001 - sent again later: exact repeats, same webhook-id
            reason = f"acknowledged, but the delivery ledger write failed: {exc!r}"
            return [(d, WriteResult.retry(reason) if r.outcome is Outcome.APPLIED else r) for d, r in answers]
        return [(d, APPLIED if r.outcome is Outcome.APPLIED else r) for d, r in answers]

    def _chain(
        self, chain: list[_Delivery], acked: int | None, probes: set[str]
    ) -> list[tuple[_Delivery, WriteResult]]:
        """One (subscriber, entity): in version order, stopping at the first event not acknowledged."""
        answers: list[tuple[_Delivery, WriteResult]] = []
        held: str | None = None
        for delivery in chain:
            if held is not None:
                answers.append((delivery, WriteResult.retry(held)))
                continue
            if acked is not None and delivery.version <= acked:
                answers.append((delivery, STALE))
                continue
            result = self._send(delivery, probes)
            answers.append((delivery, result))
            if result.outcome is Outcome.APPLIED:
                acked = delivery.version
            else:
                held = f"{delivery.endpoint.name}: behind event {delivery.event_id}, not acknowledged"
        return answers

    def _send(self, delivery: _Delivery, probes: set[str]) -> WriteResult:
        endpoint = delivery.endpoint
        now = self.clock()
        with self._lock:
            health = self._health.setdefault(endpoint.name, _Health())
            spent = health.spent(now, self.retry_budget_s)
            if spent:
                if endpoint.name in probes:
                    return WriteResult.rejected(self._spent(endpoint.name, health, now))
                probes.add(endpoint.name)
            elif health.not_before > now:
                return WriteResult.retry(
                    f"{endpoint.name}: Retry-After, {health.not_before - now:.1f}s to wait ({health.last_error})"
                )
        stamp = datetime.fromtimestamp(self.wall_clock(), tz=UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": delivery.event_id,
            "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": endpoint.sign(delivery.event_id, stamp, delivery.body),
        }
        try:
            response = self.post(endpoint.url, delivery.body, headers, self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - every transport failure is a retryable answer
            return self._failed(endpoint.name, f"{type(exc).__name__}: {exc}", None, spent)
        outcome = classify_status(response.status)
        excerpt = bytes(response.data[:BODY_EXCERPT]).decode("utf-8", "replace")
        if outcome is Outcome.APPLIED:
            with self._lock:
                self._health[endpoint.name] = _Health()
            return _Acked(self.wall_clock())
        reason = f"{response.status} {excerpt!r}"
        if outcome is Outcome.REJECTED:
            return WriteResult.rejected(f"{endpoint.name} answered {reason} (final: not retried)")
        wait = retry_after_s(_header(response.headers, "retry-after"), self.wall_clock())
        return self._failed(endpoint.name, reason, wait, spent)

    def _failed(self, name: str, reason: str, wait: float | None, spent: bool) -> WriteResult:
        now = self.clock()
        with self._lock:
            health = self._health.setdefault(name, _Health())
            if health.failing_since is None or now - health.last_failed > self.retry_budget_s:
                health.failing_since = now  # a new streak
            health.last_failed = now
            health.last_error = reason
            if wait is not None:
                health.not_before = now + min(wait, self.retry_budget_s)
            if spent:
                return WriteResult.rejected(self._spent(name, health, now))
        return WriteResult.retry(f"{name} answered {reason}")

    def _spent(self, name: str, health: _Health, now: float) -> str:
        return (
            f"{name} has failed for {now - (health.failing_since or now):.0f}s, past its retry budget of "
            f"{self.retry_budget_s:g}s (last: {health.last_error})"
        )


def _combine(results: list[WriteResult]) -> WriteResult:
    """One answer for a write from its subscribers': any rejection, else any retry, else applied
    if any subscriber got it, else stale (or skipped)."""
    for outcome in (Outcome.REJECTED, Outcome.RETRY):
        reasons = [r.reason for r in results if r.outcome is outcome]
        if reasons:
            return WriteResult(outcome, "; ".join(reasons))
    if any(r.outcome is Outcome.APPLIED for r in results):
        return WriteResult(Outcome.APPLIED)
    return results[0] if len(results) == 1 else STALE


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _json_default(value: Any) -> Any:
    """Decoded DynamoDB values: numbers, sets (sorted), binaries (base64 text)."""
    if type(value) is Decimal:
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=lambda v: (type(v).__name__, v))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"type {type(value).__name__} is not JSON serialisable")
