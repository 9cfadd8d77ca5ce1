"""Relay throughput: DynamoDB Streams -> Kinesis, against raw PutRecords in the same run.

Runs a private DynamoDB Local + kinesis-mock (own state folder and ports, so the pipeline's
streams are untouched), then:
  baseline  PutRecords of the very payloads the relay produces, into a fresh stream with the
            same shard count: the ceiling the Kinesis emulator allows;
  relay     N changes already in the table's DynamoDB Stream, drained by the relay into its
            (fresh) Kinesis stream: read + convert + ordered put + durable position.
``measure(quick)`` returns changes/s for both and the ratio as a Section (5,000 changes;
quick 1,500); the CLI prints it.   python -m bench.relay [--changes N] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import threading
import time

from bench.figures import Figure, Section
from infra.local.components import components, wait_healthy
from infra.local.preflight import free_port
from infra.local.provision import provision
from infra.relay.format import put_rounds
from infra.relay.pump import Relay
from producer_config import load_pipeline
from scripts.changes.generator import UserChangeGenerator
from services.clients import aws_client, aws_resource
from services.config import StackConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    from bench.report import print_section

    print_section(measure(args.quick, args.changes), "relay")
    return 0


def measure(quick: bool, changes: int | None = None) -> Section:
    """The relay's changes/s beside raw PutRecords of its own payloads (see the module docstring)."""
    changes = changes or (1_500 if quick else 5_000)
    state = tempfile.mkdtemp(prefix="cdc-bench-relay-")
    stack = StackConfig.from_env(
        {
            **os.environ,
            "CDC_STATE_DIR": state,
            "CDC_DYNAMODB_PORT": str(free_port()),
            "CDC_KINESIS_PORT": str(free_port()),
            "CDC_KINESIS_TLS_PORT": str(free_port()),
            # kinesis-mock stalls ~1 s at every save; whichever run a save lands in loses, so no
            # save during the runs (the relay's position then stays put, which costs it nothing)
            "CDC_KINESIS_PERSIST_INTERVAL": "600s",
        }
    )
    pipeline = load_pipeline()
    users = pipeline.table("Users")
    pipeline = dataclasses.replace(
        pipeline,
        tables={"Users": users},
        streams={users.stream: pipeline.streams[users.stream]},
        indexes={},
    )
    dynamodb, kinesis_proc = components(stack, pipeline)[:2]
    for component in (dynamodb, kinesis_proc):
        component.prepare()
        component.process.start()
    try:
        for component in (dynamodb, kinesis_proc):
            wait_healthy(component, 60)
        provision(pipeline, stack, say=lambda m: None)
        return _run(stack, pipeline, users, changes)
    finally:
        for component in (dynamodb, kinesis_proc):
            component.process.stop()
        shutil.rmtree(state, ignore_errors=True)


def _run(stack, pipeline, users, n: int) -> Section:
    kinesis = aws_client("kinesis", stack, pipeline.region)
    table = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    print(f"writing {n} new users to Users (batch_write_item)...", file=sys.stderr)
    with table.batch_writer() as batch:  # realistic items; unique keys, as a batch requires
        for i, change in enumerate(UserChangeGenerator(users=n, seed=3).changes(n)):
            item = change.item or {"Version": change.version}
            batch.put_item(Item={**{k: v for k, v in item.items() if v != set()}, "UserId": f"b-{i:07d}"})

    # relay: drain the whole DynamoDB Stream into the (empty) users stream
    stop = threading.Event()
    relay = Relay(users, pipeline, stack, stop)
    captured: list[tuple[bytes, str]] = []
    put_all = relay._put_all

    def put_and_keep(entries):  # keep the payloads for the baseline
        captured.extend(entries)
        return put_all(entries)

    relay._put_all = put_and_keep  # type: ignore[method-assign]
    thread = threading.Thread(target=relay.run, daemon=True)
    started = time.perf_counter()
    thread.start()
    while relay.relayed < n:
        time.sleep(0.01)
    relay_s = time.perf_counter() - started
    stop.set()
    thread.join()

    # baseline: the same payloads, same call plan, into a fresh stream with the same shards
    spec = pipeline.streams[users.change_stream]
    kinesis.create_stream(StreamName="bench-baseline", ShardCount=spec.shards)
    while (
        kinesis.describe_stream_summary(StreamName="bench-baseline")["StreamDescriptionSummary"]["StreamStatus"]
        != "ACTIVE"
    ):
        time.sleep(0.05)
    started = time.perf_counter()
    for call in put_rounds(captured):
        response = kinesis.put_records(
            StreamName="bench-baseline", Records=[{"Data": d, "PartitionKey": k} for d, k in call]
        )
        assert not response.get("FailedRecordCount"), response
    baseline_s = time.perf_counter() - started

    relay_rate, baseline_rate = n / relay_s, len(captured) / baseline_s
    figure = Figure(
        "relay, Users stream -> users-changes",
        relay_rate,
        "changes/s",
        ceiling=baseline_rate,
        ceiling_name="raw PutRecords of the same payloads, same call plan, same shards",
    )
    notes = [
        f"{n:,} new users already in the Users table's DynamoDB Stream, drained by one Relay (read + convert + "
        f"ordered put + durable position) in {relay_s:.2f} s; the baseline put {len(captured):,} records in "
        f"{baseline_s:.2f} s into a fresh stream with {spec.shards} shards.",
        "Private DynamoDB Local + kinesis-mock (own ports and state folder), kinesis-mock persistence every 600 s "
        "so that no save stall lands in either run.",
    ]
    return Section("Relay: DynamoDB Streams -> Kinesis", figures=[figure], notes=notes)


if __name__ == "__main__":
    sys.exit(main())
