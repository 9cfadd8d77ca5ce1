"""One app's KCL lease table (its `applicationName`): read it, wait on it, and change it while the
app's workers are stopped (`cdc scale`, `cdc replay`).

Read from KCL 3.1.3 (`DynamoDBLeaseSerializer`): one item per shard, `leaseKey` (the shard id),
`leaseOwner` (a workerId; absent: unassigned), `leaseCounter` (+1 on every renewal, assignment
and eviction: a lease whose counter has not moved for `failoverTimeMillis` is expired),
`checkpoint` (a sequence number or a sentinel: TRIM_HORIZON, LATEST, AT_TIMESTAMP, SHARD_END),
`parentShardId`. Every change here is conditional on the counter read, so it can never undo
what a worker did meanwhile.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from services.clients import error_code

__all__ = [
    "AT_TIMESTAMP",
    "SHARD_END",
    "Lease",
    "assign",
    "delete_all",
    "even_spread",
    "leader",
    "live_workers",
    "move",
    "read_leases",
    "release_leader_lock",
    "save_backup",
    "wait_expired",
]

SHARD_END = "SHARD_END"
AT_TIMESTAMP = "AT_TIMESTAMP"  # the checkpoint of a lease created AT_TIMESTAMP, until its first record


@dataclass(frozen=True, slots=True)
class Lease:
    shard_id: str
    owner: str | None
    counter: int
    checkpoint: str
    parents: tuple[str, ...]
    raw: dict[str, Any]  # the item as DynamoDB holds it (for backups)

    @property
    def ended(self) -> bool:
        return self.checkpoint == SHARD_END

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Lease:
        return cls(
            shard_id=item["leaseKey"]["S"],
            owner=item.get("leaseOwner", {}).get("S"),
            counter=int(item.get("leaseCounter", {}).get("N", "0")),
            checkpoint=item.get("checkpoint", {}).get("S", ""),
            parents=tuple(sorted(item.get("parentShardId", {}).get("SS", ()))),
            raw=item,
        )


def read_leases(ddb: Any, table: str) -> list[Lease]:
    """Every lease of the app, by shard id; [] when the table does not exist (the app never ran)."""
    try:
        pages = ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
        items = [item for page in pages for item in page["Items"]]
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return []
        raise
    return sorted((Lease.from_item(item) for item in items if "leaseKey" in item), key=lambda lease: lease.shard_id)


def wait_expired(
    ddb: Any, table: str, owners: Iterable[str], failover_s: float, *, tick: Callable[[str], None] = lambda _: None
) -> None:
    """Return once no lease held by one of ``owners`` is renewed any more: each one's counter
    stood still for ``failover_s`` (the KCL's own expiry rule), or it has another owner."""
    owners = set(owners)
    seen: dict[str, tuple[int, float]] = {}
    told = -1
    while True:
        now = time.monotonic()
        waiting = []
        for lease in read_leases(ddb, table):
            if lease.owner not in owners:
                continue
            counter, since = seen.get(lease.shard_id, (lease.counter, now))
            if counter != lease.counter:
                counter, since = lease.counter, now
            seen[lease.shard_id] = (counter, since)
            if now - since < failover_s:
                waiting.append(lease.shard_id)
        if not waiting:
            return
        if len(waiting) != told:
            told = len(waiting)
            tick(
                f"  waiting for {told} lease(s) of the stopped workers to expire ({failover_s:.0f}s after their last renewal)"
            )
        time.sleep(1.0)


def assign(ddb: Any, table: str, owners: Mapping[str, str | None]) -> None:
    """Set each lease's owner (shard id -> workerId, None: unassigned) as the KCL's own
    assignments and evictions do: new owner, counter + 1, no graceful-handoff owner. Only while
    the app's workers are stopped: a lease renewed meanwhile fails the condition."""
    for lease in read_leases(ddb, table):
        if lease.shard_id not in owners or owners[lease.shard_id] == lease.owner:
            continue
        owner = owners[lease.shard_id]
        update = "SET leaseCounter = leaseCounter + :one REMOVE checkpointOwner"
        values: dict[str, Any] = {":one": {"N": "1"}, ":seen": {"N": str(lease.counter)}}
        if owner is None:
            update += ", leaseOwner"
        else:
            update = "SET leaseCounter = leaseCounter + :one, leaseOwner = :owner REMOVE checkpointOwner"
            values[":owner"] = {"S": owner}
        ddb.update_item(
            TableName=table,
            Key={"leaseKey": {"S": lease.shard_id}},
            UpdateExpression=update,
            ConditionExpression="leaseCounter = :seen",
            ExpressionAttributeValues=values,
        )


def even_spread(owners: Mapping[str, str | None], alive: Sequence[str]) -> dict[str, str]:
    """The fewest lease moves (shard -> new owner) that leave each of the ``alive`` workers
    with an even share of the open leases ``owners`` (shard -> owner; None: unassigned): a
    worker keeps what it holds up to its share, leases of workers not alive are moved too."""
    if not alive:
        return {}
    share, extra = divmod(len(owners), len(alive))
    holding = [sum(1 for owner in owners.values() if owner == worker) for worker in alive]
    # the one lease more of an uneven split goes to those that hold the most already
    by_load = sorted(range(len(alive)), key=lambda i: -holding[i])
    quota = {alive[i]: share + (1 if rank < extra else 0) for rank, i in enumerate(by_load)}
    held = dict.fromkeys(alive, 0)
    loose = []
    for shard, owner in sorted(owners.items()):
        if owner in held and held[owner] < quota[owner]:
            held[owner] += 1
        else:
            loose.append(shard)
    plan = {}
    for shard in loose:
        worker = next(w for w in alive if held[w] < quota[w])
        held[worker] += 1
        plan[shard] = worker
    return plan


def move(ddb: Any, table: str, shard_id: str, owner: str, attempts: int = 5) -> bool:
    """Give one lease to ``owner`` while its workers run, as the KCL leader's own assignments do
    (new owner, counter + 1): its old owner's next renewal fails, its processor ends with
    ``lease_lost``, and ``owner`` takes it from its last checkpoint (records after it come again:
    the sinks' version guards make them stale). False when the lease is gone or ended."""
    for _ in range(attempts):
        lease = next((lease for lease in read_leases(ddb, table) if lease.shard_id == shard_id), None)
        if lease is None or lease.ended:
            return False
        if lease.owner == owner:
            return True
        try:
            assign(ddb, table, {shard_id: owner})
            return True
        except ClientError as exc:  # renewed between the read and the write: read again
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
    raise TimeoutError(f"lease {shard_id} of {table}: renewed under every one of {attempts} attempts to move it")


def live_workers(ddb: Any, app_name: str, fresh_s: float) -> set[str]:
    """The workerIds that reported their metrics (`<app>-WorkerMetricStats`: ``wid``, ``lut`` in
    epoch seconds; every ``workerMetricsReporterFreqInMillis``) within the last ``fresh_s``: the
    KCL workers alive now, wherever they run, whether or not they hold a lease."""
    try:
        pages = ddb.get_paginator("scan").paginate(TableName=f"{app_name}-WorkerMetricStats", ConsistentRead=True)
        items = [item for page in pages for item in page["Items"]]
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return set()
        raise
    now = time.time()
    return {
        item["wid"]["S"]
        for item in items
        if "wid" in item and now - float(item.get("lut", {}).get("N", "0")) <= fresh_s
    }


def _leader_item(ddb: Any, app_name: str) -> dict[str, Any]:
    try:
        item = ddb.get_item(TableName=f"{app_name}-CoordinatorState", Key={"key": {"S": "Leader"}}, ConsistentRead=True)
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return {}
        raise
    found: dict[str, Any] = item.get("Item", {})
    return found


def leader(ddb: Any, app_name: str) -> str | None:
    """The workerId named by the app's leader lock (`<app>-CoordinatorState`, item ``Leader``).
    Only the leader assigns leases in KCL 3; a lock left by a worker that is gone holds for its
    ``leaseDuration`` (2 min in 3.1.3), and until then no expired lease moves."""
    owner: str | None = _leader_item(ddb, app_name).get("ownerName", {}).get("S")
    return owner


def release_leader_lock(ddb: Any, app_name: str) -> None:
    """Delete the leader lock while every worker of the app is stopped, so the first worker
    started leads at once instead of after the old lock's 2 minutes (conditional: a lock
    taken meanwhile stays)."""
    item = _leader_item(ddb, app_name)
    if item:
        try:
            ddb.delete_item(
                TableName=f"{app_name}-CoordinatorState",
                Key={"key": {"S": "Leader"}},
                ConditionExpression="recordVersionNumber = :seen",
                ExpressionAttributeValues={":seen": item["recordVersionNumber"]},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise


def save_backup(leases: list[Lease], path: Path) -> None:
    """The lease items as DynamoDB held them, to restore by hand (`aws dynamodb put-item`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([lease.raw for lease in leases], indent=1))


def delete_all(ddb: Any, table: str, leases: list[Lease]) -> None:
    """Delete these lease items, each only if its counter did not move since it was read."""
    for lease in leases:
        ddb.delete_item(
            TableName=table,
            Key={"leaseKey": {"S": lease.shard_id}},
            ConditionExpression="leaseCounter = :seen",
            ExpressionAttributeValues={":seen": {"N": str(lease.counter)}},
        )
