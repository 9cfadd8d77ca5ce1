"""The `cdc` commands that work on the whole stack and its streams: up, down, clean, provision,
status (components, every app's shards, the streams) and reshard (a stream's shard count, then
the wait until every running app drained the parents)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from infra.local import stack
from infra.local.provision import provision
from infra.ops.cli.context import Context
from infra.ops.cli.output import print_result, say, say_service_events, table
from infra.ops.reshard import reshard, wait_drained, write_shard_count
from infra.ops.status import app_row, freshness, latency, relay_row, shard_rows, stats_snapshot, stream_row
from producer_config import DEFAULT_PIPELINE_FILE
from services.kinesis import list_shards

__all__ = ["cmd_clean", "cmd_down", "cmd_provision", "cmd_reshard", "cmd_status", "cmd_up"]


def cmd_up(ctx: Context, args: argparse.Namespace) -> int:
    stack.up(ctx.stack, ctx.pipeline)
    apps = [app_row(ctx.workers(app), ctx.dead_letters(app)) for app in ctx.apps] if args.json else []
    print_result(args, target=ctx.stack.target.value, state_dir=ctx.stack.state_dir, apps=apps)
    return 0


def cmd_down(ctx: Context, args: argparse.Namespace) -> int:
    stack.down(ctx.stack)
    print_result(args, target=ctx.stack.target.value, state_dir=ctx.stack.state_dir, data_kept=True)
    return 0


def cmd_clean(ctx: Context, args: argparse.Namespace) -> int:
    stack.clean(ctx.stack)
    print_result(args, target=ctx.stack.target.value, state_dir=ctx.stack.state_dir, data_kept=False)
    return 0


def cmd_provision(ctx: Context, args: argparse.Namespace) -> int:
    changes = provision(ctx.pipeline, ctx.stack, ctx.apps, say=say)
    print_result(args, target=ctx.stack.target.value, changes=changes)
    return 0


def cmd_status(ctx: Context, args: argparse.Namespace) -> int:
    apps = [ctx.app(args.app)] if args.app else list(ctx.apps)
    healthy = True
    while True:
        if not args.json and not args.app:
            healthy = stack.status(ctx.stack)
            if not healthy and not args.watch:
                say("cdc status: not every component is up: `make up` starts what is missing")
                return 1
        kinesis = ctx.client("kinesis")
        streams = sorted({app.stream_name for app in apps})
        workers = {app.name: ctx.workers(app) for app in apps}
        snapshots = {name: stats_snapshot(ctx.stack, w) for name, w in workers.items()}
        time.sleep(1.0)  # once, for every app's rate
        report = {
            "apps": [
                {**app_row(workers[app.name], ctx.dead_letters(app)), **latency(ctx.stack, workers[app.name])}
                for app in apps
            ],
            "relay": [relay_row(backlog) for backlog in ctx.relay_backlogs()],
            "shards": [
                row
                for app in apps
                for row in shard_rows(
                    ctx.stack, workers[app.name], kinesis, list_shards(kinesis, app.stream_name), snapshots[app.name]
                )
            ],
            "streams": [stream_row(kinesis, stream) for stream in streams],
        }
        freshness(list(ctx.apps), report["apps"], report["shards"], report["relay"])
        if args.json:
            print(json.dumps(report, indent=1, default=str))
        else:
            print(
                "\napps:\n"
                + table(
                    report["apps"],
                    (
                        "app",
                        "workers",
                        "desired",
                        "state",
                        "leader",
                        "dead_letters",
                        "lag_ms",
                        "freshness_ms",
                        "latency_p50_ms",
                        "latency_p99_ms",
                    ),
                )
            )
            say_service_events(report["apps"])
            if report["relay"]:
                print(
                    "\nrelay (DynamoDB Streams -> Kinesis):\n"
                    + table(report["relay"], ("table", "waiting", "at_least", "oldest_age_s", "position_age_s"))
                )
            print(
                "\nshards:\n"
                + table(
                    report["shards"],
                    ("app", "shard", "shard_state", "owner", "checkpoint", "lag_ms", "behind_ms", "records_per_s"),
                )
            )
            print(
                "\nstreams:\n"
                + table(report["streams"], ("stream", "status", "open_shards", "closed_shards", "retention_hours"))
            )
        if not args.watch:
            return 0 if healthy else 1
        time.sleep(1.0)  # with the 1 s rate window: a refresh every ~2 s
        if sys.stdout.isatty():
            print("\033[2J\033[H", end="")  # clear the terminal between refreshes
        else:
            print(flush=True)  # a pipe or a file gets one report after another, no escape codes


def cmd_reshard(ctx: Context, args: argparse.Namespace) -> int:
    kinesis = ctx.client("kinesis")
    readers = [ctx.workers(app) for app in ctx.apps if app.stream_name == args.stream]
    result = reshard(kinesis, args.stream, shards=args.shards, split=args.split, merge=args.merge)
    say(
        f"{args.stream}: ACTIVE after {result.seconds:.1f}s, {result.before} -> {result.after} open shards; "
        f"closed {', '.join(result.parents)}; opened {', '.join(result.children)}"
    )
    line = f"shards = {result.after}"
    if args.write_config:
        line, changed = write_shard_count(DEFAULT_PIPELINE_FILE, args.stream, result.after)
        say(f"{DEFAULT_PIPELINE_FILE}: [streams.{args.stream}] {line}{'' if changed else ' (already)'}")
    else:
        say(f"set `{line}` under [streams.{args.stream}] in {DEFAULT_PIPELINE_FILE} (or pass --write-config)")
    for idle in (w.app.name for w in readers if not w.running_count()):
        say(f"{idle} is not running: it drains the parents when it starts")

    def show(rows: list[dict[str, Any]]) -> None:
        if not args.json:
            print(table(rows, ("app", "parent", "owner", "checkpoint", "drained")), flush=True)
            print(flush=True)

    started = time.monotonic()
    rows = wait_drained(readers, result.parents, timeout_s=args.timeout, show=show)
    say(f"every running app drained the parents in {time.monotonic() - started:.1f}s")
    if args.json:
        print(
            json.dumps(
                {
                    "stream": result.stream,
                    "before": result.before,
                    "after": result.after,
                    "parents": result.parents,
                    "children": result.children,
                    "active_after_s": round(result.seconds, 1),
                    "drained_after_s": round(time.monotonic() - started, 1),
                    "leases": rows,
                },
                indent=1,
            )
        )
    return 0
