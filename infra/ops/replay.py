"""`cdc replay APP`: process an app's stream again from a point in its retention window.

The KCL takes its initial position only when it creates a lease, so a replay is a new start of
the app over the same sinks: stop the app's workers (gracefully: each processor checkpoints;
on ECS: desired count 0, then until its tasks are gone), back its lease items up under the state
folder, delete them, publish the new position in the app's control item where every worker
reads it at start (`consumers.runtime.control`: AT_TIMESTAMP), and start the workers again (the
count they had). The KCL then lists the shards and creates
a lease for each, closed parents included; a child is read only once its parents reached their
end. Only this app's lease table is touched. Writes are version-guarded, so records the sinks
already hold come back stale and nothing goes back in time.

``--from-trim-horizon`` starts AT_TIMESTAMP at the stream's creation (the same records as
TRIM_HORIZON: before it there are none). kinesis-mock answers a TRIM_HORIZON shard listing of a
resharded stream with every shard, which the KCL refuses as overlapping hash ranges; an
AT_TIMESTAMP listing works everywhere. The KCL reads AT_TIMESTAMP in whole seconds: ``--at`` is
rounded down to the second, and the report says so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from consumers.runtime.config import AppConfig
from consumers.runtime.stats import WorkerStats, read_stats, stats_dir
from infra.ops.leases import SHARD_END, Lease, delete_all, release_leader_lock, save_backup
from infra.ops.workers import Workers
from services.config import StackConfig, StackError
from services.kinesis import read_stream

__all__ = ["ReplayReport", "replay", "replay_start", "stream_window"]

#: a processor reports its shard's lag at least every 2 s while it reads it
_RECENT_S = 5.0
_COUNTED = ("received", "applied", "stale", "skipped", "filtered_out", "dead_lettered")


@dataclass(frozen=True, slots=True)
class ReplayReport:
    app: str
    start: datetime  # where the replay began (whole seconds)
    expected: dict[str, int]  # records in each shard from `start`, read from the stream
    #: received, applied, stale, skipped, filtered_out, dead_lettered: from the processors' stats
    #: files where they run locally; None on ECS (the processors publish them as EMF metrics)
    counts: dict[str, int] | None
    backup: Path
    seconds: float  # the whole replay: stop, lease reset, start, processing
    processing_s: float  # from the workers' start to the last record's checkpoint (or final report)


def stream_window(kinesis: Any, stream: str) -> tuple[datetime, datetime]:
    """The oldest and newest time a replay may start at: the stream's creation or the start of
    its retention, whichever is later, and now."""
    summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    now = datetime.now(UTC)
    oldest = max(summary["StreamCreationTimestamp"], now - timedelta(hours=summary["RetentionPeriodHours"]))
    return oldest, now


def replay_start(kinesis: Any, stream: str, *, at: datetime | None = None) -> datetime:
    """The replay's start (whole seconds): ``at``, or the stream's oldest time. A time outside
    the retention window is refused with the window."""
    oldest, now = stream_window(kinesis, stream)
    wanted = at if at is not None else oldest
    if wanted.tzinfo is None:
        raise StackError(f"--at {wanted.isoformat()}: give a time zone (e.g. {wanted.isoformat()}Z)")
    if not oldest - timedelta(seconds=1) <= wanted <= now:
        raise StackError(
            f"{wanted.isoformat()} is outside the retention window of stream {stream}: "
            f"{oldest.isoformat(timespec='seconds')} .. {now.isoformat(timespec='seconds')}"
        )
    return datetime.fromtimestamp(math.floor(max(wanted, oldest).timestamp()), UTC)


def _checkpointed(leases: list[Lease], sequences: dict[str, list[int]]) -> int:
    """How many of the replayed records (sequence numbers per shard) lie at or before their
    shard's checkpoint: what the workers processed, wherever they run."""
    done = 0
    for lease in leases:
        numbers = sequences.get(lease.shard_id, [])
        if lease.checkpoint == SHARD_END:
            done += len(numbers)
        elif lease.checkpoint.isdigit():
            done += sum(1 for number in numbers if number <= int(lease.checkpoint))
    return done


def _stats(directory: Path, since: float) -> list[WorkerStats]:
    """The stats of every record processor started at or after ``since``."""
    return [stats for stats in read_stats(directory) if stats.started >= since]


def replay(
    stack: StackConfig,
    app: AppConfig,
    workers: Workers,
    kinesis: Any,
    start: datetime,
    *,
    progress: Callable[[int, int, dict[str, int | None]], None] = lambda done, total, lag: None,
    timeout_s: float | None = None,
) -> ReplayReport:
    """Replay ``app`` from ``start`` (see the module docstring); returns once every record that
    was in the stream from ``start`` went through the app again and every shard is caught up."""
    count = workers.desired
    if count == 0:
        raise StackError(f"{app.name} is scaled to 0 workers: `cdc scale {app.package} N` first")
    sequences: dict[str, list[int]] = {}
    for record in read_stream(kinesis, app.stream_name, start):
        sequences.setdefault(record.shard_id, []).append(int(record.sequence_number))
    expected = {shard: len(numbers) for shard, numbers in sequences.items()}
    total = sum(expected.values())
    began = time.monotonic()
    workers.say(
        f"{app.name}: {total} records in {len(expected)} shard(s) from {start.isoformat()}; "
        f"stopping its {count} worker(s) ({workers.where})"
    )
    workers.stop(wait_leases=False, why="cdc replay")
    leases = workers.leases()
    backup = stack.state_dir / "apps" / app.package / "backups" / f"leases-{int(time.time())}.json"
    save_backup(leases, backup)
    workers.say(f"  saved its {len(leases)} lease(s) to {backup}; deleting them")
    delete_all(workers.lease_db, app.name, leases)
    release_leader_lock(workers.lease_db, app.name)
    workers.publish_start(start.timestamp())
    workers.say(f"  published the start {start.isoformat()} in its control item; starting {count} worker(s)")
    started = time.time()
    workers.start(count)
    directory = stats_dir(stack.state_dir, app.package) if workers.local_stats else None
    deadline = time.monotonic() + (timeout_s if timeout_s is not None else 120 + total / 50)
    while True:
        if directory is not None:
            current = _stats(directory, started)
            received = sum(s.count("received") for s in current)
            # the lag of the shards being read now (an ended shard's processor reports no more)
            recent = [s for s in current if s.at > time.time() - _RECENT_S]
            lag = {s.shard: s.behind_ms for s in sorted(recent, key=lambda s: s.at)}
            finished = received >= total and bool(lag) and all(behind == 0 for behind in lag.values())
        else:
            received, lag = _checkpointed(workers.leases(), sequences), {}
            finished = received >= total and workers.running_count() > 0
        progress(received, total, lag)
        if finished:
            break
        if time.monotonic() > deadline:
            raise StackError(
                f"replay of {app.name}: {received} of {total} records after {time.monotonic() - began:.0f}s; "
                f"its workers keep going ({workers.where}); the lease backup is {backup}"
            )
        time.sleep(1.0)
    workers.forget_start_once_used()
    if directory is None:
        counts, processing_s = None, time.time() - started
    else:
        final = _stats(directory, started)
        counts = {name: sum(s.count(name) for s in final) for name in _COUNTED}
        processing_s = max(s.at for s in final) - min(s.started for s in final) if final else 0.0
    return ReplayReport(app.name, start, expected, counts, backup, time.monotonic() - began, processing_s)
