"""What `cdc apps` and `cdc status` show: per app, per shard, per stream. Rows are plain dicts
(the CLI prints them as tables, or as JSON with ``--json``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from consumers.runtime.config import AppConfig
from consumers.runtime.latency import quantile
from consumers.runtime.stats import latest_per_shard, read_stats, stats_dir
from infra.ops.leases import SHARD_END, leader
from infra.ops.workers import Workers
from infra.relay.backlog import RelayBacklog
from services.config import StackConfig
from services.kinesis import list_shards

__all__ = ["app_row", "freshness", "latency", "oldest_after", "relay_row", "shard_rows", "stats_snapshot", "stream_row"]


def app_row(workers: Workers, dead_letters: int | None) -> dict[str, Any]:
    """The app, its workers where they run (`Workers.describe`), its dead letters, its leader."""
    app = workers.app
    return {
        "app": app.name,
        "package": app.package,
        "source": app.stream_name,
        "sink": f"{app.sink.type}:{app.sink.target}",
        **workers.describe(),
        "dead_letters": dead_letters,
        "leader": leader(workers.lease_db, app.name),
    }


def latency(stack: StackConfig, workers: Workers) -> dict[str, int | None]:
    """The app's change-to-apply latency p50 / p99 (ms) over the last minute, from its record
    processors' own measurements (`consumers.runtime.latency`): their stats files merged, or on
    ECS what they published to CloudWatch. None when nothing was applied meanwhile."""
    if workers.local_stats:
        now = time.time()
        recent = [
            ms
            for stats in read_stats(stats_dir(stack.state_dir, workers.app.package))
            if now - stats.at < 60
            for ms in stats.latency_ms
        ]
        p50, p99 = quantile(recent, 0.5), quantile(recent, 0.99)
    else:
        p50, p99 = workers.published_latency()
    return {"latency_p50_ms": p50, "latency_p99_ms": p99}


def stats_snapshot(stack: StackConfig, workers: Workers) -> tuple[float, dict[str, Any]]:
    """When, and the newest stats of each shard's processor: the start of a rate's window."""
    if not workers.local_stats:
        return time.monotonic(), {}
    return time.monotonic(), latest_per_shard(stats_dir(stack.state_dir, workers.app.package))


def shard_rows(
    stack: StackConfig,
    workers: Workers,
    kinesis: Any,
    shards: list[dict[str, Any]],
    since: tuple[float, dict[str, Any]],
) -> list[dict[str, Any]]:
    """One row per shard of the app's stream (and per lease of a shard gone from it): whether
    it is open, its lease owner and checkpoint; ``lag_ms``, measured from the records: how old
    the oldest record after the last one processed is (0: none waits), the same on every
    target; ``behind_ms``, the lag the KCL reports (its processor's stats file, or on ECS what
    the KCL published to CloudWatch: `EcsWorkers.published_lag`), which the emulators do not
    always keep; and the rate in the processor's stats (records/s since the ``since`` snapshot,
    taken once for every app so that one wait serves them all)."""
    leases = {lease.shard_id: lease for lease in workers.leases()}
    states = {s["ShardId"]: "closed" if "EndingSequenceNumber" in s["SequenceNumberRange"] else "open" for s in shards}
    ids = sorted(states.keys() | leases.keys())
    began, before = since
    after = latest_per_shard(stats_dir(stack.state_dir, workers.app.package)) if workers.local_stats else {}
    published = {} if workers.local_stats else workers.published_lag(ids)
    window_s = max(time.monotonic() - began, 0.001)
    rows = []
    for shard_id in ids:
        lease, stats = leases.get(shard_id), after.get(shard_id)
        fresh = stats if stats is not None and time.time() - stats.at < 10 else None
        rate = None
        if fresh is not None and shard_id in before and before[shard_id].started == fresh.started:
            rate = (fresh.count("received") - before[shard_id].count("received")) / window_s
        checkpoint = lease.checkpoint if lease else None
        positions = [p for p in (checkpoint, stats.position if stats else None) if p and p.isdigit()]
        lag = None
        if checkpoint == SHARD_END:
            lag = 0
        elif shard_id in states:
            lag = oldest_after(kinesis, workers.app.stream_name, shard_id, max(positions, key=int, default=None))
        rows.append(
            {
                "app": workers.app.name,
                "shard": shard_id,
                "shard_state": states.get(shard_id, "gone"),
                "owner": lease.owner if lease else None,
                "checkpoint": checkpoint,
                "lag_ms": lag,
                "behind_ms": fresh.behind_ms if fresh is not None else published.get(shard_id),
                "records_per_s": rate,
            }
        )
    return rows


def oldest_after(kinesis: Any, stream: str, shard_id: str, position: str | None) -> int:
    """How old (ms) the first record of the shard after ``position`` is (from the shard's
    start when None): the age of the oldest change a reader at ``position`` has not processed;
    0 when there is none."""
    start = (
        {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": position}
        if position
        else {"ShardIteratorType": "TRIM_HORIZON"}
    )
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id, **start)["ShardIterator"]
    for _ in range(5):  # a page may come back empty before the records behind it
        page = kinesis.get_records(ShardIterator=iterator, Limit=1)
        if page["Records"]:
            arrival = page["Records"][0]["ApproximateArrivalTimestamp"]
            return max(0, int((datetime.now(UTC) - arrival).total_seconds() * 1000))
        if not page.get("MillisBehindLatest") or not page.get("NextShardIterator"):
            return 0
        iterator = page["NextShardIterator"]
    return 0


def freshness(
    apps: list[AppConfig],
    app_rows: list[dict[str, Any]],
    shard_rows: list[dict[str, Any]],
    relay_rows: list[dict[str, Any]],
) -> None:
    """Each app row gains ``lag_ms`` (its slowest shard) and ``freshness_ms``: how old the oldest
    change not yet in its sink is, along the whole path: the relay of its source table (local
    stack), the app that writes that table (for a derived table), and its own shards."""
    lag = {row["app"]: 0 for row in app_rows}
    for row in shard_rows:
        if row["lag_ms"] is not None:
            lag[row["app"]] = max(lag[row["app"]], row["lag_ms"])
    relay = {row["table"]: int((row["oldest_age_s"] or 0) * 1000) for row in relay_rows}
    writer = {app.sink.target: app.name for app in apps}
    by_name = {app.name: app for app in apps}

    def fresh(name: str, seen: frozenset[str] = frozenset()) -> int:
        app = by_name[name]
        upstream = writer.get(app.source.name)
        before = (
            fresh(upstream, seen | {name}) if upstream is not None and upstream in lag and upstream not in seen else 0
        )
        return max(lag[name], relay.get(app.source.name, 0), before)

    for row in app_rows:
        row["lag_ms"] = lag[row["app"]]
        row["freshness_ms"] = fresh(row["app"])


def stream_row(kinesis: Any, stream: str) -> dict[str, Any]:
    shards = list_shards(kinesis, stream)
    summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    closed = sum(1 for s in shards if "EndingSequenceNumber" in s["SequenceNumberRange"])
    return {
        "stream": stream,
        "status": summary["StreamStatus"],
        "open_shards": len(shards) - closed,
        "closed_shards": closed,
        "retention_hours": summary["RetentionPeriodHours"],
    }


def relay_row(backlog: RelayBacklog) -> dict[str, Any]:
    """The relay stage of one table (local stack): changes waiting, the oldest one's age."""
    return {
        "table": backlog.table,
        "waiting": backlog.waiting,
        "at_least": backlog.capped,  # the count stopped at its cap
        "oldest_age_s": None if backlog.oldest_age_s is None else round(backlog.oldest_age_s, 1),
        "position_age_s": None if backlog.position_age_s is None else round(backlog.position_age_s, 1),
    }
