"""The sink adapters against the real servers: version guards, tombstones, stale outcomes.

Every interleaving of a key's writes must end at the newest version; an older write arriving
late is refused (counted stale) and a delete keeps a tombstone that an older upsert cannot
overwrite. These are the guarantees the consumers' correctness rests on.
"""

from __future__ import annotations

import itertools
import uuid

import pytest

from consumers.shared.planning import Delete, Upsert, WriteCounts
from consumers.sinks.dynamodb import TOMBSTONE_ATTRIBUTE, DynamoDbSink, DynamoDbSinkConfig
from consumers.sinks.opensearch import OpenSearchSink, OpenSearchSinkConfig
from targets.clients import aws_client, opensearch_client

pytestmark = pytest.mark.stack

# One item's history: created at 1, updated at 2 and 3, deleted (REMOVE carries version 3).
HISTORY = ("upsert1", "upsert2", "upsert3", "delete3")


def _writes(key: dict, names) -> list:
    made = {
        "upsert1": Upsert(key, {"Name": "one"}, 1),
        "upsert2": Upsert(key, {"Name": "two"}, 2),
        "upsert3": Upsert(key, {"Name": "three"}, 3),
        "delete3": Delete(key, 3),
    }
    return [made[n] for n in names]


@pytest.fixture()
def ddb_sink(stack, pipeline):
    table = pipeline.table("AppUsers_V2")
    sink = DynamoDbSink(
        aws_client("dynamodb", stack, pipeline.region),
        DynamoDbSinkConfig(table.name, ttl_attribute=table.ttl_attribute, max_workers=1),
    )
    yield sink
    sink.close()


@pytest.mark.parametrize("order", sorted(set(itertools.permutations(HISTORY))))
def test_dynamodb_sink_converges_to_the_tombstone_in_any_order(ddb_sink, stack, pipeline, order):
    key = {"UserId": f"sink-{uuid.uuid4().hex[:10]}"}
    counts = WriteCounts()
    for write in _writes(key, order):
        counts += ddb_sink.write([write])
    for write in _writes(key, order):  # and a full replay changes nothing
        assert ddb_sink.write([write]) == WriteCounts(stale=1) or isinstance(write, Delete)
    item = aws_client("dynamodb", stack, pipeline.region).get_item(
        TableName="AppUsers_V2", Key={"UserId": {"S": key["UserId"]}}, ConsistentRead=True
    )["Item"]
    assert item[TOMBSTONE_ATTRIBUTE] == {"BOOL": True} and item["Version"] == {"N": "3"}
    assert "Name" not in item and int(item["ExpiresAt"]["N"]) > 0
    assert counts.applied + counts.stale == 4 and counts.applied >= 1


def test_dynamodb_sink_applies_only_newer_upserts(ddb_sink, stack, pipeline):
    key = {"UserId": f"sink-{uuid.uuid4().hex[:10]}"}
    assert ddb_sink.write(_writes(key, ["upsert2"])) == WriteCounts(applied=1)
    assert ddb_sink.write(_writes(key, ["upsert1"])) == WriteCounts(stale=1)
    assert ddb_sink.write(_writes(key, ["upsert2"])) == WriteCounts(stale=1)
    assert ddb_sink.write(_writes(key, ["upsert3"])) == WriteCounts(applied=1)
    item = aws_client("dynamodb", stack, pipeline.region).get_item(
        TableName="AppUsers_V2", Key={"UserId": {"S": key["UserId"]}}, ConsistentRead=True
    )["Item"]
    assert item["Name"] == {"S": "three"} and item["Version"] == {"N": "3"}
    assert ddb_sink.write([Delete(key, 3)]) == WriteCounts(applied=1)  # leave no live item behind


@pytest.fixture()
def search_sink(stack):
    return OpenSearchSink(
        opensearch_client(stack), OpenSearchSinkConfig("workplace-users-v2", document_id=lambda k: k["UserId"])
    )


@pytest.mark.parametrize(
    "order",
    [
        ("upsert3", "upsert1", "delete3", "upsert2"),
        ("delete3", "upsert1", "upsert2", "upsert3"),
        ("upsert1", "upsert2", "upsert3", "delete3"),
    ],
)
def test_opensearch_sink_external_versions_keep_the_delete(search_sink, stack, order):
    key = {"UserId": f"sink-{uuid.uuid4().hex[:10]}"}
    writes = [
        w if isinstance(w, Delete) else Upsert(w.key, {"Title": w.document["Name"]}, w.version)
        for w in _writes(key, order)
    ]
    counts = WriteCounts()
    for write in writes:  # one bulk request each, in this order
        counts += search_sink.write([write])
    search = opensearch_client(stack)
    assert search.get(index="workplace-users-v2", id=key["UserId"], ignore=[404])["found"] is False
    assert counts.applied + counts.stale == 4


def test_opensearch_sink_keeps_the_newest_of_a_shuffled_bulk(search_sink, stack):
    key = {"UserId": f"sink-{uuid.uuid4().hex[:10]}"}
    writes = [Upsert(key, {"Title": name}, version) for name, version in (("b", 2), ("c", 3), ("a", 1))]
    counts = search_sink.write(writes)
    assert counts == WriteCounts(applied=2, stale=1)
    doc = opensearch_client(stack).get(index="workplace-users-v2", id=key["UserId"])
    assert doc["_version"] == 3 and doc["_source"]["Title"] == "c"
    assert search_sink.write([Delete(key, 3)]) == WriteCounts(applied=1)  # leave no document behind
