"""The record processor the MultiLangDaemon runs, one process per shard lease (kclpy v3).

    executableName = <python> -m consumers.runtime.worker --app <package>

A thin adapter: each KCL callback delegates to a `BatchProcessor` (decode, filter, transform,
write, dead-letter) and a `Checkpointer` (when and how to checkpoint, see
`consumers.runtime.checkpoint`). stdout is the daemon's protocol channel: nothing here prints;
logs are JSON lines on stderr. The daemon is asked to call process_records on empty polls
too, so a checkpoint held until the stream stored the records is written on an idle stream.

When a poison record cannot be dead-lettered, the sink is unusable (missing table or index,
access denied), anything unexpected escapes the batch, or the KCL reports the end of a shard
the stream still reports open, the process exits without checkpointing: the daemon stops, its
supervisor restarts it (with back-off), and the shard resumes from the last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from amazon_kclpy import kcl
from amazon_kclpy.v3 import processor

from consumers.runtime import metrics
from consumers.runtime.batch import BatchProcessor, BatchStats, InputRecord, utc_from_millis
from consumers.runtime.checkpoint import Checkpointer
from consumers.runtime.deadletter import DeadLetterUnavailable
from consumers.runtime.latency import LatencyWindow, quantile, sample
from consumers.runtime.stats import WorkerStats, write_stats
from consumers.shared.errors import SinkError
from consumers.shared.planning import PlannedWrite, WriteResult
from consumers.shared.records import ChangeRecord
from services.durability import Durability

__all__ = ["KclRecordProcessor", "main"]

log = logging.getLogger("cdc.worker")
_IDLE_STATS_EVERY_S = 2.0
EXIT_DEAD_LETTER_UNAVAILABLE = 3
EXIT_UNEXPECTED = 4
EXIT_SINK_UNUSABLE = 5
EXIT_SHARD_STILL_OPEN = 6
#: exit status by the kind of error that escaped a batch (first match); anything else: EXIT_UNEXPECTED
_EXIT_STATUS = ((DeadLetterUnavailable, EXIT_DEAD_LETTER_UNAVAILABLE), (SinkError, EXIT_SINK_UNUSABLE))


class _TimedSink:
    """The batch processor's sink, adding up the time spent in ``write``."""

    def __init__(self, sink) -> None:
        self.sink = sink
        self.seconds = 0.0

    def write(self, writes: Sequence[PlannedWrite]) -> list[WriteResult]:
        started = time.perf_counter()
        try:
            return self.sink.write(writes)
        finally:
            self.seconds += time.perf_counter() - started

    def close(self) -> None:
        self.sink.close()


class KclRecordProcessor(processor.RecordProcessorBase):
    """Adapts the KCL callbacks to a `BatchProcessor` and a `Checkpointer` built for the shard
    at initialize. ``durability``: what the stream guarantees about stored records."""

    def __init__(
        self,
        app_name: str,
        build: Callable[[str], BatchProcessor],
        durability: Durability,
        stats_dir: Path | None = None,
        exit: Callable[[int], None] = os._exit,
    ) -> None:
        self.app_name = app_name
        self._build = build
        self._stats_dir = stats_dir
        self._exit = exit
        self.shard_id = "?"
        self.core: BatchProcessor = None  # type: ignore[assignment]  # built at initialize, the first callback
        self.checkpoints = Checkpointer(durability, self._log)
        self.total = BatchStats()
        self.behind_ms: int | None = None
        self.position: str | None = None  # the last record processed
        self._started = round(time.time(), 3)
        self._stats_saved = 0.0
        self.latency = LatencyWindow()
        self._sink: _TimedSink = None  # type: ignore[assignment]  # wraps the core's sink at initialize
        self._created_us: list[int] = []  # the current batch's changes, as the batch processor decodes them
        self._latencies: list[int] = []  # the current batch's change-to-apply latencies, ms

    # -- callbacks
    def initialize(self, initialize_input) -> None:
        self.shard_id = initialize_input.shard_id
        self.core = self._build(self.shard_id)
        self.core.sink = self._sink = _TimedSink(self.core.sink)
        self.core.hooks = replace(self.core.hooks, changed=self._changed)
        self._log("initialize", position=initialize_input.sequence_number)

    def process_records(self, process_records_input) -> None:
        delivered = time.time()
        records = [
            InputRecord(
                r.binary_data,
                r.sequence_number,
                r.sub_sequence_number,
                r.partition_key,
                utc_from_millis(r.timestamp_millis),
            )
            for r in process_records_input.records
        ]
        self.behind_ms = process_records_input.millis_behind_latest
        batch = self._process(records, self.behind_ms, delivered) if records else None
        if batch is None and time.monotonic() - self._stats_saved > _IDLE_STATS_EVERY_S:
            self._save_stats()  # the lag of an idle shard, for `cdc status`
        started = time.perf_counter()
        self.checkpoints.checkpoint_stored(process_records_input.checkpointer)
        if batch is not None:
            batch["checkpoint_ms"] = _ms_since(started)
            self._log("batch", **batch)
            if metrics.enabled():
                values = {**batch, "latency_ms": sample(self._latencies, metrics.MAX_VALUES) or None}
                metrics.emit(
                    metrics.emf_document(self.app_name, self.shard_id, values, timestamp_ms=time.time_ns() // 10**6)
                )
            self._save_stats()

    def _changed(self, change: ChangeRecord) -> None:
        self._created_us.append(change.created_at_us)

    def _process(self, records: list[InputRecord], behind_ms: int, delivered: float) -> dict:
        """Process one batch; its line for the log: the counts, the batch's first and last
        sequence numbers, when it was delivered and when its writes had all returned (epoch s),
        and where the time went, in ms (``wait_*``: from the oldest and the newest record's
        arrival to the delivery; ``ms``: processing, of which ``sink_ms`` writing;
        ``latency_*``: change-to-apply). `bench.latency` reads these lines."""
        started = time.perf_counter()
        self._created_us.clear()
        in_sink = self._sink.seconds
        try:
            stats = self.core.process(records)
        except BaseException as exc:
            # Not every record of the batch is applied or dead-lettered: stop before any later
            # batch can checkpoint past them; the daemon restarts from the last checkpoint.
            self._log("fatal", error=f"{type(exc).__name__}: {exc}")
            self._exit(next((status for kind, status in _EXIT_STATUS if isinstance(exc, kind)), EXIT_UNEXPECTED))
            raise
        applied_at = time.time()
        first, last = records[0], records[-1]
        self.position = last.sequence_number
        self.checkpoints.applied(last.sequence_number, last.sub_sequence_number, last.arrival_time)
        self.total += stats
        self._latencies = [round(applied_at * 1000 - created / 1000) for created in self._created_us]
        self.latency.add(applied_at, self._latencies)
        return {
            "ms": _ms_since(started),
            "behind_ms": behind_ms,
            **_fields(stats),
            "first": first.sequence_number,
            "last": last.sequence_number,
            "delivered_at": round(delivered, 4),
            "applied_at": round(applied_at, 4),
            "wait_oldest_ms": _waited(first, delivered),
            "wait_newest_ms": _waited(last, delivered),
            "sink_ms": round((self._sink.seconds - in_sink) * 1000, 1),
            "latency_p50_ms": quantile(self._latencies, 0.5),
            "latency_max_ms": max(self._latencies, default=None),
        }

    def lease_lost(self, lease_lost_input) -> None:
        self._log("lease_lost")  # another worker owns the shard now: no checkpoint

    def shard_ended(self, shard_ended_input) -> None:
        if not self.checkpoints.checkpoint_shard_end(shard_ended_input.checkpointer, self.shard_id):
            self._log("fatal", error="the KCL reported the end of a shard the stream reports open")
            self._exit(EXIT_SHARD_STILL_OPEN)
            return
        self._log("shard_ended")

    def shutdown_requested(self, shutdown_requested_input) -> None:
        self.checkpoints.checkpoint_stored(shutdown_requested_input.checkpointer)
        self._log("shutdown_requested", unsaved=self.checkpoints.held)

    # -- helpers
    def _log(self, event: str, **fields) -> None:
        log.info(
            json.dumps(
                {"app": self.app_name, "shard": self.shard_id, "event": event, "ts": round(time.time(), 3), **fields}
            )
        )

    def _save_stats(self) -> None:
        """Running totals of this process and the shard's lag now, for operators (`cdc status`)
        and the tests: one small file (`consumers.runtime.stats`)."""
        self._stats_saved = time.monotonic()
        if self._stats_dir is None:
            return
        now = round(time.time(), 3)
        write_stats(
            self._stats_dir,
            WorkerStats(
                self.app_name,
                self.shard_id,
                _fields(self.total),
                now,
                self.behind_ms,
                self._started,
                self.position,
                tuple(self.latency.recent(now)),
            ),
        )


def _fields(stats: BatchStats) -> dict[str, int]:
    return {name: getattr(stats, name) for name in stats.__slots__}


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _waited(record: InputRecord, delivered: float) -> int | None:
    """ms from the record's arrival (Kinesis' clock, ms precision) to the batch's delivery."""
    return None if record.arrival_time is None else round((delivered - record.arrival_time.timestamp()) * 1000)


def main(argv: list[str] | None = None) -> int:
    from consumers.runtime.wiring import build_batch_processor, durability, stats_dir  # boto3, opensearch-py

    parser = argparse.ArgumentParser(description="CDC record processor (run by the KCL MultiLangDaemon)")
    parser.add_argument("--app", required=True, help="package under consumers/, e.g. app_user_management")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    build, app = build_batch_processor(args.app)
    directory = stats_dir(app)
    directory.mkdir(parents=True, exist_ok=True)
    kcl.KCLProcess(KclRecordProcessor(app.name, build, durability(app), directory)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
