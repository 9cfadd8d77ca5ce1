"""infra/local/kinesis/patches: the patched kinesis-mock answers and saves exactly as the original.

The installer keeps the pristine ``main.js`` beside the patched one as ``main.js.orig``. Each
test runs both, privately (own ports and data folders, the stack's own command line), on the
same workload and compares what a client sees: which shard each record went to, in which order,
with which data; sequence numbers; every iterator type; a closed parent shard's ChildShards;
and the snapshot file itself, byte for byte, for the same state. One change is meant to differ:
the patched one reads the time from the wall clock.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from infra.local.components import KINESIS_PACKAGE, KINESIS_PATCHES, kinesis_mock, wait_healthy
from infra.local.patches import sha256
from infra.local.preflight import free_port
from services.clients import aws_client
from services.config import StackConfig
from services.kinesis_mock import SnapshotWatch

pytestmark = pytest.mark.stack

STREAM = "s"
WALL_CLOCK_AHEAD = Path(__file__).with_name("wall_clock_ahead.cjs")


class PrivateKinesis:
    """A kinesis-mock on its own ports and data folder, running ``main.js`` or ``main.js.orig``."""

    def __init__(self, folder: Path, pipeline, script: str, persist_interval: str = "300ms") -> None:
        self.config = StackConfig.from_env(
            {
                "CDC_STATE_DIR": str(folder),
                "CDC_KINESIS_PORT": str(free_port()),
                "CDC_KINESIS_TLS_PORT": str(free_port()),
                "CDC_KINESIS_PERSIST_INTERVAL": persist_interval,
            }
        )
        self.component = kinesis_mock(self.config, pipeline, script)
        self.kinesis = aws_client("kinesis", self.config, pipeline.region)
        self.snapshot = self.config.kinesis_snapshot

    def start(self) -> PrivateKinesis:
        self.component.prepare()
        self.component.process.start()
        wait_healthy(self.component, 120)
        return self

    def kill(self) -> None:
        self.component.process.kill()

    def wait_saved(self, timeout_s: float = 120) -> None:
        """Until a complete save holds everything acknowledged up to now."""
        acked_ns, watch = time.time_ns(), SnapshotWatch(self.snapshot)
        deadline = time.monotonic() + timeout_s
        while (watch.saved_before() or 0) < acked_ns:
            assert time.monotonic() < deadline, "kinesis-mock saved nothing for two minutes"
            time.sleep(0.05)


@pytest.fixture()
def kinesis_pair(tmp_path, pipeline):
    started: list[PrivateKinesis] = []

    def start(name: str, script: str, data_from: Path | None = None) -> PrivateKinesis:
        mock = PrivateKinesis(tmp_path / name, pipeline, script)
        if data_from is not None:
            mock.snapshot.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(data_from, mock.snapshot)
        started.append(mock)
        return mock.start()

    yield start
    for mock in started:
        mock.kill()


def _active(kinesis) -> None:
    for _ in range(100):
        if kinesis.describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.1)
    pytest.fail("stream never became ACTIVE")


def _workload(kinesis) -> list[tuple[str, bytes]]:
    """Batches with repeated keys and explicit hash keys, single puts: what was written, in order."""
    rng = random.Random(20261201)
    kinesis.create_stream(StreamName=STREAM, ShardCount=4)
    _active(kinesis)
    written = []
    for batch in range(6):
        entries = []
        for i in range(250):
            entry = {
                "Data": b"%d-%d-" % (batch, i) + rng.randbytes(rng.randint(0, 300)),
                "PartitionKey": f"k{rng.randint(0, 40)}",
            }
            if i % 17 == 0:
                entry["ExplicitHashKey"] = str(rng.randint(0, 2**128 - 1))
            entries.append(entry)
        assert kinesis.put_records(StreamName=STREAM, Records=entries)["FailedRecordCount"] == 0
        written += [(e["PartitionKey"], e["Data"]) for e in entries]
    for i in range(20):
        kinesis.put_record(StreamName=STREAM, Data=b"single-%d" % i, PartitionKey=f"k{i}")
        written.append((f"k{i}", b"single-%d" % i))
    return written


def _shards(kinesis) -> list[str]:
    return [s["ShardId"] for s in kinesis.list_shards(StreamName=STREAM)["Shards"]]


def _read(kinesis, shard: str, kind: str = "TRIM_HORIZON", limit: int = 20, **position) -> tuple[list[dict], dict]:
    """Every record from the position on, in pages of ``limit`` (the patched paging path);
    returns the records and the last (empty) page."""
    iterator = kinesis.get_shard_iterator(StreamName=STREAM, ShardId=shard, ShardIteratorType=kind, **position)[
        "ShardIterator"
    ]
    records: list[dict] = []
    while True:
        page = kinesis.get_records(ShardIterator=iterator, Limit=limit)
        records += page["Records"]
        if not page["Records"] or "NextShardIterator" not in page:
            return records, page
        iterator = page["NextShardIterator"]


def _view(records: list[dict]) -> list[tuple]:
    return [(r["PartitionKey"], r["Data"]) for r in records]


def _observe(kinesis) -> dict:
    """What a client sees, independent of the clock: per shard the records in order, and what
    every iterator type returns from a few positions."""
    seen: dict = {}
    for shard in _shards(kinesis):
        records, _ = _read(kinesis, shard)
        sequence = [int(r["SequenceNumber"]) for r in records]
        assert sequence == sorted(sequence) and len(set(sequence)) == len(sequence), shard
        assert _view(_read(kinesis, shard, limit=10_000)[0]) == _view(records), "page size changes nothing"
        positions = {}
        for i in sorted({0, 1, len(records) // 2, len(records) - 2, len(records) - 1}):
            number = records[i]["SequenceNumber"]
            at, _ = _read(kinesis, shard, "AT_SEQUENCE_NUMBER", 50, StartingSequenceNumber=number)
            after, _ = _read(kinesis, shard, "AFTER_SEQUENCE_NUMBER", 50, StartingSequenceNumber=number)
            when, _ = _read(kinesis, shard, "AT_TIMESTAMP", 50, Timestamp=records[i]["ApproximateArrivalTimestamp"])
            assert _view(at) == _view(records[i:]) and _view(after) == _view(records[i + 1 :]), (shard, i)
            assert _view(when)[-len(records) + i :] == _view(records[i:]), (shard, i)
            positions[i] = (len(at), len(after))
        latest, _ = _read(kinesis, shard, "LATEST")
        seen[shard] = (_view(records), positions, latest)
    return seen


def test_the_installed_main_js_carries_the_patch_and_the_original_is_kept():
    ((name, (before, after)),) = KINESIS_PATCHES.checksums().items()
    assert sha256(KINESIS_PACKAGE / "main.js") == after, f"{name} is not applied (run make install)"
    assert sha256(KINESIS_PACKAGE / "main.js.orig") == before


def test_patched_and_original_answer_a_workload_the_same(kinesis_pair):
    results = {}
    for script in ("main.js.orig", "main.js"):
        mock = kinesis_pair(script, script)
        written = _workload(mock.kinesis)
        seen = _observe(mock.kinesis)
        assert sorted(r for shard in seen.values() for r in shard[0]) == sorted(written)
        # a closed parent: read to its end, ChildShards and no next iterator, in both
        parent = _shards(mock.kinesis)[0]
        shard = next(s for s in mock.kinesis.list_shards(StreamName=STREAM)["Shards"] if s["ShardId"] == parent)
        low, high = (int(shard["HashKeyRange"][k]) for k in ("StartingHashKey", "EndingHashKey"))
        mock.kinesis.split_shard(StreamName=STREAM, ShardToSplit=parent, NewStartingHashKey=str((low + high) // 2))
        _active(mock.kinesis)
        records, last = _read(mock.kinesis, parent)
        children = sorted(c["ShardId"] for c in last.get("ChildShards", []))
        assert len(children) == 2 and "NextShardIterator" not in last, last
        results[script] = (seen, _view(records), children)
        mock.kill()
    assert results["main.js"] == results["main.js.orig"]


def test_the_patched_snapshot_is_the_original_byte_for_byte_and_round_trips(kinesis_pair, tmp_path):
    # GIVEN a patched kinesis-mock that saved a workload, then crashed
    first = kinesis_pair("first", "main.js")
    _workload(first.kinesis)
    before = {shard: _read(first.kinesis, shard)[0] for shard in _shards(first.kinesis)}
    first.wait_saved()
    first.kill()
    # WHEN the original and the patched one start from that snapshot and save it again
    saved = {}
    for script in ("main.js.orig", "main.js"):
        mock = kinesis_pair(f"again-{script}", script, data_from=first.snapshot)
        # THEN every record is back as it was: sequence numbers, timestamps, data, keys
        assert {shard: _read(mock.kinesis, shard)[0] for shard in _shards(mock.kinesis)} == before, script
        saves = []
        for _ in range(2):  # the patched one prints records once and reuses them afterwards
            mock.wait_saved()
            saves.append(mock.snapshot.read_bytes())
        saved[script] = saves
        mock.kill()
    assert saved["main.js"][0] == saved["main.js"][1] == saved["main.js.orig"][0]


def test_the_patched_one_stamps_records_with_the_wall_clock_even_when_the_monotonic_clock_lags(
    kinesis_pair, monkeypatch
):
    # GIVEN a wall clock an hour ahead of the monotonic clock, as after a suspended VM resumes:
    # cats-effect's realTime on Node is performance.timeOrigin + performance.now(), which stays
    # behind; a CI run saw "Timestamp cannot be in the future" for AT_TIMESTAMP of a second ago
    ahead_s = 3600
    monkeypatch.setenv("NODE_OPTIONS", f"--require {WALL_CLOCK_AHEAD}")
    monkeypatch.setenv("CDC_TEST_WALL_CLOCK_AHEAD_S", str(ahead_s))
    arrival, at_timestamp = {}, {}
    for script in ("main.js.orig", "main.js"):
        mock = kinesis_pair(script, script)
        mock.kinesis.create_stream(StreamName=STREAM, ShardCount=1)
        _active(mock.kinesis)
        # WHEN a record is put, then read from a second before the wall clock's now
        mock.kinesis.put_record(StreamName=STREAM, Data=b"x", PartitionKey="k")
        (record,), _ = _read(mock.kinesis, _shards(mock.kinesis)[0])
        arrival[script] = record["ApproximateArrivalTimestamp"].timestamp() - time.time()
        try:
            found, _ = _read(
                mock.kinesis, _shards(mock.kinesis)[0], "AT_TIMESTAMP", Timestamp=time.time() + ahead_s - 60
            )
            at_timestamp[script] = _view(found)
        except ClientError as exc:
            at_timestamp[script] = exc.response["Error"]["Message"]
        mock.kill()
    # THEN the patched one stamps and reads by the wall clock; the original lags it by the hour
    assert abs(arrival["main.js"] - ahead_s) < 60, arrival
    assert at_timestamp["main.js"] == [("k", b"x")], at_timestamp
    assert abs(arrival["main.js.orig"]) < 60, f"the clock shim did not take: {arrival}"
    assert at_timestamp["main.js.orig"] == "Timestamp cannot be in the future", at_timestamp
