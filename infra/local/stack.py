"""The local stack: the consumer apps' workers as processes, and `up` / `down` / `status` /
`clean` over them and the servers (`infra.local.components`).

Component order matters only for the relay (it needs the provisioned tables and streams);
the servers start together and are then waited for one by one. On LocalStack the servers are
LocalStack (ours in host mode, or run by Docker compose or by you) and OpenSearch.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from functools import partial
from pathlib import Path

from consumers.runtime.config import AppConfig, discover_apps
from consumers.runtime.overrides import load_overrides
from infra.local import localstack, webhooks
from infra.local.components import Component, components, wait_healthy
from infra.local.preflight import check_port_free, check_tools
from infra.local.processes import ManagedProcess, running_commands
from infra.local.provision import describe_resources, provision
from infra.relay.pump import RelayPosition
from producer_config import PipelineConfig, load_pipeline
from services.config import REPO_ROOT, StackConfig, Target

__all__ = [
    "clean",
    "down",
    "held",
    "hold",
    "release",
    "running_workers",
    "status",
    "supervisor_process",
    "up",
    "worker",
    "worker_count",
    "workers",
]


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
        env_at_start=partial(webhooks.worker_environment, stack),
    )


def supervisor_process(stack: StackConfig) -> ManagedProcess:
    """The stack supervisor (`infra.local.supervisor`): restarts any component whose process is gone."""
    return ManagedProcess(
        "supervisor",
        (sys.executable, "-m", "infra.local.supervisor", "--state-dir", str(stack.state_dir)),
        marker=f"infra.local.supervisor --state-dir {stack.state_dir}",
        pid_file=stack.pid_dir / "supervisor.pid",
        log_file=stack.log_dir / "supervisor.log",
        cwd=REPO_ROOT,
        term_group=False,  # it stops alone; the components it started live in their own sessions
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


def _hold_file(stack: StackConfig, package: str) -> Path:
    return stack.state_dir / "apps" / package / "held"


def hold(stack: StackConfig, package: str, why: str) -> None:
    """Mark an app's workers as stopped on purpose: the stack supervisor leaves them stopped."""
    path = _hold_file(stack, package)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {why}\n")


def release(stack: StackConfig, package: str) -> None:
    """The app's workers should run again (`hold` undone)."""
    _hold_file(stack, package).unlink(missing_ok=True)


def held(stack: StackConfig, package: str) -> str | None:
    """Why the app's workers are held (when and by what), or None."""
    try:
        return _hold_file(stack, package).read_text().strip()
    except OSError:
        return None


def worker_count(stack: StackConfig, app: AppConfig) -> int:
    """How many workers the app runs: `cdc scale`'s count (state folder), else `app.workers`."""
    scaled = load_overrides(stack.state_dir, app.package).workers
    return app.workers if scaled is None else scaled


def workers(stack: StackConfig, pipeline: PipelineConfig) -> tuple[Component, ...]:
    """Every worker of every consumer app, as many as `worker_count` says."""
    return tuple(
        worker(stack, app, n) for app in discover_apps(pipeline) for n in range(1, worker_count(stack, app) + 1)
    )


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def up(stack: StackConfig | None = None, pipeline: PipelineConfig | None = None) -> None:
    """Start what is not running, wait for health, provision, start the relay and the
    consumer apps' workers. Idempotent."""
    stack = stack or StackConfig.from_env()
    pipeline = pipeline or load_pipeline()
    apps = discover_apps(pipeline)
    for app in apps:  # before anything starts: a transform that does not import names its app.toml
        app.load_transform()
    if stack.target is Target.AWS:
        _say(f"target {stack.target.value}: starting nothing, provisioning the external endpoints")
        provision(pipeline, stack, apps, say=_say)
        return
    started = time.monotonic()
    servers = components(stack, pipeline)
    consumers = workers(stack, pipeline)
    for app in apps:  # `up` runs every app: an app stopped on purpose (`cdc stop`) starts too
        release(stack, app.package)
    to_start = [c for c in servers + consumers if c.external is None and c.process.pid() is None]
    check_tools(tuple({tool for c in to_start for tool in c.tools}))
    for component in to_start:
        for port, variable in component.ports:
            check_port_free(stack.bind_host, port, component.title, variable)
        component.prepare()
    first = [c for c in servers if not c.after_provision]
    for component in first:
        if component.external == localstack.Mode.DOCKER.value:
            localstack.compose(stack, "up", "-d", "--wait", "localstack")
        elif component in to_start:
            component.process.start()
    for component in first:
        wait_healthy(component, stack.health_timeout_s)
        _say(f"  up  {component.title:<44} {component.endpoint}{_run_by(component)}")
    provision(pipeline, stack, apps, say=_say)
    rest = [c for c in servers if c.after_provision] + list(consumers)
    for component in rest:
        component.process.start()
    for component in rest:
        wait_healthy(component, stack.health_timeout_s)
        _say(f"  up  {component.title:<44} {component.endpoint}")
    if supervised(stack):
        supervisor_process(stack).start()
        _say(f"  up  {'Stack supervisor (restarts what dies)':<44} log={stack.log_dir / 'supervisor.log'}")
    _say(f"stack ready in {time.monotonic() - started:.1f}s (state: {stack.state_dir})")


def supervised(stack: StackConfig) -> bool:
    """Whether `up` starts the stack supervisor: yes, unless CDC_SUPERVISE=0 (the test session
    runs without it, so its tests kill and start components themselves; the chaos tests start it)."""
    return os.environ.get("CDC_SUPERVISE", "1") != "0"


def _run_by(component: Component) -> str:
    return f"  (run by {component.external}, not by cdc)" if component.external else ""


def down(stack: StackConfig | None = None) -> None:
    """Stop every component, consumers and relay first; data stays. Every worker of the stack
    is found by its command line (`running_workers`), however many the apps configure now.
    A LocalStack this project did not start is left running; one it started with Docker
    compose is stopped with it."""
    stack = stack or StackConfig.from_env()
    if stack.target is Target.AWS:
        _say("target aws: nothing runs here to stop; an app's tasks stop with `cdc stop APP` (ECS)")
        return
    pipeline = load_pipeline()
    configured = {c.process.name: c.process for c in workers(stack, pipeline)}
    consumers = {**configured, **{p.name: p for p in running_workers(stack)}}
    server_components = tuple(reversed(components(stack, pipeline)))
    servers = {c.process.name: c.process for c in server_components if c.external is None}
    running = {name for name, process in {**consumers, **servers}.items() if process.pid() is not None}
    if supervisor_process(stack).stop(timeout_s=15):  # first: it would start again what stops next
        _say(f"  {'stopped':<12} supervisor")
    for process in consumers.values():  # in parallel: each one's graceful shutdown checkpoints
        process.signal_stop()
    for name, process in (*sorted(consumers.items()), *servers.items()):
        process.stop(timeout_s=45)
        extra = "" if name in configured or name in servers else " (not in the apps' configuration now)"
        _say(f"  {'stopped' if name in running else 'not running':<12} {name}{extra}")
    for component in server_components:
        if component.external == localstack.Mode.DOCKER.value:
            localstack.compose(stack, "stop")
            _say(f"  stopped      {component.process.name} (docker compose)")
        elif component.external:
            _say(f"  left running {component.title} at {component.endpoint}{_run_by(component)}")


def clean(stack: StackConfig | None = None, *, keep_logs: bool = False) -> None:
    """Stop everything and wipe the state folder (data, logs, relay positions); ``keep_logs``
    wipes all but the logs (the test session empties its stack between modules so)."""
    stack = stack or StackConfig.from_env()
    down(stack)
    for component in components(stack, load_pipeline()):
        if component.external == localstack.Mode.DOCKER.value:
            localstack.compose(stack, "down", "--volumes")
        elif component.external:
            _say(f"  kept         the tables and streams of {component.title} at {component.endpoint} (not ours)")
    if keep_logs and stack.state_dir.is_dir():
        for path in stack.state_dir.iterdir():
            if path.is_dir() and path != stack.log_dir:
                shutil.rmtree(path, ignore_errors=True)
            elif path.is_file():
                path.unlink()
        _say(f"  emptied {stack.state_dir} (logs kept)")
    else:
        shutil.rmtree(stack.state_dir, ignore_errors=True)
        _say(f"  removed {stack.state_dir}")


def status(stack: StackConfig | None = None) -> bool:
    """Print components, streams, tables and consumer apps; True when every component is up."""
    stack = stack or StackConfig.from_env()
    pipeline = load_pipeline()
    all_up = True
    print(f"components (target {stack.target.value}):")
    if stack.target is Target.AWS:
        print("  none run here: the services are AWS's, the workers ECS tasks (apps below)")
        return True
    for component in components(stack, pipeline) + workers(stack, pipeline):
        pid = component.process.pid()
        if component.external:
            state = "up" if component.healthy() else "down"
        else:
            state = "up" if pid is not None and component.healthy() else ("starting" if pid else "down")
        all_up &= state == "up"
        where = f"run by {component.external}" if component.external else f"log={component.process.log_file}"
        print(f"  {state:<8} {component.title:<44} {component.endpoint:<28} pid={pid or '-':<8} {where}")
    if stack.target is not Target.AWS:
        supervisor = supervisor_process(stack)
        pid = supervisor.pid()
        state = "up" if pid else ("down" if supervised(stack) else "off")
        all_up &= state != "down"
        print(
            f"  {state:<8} {'Stack supervisor':<44} {'(CDC_SUPERVISE=0)' if state == 'off' else '':<28} "
            f"pid={pid or '-':<8} log={supervisor.log_file}"
        )
        for app in discover_apps(pipeline):
            if why := held(stack, app.package):
                print(f"  held     {app.name} workers: stopped on purpose ({why}); `cdc start {app.package}` runs them")
    for table in pipeline.source_tables if stack.target is Target.LOCAL else ():
        for gap in RelayPosition.load(stack.relay_dir / f"{table.name}.json").gaps:
            print(
                f"  DATA LOST  relay, table {table.name}, stream shard {gap['shard']}: changes after "
                f"{gap['after']} were trimmed before they were relayed (detected {gap['detected']}); "
                "run `make verify`"
            )
    if stack.target is Target.LOCALSTACK:
        print(ONE_SHARD_NOTE)
    if all_up:
        for line in describe_resources(pipeline, stack):
            print(line)
    return all_up


ONE_SHARD_NOTE = (
    "note: LocalStack's streaming destination puts every change of a table on one shard (partition key\n"
    "      md5(table + hash key name)): each change stream fills one shard whatever its shard count, so\n"
    "      more than one worker per app adds no throughput here (on AWS the key is the item's key)."
)
