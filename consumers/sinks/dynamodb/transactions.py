"""The ``TRANSACTIONS`` write strategy of the DynamoDB sink: ``TransactWriteItems`` of up to 100
``Put`` actions (and an estimated 4 MB of items), chunks in parallel.

A transaction holds one action per item, so the batch is first collapsed to the newest write
of each key (the order of ``planning.should_apply``: higher version, and a delete over an upsert
of its version); a collapsed write is answered as ``should_apply`` says it would fare right
after the newest one was applied: STALE (an identical duplicate delete: APPLIED), as if
conditional puts had met it after the newest. A transaction fails whole: its
``CancellationReasons`` settle each action (``ConditionalCheckFailed`` -> STALE,
``ValidationError`` -> REJECTED, conflict and throttling -> RETRY, ``None`` -> sent again in
the next transaction), and when the newest write of a key is rejected, the next newest takes
its place. A request refused as a whole (e.g. an item over 400 KB) or without usable reasons is
applied again as conditional puts, so every write gets its own answer. For a batch with one
write per key both strategies give the same answers; with several writes of a key, conditional
puts' answers depend on the order the puts happen to arrive in, transactions answer as above.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cmp_to_key
from typing import Any

from consumers.shared.planning import APPLIED, STALE, Delete, Outcome, Upsert, WriteResult, should_apply
from consumers.sinks.dynamodb.requests import (
    CANCELLATION_REASONS,
    MAX_TRANSACTION_BYTES,
    MAX_TRANSACTION_ITEMS,
    classify_error,
    error_code,
)

__all__ = ["Action", "SinkFailed", "transact"]


class SinkFailed:
    """An answer that is no write's fault: the sink failed (raised as ``SinkError`` once every
    write of the batch has finished)."""

    __slots__ = ("cause",)

    def __init__(self, cause: BaseException) -> None:
        self.cause = cause


Answer = WriteResult | SinkFailed


@dataclass(frozen=True, slots=True)
class Action:
    """One write with its request: ``PutItem`` keyword arguments, also a transaction's ``Put``."""

    index: int  # the write's position in the batch
    write: Upsert | Delete
    put: dict[str, Any]
    size: int  # estimated item size, bytes

    @staticmethod
    def of(index: int, write: Upsert | Delete, put: dict[str, Any]) -> Action:
        return Action(index, write, put, _item_size(put["Item"]))


def answer_of(exc: BaseException) -> Answer:
    """A write's answer from the exception its request raised."""
    outcome = classify_error(exc)
    if outcome is None:
        return SinkFailed(exc)
    return STALE if outcome is Outcome.STALE else WriteResult(outcome, repr(exc))


def transact(
    actions: Sequence[Action],
    client: Any,
    run: Callable[[Callable[[list[Action]], list[tuple[Action, Answer | None]]], list[list[Action]]], list[Any]],
    put: Callable[[Action], Answer],
) -> dict[int, Answer]:
    """Each action's answer, by the write's index. ``run(send, chunks)`` maps ``send`` over the
    chunks (on the sink's pool); ``put`` is one conditional put (the fallback)."""

    def send(chunk: list[Action]) -> list[tuple[Action, Answer | None]]:
        """One ``TransactWriteItems``; each action's answer, None = not applied, send again."""
        try:
            client.transact_write_items(TransactItems=[{"Put": a.put} for a in chunk])
        except Exception as exc:  # noqa: BLE001 - classified below; nothing is swallowed
            response = getattr(exc, "response", None)
            if isinstance(response, Mapping) and error_code(response) == "TransactionCanceledException":
                reasons = _cancellation_reasons(response, len(chunk))
                if reasons is not None:
                    return [(a, _cancelled(reason, exc)) for a, reason in zip(chunk, reasons, strict=True)]
            else:
                answer = answer_of(exc)
                if isinstance(answer, SinkFailed) or answer.outcome is Outcome.RETRY:
                    return [(a, answer) for a in chunk]
            # refused as a whole (an item too large...), or cancelled without usable reasons:
            # find which write it is, put by put
            return [(a, put(a)) for a in chunk]
        return [(a, APPLIED) for a in chunk]

    answers: dict[int, Answer] = {}
    by_key: dict[tuple[Any, ...], list[Action]] = {}
    for action in actions:
        by_key.setdefault(_item_key(action.put["Item"], action.write.key), []).append(action)
    # Each key's writes, newest first: the head is sent, the others wait for its answer.
    heads = [(queue[0], queue[1:]) for queue in (sorted(q, key=_NEWEST_FIRST) for q in by_key.values())]
    while heads:
        sent = {id(a): r for chunk_answers in run(send, _chunks(h for h, _ in heads)) for a, r in chunk_answers}
        again: list[tuple[Action, list[Action]]] = []
        for head, waiting in heads:
            answer = sent[id(head)]
            if answer is None:  # its transaction was cancelled by another action: again
                again.append((head, waiting))
                continue
            answers[head.index] = answer
            if isinstance(answer, WriteResult) and answer.outcome.settled:
                applied = head.write.version if answer.outcome is Outcome.APPLIED else None
                answers.update((w.index, _superseded(w.write, applied)) for w in waiting)
            elif isinstance(answer, WriteResult) and answer.outcome is Outcome.REJECTED and waiting:
                again.append((waiting[0], waiting[1:]))  # the next newest write of the key takes its place
            else:
                answers.update((w.index, answer) for w in waiting)
        heads = again
    return answers


def _newest_first(a: Action, b: Action) -> int:
    return -1 if _supersedes(a.write, b.write) else 1 if _supersedes(b.write, a.write) else 0


_NEWEST_FIRST = cmp_to_key(_newest_first)


def _supersedes(write: Upsert | Delete, other: Upsert | Delete) -> bool:
    """``write`` still applies after ``other`` did, and not the other way round (the guard's order)."""
    return should_apply(write, other.version) and not should_apply(other, write.version)


def _superseded(write: Upsert | Delete, applied_version: int | None) -> WriteResult:
    """A collapsed write's answer: what the guard says after the newest write of its key was
    applied (``applied_version``) or found stale (None: the item holds that version or newer)."""
    if applied_version is not None and should_apply(write, applied_version):
        return APPLIED  # an identical delete: its tombstone is the one just written
    return STALE


def _cancellation_reasons(response: Mapping[str, Any], actions: int) -> list[Mapping[str, Any]] | None:
    """A ``TransactionCanceledException``'s reasons, one per action, when they settle at least one."""
    reasons = response.get("CancellationReasons")
    if not isinstance(reasons, list) or len(reasons) != actions:
        return None
    if not all(isinstance(r, Mapping) for r in reasons) or all(r.get("Code") == "None" for r in reasons):
        return None
    return reasons


def _cancelled(reason: Mapping[str, Any], exc: BaseException) -> Answer | None:
    code = str(reason.get("Code"))
    if code == "None":
        return None
    outcome = CANCELLATION_REASONS.get(code)
    if outcome is Outcome.STALE:
        return STALE
    message = str(reason.get("Message") or "")
    described = f"{code}: {message}" if message else code
    if outcome is None:
        failure = RuntimeError(f"transaction cancelled: {described}")
        failure.__cause__ = exc
        return SinkFailed(failure)
    return WriteResult(outcome, described)


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


def _chunks(actions: Iterable[Action]) -> list[list[Action]]:
    """Transactions of at most MAX_TRANSACTION_ITEMS actions and MAX_TRANSACTION_BYTES of items."""
    chunks: list[list[Action]] = []
    size = 0
    for action in actions:
        if not chunks or len(chunks[-1]) == MAX_TRANSACTION_ITEMS or size + action.size > MAX_TRANSACTION_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(action)
        size += action.size
    return chunks
