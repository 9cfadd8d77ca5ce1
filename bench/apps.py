"""Each consumer app's records/s through the real MultiLangDaemon, beside two ceilings.

    python -m bench.apps [--quick] [--changes N]

On the running (or started) local stack: K user changes are written to Users (K = 20,000;
quick 3,000) and the pipeline is let converge, so each app's stream holds a fixed content from
a start time T (whole seconds). Then, per app (app-user-management, workplace-user-v2,
workplace-user-search), over the same records, from T:
  app      `infra.ops.replay` of the app from T: its workers restart with new leases at T and process
           every record again; the rate is the records its processors received over the wall
           time from the first batch's start to the last one's end (their batch log lines), so
           KCL start-up and lease assignment are not counted;
  no-op    a MultiLangDaemon with the app's properties but another application name (own lease
           table), AT_TIMESTAMP T, running `bench.noop_processor`, which only checkpoints each
           batch; rate measured the same way;
  raw sink the app's own writes, planned beforehand from the same records in the same batches
           (the app's BatchProcessor with a sink that only keeps them), applied directly: for a
           DynamoDB sink `DynamoDbSink.write` (the app's write strategy), for OpenSearch one
           prebuilt `_bulk` body per batch; the shards' batches in parallel, as the app's shard
           processors run.
Target: each app >= 80% of min(no-op, raw sink). The sinks already hold every version by then
(the changes went through the pipeline once), so the app and the raw sink both meet mostly
stale writes: the same work on both sides.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.figures import Figure, Section
from consumers.runtime.batch import InputRecord
from consumers.runtime.config import AppConfig, discover_apps
from consumers.runtime.daemon import daemon_command, render_properties
from consumers.runtime.wiring import build_batch_processor, build_sink
from consumers.shared.planning import APPLIED, PlannedWrite, Skip, WriteResult
from consumers.sinks.opensearch import OpenSearchSink, build_bulk_body
from infra.local import stack as local_stack
from infra.ops.apps import local_workers
from infra.ops.replay import replay
from producer_config import PipelineConfig, load_pipeline
from services.clients import LOCAL_CREDENTIALS, aws_client, aws_resource, lease_client, opensearch_client
from services.config import REPO_ROOT, StackConfig
from services.kinesis import StreamRecord, read_stream

__all__ = ["measure", "processing_span"]

TARGET_SHARE = 0.8


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the stream content -----------------------------------------------------------------------


def _write_changes(stack: StackConfig, pipeline: PipelineConfig, changes: int, run: str) -> datetime:
    """K changes to Users from a fresh second T; returns T once the pipeline settled (the apps'
    streams hold every change relayed, the workplace stream everything workplace-user-v2 wrote)."""
    from scripts.changes.generator import UserChangeGenerator
    from scripts.changes.writer import apply_changes

    now = time.time()
    start = math.ceil(now) + 1
    time.sleep(start - now)
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    generator = UserChangeGenerator(users=max(200, changes // 5), seed=11, prefix=f"ba-{run}-")
    began = time.monotonic()
    apply_changes(users, generator.changes(changes), total=changes, progress=False, batch_size=25, concurrency=4)
    _say(
        f"   wrote {changes:,} changes to Users in {time.monotonic() - began:.0f} s; waiting for the streams to settle"
    )
    since = datetime.fromtimestamp(start, UTC)
    kinesis = aws_client("kinesis", stack, pipeline.region)
    streams = sorted({app.stream_name for app in discover_apps(pipeline)})
    deadline = time.monotonic() + 600 + changes / 5
    seen: list[tuple[int, ...]] = []
    # settled: every change relayed, and no stream grew over the last three looks (10 s)
    while True:
        counts = tuple(sum(1 for _ in read_stream(kinesis, stream, since)) for stream in streams)
        seen.append(counts)
        if len(seen) >= 3 and len(set(seen[-3:])) == 1 and sum(counts) >= changes:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the streams {streams} did not settle: {seen[-3:]}")
        time.sleep(5)
    _say(
        f"   streams settled {time.monotonic() - began:.0f} s after the first write: {dict(zip(streams, counts, strict=True))}"
    )
    return datetime.fromtimestamp(start, UTC)


# --- the app through its own workers ------------------------------------------------------------


def processing_span(lines: Sequence[str], app_name: str) -> tuple[int, float, float]:
    """From a worker log's JSON lines: records received in the app's batches, the earliest
    shard initialize (else the first batch's start) and the last batch's end (epoch s)."""
    received, first, last = 0, math.inf, 0.0
    for line in lines:
        if not line.startswith('{"app"'):
            continue
        event = json.loads(line)
        if event.get("app") != app_name:
            continue
        if event["event"] == "initialize":
            first = min(first, event["ts"])
        elif event["event"] == "batch" and event.get("received"):
            received += event["received"]
            first = min(first, event["ts"] - event["ms"] / 1000)
            last = max(last, event["ts"])
    return received, first, last


def _through_app(stack: StackConfig, app: AppConfig, region: str, kinesis: Any, start: datetime, total: int) -> float:
    offsets = {p: p.stat().st_size for p in stack.log_dir.glob(f"worker-{app.package}-*.log")}
    report = replay(stack, app, local_workers(stack, app, region), kinesis, start, timeout_s=300 + total / 5)
    lines: list[str] = []
    for path in stack.log_dir.glob(f"worker-{app.package}-*.log"):
        with open(path, "rb") as log:
            log.seek(offsets.get(path, 0))
            lines += log.read().decode(errors="replace").splitlines()
    received, first, last = processing_span(lines, app.name)
    seconds = last - first
    _say(f"   {app.name}: replay {report.seconds:.0f} s in all; {received:,} records in {seconds:.1f} s of processing")
    if received < total or seconds <= 0:
        raise RuntimeError(f"{app.name}: its batch logs show {received} of {total} records")
    return received / seconds


# --- a no-op processor through the same daemon ------------------------------------------------


def _noop_properties(
    app: AppConfig, pipeline: PipelineConfig, stack: StackConfig, name: str, stats: Path, start: datetime
) -> str:
    wanted = {
        "executableName": f"{sys.executable} -m bench.noop_processor --stats {stats}",
        "applicationName": name,
        "workerId": f"{name}-1",
        "initialPositionInStreamExtended": str(int(start.timestamp())),
    }
    lines = []
    for line in render_properties(app, pipeline, stack, 1).splitlines():
        key = line.split("=", 1)[0].strip()
        if line.startswith("#") or key in wanted or key.startswith("initialPositionInStream"):
            continue
        lines.append(line)
    return "\n".join([*lines, *(f"{key} = {value}" for key, value in wanted.items())]) + "\n"


def _through_noop(
    stack: StackConfig, pipeline: PipelineConfig, app: AppConfig, leases: Any, start: datetime, total: int, run: str
) -> float:
    name = f"bench-noop-{app.package}-{run}"
    folder = Path(tempfile.mkdtemp(prefix="cdc-bench-noop-"))
    stats = folder / "stats"
    properties = folder / "noop.properties"
    properties.write_text(_noop_properties(app, pipeline, stack, name, stats, start))
    env = dict(os.environ, AWS_REGION=pipeline.region, CDC_STATE_DIR=str(stack.state_dir))
    env.update(AWS_ACCESS_KEY_ID=LOCAL_CREDENTIALS["aws_access_key_id"])
    env.update(AWS_SECRET_ACCESS_KEY=LOCAL_CREDENTIALS["aws_secret_access_key"])
    log = stack.log_dir / f"{name}.log"
    try:
        with open(log, "ab") as out:
            daemon = subprocess.Popen(
                daemon_command(properties),
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + 300 + total / 5
            while True:
                shards = [json.loads(p.read_text()) for p in stats.glob("*.json")] if stats.exists() else []
                received = sum(s["received"] for s in shards)
                if received >= total:
                    break
                if daemon.poll() is not None:
                    raise RuntimeError(f"the no-op MultiLangDaemon exited ({daemon.returncode}); see {log}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no-op processor: {received} of {total} records in time; see {log}")
                time.sleep(0.5)
        finally:
            if daemon.poll() is None:
                os.killpg(daemon.pid, signal.SIGTERM)
                try:
                    daemon.wait(45)
                except subprocess.TimeoutExpired:
                    os.killpg(daemon.pid, signal.SIGKILL)
                    daemon.wait()
        seconds = max(s["last"] for s in shards) - min(s["initialized"] for s in shards)
        _say(f"   {app.name}: no-op processor {received:,} records in {seconds:.1f} s of processing")
        return received / seconds
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        for table in leases.list_tables()["TableNames"]:
            if table.startswith(name):
                leases.delete_table(TableName=table)


# --- the sink alone, with prebuilt writes ------------------------------------------------------


class _Keep:
    """A sink that keeps each batch's writes and reports them applied (planning only)."""

    def __init__(self) -> None:
        self.batches: list[list[PlannedWrite]] = []

    def write(self, writes: Sequence[PlannedWrite]) -> list[WriteResult]:
        self.batches.append(list(writes))
        return [APPLIED] * len(writes)


def _raw_sink(stack: StackConfig, pipeline: PipelineConfig, app: AppConfig, records: list[StreamRecord]) -> float:
    factory, _ = build_batch_processor(app.package, stack)
    per_shard: dict[str, list[StreamRecord]] = {}
    for record in records:
        per_shard.setdefault(record.shard_id, []).append(record)
    planned: dict[str, list[list[PlannedWrite]]] = {}
    for shard, shard_records in per_shard.items():
        keep = _Keep()
        processor = factory(shard)
        processor.sink = keep
        for first in range(0, len(shard_records), app.max_records):
            chunk = shard_records[first : first + app.max_records]
            processor.process([InputRecord(r.data, r.sequence_number, None, r.partition_key, r.arrival) for r in chunk])
        planned[shard] = keep.batches
    sink = build_sink(app, pipeline, stack)
    if isinstance(sink, OpenSearchSink):  # the raw figure of a bulk sink: its bodies, sent as they are
        client = opensearch_client(stack)
        config = sink.config
        bodies = {
            shard: [build_bulk_body([w for w in batch if not isinstance(w, Skip)], config)[0] for batch in batches]
            for shard, batches in planned.items()
        }

        def apply(shard: str) -> None:
            for body in bodies[shard]:
                if body:
                    client.bulk(body=body)

    else:

        def apply(shard: str) -> None:
            for batch in planned[shard]:
                sink.write(batch)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, len(planned))) as pool:
        list(pool.map(apply, planned))
    seconds = time.perf_counter() - started
    writes = sum(len(batch) for batches in planned.values() for batch in batches)
    _say(f"   {app.name}: raw sink {len(records):,} records ({writes:,} writes) in {seconds:.1f} s")
    return len(records) / seconds


# --- the section --------------------------------------------------------------------------------


def measure(quick: bool, changes: int | None = None) -> Section:
    changes = changes or (3_000 if quick else 20_000)
    stack, pipeline = StackConfig.from_env(), load_pipeline()
    local_stack.up(stack, pipeline)
    kinesis = aws_client("kinesis", stack, pipeline.region)
    leases = lease_client(stack, pipeline.region)  # the apps' and the no-op's lease tables
    run = uuid.uuid4().hex[:6]
    start = _write_changes(stack, pipeline, changes, run)
    figures, notes = [], []
    for app in discover_apps(pipeline):
        records = list(read_stream(kinesis, app.stream_name, start))
        _say(f"   {app.name}: {len(records):,} records on {app.stream_name} from {start.isoformat()}")
        app_rate = _through_app(stack, app, pipeline.region, kinesis, start, len(records))
        noop_rate = _through_noop(stack, pipeline, app, leases, start, len(records), run)
        raw_rate = _raw_sink(stack, pipeline, app, records)
        ceiling = min(noop_rate, raw_rate)
        which = "no-op kclpy processor" if noop_rate <= raw_rate else f"raw {app.sink.type} sink writes"
        figures.append(
            Figure(
                f"{app.name} through the MultiLangDaemon",
                app_rate,
                "records/s",
                ceiling=ceiling,
                ceiling_name=f"min(no-op, raw sink) = {which}",
                target=f">= {TARGET_SHARE:.0%} of min(no-op, raw sink)",
                met=app_rate >= TARGET_SHARE * ceiling,
                note=f"no-op {noop_rate:,.0f} records/s, raw sink {raw_rate:,.0f} records/s; {len(records):,} records",
            )
        )
        notes.append(
            f"{app.name}: {len(records):,} records on {app.stream_name} ({app.max_records} per batch, "
            f"polling {app.polling_interval_ms} ms); app {app_rate:,.0f}, no-op {noop_rate:,.0f}, raw sink "
            f"{raw_rate:,.0f} records/s."
        )
    notes += [
        f"{changes:,} user changes written to Users from {start.isoformat()} (batches of 25, 4 at a time), the "
        "pipeline let converge, then per app the same records read three ways (see bench/apps.py): the app "
        "replayed from that time, a no-op kclpy processor (checkpoints only) through the same MultiLangDaemon "
        "settings under another application name, and the app's planned writes applied to its sink directly.",
        "App and no-op rates: records received over the time from the first shard processor's initialize (its lease "
        "taken; the first GetShardIterator and GetRecords follow) to the last batch's end: the daemon's start-up and "
        "lease creation are not counted, the first fetch is. The sinks already hold every version, so the app and the "
        "raw sink both meet mostly stale (condition-failed) writes.",
        "One worker per app, all its shards; the other apps' workers keep running (idle).",
    ]
    return Section("Consumer apps through the KCL MultiLangDaemon", figures, [], notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.apps", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--changes", type=int)
    args = parser.parse_args(argv)
    from bench.report import print_section

    print_section(measure(args.quick, args.changes), "apps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
