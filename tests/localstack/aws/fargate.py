"""THE STAND-IN FOR FARGATE: ECS's scheduler, played by the tests.

moto stores ECS services and tasks but runs nothing: a service's desired count never becomes
running tasks. This plays the part Fargate and the ECS scheduler play, with the project's real
worker processes:

  * every second, for each service of the cluster: fewer live tasks than the desired count ->
    start one (``RunTask`` in moto, so `cdc` sees it, with ``group = service:<name>`` as ECS sets
    it; then the task definition's container, run as a local process: the worker image's CMD,
    `python -m infra.deploy.aws.entrypoint`, with the container's environment); more -> stop the
    newest (SIGTERM, as ECS sends it, SIGKILL after the container's ``stopTimeout``; then
    ``StopTask``); a task whose process ended is stopped in moto and replaced, as ECS does;
  * each task gets the private address of the network interface moto made for it through its
    own container metadata endpoint (``ECS_CONTAINER_METADATA_URI_V4``), which the entrypoint turns into its worker id;
  * a container's ``/tmp`` is a folder of its own; the EMF documents it writes to its stdout
    (``CDC_METRICS_PATH``) are read and put into CloudWatch (moto) as CloudWatch Logs would
    extract them.

What it does not prove: image build and pull, IAM (moto does not enforce the task role), awsvpc
networking, Fargate's start-up time, health checks, deployments with two task definitions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from services.config import REPO_ROOT

__all__ = ["FargateStandIn"]

#: the worker image's CMD (infra/deploy/aws/worker.Dockerfile; a unit test checks it)
COMMAND = [sys.executable, "-m", "infra.deploy.aws.entrypoint"]


@dataclass
class _Task:
    arn: str
    service: str
    address: str
    process: subprocess.Popen
    folder: Path
    stop_timeout_s: float
    metrics_read: int = 0
    started: float = field(default_factory=time.time)


class FargateStandIn:
    """Runs the tasks of every service of ``cluster`` (moto, through ``ecs``) as local
    processes; ``environment``: what the platform adds to each container's own (the emulators'
    endpoints and credentials: on AWS the task role and the SDKs' defaults)."""

    def __init__(self, ecs: Any, cloudwatch: Any, cluster: str, environment: dict[str, str], folder: Path) -> None:
        self.ecs, self.cloudwatch, self.cluster = ecs, cloudwatch, cluster
        self.environment, self.folder = environment, folder
        self.tasks: list[_Task] = []
        self.started_count = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._metadata = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self._metadata.serve_forever, daemon=True).start()
        self._loop = threading.Thread(target=self._run, daemon=True, name="fargate-stand-in")

    def __enter__(self) -> FargateStandIn:
        self._loop.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._loop.join(timeout=30)
        with self._lock:
            for task in self.tasks:  # all at once: each takes seconds to checkpoint and end
                task.process.send_signal(signal.SIGTERM)
            for task in list(self.tasks):
                self._stop_task(task, "stand-in closed")
        self._metadata.shutdown()

    # ------------------------------------------------------------------------ the metadata
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Metadata(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                task_id = self.path.strip("/").split("/")[1] if self.path.count("/") >= 2 else ""
                found = next((t for t in stand_in.tasks if t.arn.endswith("/" + task_id)), None)
                if found is None:
                    self.send_error(404)
                    return
                body = json.dumps({"TaskARN": found.arn, "Networks": [{"IPv4Addresses": [found.address]}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        return Metadata

    # --------------------------------------------------------------------------- the loop
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._lock:
                    self._reconcile()
                    self._forward_metrics()
            except Exception as exc:  # noqa: BLE001 - keep scheduling; the tests see the effects
                print(f"fargate stand-in: {exc!r}", file=sys.stderr)
            self._stop.wait(1.0)

    def _reconcile(self) -> None:
        arns = self.ecs.list_services(cluster=self.cluster)["serviceArns"]
        services = self.ecs.describe_services(cluster=self.cluster, services=arns)["services"] if arns else []
        for task in [t for t in self.tasks if t.process.poll() is not None]:
            self._stop_task(task, f"Essential container in task exited ({task.process.returncode})")
        for service in services:
            mine = [t for t in self.tasks if t.service == service["serviceName"]]
            desired = service["desiredCount"] if service.get("status") == "ACTIVE" else 0
            if len(mine) < desired:
                self._start_task(service)
            elif len(mine) > desired:
                self._stop_task(max(mine, key=lambda t: t.started), "Scaling activity initiated by deployment")

    def _start_task(self, service: dict[str, Any]) -> None:
        definition = self.ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
        container = definition["containerDefinitions"][0]
        self.started_count += 1
        address = f"10.0.0.{self.started_count % 250 + 2}"
        task = self.ecs.run_task(
            cluster=self.cluster,
            taskDefinition=definition["taskDefinitionArn"],
            count=1,
            group=f"service:{service['serviceName']}",
            startedBy="fargate-stand-in",
            launchType="FARGATE",
            networkConfiguration=service["networkConfiguration"],
        )["tasks"][0]
        details = {d["name"]: d["value"] for a in task.get("attachments", []) for d in a.get("details", [])}
        address = details.get("privateIPv4Address", address)  # the ENI moto made for the task
        task_id = task["taskArn"].rsplit("/", 1)[-1]
        folder = self.folder / task_id
        (folder / "tmp").mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "JAVA_HOME", "LANG")}
        env.update(
            {e["name"]: e["value"].replace("/tmp", str(folder / "tmp")) for e in container.get("environment", [])}
        )
        env["CDC_METRICS_PATH"] = str(folder / "stdout.emf")  # the container's stdout, for the EMF documents
        env["ECS_CONTAINER_METADATA_URI_V4"] = f"http://127.0.0.1:{self._metadata.server_port}/v4/{task_id}"
        env.update(self.environment)
        log = open(folder / "task.log", "wb")
        process = subprocess.Popen(COMMAND, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.tasks.append(
            _Task(task["taskArn"], service["serviceName"], address, process, folder, container.get("stopTimeout", 30))
        )
        print(f"fargate stand-in: started {service['serviceName']} task {task_id} at {address}", file=sys.stderr)

    def _stop_task(self, task: _Task, reason: str) -> None:
        if task.process.poll() is None:
            task.process.send_signal(signal.SIGTERM)
            try:
                task.process.wait(timeout=task.stop_timeout_s)
            except subprocess.TimeoutExpired:
                task.process.kill()
                task.process.wait()
        self.ecs.stop_task(cluster=self.cluster, task=task.arn, reason=reason)
        self.tasks.remove(task)
        print(
            f"fargate stand-in: stopped {task.service} task {task.arn.rsplit('/', 1)[-1]} ({reason})", file=sys.stderr
        )

    # ------------------------------------------------------------------- EMF -> CloudWatch
    def _forward_metrics(self) -> None:
        for task in self.tasks:
            path = task.folder / "stdout.emf"
            if not path.exists():
                continue
            with open(path, "rb") as stream:
                stream.seek(task.metrics_read)
                chunk = stream.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            task.metrics_read += len(complete)
            for line in complete.splitlines():
                self._put_emf(json.loads(line))

    def _put_emf(self, document: dict[str, Any]) -> None:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for dimensions in directive["Dimensions"]:
                self.cloudwatch.put_metric_data(
                    Namespace=directive["Namespace"],
                    MetricData=[
                        {
                            "MetricName": metric["Name"],
                            "Unit": metric.get("Unit", "None"),
                            **_values(document[metric["Name"]]),
                            "Dimensions": [{"Name": d, "Value": str(document[d])} for d in dimensions],
                        }
                        for metric in directive["Metrics"]
                    ],
                )


def _values(value: Any) -> dict[str, Any]:
    """An EMF metric's value (a number, or a list of up to 100) as PutMetricData takes it."""
    if isinstance(value, list):
        return {"Values": [float(v) for v in value]}
    return {"Value": float(value)}
