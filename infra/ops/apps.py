"""One consumer app's workers as local processes: start, stop and scale them without touching the
rest of the stack (`infra.ops.workers` is the seam; `infra.ops.ecs` the same on ECS).

Workers run as local processes on the local stack and on LocalStack alike (each a supervised
MultiLangDaemon, `infra.local.stack.worker`); only the endpoints differ. The count is the local
scheduler's: the app's overrides (`cdc scale`, kept in the state folder) or else `app.workers`.

Scaling spreads the leases itself. KCL 3.1.3 balances leases by throughput only: on an idle
stream (no CPU metric off EC2, no traffic) it leaves every lease where it is. So `scale` stops
the app's workers gracefully (each processor checkpoints in `shutdown_requested`), assigns the
open leases round-robin to the workers it will run (in the lease table, as the KCL's own
assignments do: new owner, counter + 1), and starts them: a worker re-adopts the leases that name
its workerId, so the spread holds from its first renewal.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from consumers.runtime.config import AppConfig
from consumers.runtime.control import ControlStore
from consumers.runtime.daemon import FAILOVER_MS, worker_id
from consumers.runtime.overrides import load_overrides, save_overrides
from infra.local.components import wait_healthy
from infra.local.processes import ManagedProcess
from infra.local.stack import hold, release, running_workers, worker, worker_count
from infra.ops.leases import assign, release_leader_lock, wait_expired
from infra.ops.workers import StopReport, Workers
from services.clients import aws_client, lease_client
from services.config import StackConfig

__all__ = ["AppWorkers", "local_workers"]

#: how long a graceful stop may take: the daemon's shutdownGraceMillis (30 s) and some
_STOP_TIMEOUT_S = 45.0


class AppWorkers(Workers):
    """The worker processes of one app on the local stack or LocalStack."""

    local_stats = True

    @property
    def where(self) -> str:
        return f"local processes, logs in {self.stack.log_dir}"

    @property
    def desired(self) -> int:
        """How many workers the app runs: `cdc scale`'s count, else ``app.workers``."""
        return worker_count(self.stack, self.app)

    def running(self) -> tuple[ManagedProcess, ...]:
        prefix = f"worker-{self.app.package}-"
        return tuple(p for p in running_workers(self.stack) if p.name.startswith(prefix))

    def running_count(self) -> int:
        return len(self.running())

    def describe(self) -> dict[str, Any]:
        running, desired = self.running_count(), self.desired
        state = "stopped" if running == 0 else ("running" if running == desired else "partial")
        if desired == 0 and running == 0:
            state = "stopped (scaled to 0)"
        return {"workers": running, "desired": desired, "pending": None, "state": state}

    def stop(self, wait_leases: bool = True, why: str = "cdc stop") -> StopReport:
        """Stop every worker of the app gracefully, then (``wait_leases``) wait until none of
        their leases is renewed any more: the KCL keeps them owned until they expire, and only
        then may a worker elsewhere take them. `scale` and `replay` rewrite the leases
        themselves (conditionally), so they need not wait. The app stays held (``why``): the
        stack supervisor does not start its workers again until `start`."""
        started = time.monotonic()
        hold(self.stack, self.app.package, why)
        processes = self.running()
        for process in processes:  # together: each graceful shutdown takes seconds
            process.signal_stop()
        for process in processes:
            process.stop(timeout_s=_STOP_TIMEOUT_S)
            self.say(f"  stopped {process.name}")
        if wait_leases:
            ids = [worker_id(self.app, n) for n in range(1, max(self.desired, len(processes), 1) + 1)]
            ids += [worker_id(self.app, int(p.name.rsplit("-", 1)[1])) for p in processes]
            wait_expired(self.lease_db, self.app.name, ids, FAILOVER_MS / 1000, tick=self.say)
        return StopReport(tuple(p.name for p in processes), time.monotonic() - started)

    def start(self, count: int | None = None) -> None:
        """Start workers 1..count (default: `desired`) that are not running; persist ``count``."""
        if count is not None:
            self._save_count(count)
        self.forget_start_once_used()
        count = self.desired
        release(self.stack, self.app.package)
        components = [worker(self.stack, self.app, n) for n in range(1, count + 1)]
        for component in components:
            component.process.start()
        for component in components:
            wait_healthy(component, self.stack.health_timeout_s)
            self.say(f"  up  {component.title}")

    def scale(self, count: int) -> dict[str, int]:
        """Run ``count`` workers with the open leases spread evenly; returns open leases per
        worker once each is held by its worker (0: the app stopped)."""
        self.check_count(count)
        self.stop(wait_leases=False, why="cdc scale")
        release_leader_lock(self.lease_db, self.app.name)
        self._save_count(count)
        if count == 0:
            return {}
        open_leases = [lease for lease in self.leases() if not lease.ended]
        plan = {lease.shard_id: worker_id(self.app, 1 + i % count) for i, lease in enumerate(open_leases)}
        assign(self.lease_db, self.app.name, plan)
        assigned = {lease.shard_id: lease.counter for lease in self.leases()}
        self.start()
        return self.settled(plan, assigned)

    def _save_count(self, count: int) -> None:
        overrides = load_overrides(self.stack.state_dir, self.app.package)
        save_overrides(self.stack.state_dir, self.app.package, replace(overrides, workers=count))


def local_workers(stack: StackConfig, app: AppConfig, region: str) -> AppWorkers:
    """The app's worker processes on ``stack``, with its lease table and control item."""
    return AppWorkers(stack, app, lease_client(stack, region), ControlStore(aws_client("dynamodb", stack, region)))
