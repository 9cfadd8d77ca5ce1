"""`cdc backfill` on the real stack: an app that starts mid-life (its stream position after 2,000
Users items were written) is brought up to date by a backfill that runs while 1,000 more
changes flow; `make verify` ends clean, and no item of the app's sink ever went back to an
older version (read from the sink table's own DynamoDB stream: every write is there)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime

import pytest

from consumers.verify import verify
from scripts.changes.generator import UserChangeGenerator
from scripts.changes.model import ChangeKind
from scripts.changes.writer import apply_changes
from services.clients import aws_client, aws_resource
from tests.cli import cdc, cdc_json
from tests.converge import assert_converges

pytestmark = pytest.mark.stack

APP, SINK = "workplace_user_v2", "WorkplaceUsers_V2"


def _sink_versions(stack, pipeline, prefix: str) -> list[tuple[tuple[str, str], int | None, int | None]]:
    """Every write to the sink's items of ``prefix`` users, in stream order per key: (key, old
    version, new version), from the sink table's DynamoDB stream."""
    streams = aws_client("dynamodbstreams", stack, pipeline.region)
    arn = aws_client("dynamodb", stack, pipeline.region).describe_table(TableName=SINK)["Table"]["LatestStreamArn"]
    writes = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            for record in page["Records"]:
                image = record["dynamodb"]
                key = (image["Keys"]["WorkplaceId"]["S"], image["Keys"]["UserId"]["S"])
                if key[1].startswith(prefix):
                    old, new = (int(image[i]["Version"]["N"]) if i in image else None for i in ("OldImage", "NewImage"))
                    writes.append((key, old, new))
            if not page["Records"] and "EndingSequenceNumber" not in shard["SequenceNumberRange"]:
                break
            iterator = page.get("NextShardIterator")
    return writes


def test_a_backfill_under_concurrent_changes_converges_and_never_moves_an_item_back(stack, pipeline):
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    prefix = f"bf-{uuid.uuid4().hex[:6]}-"
    generator = UserChangeGenerator(users=2_000, seed=17, prefix=prefix)
    assert_converges(stack, pipeline)

    # GIVEN 2,000 users written while the app does not exist yet
    assert cdc("stop", APP).returncode == 0
    created = list(generator.creations())
    apply_changes(users, iter(created), total=len(created), progress=False, batch_size=25, concurrency=4)
    time.sleep(5)  # relayed to the stream (the relay polls every 50-250 ms)
    # AND the app started after them: a replay from now is a new start of it at this point
    (replay,) = cdc_json("replay", APP, "--at", datetime.now(UTC).isoformat())
    (report,) = [r for r in verify(stack, pipeline) if r.sink.startswith(SINK)]
    missing_before = len(report.missing)
    assert missing_before > 1_000, f"the app should lack the users written before it started: {report}"

    # WHEN it is backfilled while 1,000 changes of those users flow
    changes = list(generator.changes(1_000))
    writer = threading.Thread(
        target=apply_changes, args=(users, iter(changes)), kwargs={"total": len(changes), "progress": False}
    )
    writer.start()
    result = cdc("backfill", APP, "--segments", "4", "--json")
    writer.join()
    assert result.returncode == 0, result.stdout + result.stderr
    (backfill,) = json.loads(result.stdout)
    print(f"\nbackfill: {backfill}; replay at start: {replay}")

    # THEN every sink converges
    assert_converges(stack, pipeline)
    # (the scan reads every user not deleted before its segment got to it)
    deleted = sum(1 for change in changes if change.kind is ChangeKind.DELETE)
    assert backfill["items"] >= len(created) - deleted and backfill["applied"] >= missing_before // 2, backfill
    assert backfill["dead_lettered"] == 0
    # AND no item of the sink ever went back to an older version
    writes = _sink_versions(stack, pipeline, prefix)
    assert len(writes) >= missing_before
    regressions = [(key, old, new) for key, old, new in writes if old is not None and new is not None and new < old]
    assert not regressions, regressions[:10]
    # (the writes of each key, in order: versions never decrease)
    last = defaultdict(int)
    for key, _old, new in writes:
        if new is not None:
            assert new >= last[key], (key, last[key], new)
            last[key] = new
