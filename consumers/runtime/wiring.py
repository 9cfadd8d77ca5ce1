"""Builds an app's sink, dead-letter table and batch processor from configuration (the edge)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from consumers.runtime import stats as worker_stats
from consumers.runtime.batch import BatchProcessor
from consumers.runtime.config import AppConfig, load_app
from consumers.runtime.deadletter import DeadLetterTable
from consumers.sinks import Sink
from consumers.sinks.registry import SinkConfigError, kind_of
from producer_config import ConfigError, PipelineConfig, load_pipeline
from services.clients import aws_client, opensearch_client
from services.config import StackConfig
from services.durability import Durability, durability_for

__all__ = ["TargetClients", "build_batch_processor", "build_sink", "durability", "stats_dir"]


@dataclass(frozen=True, slots=True)
class TargetClients:
    """The clients of one target, for the sink kinds (``consumers.sinks.registry.Clients``)."""

    stack: StackConfig
    region: str

    @property
    def target(self) -> str:
        return self.stack.target.value

    def aws(self, service: str) -> Any:
        return aws_client(service, self.stack, self.region)

    def opensearch(self) -> Any:
        return opensearch_client(self.stack)


def build_sink(app: AppConfig, pipeline: PipelineConfig, stack: StackConfig) -> Sink:
    """The app's sink; ``ConfigError`` naming its app.toml and key when the kind refuses what it
    finds at start (a webhook subscriber's secret, for one)."""
    try:
        return kind_of(app.sink.type).build(app.sink, pipeline, TargetClients(stack, pipeline.region))
    except SinkConfigError as exc:
        raise ConfigError(app.source_file, exc.key, exc.reason) from None


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
