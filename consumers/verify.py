"""Reconciliation: recompute every app's sink from its source table and compare.

    python -m consumers.verify        (make verify)   exit 0 when every sink equals its source

Driven by each app's configuration alone (``consumers/<app>/app.toml``): every item of the
app's source table goes through the app's own filter and transform as if it had just been
inserted; the upserts planned are what the sink must hold, read back the way the sink stores
them (each sink kind's ``read_back``, ``consumers.sinks.registry``). A new app folder is verified without editing this
file. For each sink it reports the items that are missing, extra (present but not expected;
tombstones and deleted documents excluded) or stale (present with other content). It is the
oracle of the end-to-end tests. It reads whole tables: meant for the local stack and test
data sizes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import EndpointConnectionError

from consumers.runtime.config import AppConfig, discover_apps
from consumers.runtime.wiring import TargetClients
from consumers.shared import envelope
from consumers.shared.planning import Upsert, plan_writes
from consumers.shared.records import ChangeRecord
from consumers.sinks.registry import kind_of
from producer_config import PipelineConfig, TableSpec, load_pipeline
from services.config import StackConfig
from services.kinesis import stream_history

__all__ = ["SinkReport", "expected_contents", "verify", "wait_converged"]

Contents = dict[Any, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class SinkReport:
    sink: str
    expected: int
    actual: int
    missing: tuple[str, ...]
    extra: tuple[str, ...]
    stale: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.stale)

    def __str__(self) -> str:
        head = (
            f"{self.sink:<32} expected {self.expected:>6}  actual {self.actual:>6}  missing {len(self.missing):>4}"
            f"  extra {len(self.extra):>4}  stale {len(self.stale):>4}  {'OK' if self.ok else 'DIFFERS'}"
        )
        samples = [
            f"    {kind}: {', '.join(keys[:5])}"
            for kind, keys in (("missing", self.missing), ("extra", self.extra), ("stale", self.stale))
            if keys
        ]
        return "\n".join([head, *samples])


def _compare(sink: str, expected: Contents, actual: Contents) -> SinkReport:
    def names(keys: Iterable[Any]) -> tuple[str, ...]:
        return tuple(sorted(" ".join(key) if isinstance(key, tuple) else str(key) for key in keys))

    return SinkReport(
        sink=sink,
        expected=len(expected),
        actual=len(actual),
        missing=names(expected.keys() - actual.keys()),
        extra=names(actual.keys() - expected.keys()),
        stale=names(k for k in expected.keys() & actual.keys() if expected[k] != actual[k]),
    )


def _scan(ddb, table: str) -> Iterator[dict[str, Any]]:
    for page in ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        yield from page["Items"]


def _as_inserted(table: TableSpec, item: Mapping[str, Any], now_ms: int) -> ChangeRecord:
    """The change record of ``item`` (DynamoDB JSON) had it just been inserted."""
    raw = envelope.build(
        envelope.EventName.INSERT,
        table.name,
        {k: item[k] for k in table.key_names},
        new_image=dict(item),
        created_at=now_ms,
    )
    return ChangeRecord.from_parsed(
        raw, b"", sequence_number=None, partition_key=None, version_attribute=table.version_attribute or "Version"
    )


def expected_contents(
    app: AppConfig, source_items: Iterator[Mapping[str, Any]], stored: Callable[[Upsert], tuple[Any, dict[str, Any]]]
) -> Contents:
    """What the app's sink must hold for these source items (DynamoDB JSON): each one through
    the app's filter and transform as an INSERT; ``stored(upsert)`` is (identity, item) as the
    sink stores it."""
    transform, compiled = app.load_transform(), app.compile_filter()
    now_ms = int(time.time() * 1000)
    expected: Contents = {}
    for item in source_items:
        record = _as_inserted(app.source, item, now_ms)
        if compiled.matches(record.raw):
            for write in plan_writes(record, transform):
                if type(write) is Upsert:
                    identity, stored_item = stored(write)
                    expected[identity] = stored_item
    return expected


def verify(stack: StackConfig | None = None, pipeline: PipelineConfig | None = None) -> tuple[SinkReport, ...]:
    """One report per app (sorted by package), comparing its sink with its source table now."""
    stack = stack or StackConfig.from_env()
    pipeline = pipeline or load_pipeline()
    clients = TargetClients(stack, pipeline.region)
    ddb = clients.aws("dynamodb")
    reports = []
    for app in discover_apps(pipeline):
        view = kind_of(app.sink.type).read_back(app.sink, pipeline, clients)
        if view.expected is not None:
            expected = view.expected(app, stream_history(clients.aws("kinesis"), app.stream_name).records())
        else:
            expected = expected_contents(app, _scan(ddb, app.source.name), view.stored)
        reports.append(_compare(view.label, expected, view.actual()))
    return tuple(reports)


def wait_converged(
    stack: StackConfig | None = None,
    pipeline: PipelineConfig | None = None,
    *,
    timeout_s: float = 120,
    poll_s: float = 2,
) -> tuple[SinkReport, ...]:
    """`verify` again until every sink equals its source or ``timeout_s`` passed; the last reports."""
    deadline = time.monotonic() + timeout_s
    while True:
        reports = verify(stack, pipeline)
        if all(report.ok for report in reports) or time.monotonic() > deadline:
            return reports
        time.sleep(poll_s)


def main() -> int:
    try:
        reports = verify()
    except (EndpointConnectionError, ConnectionError) as exc:
        print(f"verify: cannot reach the stack ({exc}); is it up? (`make up`, `make status`)", file=sys.stderr)
        return 2
    for report in reports:
        print(report)
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
