"""One batch of one shard: decode, filter, transform, write, dead-letter. No KCL in here.

`BatchProcessor.process(records)` returns only when every record of the batch was applied,
found stale, filtered out, skipped by its transform, or written to the dead-letter table; so
the caller may checkpoint the batch's last record. It raises when a poison record cannot be
dead-lettered (`DeadLetterUnavailable`) or the sink is unusable (`SinkError`: missing table or
index, access denied): then nothing may be checkpointed, and nothing is dead-lettered either,
since no record is at fault.

Failure handling, per record where the failure belongs to one record, per batch otherwise:
  * undecodable payload (any attribute of either image of a record the filter lets through,
        read by the transform or not), transform error, record older than
        `maximum_record_age_s` -> dead letter, at once;
  * sink rejects specific writes (validation, mapping) -> dead letter the records that
        produced them; the sink's `counts` report the outcome of every other write, so those
        are settled and not sent again (a sink that reports no counts gets the rest again:
        version guards make the repeat harmless);
  * transient sink error (throttling, 5xx, connection) -> back off with full jitter and retry
        the batch, at most `max_attempts` times; then dead letter its records; records that
        grow older than `maximum_record_age_s` while retrying are dead-lettered then;
  * the sink unusable (`SinkError`) -> raise;
  * any other sink error, or a rejection naming none of the batch's writes -> bisect the
        batch until the failing record is alone, and dead letter it (Lambda's
        BisectBatchOnFunctionError).

What `BatchStats` counts:
  * `received`, `filtered_out`, `dead_lettered` count RECORDS. Every received record ends
        exactly once: filtered out, dead-lettered, or written (its writes settled by the sink).
  * `applied`, `stale`, `skipped` count WRITES (a record may plan several, or none), as the
        sink reported them: `applied` the sink wrote it, `stale` the version guard refused it
        (the sink held that version or a newer one), `skipped` a `Skip`. A write is counted at
        most once, by the first sink answer that reports its outcome: a successful `write`, or
        the `counts` of a `SinkRejectedWrite` (the writes it reports are not sent again, so a
        write applied there is never counted again as stale). The writes of a dead-lettered
        record are not counted, except those the sink had already reported (a record with one
        rejected write among several: the others were applied, and are counted so).
        When the sink fails WITHOUT reporting outcomes (`RetryableSinkError`, any other
        exception, a rejection without counts) the writes are sent again and counted by the
        answer to that: a write the failed attempt did apply then comes back `stale` (an
        upsert; a delete re-applies its tombstone on the version tie: `applied`). The sink
        does not say, so that is the one case where the outcome counted is not the first one.
  * `retries`: back-offs slept after transient sink errors.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from consumers.runtime.deadletter import DeadLetter
from consumers.shared.errors import RetryableSinkError, SinkError, SinkRejectedWrite
from consumers.shared.filtering import CompiledFilter
from consumers.shared.planning import PlannedWrite, Transform, WriteCounts, plan_writes
from consumers.shared.records import ChangeRecord, parse_payload
from consumers.sinks import Sink

__all__ = ["BatchProcessor", "BatchStats", "DeadLetters", "InputRecord", "RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Transient sink errors: `max_attempts` tries (-1: until `maximum_record_age_s`), with
    exponential backoff from `base_delay_ms` up to `max_delay_ms`, full jitter."""

    max_attempts: int
    base_delay_ms: int
    max_delay_ms: int
    maximum_record_age_s: int  # -1: no limit (as Lambda's MaximumRecordAgeInSeconds)


class DeadLetters(Protocol):
    """Where poison records go (`consumers.runtime.deadletter.DeadLetterTable`); `put` raises
    `DeadLetterUnavailable` when it cannot store the letter."""

    def put(self, letter: DeadLetter) -> None: ...


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
    version attribute (the records' `version`); ``sleep``, ``now`` and ``rng`` are seams."""

    app_name: str
    shard_id: str
    sink: Sink
    dead_letters: DeadLetters
    transform: Transform
    filter: CompiledFilter
    _: KW_ONLY
    retry: RetryPolicy
    version_attribute: str
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if type(self.version_attribute) is not str or not self.version_attribute:
            raise ValueError(
                f"BatchProcessor.version_attribute must be a non-empty string, got {self.version_attribute!r}"
            )

    def process(self, records: Sequence[InputRecord]) -> BatchStats:
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
                planned.append(_Planned(record, plan_writes(change, self.transform)))
            except Exception as exc:  # noqa: BLE001 - a poison record, whatever the cause
                self._dead_letter(record, type(exc).__name__, str(exc), stats)
        self._write(planned, stats)
        return stats

    # ----------------------------------------------------------------------------- writes
    def _write(self, planned: list[_Planned], stats: BatchStats, *, tally: bool = True) -> None:
        """Write until every record of ``planned`` is settled or dead-lettered. ``tally=False``:
        the sink already reported these writes' outcomes (they are counted); only isolate the
        record of a rejected write, counting dead letters and retries but no write again."""
        attempt = 0
        while planned:
            writes = [w for p in planned for w in p.writes]
            try:
                counts = self.sink.write(writes)
            except SinkRejectedWrite as exc:
                rejected = {id(write): reason for write, reason in exc.rejections}
                keep = []
                for p in planned:
                    reasons = [rejected[id(w)] for w in p.writes if id(w) in rejected]
                    if reasons:
                        self._dead_letter(p.record, "SinkRejectedWrite", "; ".join(reasons), stats)
                    else:
                        keep.append(p)
                unnamed = len(exc.rejections) > sum(1 for w in writes if id(w) in rejected)
                if exc.counts is not None and exc.counts.total == len(writes) - len(exc.rejections):
                    # the sink reported every other write: those are settled, never sent again
                    if tally:
                        stats.add(exc.counts)
                    if unnamed and keep:  # a rejected write it names is not ours (a copy): find its record
                        self._bisect(keep, exc, stats, tally=False)
                    return
                if len(keep) == len(planned):  # the rejection names no write of ours: isolate it
                    return self._bisect(planned, exc, stats, tally=tally)
                planned = keep  # no outcome reported: send the rest again, and count that answer
            except RetryableSinkError as exc:
                attempt += 1
                limit = self.retry.max_attempts
                if limit != -1 and attempt >= limit:
                    for p in planned:
                        self._dead_letter(p.record, type(exc).__name__, f"retries exhausted ({attempt}): {exc}", stats)
                    return
                stats.retries += 1
                self.sleep(self._backoff(attempt))
                planned = [p for p in planned if not self._expired(p.record, stats)]
            except SinkError:
                raise  # the sink itself is unusable: no record is at fault, stop uncheckpointed
            except Exception as exc:  # noqa: BLE001 - not attributable to a write: bisect
                return self._bisect(planned, exc, stats, tally=tally)
            else:
                if tally:
                    stats.add(counts)
                return

    def _bisect(self, planned: list[_Planned], exc: Exception, stats: BatchStats, *, tally: bool) -> None:
        if len(planned) == 1:
            self._dead_letter(planned[0].record, type(exc).__name__, str(exc), stats)
            return
        middle = len(planned) // 2
        self._write(planned[:middle], stats, tally=tally)
        self._write(planned[middle:], stats, tally=tally)

    def _expired(self, record: InputRecord, stats: BatchStats) -> bool:
        """Dead-letter ``record`` if it is older than ``maximum_record_age_s``."""
        max_age = self.retry.maximum_record_age_s
        if max_age == -1 or record.arrival_time is None or self.now() - record.arrival_time.timestamp() <= max_age:
            return False
        self._dead_letter(record, "RecordExpired", f"older than maximum_record_age_s={max_age}", stats)
        return True

    def _backoff(self, attempt: int) -> float:
        retry = self.retry
        ceiling = min(retry.max_delay_ms, retry.base_delay_ms * 2 ** (attempt - 1)) / 1000
        return self.rng.uniform(0, ceiling)  # full jitter

    def _dead_letter(self, record: InputRecord, error_class: str, message: str, stats: BatchStats) -> None:
        self.dead_letters.put(
            DeadLetter(
                app=self.app_name,
                shard_id=self.shard_id,
                sequence_number=record.sequence_number,
                partition_key=record.partition_key,
                payload=bytes(record.data),
                error_class=error_class,
                error_message=message,
                arrival_time=record.arrival_time,
            )
        )
        stats.dead_lettered += 1


def utc_from_millis(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, tz=UTC)
