"""`make chaos`: faults injected while changes flow; the pipeline must recover by itself.

While a change generator writes to Users at a steady rate, each fault is injected `--rounds`
times at a random moment. After each round a probe change is written and timed until every
sink holds it: the time to recover (from the moment the fault ended: the kill, the resume,
the block lifted). Once a fault's rounds are done the load stops and the harness waits for
every sink to equal Users (`consumers.verify`), then reports per fault:

  written       changes the generator reported written (it rides through outages)
  applied       sink writes applied (all apps; the processors' counters)
  stale         sink writes refused by the version guard (repeats, reorders, replays)
  dead-letter   records dead-lettered (there is no bad input here: must be 0)
  lost          a change reported written that is not in Users, plus every sink item that
                differs from Users once the load stopped (must be 0)
  regressions   a sink item seen holding an older version than it held before (must be 0)
  recover p50 / max   seconds, as above

The stack supervisor (`infra.local.supervisor`) restarts what dies; nothing here starts a killed
component. Faults: SIGKILL of a worker's KCL JVM and of a record processor, of the relay, of
DynamoDB Local, of OpenSearch and of kinesis-mock (its data is kept); DynamoDB Local and
OpenSearch paused (SIGSTOP); the index set read-only then writable; stale, repeated and
reordered change records put straight onto the Users stream; leases moved (scale 1 -> 2 -> 1);
the search worker cut off from OpenSearch by a TCP proxy that drops, then delays
(`infra.testing.faultproxy`).

Exit status: 0 when nothing was lost, nothing regressed and every round recovered; 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from consumers.runtime.config import discover_apps, load_app
from consumers.verify import wait_converged
from infra.local.components import Component, components
from infra.local.processes import descendants
from infra.local.stack import supervisor_process, worker
from infra.ops.apps import AppWorkers
from infra.relay.format import to_kinesis_record
from infra.testing.faultproxy import FaultProxy
from producer_config import PipelineConfig, load_pipeline
from scripts.changes.generator import UserChangeGenerator
from scripts.changes.model import WORKPLACES
from scripts.changes.writer import write_change
from services.clients import aws_client, aws_resource, lease_client, opensearch_client
from services.config import StackConfig, StackError, Target

__all__ = ["FAULTS", "Chaos", "FaultResult", "main"]

SEARCH_APP, SCALED_APP, INDEX = "workplace_user_search", "app_user_management", "workplace-users-v2"
RECOVER_TIMEOUT_S = 300.0


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------- results
@dataclass(slots=True)
class FaultResult:
    fault: str
    rounds: int = 0
    written: int = 0
    applied: int = 0
    stale: int = 0
    dead_lettered: int = 0
    lost: int = 0
    regressions: int = 0
    recover_s: list[float] = field(default_factory=list)
    unrecovered: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.regressions or self.unrecovered or self.dead_lettered)

    def row(self) -> dict[str, Any]:
        recover = sorted(self.recover_s)
        return {
            **{k: v for k, v in asdict(self).items() if k != "recover_s"},
            "recover_p50_s": round(statistics.median(recover), 1) if recover else None,
            "recover_max_s": round(recover[-1], 1) if recover else None,
            "ok": self.ok,
        }


def table(results: list[FaultResult]) -> str:
    head = (
        f"{'fault':<22} {'rounds':>6} {'written':>8} {'applied':>8} {'stale':>6} {'dead-letter':>11} "
        f"{'lost':>5} {'regressions':>11} {'recover p50':>11} {'max':>6}"
    )
    lines = [head, "-" * len(head)]
    for result in results:
        row = result.row()
        p50, top = row["recover_p50_s"], row["recover_max_s"]
        lines.append(
            f"{result.fault:<22} {result.rounds:>6} {result.written:>8} {result.applied:>8} {result.stale:>6} "
            f"{result.dead_lettered:>11} {result.lost:>5} {result.regressions:>11} "
            f"{'-' if p50 is None else f'{p50:.1f}s':>11} {'-' if top is None else f'{top:.1f}s':>6}"
            + (f"  NOT RECOVERED x{result.unrecovered}" if result.unrecovered else "")
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------- the load
class Load:
    """Writes generated changes at ``rate`` per second on a thread, riding through outages."""

    def __init__(self, users_table: Any, generator: UserChangeGenerator, rate: float):
        self.table, self.generator, self.rate = users_table, generator, rate
        self.written = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="chaos-load", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise StackError(f"the change generator failed: {type(self.error).__name__}: {self.error}")

    def _run(self) -> None:
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                (change,) = self.generator.changes(1)
                write_change(self.table, change)
                self.written += 1
                next_at = max(next_at + 1 / self.rate, time.monotonic() - 1.0)
                self._stop.wait(max(0.0, next_at - time.monotonic()))
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc


# ----------------------------------------------------------------------------- the watcher
class Watch:
    """Samples every sink's versions each second; an item seen older than before is a regression.
    A deleted item keeps the version it was deleted at (DynamoDB sinks keep a tombstone;
    OpenSearch remembers the last version seen), so a resurrection counts too."""

    def __init__(self, stack: StackConfig, pipeline: PipelineConfig, prefix: str):
        self.stack, self.pipeline, self.prefix = stack, pipeline, prefix
        self.seen: dict[tuple[str, str], int] = {}
        self.regressions: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-watch", daemon=True)

    def start(self) -> Watch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        ddb = aws_client("dynamodb", self.stack, self.pipeline.region)
        search = opensearch_client(self.stack, timeout=5)
        while not self._stop.wait(1.0):
            try:
                self._sample(ddb, search)
            except Exception:  # noqa: BLE001 - a sink down right now: sample again next second
                continue

    def _sample(self, ddb: Any, search: Any) -> None:
        versions: list[tuple[tuple[str, str], int]] = []
        for name in ("AppUsers_V2", "WorkplaceUsers_V2"):
            for page in ddb.get_paginator("scan").paginate(TableName=name):
                for item in page["Items"]:
                    if item["UserId"]["S"].startswith(self.prefix) and "Version" in item:
                        item_id = f"{item.get('WorkplaceId', {}).get('S', '')}#{item['UserId']['S']}"
                        versions.append(((name, item_id), int(item["Version"]["N"])))
        hits = search.search(
            index=INDEX, body={"query": {"prefix": {"UserId": self.prefix}}, "size": 10_000, "version": True}
        )["hits"]["hits"]
        versions += [((INDEX, hit["_id"]), hit["_version"]) for hit in hits]
        for key, version in versions:
            before = self.seen.get(key, 0)
            if version < before:
                self.regressions.append(f"{key[0]} {key[1]}: version {before} then {version}")
            else:
                self.seen[key] = version


# --------------------------------------------------------------------------------- faults
@dataclass
class Context:
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
    workers = AppWorkers(ctx.stack, app, lease_client(ctx.stack, ctx.pipeline.region))
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
    workers = AppWorkers(ctx.stack, app, lease_client(ctx.stack, ctx.pipeline.region))
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
    "stale-repeated-records": stale_and_repeated_records,
    "lease-moves": move_leases,
    "sink-proxy-drop-delay": cut_off_sink,
}


# --------------------------------------------------------------------------------- harness
class Chaos:
    def __init__(
        self,
        stack: StackConfig,
        pipeline: PipelineConfig,
        *,
        rounds: int = 3,
        pause_s: float = 30.0,
        rate: float = 15.0,
        users: int = 200,
        seed: int | None = None,
        recover_timeout_s: float = RECOVER_TIMEOUT_S,
        say: Callable[[str], None] = _say,
    ):
        self.stack, self.pipeline, self.rounds, self.say = stack, pipeline, rounds, say
        self.recover_timeout_s = recover_timeout_s
        self.rng = random.Random(seed)
        self.prefix = f"chaos-{uuid.uuid4().hex[:6]}-"  # a key space of its own, whatever the seed
        self.generator = UserChangeGenerator(users=users, seed=self.rng.getrandbits(32), prefix=self.prefix)
        self.users_table = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
        self.load = Load(self.users_table, self.generator, rate)
        self.probe_id, self.probe_version = f"{self.prefix}probe", 0
        self.proxy = FaultProxy(("127.0.0.1", stack.opensearch_port), delay_s=1.0)
        self.ctx = Context(stack, pipeline, pause_s, self.rng, self.proxy, self.generator)

    def run(self, faults: list[str]) -> list[FaultResult]:
        if self.stack.target is not Target.LOCAL:
            raise StackError(f"make chaos runs on the local stack, not CDC_TARGET={self.stack.target.value}")
        if supervisor_process(self.stack).pid() is None:
            raise StackError("the stack supervisor is not running (CDC_SUPERVISE=0?): `make up` starts it")
        self.ctx.servers = {c.process.name: c for c in components(self.stack, self.pipeline)}
        self.proxy.start()
        watch = Watch(self.stack, self.pipeline, self.prefix).start()
        results = []
        try:
            for change in self.generator.creations():
                write_change(self.users_table, change)
            if "sink-proxy-drop-delay" in faults:  # through the proxy from the start: the fault is the cut-off only
                route_search_worker(self.ctx, through_proxy=True)
            self._settle()
            for name in faults:
                results.append(self._fault(name, watch))
        finally:
            watch.stop()
            route_search_worker(self.ctx, through_proxy=False)
            self.proxy.stop()
        return results

    def _fault(self, name: str, watch: Watch) -> FaultResult:
        result = FaultResult(name)
        counters, written, regressions = self._counters(), self.load.written, len(watch.regressions)
        self.load.start()
        try:
            for n in range(1, self.rounds + 1):
                time.sleep(self.rng.uniform(1.0, 4.0))  # a random point within the flow of batches
                self.say(f"chaos: {name} round {n}/{self.rounds}")
                result.rounds += 1
                try:
                    FAULTS[name](self.ctx)
                except Exception as exc:  # noqa: BLE001 - a fault that could not be injected fails the round
                    result.notes.append(f"round {n}: not injected: {type(exc).__name__}: {exc}")
                    result.unrecovered += 1
                    continue
                recovered = self._probe(time.monotonic())
                if recovered is None:
                    result.unrecovered += 1
                else:
                    result.recover_s.append(recovered)
        finally:
            self.load.stop()
        result.lost = self._settle(result)
        after = self._counters()
        result.written = self.load.written - written
        result.applied, result.stale, result.dead_lettered = (after[k] - counters[k] for k in counters)
        result.regressions = len(watch.regressions) - regressions
        result.notes += watch.regressions[regressions:]
        self.say(table([result]).splitlines()[-1])
        return result

    def _probe(self, since: float) -> float | None:
        """Write a new version of the probe user (one membership) and wait until every sink
        holds it: seconds since ``since``, or None after ``recover_timeout_s``."""
        self.probe_version = max(self.probe_version + 1, time.time_ns() // 1_000_000)
        item = {
            "UserId": self.probe_id,
            "Email": f"probe-{self.probe_version}@example.com",
            "FirstName": "Chaos",
            "LastName": "Probe",
            "Status": "active",
            "Workplaces": {WORKPLACES[0]: {"Role": "staff", "Title": "Probe", "JoinedAt": int(time.time())}},
            "WorkplaceIds": {WORKPLACES[0]},
            "Version": self.probe_version,
        }
        deadline = since + self.recover_timeout_s
        while True:
            try:
                self.users_table.put_item(Item=item)
                break
            except Exception:  # noqa: BLE001 - the source may be the component that is down
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.5)
        while time.monotonic() < deadline:
            if self._probe_everywhere():
                return time.monotonic() - since
            time.sleep(0.25)
        return None

    def _probe_everywhere(self) -> bool:
        version = self.probe_version
        try:
            ddb = aws_client("dynamodb", self.stack, self.pipeline.region)
            app_user = ddb.get_item(TableName="AppUsers_V2", Key={"UserId": {"S": self.probe_id}}).get("Item")
            membership = ddb.get_item(
                TableName="WorkplaceUsers_V2",
                Key={"WorkplaceId": {"S": WORKPLACES[0]}, "UserId": {"S": self.probe_id}},
            ).get("Item")
            document = opensearch_client(self.stack, timeout=5).get(
                index=INDEX, id=f"{WORKPLACES[0]}#{self.probe_id}", ignore=404
            )
        except Exception:  # noqa: BLE001 - a component still down
            return False
        return (
            app_user is not None
            and int(app_user["Version"]["N"]) >= version
            and membership is not None
            and int(membership["Version"]["N"]) >= version
            and document.get("found", False)
            and document["_version"] >= version
        )

    def _settle(self, result: FaultResult | None = None) -> int:
        """Wait until every sink equals Users; the changes lost: reported written but not in
        Users, plus every sink item that still differs."""
        reports = wait_converged(self.stack, self.pipeline, timeout_s=self.recover_timeout_s, poll_s=3)
        lost = sum(len(r.missing) + len(r.extra) + len(r.stale) for r in reports)
        lost_source = self._lost_in_source()
        if result is not None:
            result.notes += [str(r) for r in reports if not r.ok] + lost_source
        return lost + len(lost_source)

    def _lost_in_source(self) -> list[str]:
        stored = {
            item["UserId"]: int(item["Version"])
            for page in _scan_prefix(self.users_table, self.prefix)
            for item in page
            if item["UserId"] != self.probe_id
        }
        expected = {user: item["Version"] for user, item in self.generator.state.items()}
        return [
            f"Users {user}: generator wrote version {expected.get(user)}, the table holds {stored.get(user)}"
            for user in sorted(stored.keys() | expected.keys())
            if stored.get(user) != expected.get(user)
        ]

    def _counters(self) -> dict[str, int]:
        totals = {"applied": 0, "stale": 0, "dead_lettered": 0}
        for path in (self.stack.state_dir / "apps").glob("*/stats/*.json"):
            try:
                stats = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            for name in totals:
                totals[name] += stats.get(name, 0)
        return totals


def _scan_prefix(table: Any, prefix: str) -> Iterator[list[dict]]:
    from boto3.dynamodb.conditions import Attr

    kwargs: dict[str, Any] = {"FilterExpression": Attr("UserId").begins_with(prefix), "ConsistentRead": True}
    while True:
        page = table.scan(**kwargs)
        yield page["Items"]
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per fault (default 3)")
    parser.add_argument("--pause", type=float, default=30.0, help="seconds a pause, block or cut-off lasts")
    parser.add_argument("--rate", type=float, default=15.0, help="changes per second while faults happen")
    parser.add_argument("--users", type=int, default=200, help="users the generator changes")
    parser.add_argument("--only", help=f"comma-separated faults (default all: {', '.join(FAULTS)})")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--recover-timeout", type=float, default=RECOVER_TIMEOUT_S, help="seconds a round may take to recover"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    faults = args.only.split(",") if args.only else list(FAULTS)
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        parser.error(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    started = time.monotonic()
    chaos = Chaos(
        StackConfig.from_env(),
        load_pipeline(),
        rounds=args.rounds,
        pause_s=args.pause,
        rate=args.rate,
        users=args.users,
        seed=args.seed,
        recover_timeout_s=args.recover_timeout,
    )
    try:
        results = chaos.run(faults)
    except StackError as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 2
    duration = time.monotonic() - started
    if args.json:
        print(json.dumps({"duration_s": round(duration, 1), "faults": [r.row() for r in results]}, indent=2))
    else:
        print(table(results))
        print(f"\n{len(results)} faults x {args.rounds} rounds in {duration / 60:.1f} min")
        for result in results:
            for note in result.notes[:10]:
                print(f"  {result.fault}: {note}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
