"""kinesis-mock's snapshot survives a SIGKILL in the middle of a save (infra/local/kinesis/preload.cjs).

kinesis-mock rewrites its whole state file in place every PERSIST_INTERVAL; killed while it
writes, it used to leave a cut (or empty) file and refuse to start again. This runs a private
kinesis-mock (own ports and data folder, the stack's own command line), waits until a save is
being written, SIGKILLs it there, and checks the restart has every record of the save before.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from infra.local.components import components, wait_healthy
from infra.local.preflight import free_port
from services.clients import aws_client
from services.config import StackConfig
from services.kinesis_mock import SnapshotWatch

pytestmark = pytest.mark.stack

_SNAPSHOT = "kinesis-data.json"


@pytest.fixture()
def private_kinesis(tmp_path, pipeline):
    config = StackConfig.from_env(
        {
            "CDC_STATE_DIR": str(tmp_path),
            "CDC_KINESIS_PORT": str(free_port()),
            "CDC_KINESIS_TLS_PORT": str(free_port()),
            "CDC_KINESIS_PERSIST_INTERVAL": "300ms",
        }
    )
    component = components(config, pipeline)[1]
    component.prepare()
    component.process.start()
    wait_healthy(component, 30)
    yield component, aws_client("kinesis", config, pipeline.region), config.data_dir / "kinesis"
    component.process.kill()


def _kill_during_a_save(component, folder: Path, timeout_s: float = 30) -> None:
    """SIGKILL the moment a save is being written: a partial file exists, or the snapshot
    shrank below its last complete size (an in-place rewrite truncates it first)."""
    snapshot, partial = folder / _SNAPSHOT, folder / f"{_SNAPSHOT}.tmp"
    complete = snapshot.stat().st_size if snapshot.exists() else 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        size = snapshot.stat().st_size if snapshot.exists() else 0
        if partial.exists() or size < complete:
            assert component.process.kill()
            return
        complete = max(complete, size)
        time.sleep(0.0005)
    pytest.fail("no save seen in progress")


def _wait_saved(folder: Path, acked_ns: int, timeout_s: float = 60) -> None:
    """Until a complete save holds everything acknowledged before ``acked_ns`` (on a busy
    machine a save of a few MB can take longer than any fixed pause)."""
    watch = SnapshotWatch(folder / _SNAPSHOT)
    deadline = time.monotonic() + timeout_s
    while (watch.saved_before() or 0) < acked_ns:
        assert time.monotonic() < deadline, "kinesis-mock saved nothing for a minute"
        time.sleep(0.05)


def _count(kinesis, stream: str) -> int:
    total = 0
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            total += len(page["Records"])
            iterator = page.get("NextShardIterator") if page["Records"] else None
    return total


def test_a_sigkill_during_a_save_keeps_the_previous_snapshot(private_kinesis):
    component, kinesis, folder = private_kinesis
    kinesis.create_stream(StreamName="s", ShardCount=2)
    for _ in range(50):
        if kinesis.describe_stream_summary(StreamName="s")["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            break
        time.sleep(0.1)
    written = 0
    for round_ in range(3):
        # GIVEN records that a complete save already holds (several intervals have passed)
        for _ in range(4):  # ~2 MB a round, so that a save takes long enough to be caught
            kinesis.put_records(
                StreamName="s",
                Records=[{"Data": b"%06d" % i + b"x" * 1000, "PartitionKey": str(i)} for i in range(500)],
            )
            written += 500
        _wait_saved(folder, time.time_ns())
        # WHEN kinesis-mock is killed while it writes the next save
        _kill_during_a_save(component, folder)
        # THEN it starts again, with all of them
        component.process.start()
        wait_healthy(component, 60)
        assert _count(kinesis, "s") == written, f"round {round_}"
