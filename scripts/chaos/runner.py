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

The faults are in `scripts.chaos.faults`, the load and the watcher in `scripts.chaos.background`.
The stack supervisor (`infra.local.supervisor`) restarts what dies; nothing here starts a killed
component.

Exit status: 0 when nothing was lost, nothing regressed and every round recovered; 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from consumers.verify import wait_converged
from infra.local.components import components
from infra.local.stack import supervisor_process
from infra.testing.faultproxy import FaultProxy
from producer_config import PipelineConfig, load_pipeline
from scripts.changes.generator import UserChangeGenerator
from scripts.changes.model import WORKPLACES
from scripts.changes.writer import write_change
from scripts.chaos.background import Load, Watch
from scripts.chaos.faults import FAULTS, INDEX, Context, route_search_worker
from scripts.chaos.results import FaultResult, table
from services.clients import aws_client, aws_resource, opensearch_client
from services.config import StackConfig, StackError, Target

__all__ = ["RECOVER_TIMEOUT_S", "Chaos", "main"]

RECOVER_TIMEOUT_S = 300.0


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
            # user-notifications: the subscriber crm acknowledged the probe's change (its ledger)
            notified = ddb.get_item(
                TableName="NotificationDeliveries",
                Key={"Subscriber": {"S": "crm"}, "Entry": {"S": f"last#{self.probe_id}"}},
                ConsistentRead=True,
            ).get("Item")
        except Exception:  # noqa: BLE001 - a component still down
            return False
        return (
            app_user is not None
            and int(app_user["Version"]["N"]) >= version
            and membership is not None
            and int(membership["Version"]["N"]) >= version
            and document.get("found", False)
            and document["_version"] >= version
            and notified is not None
            and int(notified["Version"]["N"]) >= 2 * version  # an event's place: twice the version
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
    parser = argparse.ArgumentParser(prog="python -m scripts.chaos", description=__doc__.splitlines()[0])
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
