"""One consumer app's workers as its ECS service on AWS (``CDC_TARGET=aws``): one Fargate task per
KCL worker, in the cluster and under the service name the template gives them
(`infra.deploy.aws.template`: cluster ``kinesis-cdc``, service = the app's name).

What each operation does here, and waits for:
  * the count is the service's desired count; the tasks counted are the service's own
    (``group = service:<name>``) whose last status is RUNNING;
  * `stop`: suspends the app's Application Auto Scaling (if it has a scalable target, so that
    it does not start tasks again), keeps the count in the app's control item, sets the desired
    count to 0, waits until its tasks are gone (each got SIGTERM: its processors checkpoint), then
    until their leases expired;
  * `start`: the count kept by `stop` (or ``--workers``, else app.toml's), then resumes the
    scaling;
  * `scale N`: the desired count, then the steady state (N tasks running, one deployment), then N
    KCL workers alive (`infra.ops.leases.live_workers`), then an even spread of the open leases:
    KCL 3.1.3 balances by throughput only, so on a quiet stream a new worker would get nothing.
    Leases move as the KCL leader moves them (new owner, counter + 1); the old owner's
    processor ends with ``lease_lost`` and the new one resumes from the checkpoint. With
    autoscaling on, the count holds until its next scaling activity: to pin it, set
    ``[scaling]`` min and max in app.toml.

Worker ids come from the tasks' private addresses (`infra.deploy.aws.entrypoint`), so `cdc`
never needs to map a task to its id: the lease table and the KCL's worker metrics table say who is
alive and what each holds.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from consumers.runtime.config import AppConfig
from consumers.runtime.control import ControlStore
from consumers.runtime.daemon import FAILOVER_MS
from consumers.runtime.metrics import NAMESPACE
from infra.deploy.aws.template import CLUSTER_NAME
from infra.ops.leases import even_spread, leader, live_workers, move, release_leader_lock, wait_expired
from infra.ops.workers import StopReport, Workers
from services.config import StackConfig, StackError

__all__ = ["EcsWorkers"]

#: how long a service may take to reach its desired count (Fargate: image pull, ENI, start)
STEADY_TIMEOUT_S = 600.0
#: a worker whose metrics (every 2 s) are older than this is not alive
_ALIVE_S = 10.0
_SCALABLE_DIMENSION = "ecs:service:DesiredCount"


class EcsWorkers(Workers):
    """The app's ECS service; ``ecs`` and ``scaling`` are boto3 clients of ECS and Application
    Auto Scaling (both honour ``AWS_ENDPOINT_URL_ECS`` / ``AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING``)."""

    def __init__(
        self,
        stack: StackConfig,
        app: AppConfig,
        lease_db: Any,
        control: ControlStore,
        ecs: Any,
        scaling: Any,
        cloudwatch: Any,
        say: Callable[[str], None] = lambda _: None,
        cluster: str = CLUSTER_NAME,
    ) -> None:
        super().__init__(stack, app, lease_db, control, say)
        self.ecs, self.scaling, self.cloudwatch, self.cluster = ecs, scaling, cloudwatch, cluster

    @property
    def where(self) -> str:
        return f"ECS service {self.cluster}/{self.app.name}, logs in /kinesis-cdc/{self.app.name}"

    # ------------------------------------------------------------------------------ reading
    def service(self) -> dict[str, Any]:
        answer = self.ecs.describe_services(cluster=self.cluster, services=[self.app.name])
        services = [s for s in answer.get("services", []) if s.get("status") != "INACTIVE"]
        if not services:
            raise StackError(
                f"{self.app.name}: no ECS service {self.app.name!r} in cluster {self.cluster!r} "
                "(deploy the stack first: make deploy)"
            )
        return services[0]

    def tasks(self) -> list[dict[str, Any]]:
        """The service's tasks that are not gone: those ECS wants running, and those it stops
        whose container has not ended yet (desired STOPPED, last status not STOPPED: their
        processors may still be checkpointing)."""
        arns: list[str] = []
        for status in ("RUNNING", "STOPPED"):
            for page in self.ecs.get_paginator("list_tasks").paginate(
                cluster=self.cluster, serviceName=self.app.name, desiredStatus=status
            ):
                arns += page["taskArns"]
        found: list[dict[str, Any]] = []
        for i in range(0, len(arns), 100):
            found += self.ecs.describe_tasks(cluster=self.cluster, tasks=arns[i : i + 100])["tasks"]
        return [
            task
            for task in found
            if task.get("group") == f"service:{self.app.name}" and task.get("lastStatus") != "STOPPED"
        ]

    @staticmethod
    def _up(task: dict[str, Any]) -> bool:
        return task.get("lastStatus") == "RUNNING" and task.get("desiredStatus") == "RUNNING"

    @property
    def desired(self) -> int:
        return int(self.service()["desiredCount"])

    def running_count(self) -> int:
        return sum(1 for task in self.tasks() if self._up(task))

    def describe(self) -> dict[str, Any]:
        service = self.service()
        running = self.tasks()
        up = sum(1 for task in running if self._up(task))
        desired = int(service["desiredCount"])
        deployments = service.get("deployments", [])
        primary: dict[str, Any] = next((d for d in deployments if d.get("status") == "PRIMARY"), {})
        if desired == 0 and up == 0:
            state = "stopped (desired 0)"
        elif len(deployments) > 1:
            state = "deploying"  # a new task definition rolls out
        else:
            state = "running" if up == desired else "partial"
        return {
            "workers": up,
            "desired": desired,
            "pending": len(running) - up,  # starting, or stopping
            "state": state,
            "deployment": primary.get("rolloutState") or primary.get("status"),
            "events": [event["message"] for event in service.get("events", [])[:3]],
        }

    def published_lag(self, shard_ids: list[str], window_s: float = 300.0) -> dict[str, int | None]:
        """Each shard's newest ``MillisBehindLatest`` the KCL published to CloudWatch within
        ``window_s`` (metricsLevel SUMMARY: namespace = the app's name, dimensions Operation =
        ProcessTask and ShardId); None where it published nothing (a shard nobody reads)."""
        if not shard_ids:
            return {}
        now = datetime.now(UTC)
        queries = [
            {
                "Id": f"s{i}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": self.app.name,
                        "MetricName": "MillisBehindLatest",
                        "Dimensions": [
                            {"Name": "Operation", "Value": "ProcessTask"},
                            {"Name": "ShardId", "Value": shard},
                        ],
                    },
                    "Period": 60,
                    "Stat": "Maximum",
                },
            }
            for i, shard in enumerate(shard_ids)
        ]
        lag: dict[str, int | None] = dict.fromkeys(shard_ids)
        for i in range(0, len(queries), 500):
            answer = self.cloudwatch.get_metric_data(
                MetricDataQueries=queries[i : i + 500],
                StartTime=now - timedelta(seconds=window_s),
                EndTime=now + timedelta(seconds=60),
                ScanBy="TimestampDescending",
            )
            for result in answer["MetricDataResults"]:
                if result.get("Values"):
                    lag[shard_ids[int(result["Id"][1:])]] = int(result["Values"][0])
        return lag

    def published_latency(self, window_s: float = 300.0) -> tuple[int | None, int | None]:
        """p50 and p99 of the ``ChangeToApplyLatency`` values the processors published in EMF
        (namespace KinesisCdc, dimension App; `consumers.runtime.metrics`) within ``window_s``."""
        now = datetime.now(UTC)
        metric = {
            "Namespace": NAMESPACE,
            "MetricName": "ChangeToApplyLatency",
            "Dimensions": [{"Name": "App", "Value": self.app.name}],
        }
        try:
            answer = self.cloudwatch.get_metric_data(
                MetricDataQueries=[
                    {"Id": stat, "MetricStat": {"Metric": metric, "Period": int(window_s), "Stat": stat}}
                    for stat in ("p50", "p99")
                ],
                StartTime=now - timedelta(seconds=window_s),
                EndTime=now + timedelta(seconds=60),
                ScanBy="TimestampDescending",
            )
        except ClientError as exc:  # a view, not a command: the rest of the status still shows
            # (moto 5.2.5 computes no percentile statistic: it answers 500 InternalFailure)
            print(f"{self.app.name}: latency from CloudWatch unavailable: {exc}", file=sys.stderr)
            return None, None
        found = {
            r["Id"]: int(r["Values"][0])
            for r in answer["MetricDataResults"]
            if r.get("Values") and r["Values"][0] is not None
        }
        return found.get("p50"), found.get("p99")

    # ----------------------------------------------------------------------------- changing
    def _set_desired(self, count: int) -> None:
        self.ecs.update_service(cluster=self.cluster, service=self.app.name, desiredCount=count)

    def wait_steady(self, count: int, timeout_s: float = STEADY_TIMEOUT_S) -> float:
        """Until ``count`` tasks run, none is pending and one deployment is left (what the ECS
        ``services_stable`` waiter checks, but counted from the tasks); the seconds it took."""
        started = time.monotonic()
        told = None
        while True:
            service = self.service()
            tasks = self.tasks()
            up = sum(1 for task in tasks if self._up(task))
            deployments = len(service.get("deployments", []))
            if up == count == len(tasks) and deployments <= 1:
                return time.monotonic() - started
            if (up, len(tasks)) != told:
                told = (up, len(tasks))
                self.say(f"  {self.app.name}: {up} of {count} task(s) running, {len(tasks) - up} starting or stopping")
            if time.monotonic() - started > timeout_s:
                events = "; ".join(event["message"] for event in service.get("events", [])[:3])
                raise StackError(
                    f"{self.app.name}: {up} of {count} task(s) running after {timeout_s:.0f}s "
                    f"(service events: {events or 'none'}); see {self.where}"
                )
            time.sleep(2.0)

    def _scalable_target(self) -> dict[str, Any] | None:
        answer = self.scaling.describe_scalable_targets(
            ServiceNamespace="ecs", ResourceIds=[f"service/{self.cluster}/{self.app.name}"]
        )
        targets = answer.get("ScalableTargets", [])
        return targets[0] if targets else None

    def _suspend_scaling(self, suspended: bool) -> None:
        target = self._scalable_target()
        if target is None:
            return
        self.scaling.register_scalable_target(
            ServiceNamespace="ecs",
            ResourceId=target["ResourceId"],
            ScalableDimension=_SCALABLE_DIMENSION,
            SuspendedState={
                "DynamicScalingInSuspended": suspended,
                "DynamicScalingOutSuspended": suspended,
                "ScheduledScalingSuspended": suspended,
            },
        )
        self.say(f"  {self.app.name}: autoscaling {'suspended' if suspended else 'resumed'}")

    def stop(self, wait_leases: bool = True, why: str = "cdc stop") -> StopReport:
        started = time.monotonic()
        before = self.tasks()
        desired = self.desired
        owners = {lease.owner for lease in self.leases() if lease.owner}
        self._suspend_scaling(True)
        if desired:
            self.control.set_resume_count(self.app.name, desired)
        self._set_desired(0)
        self.say(f"  {self.app.name}: desired count 0 ({why}); waiting until its {len(before)} task(s) are gone")
        self.wait_steady(0)
        if wait_leases:
            wait_expired(self.lease_db, self.app.name, owners, FAILOVER_MS / 1000, tick=self.say)
        return StopReport(tuple(task["taskArn"].rsplit("/", 1)[-1] for task in before), time.monotonic() - started)

    def start(self, count: int | None = None) -> None:
        if count is None:
            count = self.control.resume_count(self.app.name) or self.app.workers
        self.forget_start_once_used()
        self._set_desired(count)
        self.wait_steady(count)
        self._suspend_scaling(False)
        self.control.set_resume_count(self.app.name, None)

    def scale(self, count: int) -> dict[str, int]:
        self.check_count(count)
        if count == 0:
            self.stop(wait_leases=False, why="cdc scale 0")
            return {}
        self.forget_start_once_used()
        self._set_desired(count)
        self.say(f"  {self.app.name}: desired count {count}; waiting for the steady state")
        self.wait_steady(count)
        alive = self._wait_alive(count)
        if self.leader_gone(alive):
            release_leader_lock(self.lease_db, self.app.name)
        return self.spread(sorted(alive))

    def leader_gone(self, alive: set[str]) -> bool:
        """The leader lock names a worker that is gone: no lease moves until it expires (2 min)."""
        owner = leader(self.lease_db, self.app.name)
        return owner is not None and owner not in alive

    def _wait_alive(self, count: int) -> set[str]:
        """Until ``count`` KCL workers report their metrics (a task runs before its JVM does)."""
        deadline = time.monotonic() + STEADY_TIMEOUT_S
        while True:
            alive = live_workers(self.lease_db, self.app.name, _ALIVE_S)
            if len(alive) >= count:
                return alive
            if time.monotonic() > deadline:
                raise StackError(f"{self.app.name}: {len(alive)} of {count} KCL workers alive; see {self.where}")
            time.sleep(1.0)

    def spread(self, alive: list[str]) -> dict[str, int]:
        """Move open leases from the workers above an even share (or from workers not alive) to
        those below it, then wait until each moved lease is renewed by its new owner."""
        plan = even_spread({lease.shard_id: lease.owner for lease in self.leases() if not lease.ended}, alive)
        for shard, worker in plan.items():
            move(self.lease_db, self.app.name, shard, worker)
        if plan:
            self.say(f"  {self.app.name}: moved {len(plan)} lease(s) for an even spread")
        assigned = {lease.shard_id: lease.counter for lease in self.leases()}
        return self.settled(plan, assigned)
