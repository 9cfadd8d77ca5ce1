"""What runs through every fault of `make chaos`, on threads of their own: the load (generated
changes written at a steady rate, riding through outages) and the watcher (every sink's versions
sampled each second; an item seen older than before is a regression).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from producer_config import PipelineConfig
from scripts.changes.generator import UserChangeGenerator
from scripts.changes.writer import write_change
from scripts.chaos.faults import INDEX
from services.clients import aws_client, opensearch_client
from services.config import StackConfig, StackError

__all__ = ["Load", "Watch"]


class Load:
    """Writes generated changes at ``rate`` per second on a thread, riding through outages."""

    def __init__(self, users_table: Any, generator: UserChangeGenerator, rate: float):
        self.table, self.generator, self.rate = users_table, generator, rate
        self.written = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="chaos-load", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise StackError(f"the change generator failed: {type(self.error).__name__}: {self.error}")

    def _run(self) -> None:
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                (change,) = self.generator.changes(1)
                write_change(self.table, change)
                self.written += 1
                next_at = max(next_at + 1 / self.rate, time.monotonic() - 1.0)
                self._stop.wait(max(0.0, next_at - time.monotonic()))
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc


class Watch:
    """Samples every sink's versions each second; an item seen older than before is a regression.
    A deleted item keeps the version it was deleted at (DynamoDB sinks keep a tombstone;
    OpenSearch remembers the last version seen), so a resurrection counts too."""

    def __init__(self, stack: StackConfig, pipeline: PipelineConfig, prefix: str):
        self.stack, self.pipeline, self.prefix = stack, pipeline, prefix
        self.seen: dict[tuple[str, str], int] = {}
        self.regressions: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-watch", daemon=True)

    def start(self) -> Watch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        ddb = aws_client("dynamodb", self.stack, self.pipeline.region)
        search = opensearch_client(self.stack, timeout=5)
        while not self._stop.wait(1.0):
            try:
                self._sample(ddb, search)
            except Exception:  # noqa: BLE001 - a sink down right now: sample again next second
                continue

    def _sample(self, ddb: Any, search: Any) -> None:
        versions: list[tuple[tuple[str, str], int]] = []
        for name in ("AppUsers_V2", "WorkplaceUsers_V2"):
            for page in ddb.get_paginator("scan").paginate(TableName=name):
                for item in page["Items"]:
                    if item["UserId"]["S"].startswith(self.prefix) and "Version" in item:
                        item_id = f"{item.get('WorkplaceId', {}).get('S', '')}#{item['UserId']['S']}"
                        versions.append(((name, item_id), int(item["Version"]["N"])))
        hits = search.search(
            index=INDEX, body={"query": {"prefix": {"UserId": self.prefix}}, "size": 10_000, "version": True}
        )["hits"]["hits"]
        versions += [((INDEX, hit["_id"]), hit["_version"]) for hit in hits]
        for key, version in versions:
            before = self.seen.get(key, 0)
            if version < before:
                self.regressions.append(f"{key[0]} {key[1]}: version {before} then {version}")
            else:
                self.seen[key] = version
