"""`cdc backfill APP`: bring an app up to date with the items its stream no longer holds.

A parallel Scan of the app's source table (``segments`` segments, one thread each) feeds every
item through the app's own processing (``consumers.runtime.wiring``: filter, transform,
version-guarded write, dead letters) as a synthetic INSERT in the format the relay writes to
Kinesis, while the app's workers keep consuming the stream.

Why it cannot overwrite anything newer: the synthetic INSERT carries the item's own version
attribute, the value the item had when the Scan read it. Writers raise that attribute on every
change (``producer_config/pipeline.toml``), so every change the stream carries after the read
has a higher version and wins, in whichever order the two arrive; a change at the same version
is the same content (a tie: the upsert comes back stale, a delete wins it). A source table
without a ``version_attribute`` would give the synthetic record a version of "now", which could
beat an older change still in flight: backfill refuses it.

Synthetic records that fail go to the app's dead letters like any other, under shard
``backfill-<run>`` and the item's partition key as the sequence number; `cdc dlq redrive` takes
them (a payload over 300,000 bytes cannot be re-read from a stream: run the backfill again).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from consumers.runtime.batch import BatchProcessor, BatchStats, InputRecord
from consumers.runtime.config import AppConfig
from consumers.shared import envelope
from infra.relay.format import event_id, partition_key, repair_image
from producer_config import PipelineConfig
from services.config import StackError

__all__ = ["BackfillReport", "backfill", "synthetic_insert"]

#: records per BatchProcessor call (the app's max_records caps it too)
_CHUNK = 500


@dataclass(slots=True)
class BackfillReport:
    app: str
    table: str
    segments: int
    scanned: int = 0
    stats: BatchStats = field(default_factory=BatchStats)
    seconds: float = 0.0

    def row(self) -> dict[str, Any]:
        s = self.stats
        return {
            "app": self.app,
            "table": self.table,
            "segments": self.segments,
            "items": self.scanned,
            "applied": s.applied,
            "stale": s.stale,
            "skipped": s.skipped,
            "filtered_out": s.filtered_out,
            "dead_lettered": s.dead_lettered,
            "seconds": round(self.seconds, 1),
            "items_per_s": round(self.scanned / self.seconds, 1) if self.seconds else None,
        }


def synthetic_insert(
    item: dict[str, Any], key_names: tuple[str, ...], *, table: str, region: str, precision: str, run: str
) -> InputRecord:
    """``item`` (DynamoDB JSON, as a Scan returns it) as the INSERT record the relay would write."""
    keys = {name: item[name] for name in key_names}
    key = partition_key(table, keys)
    change = envelope.build(
        envelope.EventName.INSERT,
        table,
        keys,
        new_image=repair_image(item),
        created_at=envelope.creation_stamp(time.time_ns(), precision),
        region=region,
        event_id=event_id(f"backfill/{run}", key),  # the same item of the same run: the same eventID
    )
    return InputRecord(envelope.to_bytes(change), key, None, key, datetime.now(UTC))


def backfill(
    dynamodb: Any,
    pipeline: PipelineConfig,
    app: AppConfig,
    build: Callable[[str], BatchProcessor],
    *,
    segments: int = 4,
    progress: Callable[[int], None] = lambda items: None,
) -> BackfillReport:
    """Scan ``app``'s source table in ``segments`` parallel segments and process every item as a
    synthetic INSERT through ``build(shard_id)``'s processor. ``progress(n)``: n more items done."""
    if segments < 1:
        raise StackError(f"--segments {segments}: give 1 or more")
    source = app.source
    if not source.version_attribute:
        raise StackError(
            f"cannot backfill {app.name}: its source table {source.name} has no version_attribute in "
            "producer_config/pipeline.toml, so a backfilled item could overwrite a newer change (see `cdc backfill --help`)"
        )
    key_names = tuple(k.name for k in (source.hash_key, source.range_key) if k is not None)
    run = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    precision = pipeline.creation_time_precision
    report = BackfillReport(app.name, source.name, segments)
    lock = threading.Lock()
    chunk = min(_CHUNK, app.max_records)

    def scan_segment(segment: int) -> None:
        processor = build(f"backfill-{run}")
        pages = dynamodb.get_paginator("scan").paginate(
            TableName=source.name, Segment=segment, TotalSegments=segments, ConsistentRead=True
        )
        for page in pages:
            items = page["Items"]
            for start in range(0, len(items), chunk):
                records = [
                    synthetic_insert(
                        item, key_names, table=source.name, region=pipeline.region, precision=precision, run=run
                    )
                    for item in items[start : start + chunk]
                ]
                stats = processor.process(records)
                with lock:
                    report.scanned += len(records)
                    report.stats += stats
                progress(len(records))

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=segments, thread_name_prefix="backfill") as pool:
        for done in [pool.submit(scan_segment, segment) for segment in range(segments)]:
            done.result()  # the first error of a segment, after the others ended
    report.seconds = time.monotonic() - began
    return report
