"""Sink adapters: request building and response classification, with tiny fakes of the client
call. These test our code's requests and its reading of canned answers, not the servers."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import orjson
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from opensearchpy.exceptions import ConnectionError as OsConnectionError
from opensearchpy.exceptions import TransportError

from consumers.shared.errors import RetryableSinkError, SinkError, SinkRejectedWrite
from consumers.shared.planning import Delete, Skip, Upsert, WriteCounts
from consumers.shared.records import decode_image
from consumers.sinks import Disposition
from consumers.sinks import dynamodb as ddb
from consumers.sinks import opensearch as osink
from consumers.sinks.dynamodb import TOMBSTONE_ATTRIBUTE, TOMBSTONE_TTL_ATTRIBUTE

# --- DynamoDB ----------------------------------------------------------------------------------

CONFIG = ddb.DynamoDbSinkConfig(table_name="Memberships", tombstone_retention=timedelta(hours=48))
NOW = 1_800_000_000.5


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutItem"
    )


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
        (client_error("ConditionalCheckFailedException"), Disposition.STALE),
        (client_error("ProvisionedThroughputExceededException"), Disposition.RETRY),
        (client_error("ThrottlingException"), Disposition.RETRY),
        (client_error("RequestLimitExceeded"), Disposition.RETRY),
        (client_error("InternalServerError", 500), Disposition.RETRY),
        (client_error("SomethingNew", 503), Disposition.RETRY),
        (client_error("ValidationException"), Disposition.REJECT),
        (client_error("ItemCollectionSizeLimitExceededException"), Disposition.REJECT),
        (client_error("ResourceNotFoundException"), Disposition.FAIL),
        (client_error("AccessDeniedException"), Disposition.FAIL),
        (EndpointConnectionError(endpoint_url="http://localhost:1"), Disposition.RETRY),
        (ReadTimeoutError(endpoint_url="http://localhost:1"), Disposition.RETRY),
        (RuntimeError("bug"), Disposition.FAIL),
    ],
)
def test_classify_dynamodb_errors(exc, disposition):
    assert ddb.classify_error(exc) is disposition


class FakeDynamoDb:
    """Records put_item calls; answers each with the next canned result (None = success)."""

    def __init__(self, answers=None):
        self.calls = []
        self.answers = dict(answers or {})

    def put_item(self, **request):
        self.calls.append(request)
        answer = self.answers.get(request["Item"]["k"]["S"])
        if answer is not None:
            raise answer
        return {}


@pytest.mark.parametrize("workers", [1, 4])
def test_dynamodb_sink_counts_outcomes(workers):
    client = FakeDynamoDb({"stale": client_error("ConditionalCheckFailedException")})
    sink = ddb.DynamoDbSink(client, ddb.DynamoDbSinkConfig("T", max_workers=workers), clock=lambda: NOW)
    try:
        counts = sink.write(
            [Upsert({"k": "a"}, {}, 1), Delete({"k": "b"}, 2), Upsert({"k": "stale"}, {}, 1), Skip("x")]
        )
    finally:
        sink.close()
    assert counts == WriteCounts(applied=2, stale=1, skipped=1)
    assert len(client.calls) == 3


def test_dynamodb_sink_raises_retryable_with_the_failed_writes():
    client = FakeDynamoDb({"slow": client_error("ThrottlingException"), "bad": client_error("ValidationException")})
    sink = ddb.DynamoDbSink(client, ddb.DynamoDbSinkConfig("T", max_workers=2))
    slow = Upsert({"k": "slow"}, {}, 1)
    with pytest.raises(RetryableSinkError) as caught:
        sink.write([Upsert({"k": "ok"}, {}, 1), slow, Upsert({"k": "bad"}, {}, 1)])
    sink.close()
    assert caught.value.writes == (slow,)
    assert isinstance(caught.value.__cause__, ClientError)


def test_dynamodb_sink_rejects_invalid_writes_for_dead_lettering():
    client = FakeDynamoDb({"bad": client_error("ValidationException")})
    sink = ddb.DynamoDbSink(client, ddb.DynamoDbSinkConfig("T", max_workers=1))
    bad = Upsert({"k": "bad"}, {}, 1)
    floaty = Upsert({"k": "float"}, {"x": 1.5}, 1)
    with pytest.raises(SinkRejectedWrite) as caught:
        sink.write([Upsert({"k": "ok"}, {}, 1), bad, floaty])
    assert [w for w, _ in caught.value.rejections] == [bad, floaty]
    assert caught.value.write is bad
    assert "float is not supported" in caught.value.rejections[1][1]
    assert caught.value.counts == WriteCounts(applied=1)
    assert len(client.calls) == 2  # the float document never reached the client


def test_dynamodb_sink_fails_on_configuration_errors():
    sink = ddb.DynamoDbSink(FakeDynamoDb({"a": client_error("ResourceNotFoundException")}), ddb.DynamoDbSinkConfig("T"))
    with pytest.raises(SinkError) as caught:
        sink.write([Upsert({"k": "a"}, {}, 1)])
    assert not isinstance(caught.value, (RetryableSinkError, SinkRejectedWrite))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"table_name": ""},
        {"table_name": "T", "tombstone_retention": timedelta(0)},
        {"table_name": "T", "max_workers": 0},
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
        {"index": {"_index": "users", "_id": "u1", "version": 7, "version_type": "external"}},
        {"Score": 2.5, "Tags": ["a", "b"], "Blob": "AQ==", "N": 3, "UserId": "u1"},
        {"delete": {"_index": "users", "_id": "u2", "version": 8, "version_type": "external_gte"}},
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
        ({"index": {"status": 201, "result": "created"}}, Disposition.APPLIED),
        ({"index": {"status": 200, "result": "updated"}}, Disposition.APPLIED),
        ({"delete": {"status": 200, "result": "deleted"}}, Disposition.APPLIED),
        ({"delete": {"status": 404, "result": "not_found"}}, Disposition.APPLIED),
        ({"index": {"status": 409, "error": {"type": "version_conflict_engine_exception"}}}, Disposition.STALE),
        ({"delete": {"status": 409, "error": {"type": "version_conflict_engine_exception"}}}, Disposition.STALE),
        ({"index": {"status": 429, "error": {"type": "es_rejected_execution_exception"}}}, Disposition.RETRY),
        ({"index": {"status": 503, "error": {"type": "unavailable_shards_exception"}}}, Disposition.RETRY),
        ({"index": {"status": 400, "error": {"type": "mapper_parsing_exception"}}}, Disposition.REJECT),
        ({"index": {"status": 404, "error": {"type": "index_not_found_exception"}}}, Disposition.FAIL),
        ({"delete": {"status": 404, "error": {"type": "index_not_found_exception"}}}, Disposition.FAIL),
        ({"index": {"status": 403, "error": {"type": "cluster_block_exception"}}}, Disposition.FAIL),
        ({"index": {"status": 401, "error": {"type": "security_exception"}}}, Disposition.FAIL),
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
    counts = sink.write([Upsert({"Id": "a"}, {}, 1), Upsert({"Id": "old"}, {}, 1), Delete({"Id": "b"}, 3), Skip("x")])
    assert counts == WriteCounts(applied=2, stale=1, skipped=1)
    assert len(client.calls) == 1 and client.calls[0]["refresh"] == "wait_for"


def test_opensearch_sink_rejects_bad_items_and_unserialisable_documents():
    client = FakeOpenSearch(answer_by_id({"bad": 400}))
    sink = osink.OpenSearchSink(client, OS_CONFIG)
    bad = Upsert({"Id": "bad"}, {}, 1)
    weird = Upsert({"Id": "weird"}, {"x": object()}, 1)
    with pytest.raises(SinkRejectedWrite) as caught:
        sink.write([Upsert({"Id": "a"}, {}, 1), bad, weird])
    assert sorted((w.key["Id"] for w, _ in caught.value.rejections)) == ["bad", "weird"]
    assert caught.value.counts == WriteCounts(applied=1)
    assert [line["index"]["_id"] for line in parse_ndjson(client.calls[0]["body"]) if "index" in line] == ["a", "bad"]


def test_opensearch_sink_retries_throttled_items():
    sink = osink.OpenSearchSink(FakeOpenSearch(answer_by_id({"busy": 429})), OS_CONFIG)
    busy = Upsert({"Id": "busy"}, {}, 1)
    with pytest.raises(RetryableSinkError) as caught:
        sink.write([Upsert({"Id": "a"}, {}, 1), busy])
    assert caught.value.writes == (busy,)


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (OsConnectionError("N/A", "refused", None), RetryableSinkError),
        (TransportError(503, "unavailable", {}), RetryableSinkError),
        (TransportError(429, "too many", {}), RetryableSinkError),
        (TransportError(403, "forbidden", {}), SinkError),
    ],
)
def test_opensearch_request_failures(exc, error):
    def respond(_lines):
        raise exc

    sink = osink.OpenSearchSink(FakeOpenSearch(respond), OS_CONFIG)
    with pytest.raises(error) as caught:
        sink.write([Upsert({"Id": "a"}, {}, 1)])
    assert type(caught.value) is error
    assert caught.value.__cause__ is exc


def test_opensearch_sink_checks_the_response_shape():
    sink = osink.OpenSearchSink(FakeOpenSearch(lambda lines: {"items": []}), OS_CONFIG)
    with pytest.raises(SinkError, match="0 items for 1 actions"):
        sink.write([Upsert({"Id": "a"}, {}, 1)])


def test_nothing_to_send_sends_nothing():
    client = FakeOpenSearch(answer_by_id({}))
    assert osink.OpenSearchSink(client, OS_CONFIG).write([Skip("x")]) == WriteCounts(skipped=1)
    assert client.calls == []
