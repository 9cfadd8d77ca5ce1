"""The sink contract (tests/sink_contract.py) on the real servers: the DynamoDB sink (both write
strategies) on DynamoDB Local's AppUsers_V2 and the OpenSearch sink on the workplace-users-v2
index; and what only a real server shows (an item over DynamoDB's 400 KB).

The test items' keys start with ``sink-``; they are removed afterwards, since an item without a
source in Users is what `make verify` (and the tests after this module) report as extra.
"""

from __future__ import annotations

import uuid

import pytest

from consumers.shared.codec import decode_image
from consumers.shared.planning import APPLIED, Outcome, Skip, Upsert
from consumers.sinks.dynamodb import TOMBSTONE_ATTRIBUTE, DynamoDbSink, DynamoDbSinkConfig, WriteStrategy
from consumers.sinks.opensearch import OpenSearchSink, OpenSearchSinkConfig
from services.clients import aws_client, opensearch_client
from tests.sink_contract import Harness, SinkContract, Stored, TransactionsContract, TransactionsHarness

pytestmark = pytest.mark.stack

TABLE, INDEX = "AppUsers_V2", "workplace-users-v2"


def _new_key() -> dict[str, str]:
    return {"UserId": f"sink-{uuid.uuid4().hex[:12]}"}


class CountingClient:
    """The real client, counting the actions of each transaction the sink sends."""

    def __init__(self, client):
        self._client = client
        self.transactions: list[int] = []

    def transact_write_items(self, **kwargs):
        self.transactions.append(len(kwargs["TransactItems"]))
        return self._client.transact_write_items(**kwargs)

    def put_item(self, **kwargs):
        return self._client.put_item(**kwargs)


@pytest.fixture(scope="module")
def ddb(stack, pipeline):
    client = aws_client("dynamodb", stack, pipeline.region)
    yield client
    _remove_test_items(client)


def _remove_test_items(client) -> None:
    kwargs: dict = {
        "TableName": TABLE,
        "FilterExpression": "begins_with(UserId, :prefix)",
        "ExpressionAttributeValues": {":prefix": {"S": "sink-"}},
        "ProjectionExpression": "UserId",
        "ConsistentRead": True,
    }
    while True:
        page = client.scan(**kwargs)
        for item in page["Items"]:
            client.delete_item(TableName=TABLE, Key={"UserId": item["UserId"]})
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _stored_in_table(ddb):
    def stored(key):
        raw = ddb.get_item(TableName=TABLE, Key={"UserId": {"S": key["UserId"]}}, ConsistentRead=True).get("Item")
        if raw is None:
            return None
        item = decode_image(raw)
        deleted = TOMBSTONE_ATTRIBUTE in item
        if deleted:  # the tombstone expires: its TTL attribute is set
            assert int(item["ExpiresAt"]) > 0 and "Name" not in item
        return Stored(None if deleted else item.get("Name"), int(item["Version"]), deleted)

    return stored


def _make_ddb_sink(ddb, pipeline, made):
    table = pipeline.table(TABLE)

    def make(strategy, workers=1):
        config = DynamoDbSinkConfig(
            table.name, ttl_attribute=table.ttl_attribute, max_workers=workers, write_strategy=strategy
        )
        made.append(DynamoDbSink(ddb, config))
        return made[-1]

    return make


@pytest.fixture(scope="module")
def search(stack):
    client = opensearch_client(stack)
    yield client
    # leave no test document behind (verify would count them as extra)
    for doc_id in sorted(_TitledSearchSink.written):
        client.delete(index=INDEX, id=doc_id, ignore=[404])
    client.indices.refresh(index=INDEX)


def _stored_in_index(search):
    def stored(key):
        doc = search.get(index=INDEX, id=key["UserId"], ignore=[404])
        if not doc.get("found"):
            # deleted (or never written: the contract asks only of keys it wrote): OpenSearch keeps
            # a deleted document's version for index.gc_deletes, and does not show it
            return Stored(None, None, True)
        return Stored(doc["_source"].get("Title"), doc["_version"], False)

    return stored


class _TitledSearchSink:
    """The OpenSearch sink, the contract's ``Name`` written as the index's ``Title`` (the strict
    mapping of workplace-users-v2 has no Name field)."""

    written: set[str] = set()

    def __init__(self, sink: OpenSearchSink) -> None:
        self._sink = sink

    def write(self, writes):
        self.written.update(w.key["UserId"] for w in writes if not isinstance(w, Skip))
        return self._sink.write(
            [Upsert(w.key, {"Title": w.document["Name"]}, w.version) if isinstance(w, Upsert) else w for w in writes]
        )


@pytest.fixture(params=["dynamodb-conditional-puts", "dynamodb-transactions", "opensearch"])
def harness(request, ddb, search, pipeline):
    made: list[DynamoDbSink] = []
    if request.param == "opensearch":
        sink = OpenSearchSink(search, OpenSearchSinkConfig(INDEX, document_id=lambda k: k["UserId"]))
        yield Harness(_TitledSearchSink(sink), _new_key, _stored_in_index(search))
        return
    strategy = WriteStrategy(request.param.removeprefix("dynamodb-"))
    yield Harness(_make_ddb_sink(ddb, pipeline, made)(strategy), _new_key, _stored_in_table(ddb))
    for sink in made:
        sink.close()


class TestSinkContract(SinkContract):
    pass


@pytest.fixture()
def txn(ddb, pipeline):
    counting, made = CountingClient(ddb), []
    yield TransactionsHarness(
        _make_ddb_sink(counting, pipeline, made), _new_key, lambda: counting.transactions, _stored_in_table(ddb)
    )
    for sink in made:
        sink.close()


class TestTransactionsContract(TransactionsContract):
    pass


@pytest.mark.parametrize("strategy", list(WriteStrategy), ids=[s.value for s in WriteStrategy])
def test_an_item_too_large_is_rejected_alone(ddb, pipeline, strategy):
    made: list[DynamoDbSink] = []
    sink = _make_ddb_sink(ddb, pipeline, made)(strategy)
    small, large = _new_key(), _new_key()
    answers = sink.write([Upsert(small, {"Name": "fits"}, 1), Upsert(large, {"Name": "x" * 410_000}, 1)])
    assert answers[0] == APPLIED and answers[1].outcome is Outcome.REJECTED and "size" in answers[1].reason
    assert _stored_in_table(ddb)(small) == Stored("fits", 1, False)
    sink.close()
