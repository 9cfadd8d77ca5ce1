"""The sink contract (tests/sink_contract.py) on the memory sink and on the DynamoDB sink over a
client double, both write strategies: no server. The real sinks keep the same contract in
tests/integration/test_sink_contract_real.py."""

from __future__ import annotations

import itertools

import pytest

from consumers.shared.codec import decode_image
from consumers.sinks import dynamodb as ddb
from consumers.sinks.memory import InMemorySink
from tests.fake_dynamodb import FakeDynamoDb
from tests.sink_contract import Harness, SinkContract, Stored, TransactionsContract, TransactionsHarness

_keys = itertools.count()


def _new_key() -> dict[str, str]:
    return {"k": f"key-{next(_keys)}"}


def _memory_harness() -> Harness:
    sink = InMemorySink()

    def stored(key):
        item = sink.get(key)
        if item is None:
            return None
        return Stored(None if item.is_tombstone else item.document.get("Name"), item.version, item.is_tombstone)

    return Harness(sink, _new_key, stored)


def _stored_in(client: FakeDynamoDb):
    def stored(key):
        raw = client.items.get(key["k"])
        if raw is None:
            return None
        item = decode_image(raw)
        deleted = ddb.TOMBSTONE_ATTRIBUTE in item
        return Stored(None if deleted else item.get("Name"), int(item["Version"]), deleted)

    return stored


def _dynamodb_harness(strategy: ddb.WriteStrategy) -> Harness:
    client = FakeDynamoDb()
    sink = ddb.DynamoDbSink(client, ddb.DynamoDbSinkConfig("T", write_strategy=strategy, max_workers=1))
    return Harness(sink, _new_key, _stored_in(client))


HARNESSES = {
    "memory": _memory_harness,
    **{f"dynamodb-{s.value}": (lambda s=s: _dynamodb_harness(s)) for s in ddb.WriteStrategy},
}


@pytest.fixture(params=sorted(HARNESSES))
def harness(request):
    return HARNESSES[request.param]()


class TestSinkContract(SinkContract):
    pass


@pytest.fixture()
def txn():
    client, sinks = FakeDynamoDb(), []

    def make_sink(strategy, workers=1):
        sinks.append(
            ddb.DynamoDbSink(client, ddb.DynamoDbSinkConfig("T", write_strategy=strategy, max_workers=workers))
        )
        return sinks[-1]

    yield TransactionsHarness(make_sink, _new_key, lambda: [len(t) for t in client.transactions], _stored_in(client))
    for sink in sinks:
        sink.close()


class TestTransactionsContract(TransactionsContract):
    pass
