"""The ``webhook`` sink kind: an app's events, signed (Standard Webhooks), to its subscribers.

    [sink]
    type = "webhook"
    target = "NotificationDeliveries"     # the delivery ledger: a table of producer_config
    timeout_ms = 5000                     # one request
    retry_budget_s = 120                  # how long a failing subscriber may hold its events back
    private = ["PasswordHash"]            # keys removed from every event, at any depth
    subscribers = [
      { name = "crm", url = "${NOTIFY_RECEIVER_URL}/crm", events = ["user.created"], secret_env = "NOTIFY_SECRET_CRM" },
    ]

A subscriber's ``url`` may name environment variables (``${NAME}``), read when the worker
starts. Its signing secret (``whsec_`` + base64 of 24-64 bytes) is the variable ``secret_env``;
when that is unset, the secret is read from Secrets Manager at the ARN in ``<secret_env>_ARN``
(what the AWS template gives each task). A missing or malformed secret stops the worker at start,
naming the app.toml and the key.

On AWS: one Secrets Manager secret per subscriber (generated; its value, 40 base64 characters, is
the subscriber's whsec_ secret without the prefix), the task role's grants (the ledger table; ``GetSecretValue`` on its secrets only), a
template parameter per variable the URLs name.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consumers.shared.planning import Upsert, plan_writes
from consumers.shared.records import ChangeRecord
from consumers.sinks.deploy import Cfn, Contribution, Json
from consumers.sinks.registry import Clients, SinkConfigError, SinkView
from consumers.sinks.webhook.ledger import DynamoDbLedger
from consumers.sinks.webhook.sink import Endpoint, WebhookSink, check_secret, entity_id
from producer_config import PipelineConfig

__all__ = ["KIND", "LEDGER_ACTIONS", "Subscriber", "WebhookSinkSpec"]

LEDGER_ACTIONS = ("dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
_NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")
_VARIABLE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
_ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
_SUBSCRIBER_KEYS = ("name", "url", "events", "secret_env")
#: checkov findings on the subscribers' secrets left as they are, each with its reason
SECRET_SKIPS = (
    ("CKV_AWS_149", "Encrypted with the account's aws/secretsmanager key; a CMK adds a key policy to manage"),
    ("CKV2_AWS_57", "A signing secret is shared with its subscriber: rotating it is a change on both sides"),
)


@dataclass(frozen=True, slots=True)
class Subscriber:
    name: str
    url: str  # may name ${VARIABLES}
    events: tuple[str, ...]
    secret_env: str

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(_VARIABLE.findall(self.url))

    def secret_logical_id(self) -> str:
        return "WebhookSecret" + "".join(part.capitalize() for part in self.name.split("-"))


@dataclass(frozen=True, slots=True)
class WebhookSinkSpec:
    target: str  # the ledger table
    subscribers: tuple[Subscriber, ...]
    timeout_ms: int = 5000
    retry_budget_s: int = 120
    private: tuple[str, ...] = ()

    type = "webhook"

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(sorted({v for s in self.subscribers for v in s.variables}))


def _parameter(variable: str) -> str:
    return "".join(part.capitalize() for part in variable.split("_"))


def _subscriber(i: int, raw: Any) -> Subscriber:
    where = f"sink.subscribers[{i}]"
    if not isinstance(raw, Mapping):
        raise SinkConfigError(where, "must be a table: { name, url, events, secret_env }")
    unknown = sorted(set(raw) - set(_SUBSCRIBER_KEYS))
    if unknown:
        raise SinkConfigError(f"{where}.{unknown[0]}", f"unknown key: the keys are {', '.join(_SUBSCRIBER_KEYS)}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SinkConfigError(f"{where}.name", f"{name!r}: lower-case letters, digits and '-', 40 at most")
    url = raw.get("url")
    if not isinstance(url, str) or not re.match(r"(https?://|\$\{)", url):
        raise SinkConfigError(f"{where}.url", f"{url!r}: an http(s):// URL, or one starting with a ${{VARIABLE}}")
    events = raw.get("events")
    if not isinstance(events, list) or not events or not all(isinstance(e, str) and e for e in events):
        raise SinkConfigError(f"{where}.events", 'a non-empty list of event types, e.g. ["user.created"]')
    secret_env = raw.get("secret_env")
    if not isinstance(secret_env, str) or not _ENV_NAME.fullmatch(secret_env) or secret_env.startswith("CDC_"):
        raise SinkConfigError(
            f"{where}.secret_env",
            f"{secret_env!r}: the name of an environment variable (upper case, not CDC_, which are the stack's)",
        )
    return Subscriber(name, url, tuple(events), secret_env)


def _integer(options: Mapping[str, Any], key: str, default: int) -> int:
    value = options.get(key, default)
    if type(value) is not int or value < 1:
        raise SinkConfigError(f"sink.{key}", f"must be a positive integer, got {value!r}")
    return value


def _resolve_url(subscriber: Subscriber, env: Mapping[str, str]) -> str:
    missing = [v for v in subscriber.variables if not env.get(v)]
    if missing:
        raise SinkConfigError(
            f"sink.subscribers.{subscriber.name}.url",
            f"names {missing[0]}, which is not set: export it (on AWS: the template parameter "
            f"{_parameter(missing[0])}; locally `make up` sets the local receiver's)",
        )
    url = string.Template(subscriber.url).substitute(env)
    if not re.match(r"https?://[^/\s]+", url):
        raise SinkConfigError(f"sink.subscribers.{subscriber.name}.url", f"{url!r} is not an http(s) URL")
    return url


def _resolve_secret(subscriber: Subscriber, env: Mapping[str, str], clients: Clients) -> str:
    key = f"sink.subscribers.{subscriber.name}.secret_env"
    name, arn = subscriber.secret_env, env.get(f"{subscriber.secret_env}_ARN")
    secret = env.get(name)
    source = name
    if secret is None and arn:
        secret, source = _read_secret(key, arn, clients), f"the secret {arn}"
    if secret is None:
        raise SinkConfigError(
            key, f"{name} is not set: export the subscriber's signing secret (whsec_ + base64 of 24-64 bytes) as {name}"
        )
    try:
        check_secret(secret)
    except ValueError as exc:
        raise SinkConfigError(key, f"{source} {exc}") from None
    return secret


def _read_secret(key: str, arn: str, clients: Clients) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        secret = clients.aws("secretsmanager").get_secret_value(SecretId=arn).get("SecretString")
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise SinkConfigError(
            key,
            f"cannot read the secret {arn}: {error.get('Code')}: {error.get('Message')}; check that it exists "
            "and that the task role is granted secretsmanager:GetSecretValue on it (the template does both)",
        ) from None
    except BotoCoreError as exc:
        raise SinkConfigError(key, f"cannot reach Secrets Manager for {arn}: {exc}") from None
    if secret is None:
        raise SinkConfigError(key, f"the secret {arn} holds no SecretString: store the signing secret as text")
    return secret


def _post(pool: Any) -> Any:
    import urllib3

    def post(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> Any:
        return pool.request(
            "POST", url, body=body, headers=dict(headers), timeout=urllib3.Timeout(total=timeout_s), retries=False
        )

    return post


def _signer(secret: str) -> Any:
    from standardwebhooks.webhooks import Webhook

    webhook = Webhook(secret)

    def sign(event_id: str, stamp: datetime, body: bytes) -> str:
        return webhook.sign(event_id, stamp, body)

    return sign


class _WebhookKind:
    name = WebhookSinkSpec.type
    options = ("subscribers", "timeout_ms", "retry_budget_s", "private")

    def parse(self, target: str, options: Mapping[str, Any], pipeline: PipelineConfig) -> WebhookSinkSpec:
        if target not in pipeline.tables:
            raise SinkConfigError("sink.target", f"{target!r} is not a table of producer_config (the delivery ledger)")
        table = pipeline.tables[target]
        if table.key_names != ("Subscriber", "Entry"):
            raise SinkConfigError(
                "sink.target", f"{target!r}: a delivery ledger has hash_key Subscriber (S) and range_key Entry (S)"
            )
        raw = options.get("subscribers")
        if not isinstance(raw, list) or not raw:
            raise SinkConfigError("sink.subscribers", "a non-empty list of { name, url, events, secret_env }")
        subscribers = tuple(_subscriber(i, s) for i, s in enumerate(raw))
        names = [s.name for s in subscribers]
        if len(set(names)) != len(names):
            raise SinkConfigError("sink.subscribers", f"two subscribers have one name: {sorted(names)}")
        private = options.get("private", [])
        if not isinstance(private, list) or not all(isinstance(p, str) and p for p in private):
            raise SinkConfigError("sink.private", "a list of attribute names")
        return WebhookSinkSpec(
            target,
            subscribers,
            timeout_ms=_integer(options, "timeout_ms", 5000),
            retry_budget_s=_integer(options, "retry_budget_s", 120),
            private=tuple(private),
        )

    def build(self, spec: WebhookSinkSpec, pipeline: PipelineConfig, clients: Clients) -> WebhookSink:
        import urllib3

        env = os.environ
        endpoints = [
            Endpoint(s.name, _resolve_url(s, env), frozenset(s.events), _signer(_resolve_secret(s, env, clients)))
            for s in spec.subscribers
        ]
        concurrency = 16
        pool = urllib3.PoolManager(num_pools=len(endpoints) + 1, maxsize=concurrency, block=False)
        return WebhookSink(
            endpoints,
            DynamoDbLedger(clients.aws("dynamodb"), spec.target),
            _post(pool),
            timeout_s=spec.timeout_ms / 1000,
            retry_budget_s=spec.retry_budget_s,
            private=frozenset(spec.private),
            concurrency=concurrency,
        )

    def read_back(self, spec: WebhookSinkSpec, pipeline: PipelineConfig, clients: Clients) -> SinkView:
        """What `make verify` checks, per (subscriber, entity, event version): every change the
        app's stream holds (the source's history in its retention, through the app's filter and
        transform) acknowledged by each subscriber that wants its type, in version order.

        Keyed by the version, not the eventID: a change put on the stream twice (a relay that
        wrote it again after a crash, a repeated record) is one event, sent once. A record that
        arrived after the subscriber had acknowledged a newer version of its entity is not
        expected: the sink rightly never sends it (older after newer). Acknowledgements older
        than the history's oldest record are left out (their events may be gone from the
        stream). One read of the ledger serves both sides (``expected`` runs first)."""
        ledger = DynamoDbLedger(clients.aws("dynamodb"), spec.target)
        seen: dict[str, Any] = {"acks": [], "since_ms": 0}

        def expected(app: Any, history: Iterable[Any]) -> dict[Any, dict[str, Any]]:
            acks = sorted(ledger.acknowledgements(), key=lambda a: (a.acked_at_ms, a.version))
            seen["acks"] = acks
            first_ack: dict[tuple[str, str, int], int] = {}  # (subscriber, entity, version) -> ms
            for ack in acks:
                first_ack.setdefault((ack.subscriber, ack.entity, ack.version), ack.acked_at_ms)
            newer: dict[tuple[str, str], list[tuple[int, int]]] = {}  # -> [(version, acked ms)]
            for (name, entity, version), at in first_ack.items():
                newer.setdefault((name, entity), []).append((version, at))

            def superseded(name: str, entity: str, version: int, arrival_ms: int | None) -> bool:
                return arrival_ms is not None and any(
                    v > version and at <= arrival_ms for v, at in newer.get((name, entity), ())
                )

            transform, compiled = app.load_transform(), app.compile_filter()
            version_attribute = app.source.version_attribute or "Version"
            found: dict[Any, dict[str, Any]] = {}
            oldest: int | None = None
            for record in history:
                arrival_ms = int(record.arrival.timestamp() * 1000) if record.arrival is not None else None
                if arrival_ms is not None:
                    oldest = arrival_ms if oldest is None else min(oldest, arrival_ms)
                try:
                    change = ChangeRecord.from_kinesis(
                        record.data,
                        sequence_number=record.sequence_number,
                        partition_key=record.partition_key,
                        version_attribute=version_attribute,
                    )
                    if not compiled.matches(change.raw):
                        continue
                    writes = plan_writes(change, transform)
                except Exception:  # noqa: BLE001 - a poison record: the dead letters hold it
                    continue
                for write in writes:
                    if type(write) is not Upsert:
                        continue
                    entity = entity_id(write.key)
                    for subscriber in spec.subscribers:
                        if write.document.get("type") not in subscriber.events:
                            continue
                        key = (subscriber.name, entity, write.version)
                        # acknowledged (from this record or an earlier copy the stream lost), or due
                        if key in first_ack or not superseded(subscriber.name, entity, write.version, arrival_ms):
                            found[(subscriber.name, entity, f"v{write.version}")] = {"in_order": True}
            seen["since_ms"] = oldest or 0
            return found

        def actual() -> dict[Any, dict[str, Any]]:
            found: dict[Any, dict[str, Any]] = {}
            highest: dict[tuple[str, str], int] = {}
            for ack in seen["acks"]:
                key, pair = (ack.subscriber, ack.entity, f"v{ack.version}"), (ack.subscriber, ack.entity)
                if ack.acked_at_ms < seen["since_ms"] or key in found:
                    continue  # before the stream's retention window (not checkable), or an exact repeat
                found[key] = {"in_order": ack.version > highest.get(pair, -1)}
                highest[pair] = max(ack.version, highest.get(pair, -1))
            return found

        def stored(write: Any) -> tuple[Any, dict[str, Any]]:
            raise NotImplementedError("a webhook sink is verified against its stream's history (expected)")

        return SinkView(f"{self.name}:{spec.target}", stored, actual, expected)

    def iam_statements(self, spec: WebhookSinkSpec, pipeline: PipelineConfig, cfn: Cfn) -> list[Json]:
        return [
            {
                "Sid": "DeliveryLedger",
                "Effect": "Allow",
                "Action": list(LEDGER_ACTIONS),
                "Resource": [cfn.table_arn(spec.target)],
            },
            {
                "Sid": "SubscriberSecrets",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue"],
                "Resource": [cfn.ref(s.secret_logical_id()) for s in spec.subscribers],
            },
        ]

    def task_environment(self, spec: WebhookSinkSpec, cfn: Cfn) -> list[Json]:
        return [{"Name": f"{s.secret_env}_ARN", "Value": cfn.ref(s.secret_logical_id())} for s in spec.subscribers] + [
            {"Name": variable, "Value": cfn.ref(_parameter(variable))} for variable in spec.variables
        ]

    def deployment(
        self, pipeline: PipelineConfig, specs: Sequence[Any], roles: Sequence[str], cfn: Cfn
    ) -> Contribution:
        """A generated secret per subscriber; a parameter per variable its URLs name."""
        subscribers = {s.secret_logical_id(): s for spec in specs for s in spec.subscribers}
        variables = sorted({v for spec in specs for v in spec.variables})
        return Contribution(
            parameters={
                _parameter(v): {
                    "Type": "String",
                    "AllowedPattern": "https://[^\\s]+",
                    "Description": f"${{{v}}} of the webhook subscribers' URLs (https://..., no trailing /)",
                }
                for v in variables
            },
            resources={
                logical: {
                    "Type": "AWS::SecretsManager::Secret",
                    "Metadata": {"checkov": {"skip": [{"id": c, "comment": why} for c, why in SECRET_SKIPS]}},
                    "Properties": {
                        "Description": f"Standard Webhooks signing secret of subscriber {s.name}: "
                        "give it to the subscriber as whsec_<value>",
                        "GenerateSecretString": {"PasswordLength": 40, "ExcludePunctuation": True},
                        "Tags": cfn.tags(subscriber=s.name),
                    },
                }
                for logical, s in subscribers.items()
            },
        )


KIND = _WebhookKind()
