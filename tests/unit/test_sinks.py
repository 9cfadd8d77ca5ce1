"""Sink adapters: request building and response classification, with tiny fakes of the client
call. These test our code's requests and its reading of canned answers, not the servers.
Every DynamoDB sink test runs with both write strategies (the ``strategy`` fixture)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import orjson
import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
from opensearchpy.exceptions import ConnectionError as OsConnectionError
from opensearchpy.exceptions import TransportError

from consumers.shared.errors import SinkError
from consumers.shared.planning import APPLIED, STALE, Delete, Outcome, Skip, Upsert, WriteResult
from consumers.shared.records import decode_image
from consumers.sinks import SINK_FAILED
from consumers.sinks import dynamodb as ddb
from consumers.sinks import opensearch as osink
from consumers.sinks.dynamodb import TOMBSTONE_ATTRIBUTE, TOMBSTONE_TTL_ATTRIBUTE
from producer_config import ConfigError, load_pipeline
from services.config import StackConfig
from tests.fake_dynamodb import FakeDynamoDb, client_error
from tests.unit.conftest import APP_DEAD_LETTER, APP_HEAD, APP_SINK

# --- DynamoDB ----------------------------------------------------------------------------------

CONFIG = ddb.DynamoDbSinkConfig(table_name="Memberships", tombstone_retention=timedelta(hours=48))
NOW = 1_800_000_000.5
PIPELINE = load_pipeline()


def test_put_request_is_guarded_by_the_version():
    write = Upsert(
        {"UserId": "u1", "WorkplaceId": "w1"},
        {"Name": "ann", "Score": Decimal("1.5"), "Blob": b"\x00", "Version": 1},
        9,
    )
    request = ddb.build_put_request(write, CONFIG)
    assert request["TableName"] == "Memberships"
    assert decode_image(request["Item"]) == {
        "Name": "ann",
        "Score": Decimal("1.5"),
        "Blob": b"\x00",
        "UserId": "u1",
        "WorkplaceId": "w1",
        "Version": 9,
    }
    assert request["Item"]["Blob"] == {"B": b"\x00"}  # raw bytes for the boto3 client
    assert request["ConditionExpression"] == "attribute_not_exists(#pk) OR #version < :version"
    assert request["ExpressionAttributeNames"] == {"#pk": "UserId", "#version": "Version"}
    assert request["ExpressionAttributeValues"] == {":version": {"N": "9"}}


def test_tombstone_request_keeps_the_key_and_expires():
    request = ddb.build_tombstone_request(Delete({"UserId": "u1"}, 12), CONFIG, NOW)
    assert decode_image(request["Item"]) == {
        "UserId": "u1",
        "Version": 12,
        TOMBSTONE_ATTRIBUTE: True,
        TOMBSTONE_TTL_ATTRIBUTE: int(NOW + 48 * 3600),
    }
    assert request["ConditionExpression"] == "attribute_not_exists(#pk) OR #version <= :version"
    assert request["ExpressionAttributeValues"] == {":version": {"N": "12"}}


@pytest.mark.parametrize(
    ("exc", "disposition"),
    [
        (client_error("ConditionalCheckFailedException"), Outcome.STALE),
        (client_error("ProvisionedThroughputExceededException"), Outcome.RETRY),
        (client_error("ThrottlingException"), Outcome.RETRY),
        (client_error("RequestLimitExceeded"), Outcome.RETRY),
        (client_error("InternalServerError", 500), Outcome.RETRY),
        (client_error("SomethingNew", 503), Outcome.RETRY),
        (client_error("ValidationException"), Outcome.REJECTED),
        (client_error("ItemCollectionSizeLimitExceededException"), Outcome.REJECTED),
        (client_error("ResourceNotFoundException"), SINK_FAILED),
        (client_error("AccessDeniedException"), SINK_FAILED),
        (EndpointConnectionError(endpoint_url="http://localhost:1"), Outcome.RETRY),
        (ReadTimeoutError(endpoint_url="http://localhost:1"), Outcome.RETRY),
        (RuntimeError("bug"), SINK_FAILED),
    ],
)
def test_classify_dynamodb_errors(exc, disposition):
    assert ddb.classify_error(exc) is disposition


STRATEGIES = list(ddb.WriteStrategy)


@pytest.fixture(params=STRATEGIES, ids=[s.value for s in STRATEGIES])
def strategy(request):
    return request.param


def make_sink(client, strategy, workers=8, **kwargs):
    config = ddb.DynamoDbSinkConfig("T", max_workers=workers, write_strategy=strategy, **kwargs)
    return ddb.DynamoDbSink(client, config, clock=lambda: NOW)


@pytest.mark.parametrize("workers", [1, 4])
def test_dynamodb_sink_counts_outcomes(workers, strategy):
    client = FakeDynamoDb({"stale": client_error("ConditionalCheckFailedException")})
    sink = make_sink(client, strategy, workers)
    try:
        results = sink.write(
            [Upsert({"k": "a"}, {}, 1), Delete({"k": "b"}, 2), Upsert({"k": "stale"}, {}, 1), Skip("x")]
        )
    finally:
        sink.close()
    assert [r.outcome.value for r in results] == ["applied", "applied", "stale", "skipped"]
    assert set(client.sent()) == {("a", 1), ("b", 2), ("stale", 1)}
    assert set(client.items) == {"a", "b"}


def test_dynamodb_sink_answers_retry_for_throttled_writes_and_applies_the_rest(strategy):
    client = FakeDynamoDb({"slow": client_error("ThrottlingException"), "bad": client_error("ValidationException")})
    sink = make_sink(client, strategy, 2)
    results = sink.write([Upsert({"k": "ok"}, {}, 1), Upsert({"k": "slow"}, {}, 1), Upsert({"k": "bad"}, {}, 1)])
    sink.close()
    assert [r.outcome for r in results] == [Outcome.APPLIED, Outcome.RETRY, Outcome.REJECTED]
    assert "Throttling" in results[1].reason
    assert set(client.items) == {"ok"}  # the rest of the batch was applied


def test_dynamodb_sink_rejects_invalid_writes_for_dead_lettering(strategy):
    client = FakeDynamoDb({"bad": client_error("ValidationException")})
    sink = make_sink(client, strategy, 1)
    bad = Upsert({"k": "bad"}, {}, 1)
    floaty = Upsert({"k": "float"}, {"x": 1.5}, 1)
    results = sink.write([Upsert({"k": "ok"}, {}, 1), bad, floaty])
    assert [r.outcome for r in results] == [Outcome.APPLIED, Outcome.REJECTED, Outcome.REJECTED]
    assert "ValidationException" in results[1].reason and "float is not supported" in results[2].reason
    assert "float" not in {key for key, _ in client.sent()}  # the float document never reached the client
    assert set(client.items) == {"ok"}


def test_dynamodb_sink_fails_on_configuration_errors(strategy):
    sink = make_sink(FakeDynamoDb({"a": client_error("ResourceNotFoundException")}), strategy)
    with pytest.raises(SinkError, match="ResourceNotFoundException"):
        sink.write([Upsert({"k": "a"}, {}, 1)])


@pytest.mark.parametrize(
    ("stored", "write", "outcome"),
    [
        (None, Upsert({"k": "x"}, {}, 5), "applied"),
        (4, Upsert({"k": "x"}, {}, 5), "applied"),
        (5, Upsert({"k": "x"}, {}, 5), "stale"),  # upserts lose ties
        (6, Upsert({"k": "x"}, {}, 5), "stale"),
        (5, Delete({"k": "x"}, 5), "applied"),  # deletes win ties
        (6, Delete({"k": "x"}, 5), "stale"),
        ("unversioned", Upsert({"k": "x"}, {}, 9), "stale"),  # an item the sink did not write
    ],
)
def test_the_version_guard(stored, write, outcome, strategy):
    client = FakeDynamoDb()
    if stored == "unversioned":
        client.items["x"] = {"k": {"S": "x"}}
    elif stored is not None:
        client.items["x"] = {"k": {"S": "x"}, "Version": {"N": str(stored)}}
    assert make_sink(client, strategy).write([write]) == [WriteResult(Outcome(outcome))]


# --- DynamoDB transactions -------------------------------------------------------------------


def test_a_transaction_collapses_each_key_to_its_newest_write_comparing_numbers_by_value():
    client = FakeDynamoDb()
    writes = [
        Upsert({"k": "a"}, {"Name": "a1"}, 1),
        Upsert({"k": "b"}, {"Name": "b7"}, 7),
        Upsert({"k": "a"}, {"Name": "a3"}, 3),
        Delete({"k": "a"}, 3),  # wins the tie with upsert 3
        Upsert({"k": "a"}, {"Name": "a2"}, 2),
        Delete({"k": "a"}, 3),  # an identical delete: its tombstone is the one written
        Upsert({"k": 5}, {}, 1),
        Upsert({"k": Decimal("5.0")}, {}, 2),  # the same item as {"k": 5}
    ]
    results = make_sink(client, ddb.WriteStrategy.TRANSACTIONS).write(writes)
    # a (twice), b, 5; a1, a3, a2, 5@1 superseded
    assert results == [STALE, APPLIED, STALE, APPLIED, STALE, APPLIED, STALE, APPLIED]
    assert len(client.transactions) == 1
    assert sorted(client.sent(), key=str) == [("5.0", 2), ("a", 3), ("b", 7)]
    assert decode_image(client.items["a"])[TOMBSTONE_ATTRIBUTE] is True


def test_transactions_stay_under_4_mb_of_items():
    client = FakeDynamoDb()
    writes = [Upsert({"k": f"k{i}"}, {"Blob": b"x" * 390_000}, 1) for i in range(12)]
    assert make_sink(client, ddb.WriteStrategy.TRANSACTIONS).write(writes) == [APPLIED] * 12
    assert [len(t) for t in client.transactions] == [10, 2]


def test_a_rejected_newest_write_gives_way_to_the_next_newest():
    client = FakeDynamoDb({"a@3": client_error("ValidationException")})
    bad = Upsert({"k": "a"}, {}, 3)
    results = make_sink(client, ddb.WriteStrategy.TRANSACTIONS).write(
        [Upsert({"k": "a"}, {}, 1), bad, Upsert({"k": "a"}, {}, 2)]
    )
    # 3 rejected; then 2 applied, and 1 superseded by it
    assert results == [STALE, WriteResult.rejected("ValidationError: ValidationException"), APPLIED]
    assert decode_image(client.items["a"])["Version"] == 2


def test_a_transaction_refused_as_a_whole_is_applied_put_by_put():
    client = FakeDynamoDb({"huge": client_error("ValidationException")}, refuse_transactions_with={"huge"})
    huge = Upsert({"k": "huge"}, {}, 1)
    results = make_sink(client, ddb.WriteStrategy.TRANSACTIONS).write([Upsert({"k": "a"}, {}, 1), huge])
    assert [r.outcome for r in results] == [Outcome.APPLIED, Outcome.REJECTED]
    assert len(client.transactions) == 1 and [p["Item"]["k"]["S"] for p in client.puts] == ["a", "huge"]


def test_a_cancellation_without_reasons_is_applied_put_by_put():
    client = FakeDynamoDb({"stale": client_error("ConditionalCheckFailedException")}, reasons=False)
    results = make_sink(client, ddb.WriteStrategy.TRANSACTIONS).write(
        [Upsert({"k": "a"}, {}, 1), Upsert({"k": "stale"}, {}, 1)]
    )
    assert results == [APPLIED, STALE]
    assert len(client.transactions) == 1 and len(client.puts) == 2


def test_a_transaction_conflict_is_answered_retry_and_the_rest_applied():
    client = FakeDynamoDb({"busy": client_error("TransactionConflictException")})
    results = make_sink(client, ddb.WriteStrategy.TRANSACTIONS).write(
        [Upsert({"k": "a"}, {}, 1), Upsert({"k": "busy"}, {}, 2), Upsert({"k": "busy"}, {}, 1)]
    )
    assert [r.outcome for r in results] == [Outcome.APPLIED, Outcome.RETRY, Outcome.RETRY]
    assert "TransactionConflict" in results[1].reason
    assert set(client.items) == {"a"}


def test_transaction_request_failures_are_classified_as_put_failures():
    client = FakeDynamoDb({"a": client_error("ProvisionedThroughputExceededException")})
    results = make_sink(client, ddb.WriteStrategy.TRANSACTIONS).write(
        [Upsert({"k": "a"}, {}, 1), Upsert({"k": "b"}, {}, 1)]
    )
    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.RETRY]
    assert client.puts == [] and client.items == {}


# --- DynamoDB write strategy: configuration --------------------------------------------------


def test_the_write_strategy_defaults_per_target_and_app_toml_overrides_it(app_folder):
    from consumers.runtime import config, wiring

    def sink_for(target, extra=""):
        app_folder("app", APP_HEAD + APP_SINK + extra + APP_DEAD_LETTER)
        stack = StackConfig.from_env({"CDC_TARGET": target, "CDC_OPENSEARCH_URL": "http://127.0.0.1:1"})
        sink = wiring.build_sink(config.load_app("app", PIPELINE), PIPELINE, stack)
        return sink.config.write_strategy.value

    assert sink_for("local") == "transactions"  # lease tables on their own DynamoDB Local
    assert sink_for("localstack") == sink_for("aws") == "conditional-puts"
    assert sink_for("aws", 'write_strategy = "transactions"\n') == "transactions"
    assert sink_for("local", 'write_strategy = "transactions"\n') == "transactions"
    assert sink_for("local", 'write_strategy = "conditional-puts"\n') == "conditional-puts"
    with pytest.raises(ConfigError) as error:
        sink_for("local", 'write_strategy = "batch"\n')
    message = str(error.value)
    assert "app/app.toml" in message and "sink.write_strategy" in message and "'batch'" in message
    assert "'conditional-puts'" in message and "'transactions'" in message


def test_only_a_dynamodb_sink_takes_a_write_strategy(app_folder):
    from consumers.runtime import config

    app_folder(
        "app",
        APP_HEAD.replace('"Users"', '"WorkplaceUsers_V2"')
        + '[sink]\ntype = "opensearch"\ntarget = "workplace-users-v2"\nwrite_strategy = "transactions"\n'
        + APP_DEAD_LETTER,
    )
    with pytest.raises(ConfigError, match="sink.write_strategy: applies to sink.type"):
        config.load_app("app", PIPELINE)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"table_name": ""},
        {"table_name": "T", "tombstone_retention": timedelta(0)},
        {"table_name": "T", "max_workers": 0},
        {"table_name": "T", "write_strategy": "transactions"},  # the enum, not its value
    ],
)
def test_dynamodb_config_is_validated(kwargs):
    with pytest.raises(ValueError):
        ddb.DynamoDbSinkConfig(**kwargs)


# --- OpenSearch --------------------------------------------------------------------------------

OS_CONFIG = osink.OpenSearchSinkConfig(index="users")


def parse_ndjson(body: bytes) -> list[dict]:
    assert body.endswith(b"\n")
    return [orjson.loads(line) for line in body.splitlines()]


def test_bulk_body_uses_external_versions():
    writes = [
        Upsert({"UserId": "u1"}, {"Score": Decimal("2.5"), "Tags": {"b", "a"}, "Blob": b"\x01", "N": Decimal("3")}, 7),
        Delete({"UserId": "u2"}, 8),
    ]
    body, rejected = osink.build_bulk_body(writes, OS_CONFIG)
    assert rejected == []
    assert parse_ndjson(body) == [
        {"index": {"_id": "u1", "version": 7, "version_type": "external"}},
        {"Score": 2.5, "Tags": ["a", "b"], "Blob": "AQ==", "N": 3, "UserId": "u1"},
        {"delete": {"_id": "u2", "version": 8, "version_type": "external_gte"}},
    ]


def test_document_ids():
    assert osink.default_document_id({"Id": "x"}) == "x"
    assert osink.default_document_id({"Id": 5}) == "5"
    composite = osink.default_document_id({"b": "2", "a": 1})
    assert orjson.loads(composite) == [["a", "1"], ["b", "2"]]
    assert composite == osink.default_document_id({"a": 1, "b": "2"})


def test_template_document_ids_are_the_plain_format_unless_a_value_holds_the_separator():
    doc_id = osink.template_document_id("{WorkplaceId}#{UserId}")
    assert doc_id({"WorkplaceId": "w-1", "UserId": "u-1", "Other": "x"}) == "w-1#u-1"
    assert doc_id({"WorkplaceId": 7, "UserId": b"\xff"}) == "7#_w=="
    # a plain format gives both "a#b#c": two items, one document
    assert doc_id({"WorkplaceId": "a#b", "UserId": "c"}) == "a%23b#c"
    assert doc_id({"WorkplaceId": "a", "UserId": "b#c"}) == "a#b%23c"
    assert doc_id({"WorkplaceId": "a%23b", "UserId": "c"}) == "a%2523b#c"  # no collision with "a#b"
    assert osink.template_document_id("{A}→{B}")({"A": "x→y", "B": "z"}) == "x%E2%86%92y→z"


@pytest.mark.parametrize("template", ["plain", "{}", "{A!r}", "{A:>5}", "{A.b}"])
def test_template_document_id_refuses_anything_but_plain_fields(template):
    with pytest.raises(ValueError, match="plain"):
        osink.template_document_id(template)


def test_template_document_id_names_a_missing_key_attribute():
    with pytest.raises(ValueError, match="UserId"):
        osink.template_document_id("{WorkplaceId}#{UserId}")({"WorkplaceId": "w"})


@pytest.mark.parametrize(
    ("item", "disposition"),
    [
        ({"index": {"status": 201, "result": "created"}}, Outcome.APPLIED),
        ({"index": {"status": 200, "result": "updated"}}, Outcome.APPLIED),
        ({"delete": {"status": 200, "result": "deleted"}}, Outcome.APPLIED),
        ({"delete": {"status": 404, "result": "not_found"}}, Outcome.APPLIED),
        ({"index": {"status": 409, "error": {"type": "version_conflict_engine_exception"}}}, Outcome.STALE),
        ({"delete": {"status": 409, "error": {"type": "version_conflict_engine_exception"}}}, Outcome.STALE),
        ({"index": {"status": 429, "error": {"type": "es_rejected_execution_exception"}}}, Outcome.RETRY),
        ({"index": {"status": 503, "error": {"type": "unavailable_shards_exception"}}}, Outcome.RETRY),
        ({"index": {"status": 400, "error": {"type": "mapper_parsing_exception"}}}, Outcome.REJECTED),
        ({"index": {"status": 404, "error": {"type": "index_not_found_exception"}}}, SINK_FAILED),
        ({"delete": {"status": 404, "error": {"type": "index_not_found_exception"}}}, SINK_FAILED),
        ({"index": {"status": 403, "error": {"type": "cluster_block_exception"}}}, Outcome.RETRY),
        ({"delete": {"status": 429, "error": {"type": "cluster_block_exception"}}}, Outcome.RETRY),
        ({"index": {"status": 403, "error": {"type": "security_exception"}}}, SINK_FAILED),
        ({"index": {"status": 401, "error": {"type": "security_exception"}}}, SINK_FAILED),
    ],
)
def test_classify_bulk_items(item, disposition):
    assert osink.classify_bulk_item(item) is disposition


class FakeOpenSearch:
    def __init__(self, respond):
        self.respond = respond
        self.calls = []

    def bulk(self, **kwargs):
        self.calls.append(kwargs)
        return self.respond(parse_ndjson(kwargs["body"]))


def answer_by_id(statuses):
    """Respond to each action with the status named for its _id (default 201/200)."""

    def respond(lines):
        items = []
        for line in lines:
            if "index" in line or "delete" in line:
                ((action, meta),) = line.items()
                status = statuses.get(meta["_id"], 201 if action == "index" else 200)
                result = {"_id": meta["_id"], "status": status}
                if status >= 400 and status != 404:
                    result["error"] = {"type": "some_exception", "reason": "because"}
                items.append({action: result})
        return {"errors": any(i[next(iter(i))]["status"] >= 300 for i in items), "items": items}

    return respond


def test_opensearch_sink_counts_outcomes():
    client = FakeOpenSearch(answer_by_id({"old": 409}))
    sink = osink.OpenSearchSink(client, osink.OpenSearchSinkConfig(index="users", refresh="wait_for"))
    results = sink.write([Upsert({"Id": "a"}, {}, 1), Upsert({"Id": "old"}, {}, 1), Delete({"Id": "b"}, 3), Skip("x")])
    assert [r.outcome.value for r in results] == ["applied", "stale", "applied", "skipped"]
    assert len(client.calls) == 1 and client.calls[0]["refresh"] == "wait_for"


def test_opensearch_sink_rejects_bad_items_and_unserialisable_documents():
    client = FakeOpenSearch(answer_by_id({"bad": 400}))
    sink = osink.OpenSearchSink(client, OS_CONFIG)
    bad = Upsert({"Id": "bad"}, {}, 1)
    weird = Upsert({"Id": "weird"}, {"x": object()}, 1)
    results = sink.write([Upsert({"Id": "a"}, {}, 1), bad, weird])
    assert [r.outcome for r in results] == [Outcome.APPLIED, Outcome.REJECTED, Outcome.REJECTED]
    assert results[1].reason == "400 some_exception: because" and "cannot serialise" in results[2].reason
    assert [line["index"]["_id"] for line in parse_ndjson(client.calls[0]["body"]) if "index" in line] == ["a", "bad"]


def test_opensearch_sink_retries_throttled_items():
    sink = osink.OpenSearchSink(FakeOpenSearch(answer_by_id({"busy": 429})), OS_CONFIG)
    results = sink.write([Upsert({"Id": "a"}, {}, 1), Upsert({"Id": "busy"}, {}, 1)])
    assert [r.outcome for r in results] == [Outcome.APPLIED, Outcome.RETRY]


@pytest.mark.parametrize(
    "exc",
    [
        OsConnectionError("N/A", "refused", None),
        TransportError(503, "unavailable", {}),
        TransportError(429, "too many", {}),
    ],
)
def test_a_request_failing_transiently_answers_retry_for_every_write(exc):
    def respond(_lines):
        raise exc

    sink = osink.OpenSearchSink(FakeOpenSearch(respond), OS_CONFIG)
    results = sink.write([Upsert({"Id": "a"}, {}, 1), Upsert({"Id": "b"}, {}, 1), Skip("x")])
    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.RETRY, Outcome.SKIPPED]


def test_a_request_refused_for_good_is_a_failure_of_the_sink():
    exc = TransportError(403, "forbidden", {})

    def respond(_lines):
        raise exc

    sink = osink.OpenSearchSink(FakeOpenSearch(respond), OS_CONFIG)
    with pytest.raises(SinkError) as caught:
        sink.write([Upsert({"Id": "a"}, {}, 1)])
    assert caught.value.__cause__ is exc


def test_opensearch_sink_checks_the_response_shape():
    sink = osink.OpenSearchSink(FakeOpenSearch(lambda lines: {"items": []}), OS_CONFIG)
    with pytest.raises(SinkError, match="0 items for 1 actions"):
        sink.write([Upsert({"Id": "a"}, {}, 1)])


def test_nothing_to_send_sends_nothing():
    client = FakeOpenSearch(answer_by_id({}))
    assert [r.outcome for r in osink.OpenSearchSink(client, OS_CONFIG).write([Skip("x")])] == [Outcome.SKIPPED]
    assert client.calls == []
