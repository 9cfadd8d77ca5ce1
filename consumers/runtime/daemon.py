"""One KCL worker of one app: generates its `.properties`, runs the MultiLangDaemon, supervises it.

    python -m consumers.runtime.daemon --app app_user_management --worker 1

The properties are derived from `consumers/<app>/app.toml`, `producer_config/` and the stack's
endpoints on every start (never edited by hand). The MultiLangDaemon exits when a record
processor dies (e.g. a poison record could not be dead-lettered); the supervisor then starts it
again after a back-off, and the KCL resumes every shard from its last checkpoint. SIGTERM
stops the daemon gracefully (its shutdown lets processors checkpoint) and ends the supervisor.

Once every record processor of a stopping daemon has exited (each checkpointed in
`shutdown_requested`), the JVM is ended without waiting for the rest of the KCL's final shutdown:
KCL 3.1.3 keeps waiting for the processors it already shut down until `failoverTimeMillis` has
passed ("Lease failover time is reached, so forcing shutdown", KCL #1374), ~10 s of nothing on
every stop, scale and replay. Its leases stay owned until they expire either way.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import amazon_kclpy

from base.retry import Backoff
from consumers.runtime.config import AppConfig, load_app
from producer_config import ConfigError, PipelineConfig, load_pipeline
from services.clients import LOCAL_CREDENTIALS
from services.config import REPO_ROOT, StackConfig, Target

__all__ = ["FAILOVER_MS", "KCL_JARS", "daemon_command", "main", "properties_path", "render_properties", "worker_id"]

log = logging.getLogger("cdc.daemon")
KCL_JARS = Path(amazon_kclpy.__file__).parent / "jars"


def daemon_command(properties: Path) -> list[str]:
    """The MultiLangDaemon's command line (its JVM settings) for one properties file."""
    return [
        "java",
        "-Xms64m",
        "-Xmx384m",
        "-cp",
        f"{KCL_JARS}/*",
        "software.amazon.kinesis.multilang.MultiLangDaemon",
        "--properties-file",
        str(properties),
    ]


#: the JVM starts again after it exited (n = exits in a row, 1 after a run of over a minute):
#: 1, 2, 4, 8, 16, then 30 s
_RESTART_BACKOFF = Backoff(first_s=1.0, cap_s=30.0)
_GRACE_S = 30
#: how long a stopping JVM must have had no record processor left before it is ended
_NO_PROCESSOR_FOR_S = 1.0
#: a lease not renewed for this long is expired and taken over by another worker
FAILOVER_MS = 10_000
#: the KCL's metricsLevel when app.toml sets no ``kcl.metrics_level``: its CloudWatch metrics on
#: AWS (SUMMARY: per-app throughput, lag and lease counts, namespace = the application name);
#: none on the emulators, which have no CloudWatch
DEFAULT_METRICS_LEVEL = {Target.LOCAL: "NONE", Target.LOCALSTACK: "NONE", Target.AWS: "SUMMARY"}


def properties_path(app: AppConfig, stack: StackConfig, worker: int) -> Path:
    return stack.state_dir / "apps" / app.package / f"worker-{worker}.properties"


def worker_id(app: AppConfig, worker: int) -> str:
    """The KCL workerId of worker ``worker`` of the app (stable across restarts)."""
    return f"{app.name}-worker-{worker}"


def render_properties(
    app: AppConfig,
    pipeline: PipelineConfig,
    stack: StackConfig,
    worker: int,
    *,
    start_at: float | None = None,
    stream_created: float | None = None,
) -> str:
    """The KCL MultiLangDaemon configuration of one worker (docs/configuration.md).

    ``start_at`` (epoch seconds): a replay's start, published in the app's control item
    (`consumers.runtime.control`); it wins over the app.toml's position.
    ``stream_created`` (epoch seconds; `main` gives it on every target): a TRIM_HORIZON start
    is written as AT_TIMESTAMP at the stream's creation, the same records. kinesis-mock answers a TRIM_HORIZON shard listing of a resharded stream with every shard,
    closed ones included; the KCL's first shard sync of an empty lease table then fails
    ("Incomplete hash range found") and its scheduler gives up after 20 attempts, so an app
    started after a reshard (a new app, a lease table reset) would never read."""
    if start_at is None and app.starting_timestamp is not None:
        start_at = app.starting_timestamp.timestamp()
    if start_at is None and app.starting_position == "TRIM_HORIZON" and stream_created is not None:
        start_at = stream_created
    props: dict[str, object] = {
        "executableName": f"{sys.executable} -m consumers.runtime.worker --app {app.package}",
        "streamName": app.stream_name,
        "applicationName": app.name,
        "workerId": worker_id(app, worker),
        "AwsCredentialsProvider": "DefaultCredentialsProvider",
        "processingLanguage": f"python/{sys.version_info.major}.{sys.version_info.minor}",
        "regionName": pipeline.region,
        "retrievalMode": "POLLING",
        "maxRecords": app.max_records,
        "idleTimeBetweenReadsInMillis": app.polling_interval_ms,
        # Lease and shard bookkeeping tuned for a small local stack: fast failover after a crash,
        # children of a resharded shard picked up within seconds.
        "failoverTimeMillis": FAILOVER_MS,
        "leaseAssignmentIntervalMillis": 2_000,
        "workerMetricsReporterFreqInMillis": 2_000,
        "shardSyncIntervalMillis": 5_000,
        "parentShardPollIntervalMillis": 2_000,
        "shutdownGraceMillis": _GRACE_S * 1000,
        "cleanupLeasesUponShardCompletion": "true",
        "validateSequenceNumberBeforeCheckpointing": "true",
        # empty polls reach the processor too: a checkpoint held until the stream stored the
        # records (consumers.runtime.checkpoint) is written on an idle stream, and the lag
        # (millis_behind_latest) is seen while idle
        "callProcessRecordsEvenForEmptyRecordList": "true",
        "metricsLevel": app.kcl_metrics_level or DEFAULT_METRICS_LEVEL[stack.target],
    }
    # only one of the two: both write the same KCL field, in no fixed order
    if start_at is None:
        props["initialPositionInStream"] = app.starting_position
    else:
        props["initialPositionInStreamExtended"] = int(start_at)
    if stack.kinesis_endpoint:
        props["kinesisEndpoint"] = stack.kinesis_endpoint
    if stack.leases_endpoint:
        props["dynamoDBEndpoint"] = stack.leases_endpoint
    source = Path(app.source_file)
    header = (
        f"# Generated by consumers/runtime/daemon.py from "
        f"{source.relative_to(REPO_ROOT) if source.is_relative_to(REPO_ROOT) else source}\n"
        "# and producer_config/pipeline.toml on every start. Do not edit.\n"
    )
    return header + "".join(f"{key} = {value}\n" for key, value in props.items())


def _daemon_env(stack: StackConfig, pipeline: PipelineConfig) -> dict[str, str]:
    env = dict(os.environ, AWS_REGION=pipeline.region, CDC_STATE_DIR=str(stack.state_dir))
    if stack.target is not Target.AWS:
        env.update(
            AWS_ACCESS_KEY_ID=LOCAL_CREDENTIALS["aws_access_key_id"],
            AWS_SECRET_ACCESS_KEY=LOCAL_CREDENTIALS["aws_secret_access_key"],
        )
    return env


def _published_start(stack: StackConfig, pipeline: PipelineConfig, app: AppConfig) -> float | None:
    """A replay's start position from the app's control item (`consumers.runtime.control`)."""
    from consumers.runtime.control import ControlStore
    from services.clients import aws_client  # boto3: only here

    return ControlStore(aws_client("dynamodb", stack, pipeline.region)).start_at(app.name)


def _stream_created(stack: StackConfig, pipeline: PipelineConfig, app: AppConfig) -> float | None:
    """When the app's stream was created (see `render_properties`), on every target: on AWS the
    same records as TRIM_HORIZON too (a time before the oldest record starts at the oldest), and
    a lease that sits on the AT_TIMESTAMP sentinel (an app first started elsewhere, a replay's
    start cleared too early) still gets a time instead of the KCL's NullPointerException. None
    when the stream cannot be described (then the KCL gets TRIM_HORIZON, and says so if the
    listing fails)."""
    from services.clients import aws_client  # boto3: only here

    try:
        summary = aws_client("kinesis", stack, pipeline.region).describe_stream_summary(StreamName=app.stream_name)
    except Exception as exc:  # noqa: BLE001 - the KCL reports an unreachable stream itself
        log.warning("cannot describe stream %s (%s): starting at TRIM_HORIZON", app.stream_name, exc)
        return None
    return float(summary["StreamDescriptionSummary"]["StreamCreationTimestamp"].timestamp() // 1)


def _children(pid: int) -> set[int] | None:
    """The child processes of ``pid`` (the JVM's record processors), from /proc; None without
    /proc (then a stop waits for the KCL's own final shutdown)."""
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.is_dir():
        return None
    found: set[int] = set()
    for children in tasks.glob("*/children"):
        try:
            found.update(int(child) for child in children.read_text().split())
        except OSError:  # the thread ended meanwhile
            continue
    return found


def _end_once_processors_exited(jvm: subprocess.Popen) -> None:
    """After SIGTERM: once the JVM has had no record processor for `_NO_PROCESSOR_FOR_S`, every
    shard it held has checkpointed and shut down; end the JVM (see the module docstring)."""
    alone_since = None
    while jvm.poll() is None:
        children = _children(jvm.pid)
        if children is None:
            return
        if children:
            alone_since = None
        elif alone_since is None:
            alone_since = time.monotonic()
        elif time.monotonic() - alone_since >= _NO_PROCESSOR_FOR_S:
            log.info("every record processor has exited; ending the MultiLangDaemon without its final wait")
            jvm.kill()
            return
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", required=True)
    parser.add_argument("--worker", type=int, default=1)
    parser.add_argument("--state-dir", help="state folder (default: CDC_STATE_DIR or .state)")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    env = dict(os.environ, **({"CDC_STATE_DIR": args.state_dir} if args.state_dir else {}))
    stack, pipeline = StackConfig.from_env(env), load_pipeline()
    from consumers.runtime.wiring import build_sink  # boto3: only here

    try:
        app = load_app(args.app, pipeline)
        app.load_transform()  # a transform that does not import fails here, named, not in each record processor
        build_sink(app, pipeline, stack)  # so does a sink its kind refuses (a webhook subscriber's secret)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    path = properties_path(app, stack, args.worker)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        render_properties(
            app,
            pipeline,
            stack,
            args.worker,
            start_at=_published_start(stack, pipeline, app),
            stream_created=_stream_created(stack, pipeline, app),
        )
    )
    command = daemon_command(path)

    stopping = threading.Event()
    child: list[subprocess.Popen] = []

    def on_term(*_):
        if stopping.is_set():  # `stop` may signal again while the first one is under way
            return
        stopping.set()
        if child and child[0].poll() is None:
            child[0].send_signal(signal.SIGTERM)
            threading.Thread(target=_end_once_processors_exited, args=(child[0],), daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    restarts = 0
    while not stopping.is_set():
        log.info("starting MultiLangDaemon for %s worker %d (%s)", app.name, args.worker, path)
        started = time.monotonic()
        child[:] = [
            subprocess.Popen(command, cwd=REPO_ROOT, env=_daemon_env(stack, pipeline), stdin=subprocess.DEVNULL)
        ]
        code = child[0].wait()
        if stopping.is_set():
            break
        restarts = 0 if time.monotonic() - started > 60 else restarts + 1
        delay = _RESTART_BACKOFF.delay(restarts + 1)
        log.error("MultiLangDaemon for %s exited with %s; restarting in %gs", app.name, code, delay)
        stopping.wait(delay)
    log.info("worker %s-%d stopped", app.name, args.worker)
    return 0


if __name__ == "__main__":
    sys.exit(main())
