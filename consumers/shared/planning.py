"""Ordering-safe write plans: what an app wants written, guarded by a monotonic version.

An app's *transform* turns one ``ChangeRecord`` into zero or more planned writes (one change
may fan out, e.g. one target item per workplace membership)::

    def transform(record):
        if record.is_removal:
            return [delete(record, {"UserId": record.keys["UserId"]})]
        image = record.new_image
        return [upsert(record, {"UserId": image["UserId"]}, {"Email": image["Email"]})]

``plan_writes(record, transform)`` runs it and checks the result. Every write carries the
record's ``version``; sinks apply it only if it is newer than what they hold (the guard below),
so duplicates, reordering and replays converge to the newest version and never go back.

The guard (``should_apply``), shared by every sink and by ``consumers.sinks.memory``:

* ``Upsert``: apply when the key is absent or ``stored_version < version``;
* ``Delete``: apply when the key is absent or ``stored_version <= version``, writing a
  tombstone (never removing the key), so a late, older upsert cannot bring the item back.

Deletes win ties on purpose: a REMOVE carries the version of the item it removed (OldImage),
the same version as the upsert it follows, and must still beat it. Consequently an item that
is re-created after a delete must carry a higher version than the deleted one.

A fan-out transform must emit a write for every target key a change affects: upserts for the
memberships in NewImage and deletes for those only in OldImage, all with the record's version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from consumers.shared.errors import InvalidPlan
from consumers.shared.records import ChangeRecord

__all__ = [
    "APPLIED",
    "SKIPPED",
    "STALE",
    "Delete",
    "Outcome",
    "PlannedWrite",
    "Skip",
    "Transform",
    "Upsert",
    "WriteCounts",
    "WriteResult",
    "delete",
    "mirror",
    "plan_writes",
    "should_apply",
    "skip",
    "upsert",
]


class Outcome(Enum):
    """What a sink did with one planned write. A sink answers every write of a batch with one
    ``WriteResult``, in order; only a failure of the sink itself raises (``SinkError``)."""

    APPLIED = "applied"  # written (upsert or tombstone)
    STALE = "stale"  # the sink already holds this version or a newer one: nothing written
    SKIPPED = "skipped"  # a Skip: nothing to write
    REJECTED = "rejected"  # the write itself is invalid for the sink (validation, mapping): dead-letter it
    RETRY = "retry"  # not written, for a transient reason (throttling, 5xx, timeout): send it again

    @property
    def settled(self) -> bool:
        """The write needs nothing more: applied, stale or skipped."""
        return self in _SETTLED


_SETTLED = frozenset({Outcome.APPLIED, Outcome.STALE, Outcome.SKIPPED})


@dataclass(frozen=True, slots=True)
class WriteResult:
    """A sink's answer to one write; ``reason`` says why for REJECTED and RETRY."""

    outcome: Outcome
    reason: str = ""

    @staticmethod
    def rejected(reason: str) -> WriteResult:
        return WriteResult(Outcome.REJECTED, reason)

    @staticmethod
    def retry(reason: str) -> WriteResult:
        return WriteResult(Outcome.RETRY, reason)


#: the answers without a reason, shared
APPLIED = WriteResult(Outcome.APPLIED)
STALE = WriteResult(Outcome.STALE)
SKIPPED = WriteResult(Outcome.SKIPPED)


@dataclass(frozen=True, slots=True)
class Upsert:
    """Write ``document`` under ``key`` (the key attributes are added to the document)."""

    key: Mapping[str, Any]
    document: Mapping[str, Any]
    version: int


@dataclass(frozen=True, slots=True)
class Delete:
    """Logically delete ``key``: the sink keeps a tombstone carrying ``version``."""

    key: Mapping[str, Any]
    version: int


@dataclass(frozen=True, slots=True)
class Skip:
    """Nothing to write for this change; ``reason`` says why (for logs and counts)."""

    reason: str


PlannedWrite = Upsert | Delete | Skip
Transform = Callable[[ChangeRecord], Iterable[PlannedWrite]]

_OUTCOME_FIELDS = {Outcome.APPLIED: "applied", Outcome.STALE: "stale", Outcome.SKIPPED: "skipped"}


@dataclass(frozen=True, slots=True)
class WriteCounts:
    """How many writes of a batch were applied, found stale or skipped."""

    applied: int = 0
    stale: int = 0
    skipped: int = 0

    @classmethod
    def of(cls, results: Iterable[WriteResult]) -> WriteCounts:
        """The settled ones among a sink's answers (rejected and retried writes are not counted)."""
        tally = {"applied": 0, "stale": 0, "skipped": 0}
        for result in results:
            outcome = result.outcome
            if outcome.settled:
                tally[_OUTCOME_FIELDS[outcome]] += 1
        return cls(**tally)


def should_apply(write: Upsert | Delete, stored_version: int | None) -> bool:
    """The version guard every sink implements (see the module docstring)."""
    if stored_version is None:
        return True
    if type(write) is Delete:
        return stored_version <= write.version
    return stored_version < write.version


def upsert(record: ChangeRecord, key: Mapping[str, Any], document: Mapping[str, Any]) -> Upsert:
    """An ``Upsert`` of ``document`` under ``key`` at the record's version."""
    return Upsert(key, document, record.version)


def delete(record: ChangeRecord, key: Mapping[str, Any]) -> Delete:
    """A ``Delete`` of ``key`` at the record's version."""
    return Delete(key, record.version)


def skip(reason: str) -> Skip:
    """A ``Skip`` with a reason."""
    return Skip(reason)


def mirror(record: ChangeRecord) -> tuple[PlannedWrite, ...]:
    """The identity transform: upsert the whole NewImage under the record's keys, or delete."""
    if record.is_removal:
        return (Delete(record.keys, record.version),)
    return (Upsert(record.keys, record.after.to_dict(), record.version),)


def _check(write: Any, record: ChangeRecord) -> None:
    kind = type(write)
    if kind is Skip:
        if type(write.reason) is not str:
            raise InvalidPlan(f"Skip.reason must be a str, got {write.reason!r}")
        return
    if kind is not Upsert and kind is not Delete:
        raise InvalidPlan(
            f"transform returned {kind.__name__} for record {record.sequence_number}: expected Upsert, Delete or Skip"
        )
    version = write.version
    if type(version) is not int or version < 0:
        raise InvalidPlan(f"{kind.__name__}.version must be a non-negative int, got {version!r}")
    if not isinstance(write.key, Mapping) or not write.key:
        raise InvalidPlan(f"{kind.__name__}.key must be a non-empty mapping, got {write.key!r}")
    if kind is Upsert and not isinstance(write.document, Mapping):
        raise InvalidPlan(f"Upsert.document must be a mapping, got {type(write.document).__name__}")


def plan_writes(record: ChangeRecord, transform: Transform) -> tuple[PlannedWrite, ...]:
    """Run ``transform`` on ``record`` and return its writes, checked.

    Raises ``InvalidPlan`` when the transform returns something that is not a planned write.
    Errors raised by the transform itself propagate unchanged (``InvalidChangeRecord`` from a
    malformed attribute included).
    """
    writes = transform(record)
    if writes is None:
        raise InvalidPlan(f"transform returned None for record {record.sequence_number}")
    planned = tuple(writes)
    for write in planned:
        _check(write, record)
    return planned
