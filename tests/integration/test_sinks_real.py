"""The sink adapters against the real servers: version guards, tombstones, stale outcomes.

Every interleaving of a key's writes must end at the newest version; an older write arriving
late is refused (counted stale) and a delete keeps a tombstone that an older upsert cannot
overwrite. These are the guarantees the consumers' correctness rests on. The DynamoDB sink's
tests run with both write strategies (conditional puts, transactions).
"""

from __future__ import annotations

import itertools
import random
import uuid

import pytest

from consumers.shared.errors import SinkRejectedWrite
from consumers.shared.planning import Delete, Upsert, WriteCounts
from consumers.sinks.dynamodb import TOMBSTONE_ATTRIBUTE, DynamoDbSink, DynamoDbSinkConfig, WriteStrategy
from consumers.sinks.opensearch import OpenSearchSink, OpenSearchSinkConfig
from services.clients import aws_client, opensearch_client

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


class CountingClient:
    """The real client, counting the calls the sink makes."""

    def __init__(self, client):
        self._client = client
        self.transactions: list[int] = []  # actions per TransactWriteItems call
        self.puts = 0

    def transact_write_items(self, **kwargs):
        self.transactions.append(len(kwargs["TransactItems"]))
        return self._client.transact_write_items(**kwargs)

    def put_item(self, **kwargs):
        self.puts += 1
        return self._client.put_item(**kwargs)


STRATEGIES = list(WriteStrategy)


@pytest.fixture(params=STRATEGIES, ids=[s.value for s in STRATEGIES])
def strategy(request):
    return request.param


@pytest.fixture()
def make_ddb_sink(stack, pipeline):
    table = pipeline.table("AppUsers_V2")
    sinks = []

    def make(strategy, workers=1):
        client = CountingClient(aws_client("dynamodb", stack, pipeline.region))
        config = DynamoDbSinkConfig(
            table.name, ttl_attribute=table.ttl_attribute, max_workers=workers, write_strategy=strategy
        )
        sinks.append(DynamoDbSink(client, config))
        return sinks[-1], client

    yield make
    for sink in sinks:
        sink.close()
    _remove_test_items(aws_client("dynamodb", stack, pipeline.region))


def _remove_test_items(ddb) -> None:
    """Remove every item these tests wrote (keys ``sink-...``) from AppUsers_V2: the table is the
    pipeline's, and an item without a source in Users is what `make verify` (and the stack and
    end-to-end tests after this module) report as extra."""
    kwargs: dict = {
        "TableName": "AppUsers_V2",
        "FilterExpression": "begins_with(UserId, :prefix)",
        "ExpressionAttributeValues": {":prefix": {"S": "sink-"}},
        "ProjectionExpression": "UserId",
        "ConsistentRead": True,
    }
    while True:
        page = ddb.scan(**kwargs)
        for item in page["Items"]:
            ddb.delete_item(TableName="AppUsers_V2", Key={"UserId": item["UserId"]})
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@pytest.fixture()
def ddb_sink(make_ddb_sink, strategy):
    return make_ddb_sink(strategy)[0]


def _item(stack, pipeline, key):
    return aws_client("dynamodb", stack, pipeline.region).get_item(
        TableName="AppUsers_V2", Key={"UserId": {"S": key["UserId"]}}, ConsistentRead=True
    )["Item"]


def _assert_tombstone_at_3(item):
    assert item[TOMBSTONE_ATTRIBUTE] == {"BOOL": True} and item["Version"] == {"N": "3"}
    assert "Name" not in item and int(item["ExpiresAt"]["N"]) > 0


@pytest.mark.parametrize("order", sorted(set(itertools.permutations(HISTORY))))
def test_dynamodb_sink_converges_to_the_tombstone_in_any_order(ddb_sink, stack, pipeline, order):
    key = {"UserId": f"sink-{uuid.uuid4().hex[:10]}"}
    counts = WriteCounts()
    for write in _writes(key, order):
        counts += ddb_sink.write([write])
    for write in _writes(key, order):  # and a full replay changes nothing
        assert ddb_sink.write([write]) == WriteCounts(stale=1) or isinstance(write, Delete)
    _assert_tombstone_at_3(_item(stack, pipeline, key))
    assert counts.applied + counts.stale == 4 and counts.applied >= 1


@pytest.mark.parametrize("order", sorted(set(itertools.permutations(HISTORY))))
def test_dynamodb_sink_converges_to_the_tombstone_from_one_batch_in_any_order(ddb_sink, stack, pipeline, order):
    key = {"UserId": f"sink-{uuid.uuid4().hex[:10]}"}
    counts = ddb_sink.write(_writes(key, order))
    _assert_tombstone_at_3(_item(stack, pipeline, key))
    assert counts.applied + counts.stale == 4 and counts.applied >= 1
    if ddb_sink.config.write_strategy is WriteStrategy.TRANSACTIONS:
        assert counts == WriteCounts(applied=1, stale=3)  # the newest write only: the delete


def test_dynamodb_sink_applies_only_newer_upserts(ddb_sink, stack, pipeline):
    key = {"UserId": f"sink-{uuid.uuid4().hex[:10]}"}
    assert ddb_sink.write(_writes(key, ["upsert2"])) == WriteCounts(applied=1)
    assert ddb_sink.write(_writes(key, ["upsert1"])) == WriteCounts(stale=1)
    assert ddb_sink.write(_writes(key, ["upsert2"])) == WriteCounts(stale=1)
    assert ddb_sink.write(_writes(key, ["upsert3"])) == WriteCounts(applied=1)
    item = _item(stack, pipeline, key)
    assert item["Name"] == {"S": "three"} and item["Version"] == {"N": "3"}
    assert ddb_sink.write([Delete(key, 3)]) == WriteCounts(applied=1)  # deletes win the tie
    assert ddb_sink.write([Upsert(key, {"Name": "late"}, 3)]) == WriteCounts(stale=1)  # and keep it
    _assert_tombstone_at_3(_item(stack, pipeline, key))


def test_both_strategies_count_a_batch_with_one_write_per_key_alike(make_ddb_sink):
    rng = random.Random(11)
    plan = [(rng.choice([None, 1, 2, 3]), rng.random() < 0.3, rng.randint(1, 4)) for _ in range(150)]
    counts = {}
    for strategy in STRATEGIES:
        sink, _ = make_ddb_sink(strategy, workers=4)
        run = uuid.uuid4().hex[:8]
        keys = [{"UserId": f"sink-{run}-{i}"} for i in range(len(plan))]
        setup = [
            Upsert(key, {"Name": "before"}, stored) for key, (stored, _, _) in zip(keys, plan, strict=True) if stored
        ]
        assert sink.write(setup) == WriteCounts(applied=len(setup))
        counts[strategy] = sink.write(
            [
                Delete(key, v) if is_delete else Upsert(key, {"Name": "after"}, v)
                for key, (_, is_delete, v) in zip(keys, plan, strict=True)
            ]
        )
    assert counts[WriteStrategy.TRANSACTIONS] == counts[WriteStrategy.CONDITIONAL_PUTS]
    assert counts[WriteStrategy.TRANSACTIONS].stale > 0 and counts[WriteStrategy.TRANSACTIONS].applied > 0


def test_a_transaction_collapses_a_key_to_its_newest_write(make_ddb_sink, stack, pipeline):
    sink, client = make_ddb_sink(WriteStrategy.TRANSACTIONS)
    key, other = ({"UserId": f"sink-{uuid.uuid4().hex[:10]}"} for _ in range(2))
    writes = [*_writes(key, ["upsert1", "upsert3", "upsert2"]), Upsert(other, {"Name": "x"}, 1)]
    assert sink.write(writes) == WriteCounts(applied=2, stale=2)
    assert client.transactions == [2] and client.puts == 0  # one action per key
    assert _item(stack, pipeline, key)["Name"] == {"S": "three"}


def test_a_cancelled_transaction_counts_the_stale_write_and_applies_the_rest(make_ddb_sink, stack, pipeline):
    sink, client = make_ddb_sink(WriteStrategy.TRANSACTIONS)
    old, *fresh = ({"UserId": f"sink-{uuid.uuid4().hex[:10]}"} for _ in range(4))
    assert sink.write([Upsert(old, {"Name": "newer"}, 5)]) == WriteCounts(applied=1)
    counts = sink.write(
        [Upsert(fresh[0], {}, 1), Upsert(old, {"Name": "older"}, 2), *(Upsert(k, {}, 1) for k in fresh[1:])]
    )
    assert counts == WriteCounts(applied=3, stale=1)
    assert client.transactions == [1, 4, 3]  # the set-up, the cancelled one, the rest again
    assert _item(stack, pipeline, old)["Name"] == {"S": "newer"}
    assert all(_item(stack, pipeline, k)["Version"] == {"N": "1"} for k in fresh)


@pytest.mark.parametrize("workers", [1, 4])
def test_more_than_100_writes_go_in_several_transactions(make_ddb_sink, workers):
    sink, client = make_ddb_sink(WriteStrategy.TRANSACTIONS, workers)
    run = uuid.uuid4().hex[:8]
    writes = [Upsert({"UserId": f"sink-{run}-{i}"}, {"Name": "n"}, 1) for i in range(230)]
    assert sink.write(writes) == WriteCounts(applied=230)
    assert sorted(client.transactions) == [30, 100, 100]
    assert sink.write(writes) == WriteCounts(stale=230)  # and a replay finds them all


def test_an_item_too_large_is_rejected_alone(ddb_sink, stack, pipeline):
    small, large = ({"UserId": f"sink-{uuid.uuid4().hex[:10]}"} for _ in range(2))
    too_large = Upsert(large, {"Name": "x" * 410_000}, 1)
    with pytest.raises(SinkRejectedWrite) as caught:
        ddb_sink.write([Upsert(small, {"Name": "fits"}, 1), too_large])
    assert [w for w, _ in caught.value.rejections] == [too_large]
    assert "size" in caught.value.reason
    assert caught.value.counts == WriteCounts(applied=1)
    assert _item(stack, pipeline, small)["Name"] == {"S": "fits"}


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
