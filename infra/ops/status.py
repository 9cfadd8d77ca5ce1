"""What `cdc apps` and `cdc status` show: per app, per shard, per stream. Rows are plain dicts
(the CLI prints them as tables, or as JSON with ``--json``)."""

from __future__ import annotations

import time
from typing import Any

from consumers.runtime.stats import latest_per_shard, stats_dir
from infra.ops.leases import leader
from infra.ops.workers import Workers
from services.config import StackConfig
from services.kinesis import list_shards

__all__ = ["app_row", "shard_rows", "stats_snapshot", "stream_row"]


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


def stats_snapshot(stack: StackConfig, workers: Workers) -> tuple[float, dict[str, Any]]:
    """When, and the newest stats of each shard's processor: the start of a rate's window."""
    if not workers.local_stats:
        return time.monotonic(), {}
    return time.monotonic(), latest_per_shard(stats_dir(stack.state_dir, workers.app.package))


def shard_rows(
    stack: StackConfig, workers: Workers, shards: list[dict[str, Any]], since: tuple[float, dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per shard of the app's stream (and per lease of a shard gone from it): whether
    it is open, its lease owner and checkpoint, the lag and the rate its processor reports in
    its stats file (`consumers.runtime.stats`; records/s since the ``since`` snapshot, taken
    once for every app so that one wait serves them all), or on ECS the lag the KCL published
    to CloudWatch (`EcsWorkers.published_lag`)."""
    leases = {lease.shard_id: lease for lease in workers.leases()}
    states = {s["ShardId"]: "closed" if "EndingSequenceNumber" in s["SequenceNumberRange"] else "open" for s in shards}
    if not workers.local_stats:
        lag = workers.published_lag(sorted(states.keys() | leases.keys()))
        return [
            {
                "app": workers.app.name,
                "shard": shard_id,
                "shard_state": states.get(shard_id, "gone"),
                "owner": lease.owner if (lease := leases.get(shard_id)) else None,
                "checkpoint": lease.checkpoint if lease else None,
                "behind_ms": lag[shard_id],
                "records_per_s": None,
            }
            for shard_id in sorted(states.keys() | leases.keys())
        ]
    began, before = since
    after = latest_per_shard(stats_dir(stack.state_dir, workers.app.package))
    window_s = max(time.monotonic() - began, 0.001)
    rows = []
    for shard_id in sorted(states.keys() | leases.keys()):
        lease, stats = leases.get(shard_id), after.get(shard_id)
        fresh = stats if stats is not None and time.time() - stats.at < 10 else None
        rate = None
        if fresh is not None and shard_id in before and before[shard_id].started == fresh.started:
            rate = (fresh.count("received") - before[shard_id].count("received")) / window_s
        rows.append(
            {
                "app": workers.app.name,
                "shard": shard_id,
                "shard_state": states.get(shard_id, "gone"),
                "owner": lease.owner if lease else None,
                "checkpoint": lease.checkpoint if lease else None,
                "behind_ms": fresh.behind_ms if fresh is not None else None,
                "records_per_s": rate,
            }
        )
    return rows


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
