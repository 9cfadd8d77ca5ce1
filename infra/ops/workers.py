"""Where an app's workers run: the seam every operation goes through.

`Workers` is what `cdc apps`, `status`, `stop`, `start`, `scale`, `replay` and `reshard` need of
an app's workers, wherever they run:

  * `infra.ops.apps.AppWorkers`: local processes (the local stack, LocalStack), each a supervised
    MultiLangDaemon started by this project;
  * `infra.ops.ecs.EcsWorkers`: the app's ECS service on AWS (``CDC_TARGET=aws``), one task per
    worker, its count the service's desired count.

Both share the app's lease table (`infra.ops.leases`) and its control item
(`consumers.runtime.control`): what a worker must know at start lives in the target's own
DynamoDB, never in the operator's state folder, so an ECS task reads the same replay start as a
local daemon. `for_target` picks the implementation from the stack's target.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from consumers.runtime.config import AppConfig
from consumers.runtime.control import ControlStore
from infra.ops.leases import AT_TIMESTAMP, Lease, read_leases
from services.config import StackConfig, StackError

__all__ = ["StopReport", "Workers"]

#: how long the leases of a scaled app may take to be held by their new workers
SETTLE_TIMEOUT_S = 90.0


@dataclass(frozen=True, slots=True)
class StopReport:
    stopped: tuple[str, ...]  # the workers (processes or tasks) stopped
    waited_s: float  # for them to end, then for their leases to expire


class Workers(ABC):
    """The workers of one app on one target; ``lease_db`` holds its lease table, ``control`` its
    control item."""

    #: the processors write their stats files (`consumers.runtime.stats`) where `cdc` reads them
    local_stats = False

    def __init__(
        self,
        stack: StackConfig,
        app: AppConfig,
        lease_db: Any,
        control: ControlStore,
        say: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.stack, self.app, self.lease_db, self.control, self.say = stack, app, lease_db, control, say

    # ----------------------------------------------------------- what each target implements
    @property
    @abstractmethod
    def where(self) -> str:
        """Where the workers run and log, for messages."""

    @property
    @abstractmethod
    def desired(self) -> int:
        """How many workers the app should run."""

    @abstractmethod
    def running_count(self) -> int:
        """How many workers run now."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """`cdc apps`' columns about the workers: workers, desired, pending, state, and what
        the target adds (an ECS service's deployment and its recent events)."""

    @abstractmethod
    def stop(self, wait_leases: bool = True, why: str = "cdc stop") -> StopReport:
        """Stop every worker gracefully (each processor checkpoints); with ``wait_leases``, until
        none of their leases is renewed any more."""

    @abstractmethod
    def start(self, count: int | None = None) -> None:
        """Run ``count`` workers (default: the count before `stop`, else the app's)."""

    @abstractmethod
    def scale(self, count: int) -> dict[str, int]:
        """Run ``count`` workers with the open leases spread evenly; open leases per worker."""

    # ----------------------------------------------------------------------------- shared
    def leases(self) -> list[Lease]:
        return read_leases(self.lease_db, self.app.name)

    def distribution(self) -> dict[str, int]:
        """Open (not ended) leases per owner; unassigned ones under ``""``."""
        return dict(Counter(lease.owner or "" for lease in self.leases() if not lease.ended))

    def published_lag(self, shard_ids: list[str]) -> dict[str, int | None]:
        """Each shard's lag as the target publishes it, where the processors' stats files are
        not at hand (``local_stats`` False)."""
        raise NotImplementedError(f"{type(self).__name__} reads its processors' stats files")

    def published_latency(self) -> tuple[int | None, int | None]:
        """The app's change-to-apply latency p50 and p99 (ms) over the last minutes as the
        target publishes it, where the processors' stats files are not at hand."""
        raise NotImplementedError(f"{type(self).__name__} reads its processors' stats files")

    def publish_start(self, start_at: float) -> None:
        """Where the leases the KCL creates next start (`cdc replay`), for every worker to read."""
        self.control.publish_start(self.app.name, start_at)

    def forget_start_once_used(self) -> None:
        """Clear the published start once no lease sits on the AT_TIMESTAMP sentinel any more
        (`consumers.runtime.control` says why it must stay until then)."""
        if self.control.start_at(self.app.name) is None:
            return
        leases = self.leases()
        if leases and all(lease.checkpoint != AT_TIMESTAMP for lease in leases):
            self.control.clear_start(self.app.name)

    def settled(self, plan: dict[str, str], assigned: dict[str, int]) -> dict[str, int]:
        """Wait until every planned lease (shard -> workerId) is renewed by its worker (its
        counter moved past ``assigned``); the distribution then."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
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
                    f"{SETTLE_TIMEOUT_S:.0f}s; see the workers' logs ({self.where})"
                )
            time.sleep(1.0)

    def check_count(self, count: int) -> None:
        if count < 0:
            raise StackError(f"cannot scale {self.app.name} to {count} workers: the count is 0 or more")
