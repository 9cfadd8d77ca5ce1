"""What every `cdc` command works with: the stack's target, the pipeline, the apps, and clients
made once per command. `main` builds it after the arguments parsed, so a usage error reads no
configuration."""

from __future__ import annotations

import os
from typing import Any

from botocore.exceptions import ClientError

from consumers.runtime.config import AppConfig, discover_apps
from consumers.runtime.control import ControlStore
from infra.ops.apps import AppWorkers
from infra.ops.cli.output import say
from infra.ops.ecs import EcsWorkers
from infra.ops.workers import Workers
from infra.relay.backlog import RelayBacklog, backlog
from producer_config import PipelineConfig, load_pipeline
from services.clients import aws_client, lease_client
from services.config import StackConfig, StackError, Target

__all__ = ["Context"]


class Context:
    """What every command works with: the stack's target, the pipeline, the apps, clients."""

    def __init__(self) -> None:
        self.stack = StackConfig.from_env()
        self.pipeline: PipelineConfig = load_pipeline()
        self.apps = discover_apps(self.pipeline)
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        """A client of ``service`` (dynamodb, kinesis, and on AWS ecs, application-autoscaling,
        cloudwatch), or of the KCL's lease tables (``leases``)."""
        if service not in self._clients:
            region = self.pipeline.region
            made = lease_client(self.stack, region) if service == "leases" else aws_client(service, self.stack, region)
            self._clients[service] = made
        return self._clients[service]

    def app(self, name: str) -> AppConfig:
        for app in self.apps:
            if name in (app.package, app.name):
                return app
        known = ", ".join(f"{a.package} ({a.name})" for a in self.apps)
        raise StackError(f"unknown app {name!r}: the apps are {known}")

    def workers(self, app: AppConfig) -> Workers:
        """The app's workers where the target runs them: local processes, or its ECS service."""
        control = ControlStore(self.client("dynamodb"))
        if self.stack.target is Target.AWS:
            return EcsWorkers(
                self.stack,
                app,
                self.client("leases"),
                control,
                self.client("ecs"),
                self.client("application-autoscaling"),
                self.client("cloudwatch"),
                say=say,
            )
        return AppWorkers(self.stack, app, self.client("leases"), control, say=say)

    def processors(self, app: AppConfig):
        """The app's own per-shard processor factory (its sink, filter, transform, dead letters)."""
        from consumers.runtime.wiring import build_batch_processor  # opensearch-py: only when needed

        if self.stack.target is not Target.AWS:  # what the stack's workers get: the local subscribers
            from infra.local.webhooks import worker_environment

            os.environ.update(worker_environment(self.stack))
        return build_batch_processor(app.package, self.stack)[0]

    def relay_backlogs(self) -> list[RelayBacklog]:
        """The relay stage of each source table, where the project relays (the local stack)."""
        if self.stack.target is not Target.LOCAL:
            return []
        return [
            backlog(self.client("dynamodbstreams"), self.client("dynamodb"), table.name, self.stack.relay_dir)
            for table in self.pipeline.source_tables
        ]

    def dead_letters(self, app: AppConfig) -> int | None:
        try:
            return int(self.client("dynamodb").scan(TableName=app.dead_letter_table, Select="COUNT")["Count"])
        except ClientError:
            return None
