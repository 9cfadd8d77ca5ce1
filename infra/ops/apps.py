"""One consumer app's workers: start, stop and scale them without touching the rest of the stack.

Workers run as local processes on the local stack and on LocalStack alike (each a supervised
MultiLangDaemon, `infra.local.stack.worker`); only the endpoints differ. The count comes from the
app's overrides (`cdc scale`, kept in the state folder) or else `app.workers`.

Scaling spreads the leases itself. KCL 3.1.3 balances leases by throughput only: on an idle
stream (no CPU metric off EC2, no traffic) it leaves every lease where it is. So `scale` stops
the app's workers gracefully (each processor checkpoints in `shutdown_requested`), assigns the
open leases round-robin to the workers it will run (in the lease table, as the KCL's own
assignments do: new owner, counter + 1), and starts them: a worker re-adopts the leases that name
its workerId, so the spread holds from its first renewal.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from consumers.runtime.config import AppConfig
from consumers.runtime.daemon import FAILOVER_MS, worker_id
from consumers.runtime.overrides import load_overrides, save_overrides
from infra.local.components import wait_healthy
from infra.local.processes import ManagedProcess
from infra.local.stack import hold, release, running_workers, worker, worker_count
from infra.ops.leases import AT_TIMESTAMP, Lease, assign, read_leases, release_leader_lock, wait_expired
from services.config import StackConfig, StackError

__all__ = ["AppWorkers", "StopReport"]

#: how long a graceful stop may take: the daemon's shutdownGraceMillis (30 s) and some
_STOP_TIMEOUT_S = 45.0
#: how long the leases of a scaled app may take to be held by their new workers
_SETTLE_TIMEOUT_S = 90.0


@dataclass(frozen=True, slots=True)
class StopReport:
    stopped: tuple[str, ...]  # worker processes stopped
    waited_s: float  # for the processes to end, then for their leases to expire


class AppWorkers:
    """The worker processes of one app on one stack; ``lease_db`` (``services.clients.lease_client``)
    holds the app's lease table."""

    def __init__(self, stack: StackConfig, app: AppConfig, lease_db: Any, say: Callable[[str], None] = lambda _: None):
        self.stack, self.app, self.lease_db, self.say = stack, app, lease_db, say

    @property
    def desired(self) -> int:
        """How many workers the app runs: `cdc scale`'s count, else ``app.workers``."""
        return worker_count(self.stack, self.app)

    def running(self) -> tuple[ManagedProcess, ...]:
        prefix = f"worker-{self.app.package}-"
        return tuple(p for p in running_workers(self.stack) if p.name.startswith(prefix))

    def leases(self) -> list[Lease]:
        return read_leases(self.lease_db, self.app.name)

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
        self._check_start_position()
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
        if count < 0:
            raise StackError(f"cannot scale {self.app.name} to {count} workers: the count is 0 or more")
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
        return self._settled(plan, assigned)

    def distribution(self) -> dict[str, int]:
        """Open (not ended) leases per owner; unassigned ones under ``""``."""
        return dict(Counter(lease.owner or "" for lease in self.leases() if not lease.ended))

    def _settled(self, plan: dict[str, str], assigned: dict[str, int]) -> dict[str, int]:
        """Wait until every planned lease is renewed by its worker (its counter moved on)."""
        deadline = time.monotonic() + _SETTLE_TIMEOUT_S
        while True:
            leases = {lease.shard_id: lease for lease in self.leases()}
            waiting = [
                shard
                for shard, owner in plan.items()
                if shard in leases
                and not leases[shard].ended
                and (leases[shard].owner != owner or leases[shard].counter <= assigned.get(shard, -1))
            ]
            if not waiting:
                return self.distribution()
            if time.monotonic() > deadline:
                raise StackError(
                    f"{self.app.name}: leases {', '.join(waiting)} not held by their planned workers after "
                    f"{_SETTLE_TIMEOUT_S:.0f}s; see the worker logs in {self.stack.log_dir}"
                )
            time.sleep(1.0)

    def _check_start_position(self) -> None:
        """Forget a replay's start once no lease sits on the AT_TIMESTAMP sentinel any more. A
        lease the KCL created AT_TIMESTAMP keeps that sentinel as its checkpoint until its
        processor checkpoints a record, and until then the KCL needs the time again at every
        start: without it KCL 3.1.3 fails the shard's initialization (a NullPointerException in
        IteratorBuilder), forever. So `cdc replay` leaves its start in the overrides."""
        overrides = load_overrides(self.stack.state_dir, self.app.package)
        if overrides.start_at is None:
            return
        leases = self.leases()
        if leases and all(lease.checkpoint != AT_TIMESTAMP for lease in leases):
            save_overrides(self.stack.state_dir, self.app.package, replace(overrides, start_at=None))

    def _save_count(self, count: int) -> None:
        overrides = load_overrides(self.stack.state_dir, self.app.package)
        save_overrides(self.stack.state_dir, self.app.package, replace(overrides, workers=count))
