"""The worker stats files: what each record processor reports about itself, for `cdc status`,
`cdc replay` and the tests. The one module that knows where they are and what they hold:
`consumers.runtime.worker` writes them; `infra.ops.status`, `infra.ops.replay` and the stack
tests read them.

One file per record-processor process, ``<state>/apps/<package>/stats/<shard>-<pid>.json`` (a
shard a restarted or another worker reads gets a file of its own; the old ones stay until `make
clean`), replaced atomically (written beside it, then renamed over it) after every batch and
every few seconds of an idle shard::

    {"app": "app-user-management", "shard": "shardId-000000000000",
     "received": 10, "filtered_out": 1, "applied": 9, ...,
     "now": {"at": 1764842400.123, "behind_ms": 0, "started": 1764842100.5,
             "position": "49658...", "latency_ms": [412, 388]}}

The counters are the process's running `BatchStats` totals (its fields, whatever they are);
``now.at`` is when the file was written, ``now.behind_ms`` the shard's lag then (null before the
first poll), ``now.started`` when the process started: a counter only grows between two files
of the same ``started``; ``now.position`` the sequence number of the last record it processed
(null before its first record): `cdc status` measures the shard's lag from the records after it;
``now.latency_ms`` the change-to-apply latencies of the last minute (`consumers.runtime.latency`).
A reader skips a file it cannot read or parse (a torn write, a file
of an older format): a report then misses one process, never fails.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["WorkerStats", "latest_per_shard", "read_stats", "stats_dir", "write_stats"]

_NOT_COUNTERS = frozenset({"app", "shard", "now"})


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """One stats file: a record processor's running totals and its shard's lag when written."""

    app: str
    shard: str
    #: the running totals by `BatchStats` field name (received, applied, stale, dead_lettered...)
    counts: Mapping[str, int] = field(default_factory=dict)
    #: epoch seconds: when written
    at: float = 0.0
    #: milliseconds the shard's last poll was behind its newest record; None before the first poll
    behind_ms: int | None = None
    #: epoch seconds: when the process started (tells a restarted processor's totals apart)
    started: float = 0.0
    #: the sequence number of the last record processed; None before the first
    position: str | None = None
    #: change-to-apply latencies (ms) of the changes applied in the last minute
    #: (`consumers.runtime.latency`)
    latency_ms: tuple[int, ...] = ()

    def count(self, name: str) -> int:
        """The running total ``name`` (0 when this file has no such counter)."""
        return self.counts.get(name, 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "shard": self.shard,
            **self.counts,
            "now": {
                "at": self.at,
                "behind_ms": self.behind_ms,
                "started": self.started,
                "position": self.position,
                "latency_ms": list(self.latency_ms),
            },
        }

    @classmethod
    def from_json(cls, raw: Any) -> WorkerStats:
        """The stats ``raw`` (a parsed file) holds; ValueError when it is not a stats file."""
        try:
            now = raw["now"]
            counts = {
                name: value
                for name, value in raw.items()
                if name not in _NOT_COUNTERS and isinstance(value, int) and not isinstance(value, bool)
            }
            return cls(
                str(raw["app"]),
                str(raw["shard"]),
                counts,
                float(now["at"]),
                now["behind_ms"],
                float(now["started"]),
                now.get("position"),
                tuple(now.get("latency_ms") or ()),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a worker stats file: {exc!r}") from None


def stats_dir(state_dir: Path, package: str) -> Path:
    """Where the record processors of app ``package`` write their stats."""
    return state_dir / "apps" / package / "stats"


def write_stats(directory: Path, stats: WorkerStats, pid: int | None = None) -> Path:
    """Replace this process's stats file for ``stats.shard`` (``pid``: this process) in one
    rename, so a reader sees the previous file or this one, never a part. Returns its path."""
    path = directory / f"{stats.shard}-{os.getpid() if pid is None else pid}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stats.to_json()))
    os.replace(tmp, path)
    return path


def read_stats(directory: Path) -> list[WorkerStats]:
    """Every stats file in ``directory`` that reads as one (none when it does not exist)."""
    found = []
    for path in sorted(directory.glob("*.json")):
        try:
            found.append(WorkerStats.from_json(json.loads(path.read_text())))
        except (OSError, ValueError):
            continue
    return found


def latest_per_shard(directory: Path) -> dict[str, WorkerStats]:
    """Per shard, the stats of the record processor that wrote last."""
    latest: dict[str, WorkerStats] = {}
    for stats in read_stats(directory):
        if stats.shard not in latest or stats.at >= latest[stats.shard].at:
            latest[stats.shard] = stats
    return latest
