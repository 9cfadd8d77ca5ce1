"""Builds an app's sink, dead-letter table and batch processor from configuration (the edge)."""

from __future__ import annotations

from collections.abc import Callable

from consumers.runtime import stats as worker_stats
from consumers.runtime.batch import BatchProcessor
from consumers.runtime.config import AppConfig, load_app
from consumers.runtime.deadletter import DeadLetterTable
from consumers.sinks import Sink
from consumers.sinks.dynamodb import TOMBSTONE_TTL_ATTRIBUTE, DynamoDbSink, DynamoDbSinkConfig, WriteStrategy
from consumers.sinks.opensearch import OpenSearchSink, OpenSearchSinkConfig, default_document_id, template_document_id
from producer_config import PipelineConfig, load_pipeline
from services.clients import aws_client, opensearch_client
from services.config import StackConfig, Target
from services.durability import Durability, durability_for

__all__ = ["DEFAULT_WRITE_STRATEGY", "build_batch_processor", "build_sink", "durability", "stats_dir"]

#: The DynamoDB sink's write strategy when app.toml sets no ``sink.write_strategy``. AWS bills a
#: transactional write at 2 WCU per item: conditional puts. DynamoDB Local takes 5-7x more items/s
#: in transactions (README, Performance), but it runs one transaction at a time: the local stack
#: keeps the KCL's lease tables on a second DynamoDB Local (``StackConfig.leases_endpoint``) so
#: that lease renewals never queue behind them. LocalStack has one DynamoDB Local for both:
#: conditional puts.
DEFAULT_WRITE_STRATEGY = {
    Target.LOCAL: WriteStrategy.TRANSACTIONS,
    Target.LOCALSTACK: WriteStrategy.CONDITIONAL_PUTS,
    Target.AWS: WriteStrategy.CONDITIONAL_PUTS,
}


def build_sink(app: AppConfig, pipeline: PipelineConfig, stack: StackConfig) -> Sink:
    if app.sink.type == "dynamodb":
        table = pipeline.table(app.sink.target)
        return DynamoDbSink(
            aws_client("dynamodb", stack, pipeline.region),
            DynamoDbSinkConfig(
                table_name=table.name,
                version_attribute=table.version_attribute or "Version",
                ttl_attribute=table.ttl_attribute or TOMBSTONE_TTL_ATTRIBUTE,
                write_strategy=app.sink.write_strategy or DEFAULT_WRITE_STRATEGY[stack.target],
            ),
        )
    template = app.sink.document_id
    return OpenSearchSink(
        opensearch_client(stack),
        OpenSearchSinkConfig(
            index=app.sink.target, document_id=template_document_id(template) if template else default_document_id
        ),
    )


def build_batch_processor(
    package: str, stack: StackConfig | None = None
) -> tuple[Callable[[str], BatchProcessor], AppConfig]:
    """A factory of per-shard processors for the app (one sink and client set per process)."""
    stack = stack or StackConfig.from_env()
    pipeline = load_pipeline()
    app = load_app(package, pipeline)
    sink = build_sink(app, pipeline, stack)
    dead_letters = DeadLetterTable(aws_client("dynamodb", stack, pipeline.region), app.dead_letter_table)
    transform, compiled = app.load_transform(), app.compile_filter()
    return (
        lambda shard_id: BatchProcessor(
            app.name,
            shard_id,
            sink,
            dead_letters,
            transform,
            compiled,
            retry=app.retry,
            version_attribute=app.source.version_attribute or "Version",
        )
    ), app


def stats_dir(app: AppConfig, stack: StackConfig | None = None):
    return worker_stats.stats_dir((stack or StackConfig.from_env()).state_dir, app.package)


def durability(app: AppConfig, stack: StackConfig | None = None) -> Durability:
    """What the app's stream guarantees about the records it acknowledged (``services.durability``)."""
    stack = stack or StackConfig.from_env()
    return durability_for(stack, aws_client("kinesis", stack, load_pipeline().region), app.stream_name)
