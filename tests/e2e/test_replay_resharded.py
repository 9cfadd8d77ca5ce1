"""`cdc replay` of a resharded stream: every closed parent is read to its end before any of
its children, so for no item is a parent's record applied after a child's record; every sink
ends equal to Users. (Runs after test_pipeline.py, whose reshard 4 -> 8 -> 4 it replays; alone,
it splits the stream itself.)"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import defaultdict

import pytest

from scripts.changes.generator import UserChangeGenerator
from scripts.changes.writer import apply_changes
from services.clients import aws_client, aws_resource
from services.config import REPO_ROOT
from services.kinesis import list_shards, read_stream
from tests.converge import assert_converges

pytestmark = pytest.mark.stack

APP = "app_user_management"


def _reshard(kinesis, stream: str, count: int) -> None:
    kinesis.update_shard_count(StreamName=stream, TargetShardCount=count, ScalingType="UNIFORM_SCALING")
    deadline = time.monotonic() + 60
    while (summary := kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"])[
        "StreamStatus"
    ] != "ACTIVE" or summary["OpenShardCount"] != count:
        assert time.monotonic() < deadline, f"{stream} did not reach {count} open shards"
        time.sleep(0.5)


def _split_if_never_resharded(stack, pipeline, kinesis, stream: str) -> bool:
    """Split every shard (with changes before and after) unless the stream was resharded."""
    if any("ParentShardId" in shard for shard in list_shards(kinesis, stream)):
        return False
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    changes = iter(UserChangeGenerator(users=60, seed=31, prefix=f"rr-{uuid.uuid4().hex[:6]}-").changes(400))
    apply_changes(users, (next(changes) for _ in range(200)), total=200, progress=False)
    _reshard(kinesis, stream, 2 * pipeline.streams[stream].shards)
    apply_changes(users, changes, total=200, progress=False)
    assert_converges(stack, pipeline, timeout_s=420)
    return True


def _batches_of_replay(stack, since: float) -> dict[str, tuple[float, float]]:
    """Per shard, when the app's processors began their first batch and ended their last one in
    the replay started after ``since``: from its first processor that began at a start position
    (not at a checkpoint's sequence number), read from the workers' logs. Batches before it are
    the app's ordinary work before the replay stopped it."""
    events = []
    for log in stack.log_dir.glob(f"worker-{APP}-*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith('{"app"') and '"event": "' in line:
                event = json.loads(line)
                if event["ts"] >= since:
                    events.append(event)
    restarted = min(
        (e["ts"] for e in events if e["event"] == "initialize" and not str(e.get("position", "")).isdigit()),
        default=float("inf"),
    )
    spans: dict[str, list[float]] = defaultdict(lambda: [float("inf"), 0.0])
    for batch in events:
        if batch["event"] == "batch" and batch["received"]:
            begun = batch["ts"] - batch["ms"] / 1000
            if begun >= restarted:
                span = spans[batch["shard"]]
                span[0], span[1] = min(span[0], begun), max(span[1], batch["ts"])
    return {shard: (span[0], span[1]) for shard, span in spans.items()}


def test_a_replay_of_a_resharded_stream_reads_every_parent_before_its_children(stack, pipeline):
    kinesis = aws_client("kinesis", stack, pipeline.region)
    stream = pipeline.table("Users").stream
    split = _split_if_never_resharded(stack, pipeline, kinesis, stream)
    try:
        _replay_and_check_order(stack, pipeline, kinesis, stream)
    finally:
        if split:  # back to the shard count of producer_config, which provisioning checks
            _reshard(kinesis, stream, pipeline.streams[stream].shards)
            assert_converges(stack, pipeline, timeout_s=420)


def _replay_and_check_order(stack, pipeline, kinesis, stream: str) -> None:
    assert_converges(stack, pipeline, timeout_s=420)
    shards = list_shards(kinesis, stream)
    parents = {s["ShardId"]: [p for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")) if p] for s in shards}
    in_stream = defaultdict(int)
    for record in read_stream(kinesis, stream):
        in_stream[record.shard_id] += 1
    started = time.time()
    result = subprocess.run(
        [sys.executable, "-m", "infra.ops.cli", "replay", APP, "--from-trim-horizon", "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (report,) = json.loads(result.stdout)
    print(f"\nreplay of a resharded stream ({len(shards)} shards): {report}")
    assert report["records"] == sum(in_stream.values()) and report["received"] >= report["records"]
    spans = _batches_of_replay(stack, started)
    assert set(spans) == {shard for shard, count in in_stream.items() if count}, "every shard with records was read"
    for child, its_parents in parents.items():
        for parent in its_parents:
            if child in spans and parent in spans:
                assert spans[parent][1] <= spans[child][0], f"{child} was read before its parent {parent} ended"
    assert_converges(stack, pipeline, timeout_s=420)
