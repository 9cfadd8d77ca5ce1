"""The `cdc` commands that work on one app (or list them): apps, stop, start, scale, replay,
backfill. Each takes the `Context` and the parsed arguments and returns the exit status."""

from __future__ import annotations

import argparse
import sys
import time

from tqdm import tqdm

from infra.ops.backfill import backfill
from infra.ops.cli.context import Context
from infra.ops.cli.output import print_result, print_rows, progress_off, say, say_service_events
from infra.ops.replay import replay, replay_start
from infra.ops.status import app_row

__all__ = ["cmd_apps", "cmd_backfill", "cmd_replay", "cmd_scale", "cmd_start", "cmd_stop"]


def cmd_apps(ctx: Context, args: argparse.Namespace) -> int:
    rows = [app_row(ctx.workers(app), ctx.dead_letters(app)) for app in ctx.apps]
    print_rows(args, rows, ("app", "package", "source", "sink", "workers", "desired", "state", "dead_letters"))
    say_service_events(rows)
    return 0


def cmd_stop(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args.app)
    workers = ctx.workers(app)
    report = workers.stop()
    print_result(args, app=app.name, stopped=report.stopped, waited_s=round(report.waited_s, 1))
    say(
        f"{app.name}: stopped {len(report.stopped)} worker(s) in {report.waited_s:.1f}s (waited for each processor "
        f"to checkpoint on shutdown_requested, then for its leases to expire; {workers.where})"
    )
    return 0


def cmd_start(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args.app)
    workers = ctx.workers(app)
    workers.start(args.workers)
    running = workers.running_count()
    print_result(args, app=app.name, workers=running, desired=workers.desired)
    say(f"{app.name}: {running} worker(s) running")
    return 0


def cmd_scale(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args.app)
    started = time.monotonic()
    spread = ctx.workers(app).scale(args.workers)
    rows = [{"worker": owner or "(unassigned)", "open_leases": count} for owner, count in sorted(spread.items())]
    say(f"{app.name}: {args.workers} worker(s), leases settled in {time.monotonic() - started:.1f}s")
    print_rows(args, rows, ("worker", "open_leases"))
    return 0


def cmd_replay(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args.app)
    kinesis = ctx.client("kinesis")
    at = args.at or args.since
    start = replay_start(kinesis, app.stream_name, at=at)
    if at is not None and start != at:
        say(f"starting at {start.isoformat()}: the KCL takes AT_TIMESTAMP in whole seconds")
    with tqdm(total=0, unit="rec", file=sys.stderr, disable=progress_off(args), desc=f"replay {app.name}") as bar:

        def progress(done: int, total: int, lag: dict[str, int | None]) -> None:
            bar.total = total
            bar.n = min(done, total)
            bar.set_postfix_str(" ".join(f"{shard[-4:]}:{lag_ms}ms" for shard, lag_ms in sorted(lag.items())))
            bar.refresh()

        report = replay(ctx.stack, app, ctx.workers(app), kinesis, start, progress=progress)
    row = {
        "app": report.app,
        "from": report.start.isoformat(),
        "records": sum(report.expected.values()),
        **(report.counts or dict.fromkeys(("received", "applied", "stale", "filtered_out", "dead_lettered"))),
        "seconds": round(report.seconds, 1),
        "processing_s": round(report.processing_s, 1),
        "lease_backup": str(report.backup),
    }
    print_rows(
        args,
        [row],
        (
            "app",
            "from",
            "records",
            "received",
            "applied",
            "stale",
            "filtered_out",
            "dead_lettered",
            "seconds",
            "processing_s",
        ),
    )
    return 0


def cmd_backfill(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args.app)
    dynamodb = ctx.client("dynamodb")
    estimate = int(dynamodb.describe_table(TableName=app.source.name)["Table"].get("ItemCount", 0)) or None
    with tqdm(
        total=estimate, unit="item", file=sys.stderr, disable=progress_off(args), desc=f"backfill {app.name}"
    ) as bar:
        report = backfill(dynamodb, ctx.pipeline, app, ctx.processors(app), segments=args.segments, progress=bar.update)
    print_rows(args, [report.row()], tuple(report.row()))
    return 0 if report.stats.dead_lettered == 0 else 1
