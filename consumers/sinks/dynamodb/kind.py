"""The ``dynamodb`` sink kind: an app writes one DynamoDB table of producer_config.

    [sink]
    type = "dynamodb"
    target = "AppUsers_V2"                # a table of producer_config/pipeline.toml
    write_strategy = "transactions"       # optional: conditional-puts | transactions

Everything the project knows of the kind: its options, its builder, how ``make verify`` reads
the table back (tombstones and bookkeeping attributes left out), and on AWS the task role's
grant (``PutItem`` on that table only; the table itself belongs to producer_config).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from consumers.shared.codec import decode_image, encode_image
from consumers.sinks.deploy import Cfn, Contribution, Json, no_contribution
from consumers.sinks.dynamodb.requests import DynamoDbSinkConfig, WriteStrategy
from consumers.sinks.dynamodb.sink import DynamoDbSink
from consumers.sinks.dynamodb.tombstones import TOMBSTONE_ATTRIBUTE, TOMBSTONE_TTL_ATTRIBUTE
from consumers.sinks.registry import Clients, SinkConfigError, SinkView
from producer_config import PipelineConfig

__all__ = ["DEFAULT_WRITE_STRATEGY", "KIND", "DynamoDbSinkSpec"]

#: The write strategy when app.toml sets none, per target. AWS bills a transactional write at
#: 2 WCU per item: conditional puts. DynamoDB Local takes 5-7x more items/s in transactions
#: (docs/performance.md), but it runs one transaction at a time: the local stack keeps the
#: KCL's lease tables on a second DynamoDB Local so that lease renewals never queue behind
#: them. LocalStack has one DynamoDB Local for both: conditional puts.
DEFAULT_WRITE_STRATEGY = {
    "local": WriteStrategy.TRANSACTIONS,
    "localstack": WriteStrategy.CONDITIONAL_PUTS,
    "aws": WriteStrategy.CONDITIONAL_PUTS,
}
SINK_TABLE_ACTIONS = ("dynamodb:PutItem",)


@dataclass(frozen=True, slots=True)
class DynamoDbSinkSpec:
    target: str  # the table
    write_strategy: WriteStrategy | None = None  # None: the target's default

    type = "dynamodb"


class _DynamoDbKind:
    name = DynamoDbSinkSpec.type
    options = ("write_strategy",)

    def parse(self, target: str, options: Mapping[str, Any], pipeline: PipelineConfig) -> DynamoDbSinkSpec:
        if target not in pipeline.tables:
            raise SinkConfigError("sink.target", f"{target!r} is not a table of producer_config")
        strategy = options.get("write_strategy")
        strategies = tuple(s.value for s in WriteStrategy)
        if strategy is not None and strategy not in strategies:
            raise SinkConfigError(
                "sink.write_strategy",
                f"must be one of {strategies}, got {strategy!r} (or leave it out: conditional-puts)",
            )
        return DynamoDbSinkSpec(target, WriteStrategy(strategy) if strategy is not None else None)

    def build(self, spec: DynamoDbSinkSpec, pipeline: PipelineConfig, clients: Clients) -> DynamoDbSink:
        table = pipeline.table(spec.target)
        return DynamoDbSink(
            clients.aws("dynamodb"),
            DynamoDbSinkConfig(
                table_name=table.name,
                version_attribute=table.version_attribute or "Version",
                ttl_attribute=table.ttl_attribute or TOMBSTONE_TTL_ATTRIBUTE,
                write_strategy=spec.write_strategy or DEFAULT_WRITE_STRATEGY[clients.target],
            ),
        )

    def read_back(self, spec: DynamoDbSinkSpec, pipeline: PipelineConfig, clients: Clients) -> SinkView:
        table = pipeline.table(spec.target)
        ddb = clients.aws("dynamodb")
        bookkeeping = {table.version_attribute or "Version", table.ttl_attribute or TOMBSTONE_TTL_ATTRIBUTE}

        def identity(item: Mapping[str, Any]) -> tuple[str, ...]:
            return tuple(f"{name}={item[name]}" for name in table.key_names)

        def stored(write: Any) -> tuple[Any, dict[str, Any]]:
            item = decode_image(encode_image({**write.document, **write.key}))  # as DynamoDB gives it back
            return identity(item), {k: v for k, v in item.items() if k not in bookkeeping}

        def scan() -> Iterator[dict[str, Any]]:
            for page in ddb.get_paginator("scan").paginate(TableName=table.name, ConsistentRead=True):
                yield from page["Items"]

        def actual() -> dict[Any, dict[str, Any]]:
            items = (decode_image(raw) for raw in scan() if TOMBSTONE_ATTRIBUTE not in raw)
            return {identity(item): {k: v for k, v in item.items() if k not in bookkeeping} for item in items}

        return SinkView(spec.target, stored, actual)

    def iam_statements(self, spec: DynamoDbSinkSpec, pipeline: PipelineConfig, cfn: Cfn) -> list[Json]:
        return [
            {
                "Sid": "WriteSinkTable",
                "Effect": "Allow",
                "Action": list(SINK_TABLE_ACTIONS),
                "Resource": [cfn.table_arn(spec.target)],
            }
        ]

    def task_environment(self, spec: DynamoDbSinkSpec, cfn: Cfn) -> list[Json]:
        return []

    def deployment(
        self, pipeline: PipelineConfig, specs: Sequence[Any], roles: Sequence[str], cfn: Cfn
    ) -> Contribution:
        return no_contribution(pipeline, specs, roles, cfn)  # the tables are producer_config's


KIND = _DynamoDbKind()
