"""`cdc reshard --split` and `--merge` on the search app's stream while changes flow: each
reports its parents and children and returns once workplace-user-search drained the parents;
the stream ends with its configured shard count and every sink equals Users."""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from scripts.changes.generator import UserChangeGenerator
from scripts.changes.writer import apply_changes
from services.clients import aws_client, aws_resource
from services.kinesis import list_shards
from tests.cli import cdc
from tests.converge import assert_converges

pytestmark = pytest.mark.stack

STREAM = "workplace-users-v2-changes"


def _reshard(*how: str) -> dict:
    result = cdc("reshard", STREAM, *how, "--json", "--timeout", "300")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_a_shard_split_then_its_children_merged_lose_nothing(stack, pipeline):
    kinesis = aws_client("kinesis", stack, pipeline.region)
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    changes = list(UserChangeGenerator(users=60, seed=23, prefix=f"sm-{uuid.uuid4().hex[:6]}-").changes(400))
    configured = pipeline.streams[STREAM].shards
    writer = threading.Thread(
        target=apply_changes, args=(users, iter(changes)), kwargs={"total": len(changes), "progress": False}
    )
    writer.start()
    try:
        open_before = sorted(
            s["ShardId"] for s in list_shards(kinesis, STREAM) if "EndingSequenceNumber" not in s["SequenceNumberRange"]
        )
        split = _reshard("--split", open_before[0])
        assert split["parents"] == [open_before[0]] and len(split["children"]) == 2
        assert (split["before"], split["after"]) == (configured, configured + 1)
        merged = _reshard("--merge", *split["children"])
        assert merged["parents"] == sorted(split["children"]) and len(merged["children"]) == 1
        assert merged["after"] == configured
        for report in (split, merged):
            assert all(row["drained"] for row in report["leases"]), report["leases"]
            assert {row["app"] for row in report["leases"]} == {"workplace-user-search"}
    finally:
        writer.join()
    assert_converges(stack, pipeline)
    # refused with the reason: a shard that is not open, shards that are not adjacent
    closed = cdc("reshard", STREAM, "--split", open_before[0])
    assert closed.returncode == 1 and "not an open shard" in closed.stderr
