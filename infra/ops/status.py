"""What `cdc apps` and `cdc status` show: per app, per shard, per stream. Rows are plain dicts
(the CLI prints them as tables, or as JSON with ``--json``)."""

from __future__ import annotations

import json
import time
from typing import Any

from consumers.runtime.config import AppConfig
from infra.ops.apps import AppWorkers
from infra.ops.leases import leader
from services.config import StackConfig
from services.kinesis import list_shards

__all__ = ["app_row", "shard_rows", "stream_row"]


def app_row(workers: AppWorkers, dead_letters: int | None) -> dict[str, Any]:
    app = workers.app
    running, desired = len(workers.running()), workers.desired
    state = "stopped" if running == 0 else ("running" if running == desired else "partial")
    return {
        "app": app.name,
        "package": app.package,
        "source": app.stream_name,
        "sink": f"{app.sink.type}:{app.sink.target}",
        "workers": running,
        "desired": desired,
        "state": "stopped (scaled to 0)" if desired == 0 and running == 0 else state,
        "dead_letters": dead_letters,
        "leader": leader(workers.lease_db, app.name),
    }


def _latest_stats(stack: StackConfig, app: AppConfig) -> dict[str, dict[str, Any]]:
    """Per shard, the stats of the record processor that reported last."""
    latest: dict[str, dict[str, Any]] = {}
    for path in (stack.state_dir / "apps" / app.package / "stats").glob("*.json"):
        try:
            stats = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if "now" in stats and stats["now"]["at"] >= latest.get(stats["shard"], {}).get("now", {}).get("at", 0):
            latest[stats["shard"]] = stats
    return latest


def shard_rows(
    stack: StackConfig, workers: AppWorkers, shards: list[dict[str, Any]], window_s: float = 1.0
) -> list[dict[str, Any]]:
    """One row per shard of the app's stream (and per lease of a shard gone from it): whether
    it is open, its lease owner and checkpoint, the lag and the rate its processor reports
    (records/s over ``window_s``)."""
    before = _latest_stats(stack, workers.app)
    time.sleep(window_s)
    after = _latest_stats(stack, workers.app)
    leases = {lease.shard_id: lease for lease in workers.leases()}
    states = {s["ShardId"]: "closed" if "EndingSequenceNumber" in s["SequenceNumberRange"] else "open" for s in shards}
    rows = []
    for shard_id in sorted(states.keys() | leases.keys()):
        lease, stats = leases.get(shard_id), after.get(shard_id, {})
        fresh = bool(stats) and time.time() - stats["now"]["at"] < 10
        rate = None
        if fresh and shard_id in before and before[shard_id]["now"]["started"] == stats["now"]["started"]:
            rate = (stats["received"] - before[shard_id]["received"]) / window_s
        rows.append(
            {
                "app": workers.app.name,
                "shard": shard_id,
                "shard_state": states.get(shard_id, "gone"),
                "owner": lease.owner if lease else None,
                "checkpoint": lease.checkpoint if lease else None,
                "behind_ms": stats["now"]["behind_ms"] if fresh else None,
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
