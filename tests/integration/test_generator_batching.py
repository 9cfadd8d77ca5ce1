"""The change generator's batched writes against a real DynamoDB Local (a private one).

A batched run (rounds of distinct keys, conditional TransactWriteItems, several at once) must
leave the table as the generator believes it is, and the table's DynamoDB Streams must hold one
record per change, each key's records in the generated order (INSERT / MODIFY / REMOVE with
their images), deletes and re-creations of one key included.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import uuid
from collections import defaultdict
from decimal import Decimal

import pytest
from boto3.dynamodb.types import TypeDeserializer

from infra.local.components import components, wait_healthy
from infra.local.preflight import free_port
from infra.local.provision import _ensure_table
from scripts.changes.generator import UserChangeGenerator
from scripts.changes.model import ChangeKind, UserChange
from scripts.changes.writer import apply_changes, holds, write_change
from services.clients import aws_client, aws_resource
from services.config import REPO_ROOT, StackConfig

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def private_dynamodb(tmp_path_factory, pipeline):
    """DynamoDB Local on its own port and data folder, with `Users` provisioned as the stack does
    it on DynamoDB Local (DynamoDB Streams, NEW_AND_OLD_IMAGES)."""
    env = {"CDC_STATE_DIR": str(tmp_path_factory.mktemp("ddb-state")), "CDC_DYNAMODB_PORT": str(free_port())}
    config = StackConfig.from_env(env)
    component = components(config, pipeline)[0]
    component.prepare()
    component.process.start()
    try:
        wait_healthy(component, 60)
        _ensure_table(aws_client("dynamodb", config, pipeline.region), pipeline.table("Users"), True, lambda _: None)
        yield config, env
    finally:
        component.process.kill()


def _plain(value):
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _stream_by_key(config: StackConfig, region: str, table) -> dict[str, list[dict]]:
    """Every record of the table's DynamoDB Streams, by key, in stream order."""
    streams = aws_client("dynamodbstreams", config, region)
    shards = streams.describe_stream(StreamArn=table.latest_stream_arn)["StreamDescription"]["Shards"]
    records = []
    for shard in shards:
        iterator = streams.get_shard_iterator(
            StreamArn=table.latest_stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            records.extend(page["Records"])
            iterator = page.get("NextShardIterator") if page["Records"] else None
    by_key: dict[str, list[dict]] = defaultdict(list)
    for record in sorted(records, key=lambda r: int(r["dynamodb"]["SequenceNumber"])):
        by_key[record["dynamodb"]["Keys"]["UserId"]["S"]].append(record)
    return by_key


def _image(image: dict) -> dict:
    """A stream image as plain Python values (DynamoDB Local writes an empty map as `{}`)."""
    deserialize = TypeDeserializer().deserialize
    return {name: {} if value == {} else _plain(deserialize(value)) for name, value in image.items()}


def _version(image: dict | None) -> int | None:
    return None if image is None else int(image["Version"]["N"])


def test_a_batched_run_leaves_the_generators_state_and_streams_each_keys_changes_in_order(private_dynamodb, pipeline):
    config, _ = private_dynamodb
    table = aws_resource("dynamodb", config, pipeline.region).Table("Users")
    # GIVEN changes over few keys: many per key, deletes and re-creations of the same key among them
    generator = UserChangeGenerator(users=12, seed=17, prefix=f"gb-{uuid.uuid4().hex[:6]}-")
    changes = list(generator.changes(900))
    by_key: dict[str, list[UserChange]] = defaultdict(list)
    for change in changes:
        by_key[change.user_id].append(change)
    recreated = [
        key
        for key, mine in by_key.items()
        if any(a.kind is ChangeKind.DELETE and b.kind is ChangeKind.CREATE for a, b in itertools.pairwise(mine))
    ]
    assert len(recreated) >= 5
    # WHEN they are written in batches of 25 distinct keys, 4 batches at a time
    written = apply_changes(table, iter(changes), total=len(changes), progress=False, batch_size=25, concurrency=4)
    # THEN the table holds exactly what the generator believes
    assert written == len(changes)
    stored = {item["UserId"]: _plain(item) for item in table.scan(ConsistentRead=True)["Items"]}
    assert stored == {key: _plain(item) for key, item in generator.state.items()}
    # AND the stream has one record per change, each key's in the generated order, with the images
    stream = _stream_by_key(config, pipeline.region, table)
    assert set(stream) == set(by_key)
    for key, mine in by_key.items():
        records = stream[key]
        expected = [
            ({ChangeKind.CREATE: "INSERT", ChangeKind.DELETE: "REMOVE"}.get(c.kind, "MODIFY"), c.version) for c in mine
        ]
        got = [
            (r["eventName"], _version(r["dynamodb"].get("NewImage")) or _version(r["dynamodb"].get("OldImage")))
            for r in records
        ]
        assert got == expected, key
        previous = None
        for change, record in zip(mine, records, strict=True):
            images = record["dynamodb"]
            assert _version(images.get("OldImage")) == previous, key  # each record's old image is the one before
            if change.item is not None:
                assert _image(images["NewImage"]) == _plain(change.item), key
            previous = None if change.item is None else change.version


def test_the_command_writes_batched_runs_that_continue_each_other(private_dynamodb):
    # GIVEN the command with its default batching; WHEN it runs twice over the same keys
    _, env = private_dynamodb
    runs = [
        subprocess.run(
            [sys.executable, "-m", "scripts.generate_changes", "--changes", "400", "--users", "15", "--seed", str(seed)]
            + ["--no-progress"],
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        for seed in (1, 2)
    ]
    # THEN both succeed: the second continued from the versions the first left (its conditions held)
    for run in runs:
        assert run.returncode == 0, run.stderr
        assert run.stderr.startswith("wrote 400 changes in "), run.stderr


def test_a_lost_answer_is_checked_through_the_table_resource(private_dynamodb, pipeline):
    """`write_change`'s read-back (after an outage ate the answer of a write that may have been
    applied) reads through the Table resource, whose client takes Python values (the wire
    format there failed with a ValidationException under `make chaos`)."""
    config, _ = private_dynamodb
    table = aws_resource("dynamodb", config, pipeline.region).Table("Users")
    generator = UserChangeGenerator(users=1, seed=3, prefix=f"lost-{uuid.uuid4().hex[:6]}-")
    (created,) = generator.creations()
    assert not holds(table, created)
    write_change(table, created)
    assert holds(table, created)
    (changed,) = generator.changes(1)
    assert not holds(table, changed)  # another version, or a delete not made yet
