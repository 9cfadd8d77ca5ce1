"""The notifications app's transform and the webhook sink kind, as pure code: the sink is given a
``post`` function and an in-memory ledger (the stack tests, tests/e2e/test_notifications.py, run
it against the real receiver and DynamoDB)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from standardwebhooks.webhooks import Webhook

from consumers.runtime.config import load_app
from consumers.shared.planning import Delete, Outcome, Skip, Upsert, plan_writes
from consumers.shared.records import ChangeRecord
from consumers.sinks.registry import SinkConfigError
from consumers.sinks.webhook.kind import KIND, _resolve_secret, _resolve_url
from consumers.sinks.webhook.sink import Endpoint, WebhookSink, check_secret, retry_after_s, strip_private
from consumers.user_notifications.transform import transform
from producer_config import load_pipeline
from tests.records import payload

PIPELINE = load_pipeline()
APP = load_app("user_notifications", PIPELINE)
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
USER = {
    "UserId": {"S": "u-1"},
    "Email": {"S": "a@x.org"},
    "Status": {"S": "active"},
    "PasswordHash": {"S": "$2b$secret"},
    "LastSeenAt": {"N": "5"},
    "Workplaces": {"M": {"w-1": {"M": {"Role": {"S": "member"}}}}},
    "WorkplaceIds": {"SS": ["w-1"]},
    "Version": {"N": "3"},
}


def _record(event: str, old: dict | None, new: dict | None, event_id: str = "e-1") -> ChangeRecord:
    data = payload(event, "Users", {"UserId": {"S": "u-1"}}, new_image=new, old_image=old, event_id=event_id)
    return ChangeRecord.from_kinesis(data, sequence_number="1", partition_key="u-1", version_attribute="Version")


# ---------------------------------------------------------------------------------- the app
def test_an_insert_is_user_created_with_every_attribute_after_and_its_place_in_the_history():
    (write,) = plan_writes(_record("INSERT", None, USER), transform)
    assert type(write) is Upsert and write.key == {"UserId": "u-1"} and write.version == 6
    event = write.document
    assert (event["id"], event["type"], event["data"]["user_id"], event["data"]["version"]) == (
        "e-1",
        "user.created",
        "u-1",
        3,
    )
    assert event["data"]["changes"]["Email"] == {"before": None, "after": "a@x.org"}
    assert "Version" not in event["data"]["changes"] and "WorkplaceIds" not in event["data"]["changes"]
    assert event["data"]["workplaces"] == {"joined": ["w-1"], "left": []}
    assert datetime.fromisoformat(event["timestamp"]).tzinfo is not None


def test_a_modify_lists_only_what_changed_and_the_workplaces_joined_and_left():
    after = {
        **USER,
        "Status": {"S": "suspended"},
        "Workplaces": {"M": {"w-2": {"M": {}}}},
        "WorkplaceIds": {"SS": ["w-2"]},
        "Version": {"N": "4"},
    }
    (write,) = plan_writes(_record("MODIFY", USER, after), transform)
    data = write.document["data"]
    assert write.document["type"] == "user.updated" and write.version == 8
    assert set(data["changes"]) == {"Status", "Workplaces"}
    assert data["changes"]["Status"] == {"before": "active", "after": "suspended"}
    assert data["workplaces"] == {"joined": ["w-2"], "left": ["w-1"]}


def test_a_deletion_comes_after_the_last_update_of_the_item_it_removed():
    (update,) = plan_writes(_record("MODIFY", USER, {**USER, "Email": {"S": "b@x.org"}}), transform)
    (removal,) = plan_writes(_record("REMOVE", {**USER, "Email": {"S": "b@x.org"}}, None), transform)
    assert removal.document["type"] == "user.deleted" and removal.version == update.version + 1


def test_every_subscriber_asks_for_types_the_app_sends():
    from consumers.user_notifications.transform import EVENT_TYPES

    for subscriber in APP.sink.subscribers:  # a misspelt type would deliver nothing, silently
        assert set(subscriber.events) <= set(EVENT_TYPES), subscriber


def test_the_filter_lets_through_creations_deletions_and_status_email_workplace_edits_only():
    compiled = APP.compile_filter()
    seen_only = _record("MODIFY", USER, {**USER, "LastSeenAt": {"N": "6"}, "Version": {"N": "4"}})
    name_only = _record("MODIFY", USER, {**USER, "FirstName": {"S": "Ann"}, "Version": {"N": "4"}})
    email = _record("MODIFY", USER, {**USER, "Email": {"S": "b@x.org"}, "Version": {"N": "4"}})
    assert not compiled.matches(seen_only.raw) and not compiled.matches(name_only.raw)
    assert compiled.matches(email.raw)
    assert compiled.matches(_record("INSERT", None, USER).raw) and compiled.matches(_record("REMOVE", USER, None).raw)


# --------------------------------------------------------------------------------- the sink
@dataclass
class _Answer:
    status: int
    data: bytes = b""
    headers: dict = field(default_factory=dict)


@dataclass
class _Ledger:
    last: dict = field(default_factory=dict)
    acks: list = field(default_factory=list)

    def last_acknowledged(self, pairs):
        return {p: self.last[p] for p in pairs if p in self.last}

    def record(self, acks):
        for ack in acks:
            self.acks.append(ack)
            pair = (ack.subscriber, ack.entity)
            self.last[pair] = max(ack.version, self.last.get(pair, -1))


class _Subscribers:
    """What each URL answers (a list consumed in order, the last one repeated), and every request."""

    def __init__(self, **answers):
        self.answers = answers
        self.requests: list[tuple[str, bytes, dict]] = []

    def __call__(self, url, body, headers, timeout_s):
        name = url.rsplit("/", 1)[1]
        self.requests.append((name, body, dict(headers)))
        queue = self.answers.get(name, [_Answer(200)])
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def sent(self, name):
        return [orjson.loads(body)["id"] for n, body, _ in self.requests if n == name]


def _sink(subscribers: _Subscribers, ledger=None, clock=None, **kwargs) -> WebhookSink:
    sign = Webhook(SECRET).sign
    endpoints = [
        Endpoint("crm", "http://h/crm", frozenset({"user.created", "user.updated"}), sign),
        Endpoint("security", "http://h/security", frozenset({"user.updated"}), sign),
    ]
    now = clock or (lambda: 1000.0)
    return WebhookSink(endpoints, ledger or _Ledger(), subscribers, clock=now, wall_clock=lambda: now(), **kwargs)


def _event(version: int, event_type: str = "user.updated", user: str = "u-1", **extra) -> Upsert:
    return Upsert({"UserId": user}, {"id": f"e-{user}-{version}", "type": event_type, "data": extra}, version)


def test_each_delivery_verifies_with_a_standard_webhooks_library_and_its_id_is_the_event_id():
    subscribers = _Subscribers()
    results = _sink(subscribers).write([_event(2)])
    assert [r.outcome for r in results] == [Outcome.APPLIED]
    assert len(subscribers.requests) == 2
    for _, body, headers in subscribers.requests:
        assert headers["webhook-id"] == "e-u-1-2"
        with pytest.raises(Exception):  # noqa: B017 - any verification error: the timestamp is 1970
            Webhook(SECRET).verify(body, headers)
        stamp = datetime.fromtimestamp(int(headers["webhook-timestamp"]), tz=UTC)
        assert Webhook(SECRET).sign("e-u-1-2", stamp, body) == headers["webhook-signature"]


def test_a_subscriber_gets_only_the_types_it_asked_for_and_a_type_nobody_wants_is_skipped():
    subscribers = _Subscribers()
    results = _sink(subscribers).write([_event(2, "user.created"), _event(4, "user.unknown")])
    assert [r.outcome for r in results] == [Outcome.APPLIED, Outcome.SKIPPED]
    assert subscribers.sent("crm") == ["e-u-1-2"] and subscribers.sent("security") == []


def test_events_go_in_version_order_and_one_not_acknowledged_holds_back_the_next_for_that_subscriber_only():
    subscribers = _Subscribers(security=[_Answer(503, b"down")])
    results = _sink(subscribers).write([_event(6), _event(4), _event(4, user="u-2")])
    assert sorted(subscribers.sent("crm")) == ["e-u-1-4", "e-u-1-6", "e-u-2-4"]  # chains run in parallel
    crm_u1 = [i for i in subscribers.sent("crm") if i.startswith("e-u-1")]
    assert crm_u1 == ["e-u-1-4", "e-u-1-6"]
    assert sorted(subscribers.sent("security")) == ["e-u-1-4", "e-u-2-4"]  # u-1's 6 was held back, not sent
    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.RETRY, Outcome.RETRY]
    assert "behind event e-u-1-4" in results[0].reason


def test_what_a_subscriber_acknowledged_is_never_sent_again_nor_anything_older():
    ledger = _Ledger(last={("crm", "u-1"): 6, ("security", "u-1"): 6})
    subscribers = _Subscribers()
    results = _sink(subscribers, ledger).write([_event(4), _event(6), _event(8)])
    assert [r.outcome for r in results] == [Outcome.STALE, Outcome.STALE, Outcome.APPLIED]
    assert subscribers.sent("crm") == ["e-u-1-8"] and ledger.last[("crm", "u-1")] == 8


def test_a_final_refusal_is_rejected_at_once_with_the_status_and_the_first_bytes_of_the_answer():
    subscribers = _Subscribers(crm=[_Answer(410, b"gone: this endpoint was removed" + b"x" * 500)])
    (result,) = _sink(subscribers).write([_event(2, "user.created")])
    assert result.outcome is Outcome.REJECTED
    assert "crm answered 410 'gone: this endpoint was removed" in result.reason and "x" * 300 not in result.reason


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_timeouts_throttling_and_server_errors_are_retried(status):
    (result,) = _sink(_Subscribers(crm=[_Answer(status)])).write([_event(2, "user.created")])
    assert result.outcome is Outcome.RETRY and f"crm answered {status}" in result.reason


def test_a_transport_failure_is_retried():
    (result,) = _sink(_Subscribers(crm=[ConnectionRefusedError("refused")])).write([_event(2, "user.created")])
    assert result.outcome is Outcome.RETRY and "ConnectionRefusedError" in result.reason


def test_retry_after_is_honoured_the_subscriber_gets_nothing_before_it():
    now = [1000.0]
    subscribers = _Subscribers(crm=[_Answer(429, headers={"Retry-After": "10"}), _Answer(200)])
    sink = _sink(subscribers, clock=lambda: now[0])
    assert sink.write([_event(2, "user.created")])[0].outcome is Outcome.RETRY
    now[0] += 5
    (early,) = sink.write([_event(2, "user.created")])
    assert early.outcome is Outcome.RETRY and "Retry-After" in early.reason and len(subscribers.requests) == 1
    now[0] += 6
    assert sink.write([_event(2, "user.created")])[0].outcome is Outcome.APPLIED


def test_past_its_retry_budget_a_subscriber_is_dead_lettered_with_one_probe_per_batch_until_it_recovers():
    now = [1000.0]
    subscribers = _Subscribers(crm=[_Answer(500)])
    sink = _sink(subscribers, clock=lambda: now[0], retry_budget_s=60)
    assert sink.write([_event(2, "user.created")])[0].outcome is Outcome.RETRY
    now[0] += 30
    assert sink.write([_event(2, "user.created")])[0].outcome is Outcome.RETRY  # retried, within the budget
    now[0] += 31
    results = sink.write([_event(2, "user.created"), _event(2, "user.created", user="u-2")])
    assert [r.outcome for r in results] == [Outcome.REJECTED, Outcome.REJECTED]
    assert "past its retry budget of 60s" in results[0].reason
    assert len(subscribers.requests) == 3  # two failures, then one probe for the whole batch
    subscribers.answers["crm"] = [_Answer(200)]
    assert sink.write([_event(4, "user.created")])[0].outcome is Outcome.APPLIED  # the probe succeeds
    assert sink.write([_event(6, "user.created")])[0].outcome is Outcome.APPLIED


def test_a_failure_long_after_the_last_one_starts_a_new_streak_with_its_whole_budget():
    now = [1000.0]
    subscribers = _Subscribers(crm=[_Answer(500)])
    sink = _sink(subscribers, clock=lambda: now[0], retry_budget_s=60)
    assert sink.write([_event(2, "user.created")])[0].outcome is Outcome.RETRY  # never retried after
    now[0] += 3600
    assert sink.write([_event(4, "user.created")])[0].outcome is Outcome.RETRY  # not dead-lettered


def test_private_attributes_never_leave_wherever_they_are():
    subscribers = _Subscribers()
    sink = _sink(subscribers, private=frozenset({"PasswordHash"}))
    write = _event(2, changes={"PasswordHash": {"before": "a", "after": "b"}}, items=[{"PasswordHash": 1, "k": 2}])
    sink.write([write])
    for _, body, _ in subscribers.requests:
        assert b"PasswordHash" not in body and orjson.loads(body)["data"]["items"] == [{"k": 2}]
    assert strip_private({"a": [{"b": 1, "c": 2}]}, frozenset({"b"})) == {"a": [{"c": 2}]}


def test_binary_sets_and_numbers_of_an_image_are_sent_as_json():
    subscribers = _Subscribers()
    from decimal import Decimal

    _sink(subscribers).write([_event(2, blob=b"\x00\x01", tags={"y", "x"}, score=Decimal("1.5"), n=Decimal("2"))])
    data = orjson.loads(subscribers.requests[0][1])["data"]
    assert data == {"blob": "AAE=", "tags": ["x", "y"], "score": 1.5, "n": 2}


def test_a_delete_skip_or_malformed_event_is_answered_without_a_request():
    subscribers = _Subscribers()
    results = _sink(subscribers).write(
        [Delete({"UserId": "u"}, 1), Skip("no"), Upsert({"UserId": "u"}, {"type": "user.updated"}, 1)]
    )
    assert [r.outcome for r in results] == [Outcome.REJECTED, Outcome.SKIPPED, Outcome.REJECTED]
    assert "'id'" in results[2].reason and not subscribers.requests


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_s("7", 0) == 7
    assert retry_after_s("Thu, 01 Jan 1970 00:00:30 GMT", 10) == 20
    assert retry_after_s("soon", 0) is None and retry_after_s(None, 0) is None


# --------------------------------------------------------------------------------- the kind
@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("not-a-secret", "is not a Standard Webhooks secret"),
        ("whsec_" + base64.b64encode(b"short").decode(), "decodes to 5 bytes"),
    ],
)
def test_a_bad_secret_is_refused_naming_the_key_never_the_value(secret, why, monkeypatch):
    monkeypatch.setenv("NOTIFY_SECRET_CRM", secret)
    with pytest.raises(SinkConfigError) as refused:
        _resolve_secret(APP.sink.subscribers[0], {"NOTIFY_SECRET_CRM": secret}, clients=None)
    assert refused.value.key == "sink.subscribers.crm.secret_env" and why in refused.value.reason
    assert secret not in str(refused.value)


def test_a_missing_secret_or_url_variable_is_refused_with_the_fix():
    subscriber = APP.sink.subscribers[0]
    with pytest.raises(SinkConfigError, match="NOTIFY_SECRET_CRM is not set: export"):
        _resolve_secret(subscriber, {}, clients=None)
    with pytest.raises(SinkConfigError, match="names NOTIFY_RECEIVER_URL, which is not set"):
        _resolve_url(subscriber, {})
    assert (
        _resolve_url(subscriber, {"NOTIFY_RECEIVER_URL": "https://hooks.example.com"})
        == "https://hooks.example.com/crm"
    )
    assert check_secret(SECRET) == b"k" * 32 and check_secret(SECRET.removeprefix("whsec_")) == b"k" * 32


def test_on_aws_the_secret_comes_from_secrets_manager_at_the_arn_the_template_gives():
    class Clients:
        def aws(self, service):
            assert service == "secretsmanager"
            return type("SM", (), {"get_secret_value": lambda self, SecretId: {"SecretString": SECRET}})()

    env = {"NOTIFY_SECRET_CRM_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:x"}
    assert _resolve_secret(APP.sink.subscribers[0], env, Clients()) == SECRET


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (
            ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetSecretValue"),
            "GetSecretValue",
        ),
        (EndpointConnectionError(endpoint_url="https://secretsmanager"), "cannot reach Secrets Manager"),
        ({"SecretBinary": b"k"}, "holds no SecretString"),
    ],
)
def test_a_secret_that_cannot_be_read_stops_the_worker_naming_the_key_and_the_fix(answer, why):
    def get_secret_value(SecretId):
        if isinstance(answer, Exception):
            raise answer
        return answer

    class Clients:
        def aws(self, service):
            return type("SM", (), {"get_secret_value": staticmethod(get_secret_value)})()

    env = {"NOTIFY_SECRET_CRM_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:x"}
    with pytest.raises(SinkConfigError) as refused:
        _resolve_secret(APP.sink.subscribers[0], env, Clients())
    assert refused.value.key == "sink.subscribers.crm.secret_env"
    assert why in refused.value.reason and env["NOTIFY_SECRET_CRM_ARN"] in refused.value.reason


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"subscribers": []}, "sink.subscribers"),
        ({"subscribers": [{"name": "A b", "url": "http://x", "events": ["e"], "secret_env": "S"}]}, "name"),
        ({"subscribers": [{"name": "a", "url": "ftp://x", "events": ["e"], "secret_env": "S"}]}, "url"),
        ({"subscribers": [{"name": "a", "url": "http://x", "events": [], "secret_env": "S"}]}, "events"),
        ({"subscribers": [{"name": "a", "url": "http://x", "events": ["e"], "secret_env": "CDC_S"}]}, "secret_env"),
        ({"subscribers": [{"name": "a", "url": "http://x", "events": ["e"], "secret_env": "S", "x": 1}]}, "x"),
    ],
)
def test_bad_subscriber_configuration_names_its_key(options, key):
    with pytest.raises(SinkConfigError) as refused:
        KIND.parse("NotificationDeliveries", options, PIPELINE)
    assert refused.value.key.endswith(key)


def test_the_ledger_must_be_a_table_keyed_by_subscriber_and_entry():
    good = {"subscribers": [{"name": "a", "url": "http://x", "events": ["e"], "secret_env": "S"}]}
    with pytest.raises(SinkConfigError, match="hash_key Subscriber"):
        KIND.parse("AppUsers_V2", good, PIPELINE)


def test_a_worker_with_a_bad_signing_secret_is_refused_at_start_naming_the_file_and_key(monkeypatch, tmp_path, caplog):
    from consumers.runtime import daemon

    monkeypatch.setenv("NOTIFY_SECRET_CRM", "hunter2")
    monkeypatch.setenv("NOTIFY_SECRET_SECURITY", SECRET)
    monkeypatch.setenv("NOTIFY_RECEIVER_URL", "http://127.0.0.1:1")
    monkeypatch.setattr(daemon.subprocess, "Popen", lambda *a, **k: pytest.fail("the KCL was started"))
    assert daemon.main(["--app", "user_notifications", "--state-dir", str(tmp_path)]) == 2
    assert (
        "user_notifications/app.toml: sink.subscribers.crm.secret_env: NOTIFY_SECRET_CRM is not a Standard"
        in caplog.text
    )
    assert "hunter2" not in caplog.text
