"""The faults `make chaos` injects, each a function of the harness's `Context` that returns once
the fault is over (the kill sent, the pause resumed, the block lifted): `FAULTS`, by name.

SIGKILL of a worker's KCL JVM and of a record processor, of the relay, of DynamoDB Local, of
OpenSearch and of kinesis-mock (its data is kept); DynamoDB Local and OpenSearch paused
(SIGSTOP); the index set read-only then writable; stale, repeated and reordered change records
put straight onto the Users stream; leases moved (scale 1 -> 2 -> 1); the search worker cut off
from OpenSearch by a TCP proxy that drops, then delays (`infra.testing.faultproxy`). Nothing
here restarts what it killed: the stack supervisor does.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from consumers.runtime.config import discover_apps, load_app
from infra.local.components import Component
from infra.local.processes import descendants
from infra.local.stack import worker
from infra.ops.apps import local_workers
from infra.relay.format import to_kinesis_record
from infra.testing.faultproxy import FaultProxy
from producer_config import PipelineConfig
from scripts.changes.generator import UserChangeGenerator
from scripts.changes.model import WORKPLACES
from services.clients import aws_client, opensearch_client
from services.config import StackConfig, StackError

__all__ = ["FAULTS", "INDEX", "Context", "route_search_worker"]

SEARCH_APP, SCALED_APP, INDEX = "workplace_user_search", "app_user_management", "workplace-users-v2"


@dataclass
class Context:
    """What a fault is given: the stack, how long a pause lasts, the harness's random source,
    the fault proxy, the load's generator (its view of Users) and the stack's servers by name
    (filled in when the harness starts)."""

    stack: StackConfig
    pipeline: PipelineConfig
    pause_s: float
    rng: random.Random
    proxy: FaultProxy
    generator: UserChangeGenerator
    servers: dict[str, Component] = field(default_factory=dict)

    def server(self, name: str) -> Component:
        return self.servers[name]

    def kill(self, name: str) -> None:
        pid = self.server(name).process.pid()
        if pid is None:
            raise StackError(f"{name} is not running: nothing to kill")
        os.kill(pid, signal.SIGKILL)

    def pause(self, name: str) -> None:
        pid = self.server(name).process.pid()
        if pid is None:
            raise StackError(f"{name} is not running: nothing to pause")
        for each in descendants(pid):
            os.kill(each, signal.SIGSTOP)
        try:
            time.sleep(self.pause_s)
        finally:
            for each in descendants(pid):
                os.kill(each, signal.SIGCONT)


def _worker_descendant(ctx: Context, marker: bytes) -> int:
    apps = [app for app in discover_apps(ctx.pipeline)]
    ctx.rng.shuffle(apps)
    for app in apps:
        supervisor = worker(ctx.stack, app, 1).process.pid()
        for pid in sorted(descendants(supervisor)) if supervisor else ():
            try:
                if marker in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
            except OSError:
                continue
    raise StackError(f"no worker process with {marker.decode()} found")


def kill_worker_jvm(ctx: Context) -> None:
    os.kill(_worker_descendant(ctx, b"MultiLangDaemon"), signal.SIGKILL)


def kill_record_processor(ctx: Context) -> None:
    os.kill(_worker_descendant(ctx, b"consumers.runtime.worker"), signal.SIGKILL)


def block_index(ctx: Context) -> None:
    search = opensearch_client(ctx.stack)
    search.indices.put_settings(index=INDEX, body={"index.blocks.read_only": True})
    try:
        time.sleep(ctx.pause_s)
    finally:
        search.indices.put_settings(index=INDEX, body={"index.blocks.read_only": False})


def stale_and_repeated_records(ctx: Context, count: int = 5) -> None:
    """Records put straight onto the Users stream, after the real ones of the same items:
      * a live user's current item twice, then as version 1 (older than any version the
        generator wrote: they start at the clock in ms);
      * a deleted user's REMOVE again, then its last MODIFY (the REMOVE arrived first; the
        images are made up, with one membership: the version decides, not the content).
    Every one of them is stale: the sinks must not move."""
    versions = _copy(ctx.generator.versions)
    live = _copy(ctx.generator.state)
    deleted = [user for user in versions if user not in live]
    changes: list[tuple[str, dict]] = []
    ddb = aws_client("dynamodb", ctx.stack, ctx.pipeline.region)
    for user in ctx.rng.sample(sorted(live), min(count, len(live))):
        image = ddb.get_item(TableName="Users", Key={"UserId": {"S": user}}, ConsistentRead=True).get("Item")
        if image is not None:  # (unless deleted since)
            changes += [("MODIFY", image), ("MODIFY", image), ("MODIFY", {**image, "Version": {"N": "1"}})]
    for user in ctx.rng.sample(deleted, min(count, len(deleted))):
        image = _image(user, versions[user])
        changes += [("REMOVE", image), ("MODIFY", image)]
    kinesis = aws_client("kinesis", ctx.stack, ctx.pipeline.region)
    for n, (event, image) in enumerate(changes):  # one at a time: each lands after the one before
        body = {"Keys": {"UserId": image["UserId"]}, "SequenceNumber": f"chaos-{time.time_ns()}-{n}"}
        body["OldImage" if event == "REMOVE" else "NewImage"] = image
        data, key = to_kinesis_record(
            {"eventName": event, "dynamodb": body},
            table="Users",
            region=ctx.pipeline.region,
            stream_arn="chaos",
            precision=ctx.pipeline.creation_time_precision,
            now_ns=time.time_ns(),
        )
        kinesis.put_record(StreamName="users-changes", Data=data, PartitionKey=key)


def _image(user: str, version: int) -> dict[str, Any]:
    """A made-up Users image (DynamoDB JSON) of ``user`` at ``version``, with one membership."""
    membership = {"M": {"Role": {"S": "staff"}, "Title": {"S": "Stale"}, "JoinedAt": {"N": "1700000000"}}}
    return {
        "UserId": {"S": user},
        "Email": {"S": f"stale-{version}@example.com"},
        "Status": {"S": "active"},
        "Workplaces": {"M": {WORKPLACES[-1]: membership}},
        "WorkplaceIds": {"SS": [WORKPLACES[-1]]},
        "Version": {"N": str(version)},
    }


def _copy(mapping: dict) -> dict:
    """A copy of a dict the load thread changes meanwhile."""
    while True:
        try:
            return dict(mapping)
        except RuntimeError:  # changed size during the copy
            continue


def move_leases(ctx: Context) -> None:
    app = load_app(SCALED_APP, ctx.pipeline)
    workers = local_workers(ctx.stack, app, ctx.pipeline.region)
    workers.scale(2)
    time.sleep(ctx.pause_s / 2)
    workers.scale(1)


def cut_off_sink(ctx: Context) -> None:
    """The search worker's OpenSearch connection through the proxy: dropped, then delayed."""
    route_search_worker(ctx, through_proxy=True)
    ctx.proxy.mode = "drop"
    time.sleep(ctx.pause_s / 2)
    ctx.proxy.mode = "delay"
    time.sleep(ctx.pause_s / 2)
    ctx.proxy.mode = "pass"


def route_search_worker(ctx: Context, *, through_proxy: bool) -> None:
    """(Re)start the search app's worker with its OpenSearch endpoint at the proxy, or not."""
    app = load_app(SEARCH_APP, ctx.pipeline)
    process = worker(ctx.stack, app, 1).process
    pid = process.pid()
    url = ctx.proxy.url.encode()
    if pid is not None and (url in Path(f"/proc/{pid}/environ").read_bytes()) == through_proxy:
        return
    workers = local_workers(ctx.stack, app, ctx.pipeline.region)
    workers.stop(wait_leases=False, why="chaos: rerouted through the fault proxy")
    env = {"CDC_OPENSEARCH_URL": ctx.proxy.url} if through_proxy else {}
    replace(process, env=env).start()
    workers.start()  # releases the hold; the worker runs already


FAULTS: dict[str, Callable[[Context], None]] = {
    "worker-jvm-kill": kill_worker_jvm,
    "processor-kill": kill_record_processor,
    "relay-kill": lambda ctx: ctx.kill("relay"),
    "dynamodb-kill": lambda ctx: ctx.kill("dynamodb"),
    "dynamodb-pause": lambda ctx: ctx.pause("dynamodb"),
    "opensearch-kill": lambda ctx: ctx.kill("opensearch"),
    "opensearch-pause": lambda ctx: ctx.pause("opensearch"),
    "index-read-only": block_index,
    "kinesis-kill": lambda ctx: ctx.kill("kinesis"),
    "webhook-receiver-kill": lambda ctx: ctx.kill("webhooks"),
    "stale-repeated-records": stale_and_repeated_records,
    "lease-moves": move_leases,
    "sink-proxy-drop-delay": cut_off_sink,
}
