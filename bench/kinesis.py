"""kinesis-mock as its stream fills, before (``main.js.orig``) and after (``main.js``) the patch.

    python -m bench.kinesis [--quick]

Each file runs privately (own ports and data folder; the stack's command line, as
tests/integration/test_kinesis_mock_patch.py does) with persistence on at the stack's default
interval (CDC_KINESIS_PERSIST_INTERVAL's default). One client fills a 4-shard stream with
PutRecords of 500 records of 300 B, in steps of 5,000 records, and after each step:
  put rate     records/s over the step's PutRecords calls;
  stall        the step's longest PutRecords call (a save of the whole state blocks the
               emulator's only thread: the call waiting behind it shows the save), and the
               snapshot file's size;
  tail read    GetRecords records/s, pages of Limit 1000 from an AT_SEQUENCE_NUMBER iterator at
               the middle of each shard (at most 3 pages per shard; the GetShardIterator call,
               itself a scan, is not timed).
Patched: up to 100k records (quick 20k). Original: up to 30k (quick 10k), or until a step
takes more than 60 s.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from bench.figures import Figure, Section, Series
from infra.local.components import kinesis_mock, wait_healthy
from infra.local.preflight import free_port
from producer_config import load_pipeline
from services.clients import LOCAL_CREDENTIALS
from services.config import StackConfig

__all__ = ["Step", "fill", "measure"]

STREAM = "bench"
SHARDS = 4
BATCH = 500
RECORD_BYTES = 300
STEP = 5_000
PAGE = 1_000
PAGES_PER_SHARD = 3
SLOW_STEP_S = 60.0
DEFAULT_PERSIST_INTERVAL = StackConfig.from_env({}).kinesis_persist_interval


@dataclasses.dataclass(frozen=True)
class Step:
    stored: int  # records in the stream after the step
    put_rate: float  # records/s over the step's PutRecords calls
    longest_put_s: float  # the step's longest PutRecords call
    get_rate: float  # records/s reading from the middle of each shard
    snapshot_bytes: int  # the snapshot file's size after the step (0: none yet)
    seconds: float  # the step's PutRecords time


class _PrivateKinesis:
    """kinesis-mock on its own ports and data folder, running ``main.js`` or ``main.js.orig``
    (the approach of tests/integration/test_kinesis_mock_patch.PrivateKinesis)."""

    def __init__(self, folder: Path, script: str) -> None:
        pipeline = load_pipeline()
        self.config = StackConfig.from_env(
            {
                "CDC_STATE_DIR": str(folder),
                "CDC_KINESIS_PORT": str(free_port()),
                "CDC_KINESIS_TLS_PORT": str(free_port()),
                "CDC_KINESIS_PERSIST_INTERVAL": DEFAULT_PERSIST_INTERVAL,
            }
        )
        self.component = kinesis_mock(self.config, pipeline, script)
        # one attempt per call and a long read time-out: a stalled call is what is measured
        self.kinesis = boto3.client(
            "kinesis",
            endpoint_url=self.config.kinesis_endpoint,
            region_name=pipeline.region,
            config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=600, connect_timeout=10),
            **LOCAL_CREDENTIALS,
        )
        self.snapshot = self.config.kinesis_snapshot

    def __enter__(self) -> _PrivateKinesis:
        self.component.prepare()
        self.component.process.start()
        wait_healthy(self.component, 120)
        return self

    def __exit__(self, *_: object) -> None:
        self.component.process.kill()


def _active(kinesis: Any) -> None:
    kinesis.create_stream(StreamName=STREAM, ShardCount=SHARDS)
    deadline = time.monotonic() + 60
    while kinesis.describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
        if time.monotonic() > deadline:
            raise RuntimeError("the bench stream did not become ACTIVE within 60 s")
        time.sleep(0.1)


def _tail_rate(kinesis: Any, sequences: dict[str, list[str]]) -> float:
    """GetRecords records/s from the middle of each shard (iterator creation not timed)."""
    read, elapsed = 0, 0.0
    for shard, numbers in sequences.items():
        if not numbers:
            continue
        iterator = kinesis.get_shard_iterator(
            StreamName=STREAM,
            ShardId=shard,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            StartingSequenceNumber=numbers[len(numbers) // 2],
        )["ShardIterator"]
        for _ in range(PAGES_PER_SHARD):
            started = time.perf_counter()
            page = kinesis.get_records(ShardIterator=iterator, Limit=PAGE)
            elapsed += time.perf_counter() - started
            read += len(page["Records"])
            iterator = page.get("NextShardIterator")
            if not page["Records"] or not iterator:
                break
    return read / elapsed if elapsed else 0.0


def fill(script: str, limit: int, stop_slow: bool, say=lambda message: None) -> tuple[list[Step], str]:
    """Fill a private kinesis-mock running ``script`` in steps of 5,000 records up to ``limit``
    (``stop_slow``: also stop after a step slower than 60 s); the steps, and why it stopped."""
    folder = Path(tempfile.mkdtemp(prefix="cdc-bench-kinesis-"))
    payload = os.urandom(RECORD_BYTES)
    steps: list[Step] = []
    why = f"reached {limit:,} records"
    try:
        with _PrivateKinesis(folder, script) as mock:
            kinesis = mock.kinesis
            _active(kinesis)
            sequences: dict[str, list[str]] = {}
            stored = 0
            while stored < limit:
                longest, spent = 0.0, 0.0
                for _ in range(STEP // BATCH):
                    entries = [{"Data": payload, "PartitionKey": f"k{stored + i}"} for i in range(BATCH)]
                    started = time.perf_counter()
                    answer = kinesis.put_records(StreamName=STREAM, Records=entries)
                    took = time.perf_counter() - started
                    if answer.get("FailedRecordCount"):
                        raise RuntimeError(f"{script}: PutRecords failed {answer['FailedRecordCount']} records")
                    for result in answer["Records"]:
                        sequences.setdefault(result["ShardId"], []).append(result["SequenceNumber"])
                    longest, spent, stored = max(longest, took), spent + took, stored + BATCH
                get_rate = _tail_rate(kinesis, sequences)
                size = mock.snapshot.stat().st_size if mock.snapshot.exists() else 0
                steps.append(Step(stored, STEP / spent, longest, get_rate, size, spent))
                say(
                    f"   {script}: {stored:>7,} stored  put {STEP / spent:7,.0f} rec/s  longest call {longest:6.2f} s"
                    f"  tail GetRecords {get_rate:7,.0f} rec/s  snapshot {size / 1e6:5.1f} MB"
                )
                if stop_slow and spent > SLOW_STEP_S:
                    why = f"stopped at {stored:,} records: the last step of {STEP:,} took {spent:.0f} s (> {SLOW_STEP_S:.0f} s)"
                    break
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return steps, why


def _at(steps: list[Step], stored: int) -> Step | None:
    return next((step for step in steps if step.stored == stored), None)


def measure(quick: bool, patched_limit: int | None = None, original_limit: int | None = None) -> Section:
    patched_limit = patched_limit or (20_000 if quick else 100_000)
    original_limit = original_limit or (10_000 if quick else 30_000)

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    original, original_why = fill("main.js.orig", original_limit, stop_slow=True, say=say)
    patched, patched_why = fill("main.js", patched_limit, stop_slow=False, say=say)

    common = max((s.stored for s in original if _at(patched, s.stored)), default=0)
    figures: list[Figure] = []
    after, before = _at(patched, common), _at(original, common)
    if after and before:
        figures += [
            Figure(
                f"PutRecords at {common:,} stored, patched",
                after.put_rate,
                "records/s",
                ceiling=before.put_rate,
                ceiling_name="original main.js, same step (a floor: ratio = speed-up)",
            ),
            Figure(
                f"GetRecords tail read at {common:,} stored, patched",
                after.get_rate,
                "records/s",
                ceiling=before.get_rate,
                ceiling_name="original main.js, same step (a floor: ratio = speed-up)",
            ),
            Figure(
                f"longest PutRecords call (stall) up to {common:,} stored, patched",
                max(s.longest_put_s for s in patched if s.stored <= common),
                "s",
                ceiling=max(s.longest_put_s for s in original if s.stored <= common),
                ceiling_name="original main.js (ratio < 1: shorter stalls)",
                note=f"snapshot at {common:,} records: {after.snapshot_bytes / 1e6:.1f} MB patched, "
                f"{before.snapshot_bytes / 1e6:.1f} MB original",
            ),
        ]
    last = patched[-1]
    figures += (
        []
        if last.stored == common
        else [
            Figure(f"PutRecords at {last.stored:,} stored, patched", last.put_rate, "records/s"),
            Figure(f"GetRecords tail read at {last.stored:,} stored, patched", last.get_rate, "records/s"),
            Figure(
                f"longest PutRecords call (stall), patched, up to {last.stored:,} stored",
                max(s.longest_put_s for s in patched),
                "s",
                note=f"snapshot {last.snapshot_bytes / 1e6:.1f} MB at {last.stored:,} records",
            ),
        ]
    )
    if original:
        first = original[-1]
        figures.append(
            Figure(
                f"PutRecords at {first.stored:,} stored, original",
                first.put_rate,
                "records/s",
                note=f"snapshot {first.snapshot_bytes / 1e6:.1f} MB; {original_why}",
            )
        )

    def line(steps: list[Step], field: str) -> list[tuple[float, float]]:
        return [(float(s.stored), float(getattr(s, field))) for s in steps]

    series = [
        Series(
            "kinesis-mock PutRecords rate as the stream fills",
            "records stored",
            "records/s (500 x 300 B per call)",
            {"original main.js": line(original, "put_rate"), "patched main.js": line(patched, "put_rate")},
        ),
        Series(
            "kinesis-mock longest PutRecords call per 5k-record step (save stalls)",
            "records stored",
            "seconds",
            {"original main.js": line(original, "longest_put_s"), "patched main.js": line(patched, "longest_put_s")},
        ),
        Series(
            "kinesis-mock GetRecords from mid-shard (Limit 1000)",
            "records stored",
            "records/s",
            {"original main.js": line(original, "get_rate"), "patched main.js": line(patched, "get_rate")},
        ),
    ]
    notes = [
        f"Private kinesis-mock per file, persistence on every {DEFAULT_PERSIST_INTERVAL} (the stack's default), "
        f"{SHARDS} shards, one client, PutRecords of {BATCH} x {RECORD_BYTES} B, steps of {STEP:,} records; "
        "boto3 with one attempt per call and a 600 s read time-out.",
        f"Original (main.js.orig): {original_why}. Patched (main.js): {patched_why}.",
        "Stall: the longest PutRecords call of a step; a save of the whole state runs on the emulator's only "
        f"thread, so a call that arrives during it waits for it. A step shorter than {DEFAULT_PERSIST_INTERVAL} "
        "may contain no save at all.",
        f"GetRecords: pages of Limit {PAGE} from an AT_SEQUENCE_NUMBER iterator at the middle of each shard, at "
        f"most {PAGES_PER_SHARD} pages per shard; only the GetRecords calls are timed.",
        "No ceiling: the emulator is the thing measured; 'ceiling' columns hold the original (before) figure "
        "beside the patched (after) one.",
    ]
    return Section("Kinesis emulator (kinesis-mock) before / after the patch", figures, series, notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kinesis", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--patched-limit", type=int)
    parser.add_argument("--original-limit", type=int)
    args = parser.parse_args(argv)
    from bench.report import print_section

    print_section(measure(args.quick, args.patched_limit, args.original_limit), "kinesis")
    return 0


if __name__ == "__main__":
    sys.exit(main())
