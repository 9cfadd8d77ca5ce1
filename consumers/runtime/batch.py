"""One batch of one shard: decode, filter, transform, write, dead-letter. No KCL in here.

`BatchProcessor.process(records)` returns only when every record of the batch was applied,
found stale, filtered out, skipped by its transform, or written to the dead-letter table; so
the caller may checkpoint the batch's last record. It raises when a poison record cannot be
dead-lettered (`DeadLetterUnavailable`) or the sink is unusable (`SinkError`: missing table or
index, access denied): then nothing may be checkpointed, and nothing is dead-lettered either,
since no record is at fault.

Failure handling, per record where the failure belongs to one record, per batch otherwise.
The sink answers every write with a result, in order (``planning.WriteResult``):
  * undecodable payload (any attribute of either image of a record the filter lets through,
        read by the transform or not), transform error, record older than
        `maximum_record_age_s` -> dead letter, at once;
  * a write REJECTED by the sink (validation, mapping) -> dead letter its record, with the
        sink's reasons; the record's other writes are settled as answered;
  * a write answered RETRY (throttling, 5xx, connection) -> back off with full jitter
        (``base.retry``) and send the batch's RETRY writes again, at most `max_attempts`
        times; then dead letter their records; records that grow older than
        `maximum_record_age_s` while retrying are dead-lettered then;
  * the sink unusable (`SinkError`) -> raise;
  * any other exception from the sink (a request that broke whole, a bug) -> bisect the
        batch until the failing record is alone, and dead letter it (Lambda's
        BisectBatchOnFunctionError).

What `BatchStats` counts:
  * `received`, `filtered_out`, `dead_lettered` count RECORDS. Every received record ends
        exactly once: filtered out, dead-lettered, or written (its writes settled by the sink).
  * `applied`, `stale`, `skipped` count WRITES (a record may plan several, or none), as the
        sink answered them: `applied` the sink wrote it, `stale` the version guard refused it
        (the sink held that version or a newer one), `skipped` a `Skip`. A write is counted
        once, by the answer that settled it; only RETRY writes are sent again. The settled
        writes of a dead-lettered record are counted too (a record with one rejected write
        among several: the others were applied). When the sink raises instead of answering
        (bisecting), the writes are sent again and counted by the answer to that: a write the
        broken request did apply then comes back `stale`.
  * `retries`: back-offs slept after RETRY answers.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from base.retry import Backoff
from consumers.runtime.deadletter import DeadLetter
from consumers.shared.errors import SinkError
from consumers.shared.filtering import CompiledFilter
from consumers.shared.planning import Outcome, PlannedWrite, Transform, WriteCounts, plan_writes
from consumers.shared.records import ChangeRecord, parse_payload
from consumers.sinks import Sink

__all__ = [
    "REJECTED_BY_SINK",
    "RETRIES_EXHAUSTED",
    "BatchProcessor",
    "BatchStats",
    "DeadLetters",
    "InputRecord",
    "RetryPolicy",
]

#: the error class of a dead letter whose record the sink rejected / kept answering RETRY for
#: (the names the letters have always carried: `cdc dlq list --error-class` filters on them)
REJECTED_BY_SINK = "SinkRejectedWrite"
RETRIES_EXHAUSTED = "RetryableSinkError"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Writes a sink answered RETRY: `max_attempts` tries (-1: until `maximum_record_age_s`),
    with exponential backoff from `base_delay_ms` up to `max_delay_ms`, full jitter."""

    max_attempts: int
    base_delay_ms: int
    max_delay_ms: int
    maximum_record_age_s: int  # -1: no limit (as Lambda's MaximumRecordAgeInSeconds)

    def backoff(self) -> Backoff:
        return Backoff(self.base_delay_ms / 1000, self.max_delay_ms / 1000, jitter=1.0)


class DeadLetters(Protocol):
    """Where poison records go (`consumers.runtime.deadletter.DeadLetterTable`); `put` raises
    `DeadLetterUnavailable` when it cannot store the letter."""

    def put(self, letter: DeadLetter) -> None: ...


def _ignore(*_: object) -> None:
    return None


@dataclass(frozen=True, slots=True)
class BatchHooks:
    """What a caller may observe: each change decoded and planned, the writes planned for its
    record, and each dead letter."""

    planned: Callable[[InputRecord, tuple[PlannedWrite, ...]], None] = _ignore
    changed: Callable[[ChangeRecord], None] = _ignore
    dead_lettered: Callable[[DeadLetter], None] = _ignore


@dataclass(frozen=True, slots=True)
class InputRecord:
    data: bytes
    sequence_number: str
    sub_sequence_number: int | None
    partition_key: str
    arrival_time: datetime | None  # aware, UTC


@dataclass(slots=True)
class BatchStats:
    """See the module docstring for what each count means."""

    received: int = 0
    filtered_out: int = 0
    applied: int = 0
    stale: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    retries: int = 0

    def add(self, counts: WriteCounts) -> None:
        self.applied += counts.applied
        self.stale += counts.stale
        self.skipped += counts.skipped

    def __iadd__(self, other: BatchStats) -> BatchStats:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self


@dataclass(slots=True)
class _Planned:
    record: InputRecord
    writes: tuple[PlannedWrite, ...]


@dataclass(slots=True)
class BatchProcessor:
    """``app_name`` goes into the dead letters; ``version_attribute`` is the source table's
    version attribute (the records' `version`); ``sleep``, ``now`` and ``rng`` are seams.

    ``hooks`` observe what happens to each record (a redrive reads its outcomes there);
    ``dead_letters=None`` gives the letters to ``hooks.dead_lettered`` only (the caller stores
    them); ``process(records, dry_run=True)`` decodes, filters and plans, and writes nothing."""

    app_name: str
    shard_id: str
    sink: Sink
    dead_letters: DeadLetters | None
    transform: Transform
    filter: CompiledFilter
    _: KW_ONLY
    retry: RetryPolicy
    version_attribute: str
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)
    hooks: BatchHooks = field(default_factory=lambda: BatchHooks())

    def __post_init__(self) -> None:
        if type(self.version_attribute) is not str or not self.version_attribute:
            raise ValueError(
                f"BatchProcessor.version_attribute must be a non-empty string, got {self.version_attribute!r}"
            )

    def process(self, records: Sequence[InputRecord], *, dry_run: bool = False) -> BatchStats:
        stats = BatchStats(received=len(records))
        planned: list[_Planned] = []
        for record in records:
            if self._expired(record, stats):
                continue
            try:
                raw = parse_payload(record.data, sequence_number=record.sequence_number)
                change = ChangeRecord.from_parsed(
                    raw,
                    record.data,
                    sequence_number=record.sequence_number,
                    partition_key=record.partition_key,
                    arrival_time=record.arrival_time,
                    version_attribute=self.version_attribute,
                )
                if not self.filter.matches(raw):
                    stats.filtered_out += 1
                    continue
                change.validate()  # every attribute, not only those the transform reads
                writes = plan_writes(change, self.transform)
                self.hooks.planned(record, writes)
                self.hooks.changed(change)
                planned.append(_Planned(record, writes))
            except Exception as exc:  # noqa: BLE001 - a poison record, whatever the cause
                self._dead_letter(record, type(exc).__name__, str(exc), stats)
        if not dry_run:
            self._write(planned, stats)
        return stats

    # ----------------------------------------------------------------------------- writes
    def _write(self, planned: list[_Planned], stats: BatchStats) -> None:
        """Write until every record of ``planned`` is settled or dead-lettered."""
        attempt = 0
        while planned:
            writes = [w for p in planned for w in p.writes]
            try:
                results = self.sink.write(writes)
            except SinkError:
                raise  # the sink itself is unusable: no record is at fault, stop uncheckpointed
            except Exception as exc:  # noqa: BLE001 - a bug or a request that broke whole: bisect
                return self._bisect(planned, exc, stats)
            if len(results) != len(writes):
                raise SinkError(f"{type(self.sink).__name__} answered {len(results)} results for {len(writes)} writes")
            stats.add(WriteCounts.of(results))  # what is settled is counted once, now
            again: list[_Planned] = []
            retry_reason = ""
            position = 0
            for p in planned:
                answers = results[position : position + len(p.writes)]
                position += len(p.writes)
                rejected = [r.reason for r in answers if r.outcome is Outcome.REJECTED]
                retry = [w for w, r in zip(p.writes, answers, strict=True) if r.outcome is Outcome.RETRY]
                if rejected:
                    self._dead_letter(p.record, REJECTED_BY_SINK, "; ".join(rejected), stats)
                elif retry:
                    again.append(_Planned(p.record, tuple(retry)))
                    retry_reason = retry_reason or next(r.reason for r in answers if r.outcome is Outcome.RETRY)
            if not again:
                return
            attempt += 1
            limit = self.retry.max_attempts
            if limit != -1 and attempt >= limit:
                for p in again:
                    self._dead_letter(
                        p.record, RETRIES_EXHAUSTED, f"retries exhausted ({attempt}): {retry_reason}", stats
                    )
                return
            stats.retries += 1
            self.sleep(self.retry.backoff().delay(attempt, self.rng))
            planned = [p for p in again if not self._expired(p.record, stats)]

    def _bisect(self, planned: list[_Planned], exc: Exception, stats: BatchStats) -> None:
        if len(planned) == 1:
            self._dead_letter(planned[0].record, type(exc).__name__, str(exc), stats)
            return
        middle = len(planned) // 2
        self._write(planned[:middle], stats)
        self._write(planned[middle:], stats)

    def _expired(self, record: InputRecord, stats: BatchStats) -> bool:
        """Dead-letter ``record`` if it is older than ``maximum_record_age_s``."""
        max_age = self.retry.maximum_record_age_s
        if max_age == -1 or record.arrival_time is None or self.now() - record.arrival_time.timestamp() <= max_age:
            return False
        self._dead_letter(record, "RecordExpired", f"older than maximum_record_age_s={max_age}", stats)
        return True

    def _dead_letter(self, record: InputRecord, error_class: str, message: str, stats: BatchStats) -> None:
        letter = DeadLetter(
            app=self.app_name,
            shard_id=self.shard_id,
            sequence_number=record.sequence_number,
            partition_key=record.partition_key,
            payload=bytes(record.data),
            error_class=error_class,
            error_message=message,
            arrival_time=record.arrival_time,
        )
        if self.dead_letters is not None:
            self.dead_letters.put(letter)
        self.hooks.dead_lettered(letter)
        stats.dead_lettered += 1


def utc_from_millis(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, tz=UTC)
