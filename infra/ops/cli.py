"""`cdc`: operate the pipeline. `make up/down/status/clean/provision/apps/scale/replay` call it.

Every command reads its settings from the environment (CDC_* variables, see README) and
`producer_config/pipeline.toml`. Reports go to stdout (tables, or JSON with ``--json``),
messages and progress to stderr. Exit status: 0 done, 1 the command could not do it (the message
says why and what to do), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError, EndpointConnectionError
from tqdm import tqdm

from base.errors import CdcError
from consumers.runtime.config import AppConfig, discover_apps
from consumers.runtime.deadletter import DeadLetter
from infra.local import stack
from infra.local.provision import provision
from infra.ops import deadletters
from infra.ops.apps import AppWorkers
from infra.ops.backfill import backfill
from infra.ops.replay import replay, replay_start
from infra.ops.reshard import reshard, wait_drained, write_shard_count
from infra.ops.status import app_row, shard_rows, stream_row
from producer_config import DEFAULT_PIPELINE_FILE, PipelineConfig, load_pipeline
from services.clients import aws_client, error_code, lease_client
from services.config import StackConfig, StackError
from services.kinesis import list_shards

__all__ = ["main"]

_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _duration(text: str) -> timedelta:
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 30m, 2h or 1d")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def _timestamp(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 time such as 2026-12-01T10:00:00Z") from None


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows as an aligned text table (None shows as -)."""
    cells = [[("-" if row.get(c) is None else str(row[c])) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


class Context:
    """What every command works with: the stack's target, the pipeline, the apps, clients."""

    def __init__(self) -> None:
        self.stack = StackConfig.from_env()
        self.pipeline: PipelineConfig = load_pipeline()
        self.apps = discover_apps(self.pipeline)
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        """A client of ``service`` (dynamodb, kinesis...), or of the KCL's lease tables (``leases``)."""
        if service not in self._clients:
            region = self.pipeline.region
            made = lease_client(self.stack, region) if service == "leases" else aws_client(service, self.stack, region)
            self._clients[service] = made
        return self._clients[service]

    def app(self, name: str) -> AppConfig:
        for app in self.apps:
            if name in (app.package, app.name):
                return app
        known = ", ".join(f"{a.package} ({a.name})" for a in self.apps)
        raise StackError(f"unknown app {name!r}: the apps are {known}")

    def workers(self, app: AppConfig) -> AppWorkers:
        return AppWorkers(self.stack, app, self.client("leases"), say=_say)

    def processors(self, app: AppConfig):
        """The app's own per-shard processor factory (its sink, filter, transform, dead letters)."""
        from consumers.runtime.wiring import build_batch_processor  # opensearch-py: only when needed

        return build_batch_processor(app.package, self.stack)[0]

    def dead_letters(self, app: AppConfig) -> int | None:
        try:
            return int(self.client("dynamodb").scan(TableName=app.dead_letter_table, Select="COUNT")["Count"])
        except ClientError:
            return None


# ------------------------------------------------------------------------------ commands
def cmd_apps(ctx: Context, args: argparse.Namespace) -> int:
    rows = [app_row(ctx.workers(app), ctx.dead_letters(app)) for app in ctx.apps]
    _print(args, rows, ("app", "package", "source", "sink", "workers", "desired", "state", "dead_letters"))
    return 0


def cmd_stop(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args.app)
    report = ctx.workers(app).stop()
    _say(
        f"{app.name}: stopped {len(report.stopped)} worker(s) in {report.waited_s:.1f}s (waited for each processor "
        "to checkpoint on shutdown_requested, then for its leases to expire)"
    )
    return 0


def cmd_start(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args.app)
    workers = ctx.workers(app)
    workers.start(args.workers)
    _say(f"{app.name}: {len(workers.running())} worker(s) running")
    return 0


def cmd_scale(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args.app)
    started = time.monotonic()
    spread = ctx.workers(app).scale(args.workers)
    rows = [{"worker": owner or "(unassigned)", "open_leases": count} for owner, count in sorted(spread.items())]
    _say(f"{app.name}: {args.workers} worker(s), leases settled in {time.monotonic() - started:.1f}s")
    _print(args, rows, ("worker", "open_leases"))
    return 0


def cmd_replay(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args.app)
    kinesis = ctx.client("kinesis")
    start = replay_start(kinesis, app.stream_name, at=args.at, since=args.since)
    if args.at is not None and start != args.at:
        _say(f"starting at {start.isoformat()}: the KCL takes AT_TIMESTAMP in whole seconds")
    with tqdm(total=0, unit="rec", file=sys.stderr, disable=args.json, desc=f"replay {app.name}") as bar:

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
        **report.counts,
        "seconds": round(report.seconds, 1),
        "processing_s": round(report.processing_s, 1),
        "lease_backup": str(report.backup),
    }
    _print(
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


def cmd_status(ctx: Context, args: argparse.Namespace) -> int:
    apps = [ctx.app(args.app)] if args.app else list(ctx.apps)
    healthy = True
    while True:
        if not args.json and not args.app:
            healthy = stack.status(ctx.stack)
            if not healthy and not args.watch:
                _say("cdc status: not every component is up: `make up` starts what is missing")
                return 1
        kinesis = ctx.client("kinesis")
        streams = sorted({app.stream_name for app in apps})
        report = {
            "apps": [app_row(ctx.workers(app), ctx.dead_letters(app)) for app in apps],
            "shards": [
                row
                for app in apps
                for row in shard_rows(ctx.stack, ctx.workers(app), list_shards(kinesis, app.stream_name))
            ],
            "streams": [stream_row(kinesis, stream) for stream in streams],
        }
        if args.json:
            print(json.dumps(report, indent=1, default=str))
        else:
            print("\napps:\n" + table(report["apps"], ("app", "workers", "desired", "state", "leader", "dead_letters")))
            print(
                "\nshards:\n"
                + table(
                    report["shards"],
                    ("app", "shard", "shard_state", "owner", "checkpoint", "behind_ms", "records_per_s"),
                )
            )
            print(
                "\nstreams:\n"
                + table(report["streams"], ("stream", "status", "open_shards", "closed_shards", "retention_hours"))
            )
        if not args.watch:
            return 0 if healthy else 1
        time.sleep(2)
        print("\033[2J\033[H", end="")  # clear the terminal between refreshes


def _chosen_letters(ctx: Context, app: AppConfig, args: argparse.Namespace) -> list[DeadLetter]:
    """The letters a command names: every one (``--all``, narrowed by --since/--error-class), or
    SHARD SEQ pairs, each of which must exist."""
    dynamodb, table = ctx.client("dynamodb"), app.dead_letter_table
    if args.all:
        return list(deadletters.letters(dynamodb, table, since=args.since, error_class=args.error_class))
    if not args.letters or len(args.letters) % 2:
        raise StackError("name the letters as SHARD SEQ pairs (see `cdc dlq list`), or give --all")
    chosen, missing = [], []
    for shard, seq in zip(args.letters[::2], args.letters[1::2], strict=True):
        letter = deadletters.read_letter(dynamodb, table, shard, seq)
        if letter is None:
            missing.append(f"{shard} {seq}")
        else:
            chosen.append(letter)
    if missing:
        _say(f"not in {table} (already redriven or discarded?): {'; '.join(missing)}")
    return chosen


def cmd_dlq_list(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args.app)
    found = deadletters.letters(
        ctx.client("dynamodb"), app.dead_letter_table, since=args.since, error_class=args.error_class
    )
    rows = sorted((deadletters.row(letter) for letter in found), key=lambda r: r["failed_at"])
    _print(args, rows, ("shard", "sequence", "error_class", "failed_at", "redrives", "bytes", "error"))
    _say(f"{app.name}: {len(rows)} dead letter(s) in {app.dead_letter_table}")
    return 0


def cmd_dlq_show(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args.app)
    letter = deadletters.read_letter(ctx.client("dynamodb"), app.dead_letter_table, args.shard, args.seq)
    if letter is None:
        _say(f"no dead letter {args.shard} {args.seq} in {app.dead_letter_table}")
        return 1
    print(json.dumps(deadletters.detail(letter), indent=1, default=str))
    return 0


def cmd_dlq_redrive(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args.app)
    chosen = _chosen_letters(ctx, app, args)
    with tqdm(total=len(chosen), unit="letter", file=sys.stderr, disable=args.json, desc=f"redrive {app.name}") as bar:
        report = deadletters.redrive(
            ctx.client("dynamodb"),
            ctx.client("kinesis"),
            app.dead_letter_table,
            app.stream_name,
            chosen,
            ctx.processors(app),
            dry_run=args.dry_run,
            progress=lambda outcome: bar.update(),
        )
    if args.json:
        print(json.dumps({**report.row(), "dry_run": args.dry_run, "outcomes": report.outcomes}, indent=1))
    else:
        print(table(report.outcomes, ("shard", "sequence", "outcome")))
        print("\n" + table([report.row()], tuple(report.row())))
    _say(
        f"{app.name}: {'dry run, nothing written: ' if args.dry_run else ''}{report.settled} of {report.letters} "
        f"letter(s) {'would settle' if args.dry_run else 'settled and removed'}; {report.failed} failed again "
        f"(kept with the new error), {report.not_redrivable} not redrivable"
    )
    return 0 if report.settled + report.changed_meanwhile == report.letters else 1


def cmd_dlq_discard(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args.app)
    chosen = _chosen_letters(ctx, app, args)
    deleted = deadletters.discard(ctx.client("dynamodb"), app.dead_letter_table, chosen)
    _say(f"{app.name}: discarded {deleted} of {len(chosen)} letter(s) (a letter that changed meanwhile is kept)")
    return 0 if deleted == len(chosen) else 1


def cmd_backfill(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args.app)
    dynamodb = ctx.client("dynamodb")
    estimate = int(dynamodb.describe_table(TableName=app.source.name)["Table"].get("ItemCount", 0)) or None
    with tqdm(total=estimate, unit="item", file=sys.stderr, disable=args.json, desc=f"backfill {app.name}") as bar:
        report = backfill(dynamodb, ctx.pipeline, app, ctx.processors(app), segments=args.segments, progress=bar.update)
    _print(args, [report.row()], tuple(report.row()))
    return 0 if report.stats.dead_lettered == 0 else 1


def cmd_reshard(ctx: Context, args: argparse.Namespace) -> int:
    kinesis = ctx.client("kinesis")
    readers = [ctx.workers(app) for app in ctx.apps if app.stream_name == args.stream]
    result = reshard(kinesis, args.stream, shards=args.shards, split=args.split, merge=args.merge)
    _say(
        f"{args.stream}: ACTIVE after {result.seconds:.1f}s, {result.before} -> {result.after} open shards; "
        f"closed {', '.join(result.parents)}; opened {', '.join(result.children)}"
    )
    line = f"shards = {result.after}"
    if args.write_config:
        line, changed = write_shard_count(DEFAULT_PIPELINE_FILE, args.stream, result.after)
        _say(f"{DEFAULT_PIPELINE_FILE}: [streams.{args.stream}] {line}{'' if changed else ' (already)'}")
    else:
        _say(f"set `{line}` under [streams.{args.stream}] in {DEFAULT_PIPELINE_FILE} (or pass --write-config)")
    for idle in (w.app.name for w in readers if not w.running()):
        _say(f"{idle} is not running: it drains the parents when it starts")

    def show(rows: list[dict[str, Any]]) -> None:
        if not args.json:
            print(table(rows, ("app", "parent", "owner", "checkpoint", "drained")), flush=True)
            print(flush=True)

    started = time.monotonic()
    rows = wait_drained(readers, result.parents, timeout_s=args.timeout, show=show)
    _say(f"every running app drained the parents in {time.monotonic() - started:.1f}s")
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


def cmd_up(ctx: Context, args: argparse.Namespace) -> int:
    stack.up(ctx.stack, ctx.pipeline)
    return 0


def cmd_down(ctx: Context, args: argparse.Namespace) -> int:
    stack.down(ctx.stack)
    return 0


def cmd_clean(ctx: Context, args: argparse.Namespace) -> int:
    stack.clean(ctx.stack)
    return 0


def cmd_provision(ctx: Context, args: argparse.Namespace) -> int:
    provision(ctx.pipeline, ctx.stack, ctx.apps, say=_say)
    return 0


def _print(args: argparse.Namespace, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    print(json.dumps(rows, indent=1, default=str) if args.json else table(rows, columns))


# ----------------------------------------------------------------------------- the parser
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cdc", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[Context, argparse.Namespace], int], help: str, json_out: bool = False):
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run, json=False)
        if json_out:
            sub.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")
        return sub

    command("up", cmd_up, "start what is not running, provision, start the relay and the workers (idempotent)")
    command("down", cmd_down, "stop every component and every worker of the stack; data stays")
    command("clean", cmd_clean, "stop everything and wipe the state folder (data, logs, positions, scale counts)")
    command("provision", cmd_provision, "apply producer_config/pipeline.toml to the target (idempotent)")
    command("apps", cmd_apps, "each app: source stream, sink, workers running and wanted, state, dead letters", True)
    sub = command(
        "stop", cmd_stop, "stop one app's workers gracefully (they checkpoint); wait until their leases expire"
    )
    sub.add_argument("app", help="package (app_user_management) or app name (app-user-management)")
    sub = command("start", cmd_start, "start one app's workers (the scaled count, or --workers N, kept)")
    sub.add_argument("app")
    sub.add_argument("--workers", type=int, help="how many (kept in the state folder, as `scale` does)")
    sub = command("scale", cmd_scale, "run N workers of one app with its open leases spread evenly (0: stopped)", True)
    sub.add_argument("app")
    sub.add_argument("workers", type=int, metavar="N")
    sub = command("replay", cmd_replay, "process one app's stream again from a point of its retention window", True)
    sub.add_argument("app")
    where = sub.add_mutually_exclusive_group(required=True)
    where.add_argument("--from-trim-horizon", action="store_true", help="from the oldest record the stream holds")
    where.add_argument("--at", type=_timestamp, help="from this time (ISO-8601 with a zone; whole seconds)")
    where.add_argument("--since", type=_duration, help="from this long ago (90s, 30m, 2h, 1d)")
    sub = command(
        "status", cmd_status, "components; per app and shard: lease owner, checkpoint, lag, rate; streams", True
    )
    sub.add_argument("app", nargs="?", help="only this app (no component table)")
    sub.add_argument("--watch", action="store_true", help="refresh every 2 s until interrupted")

    dlq = commands.add_parser(
        "dlq",
        help="an app's dead letters: list, show, redrive, discard",
        description=(
            "Each app's poison records are in its dead-letter table (app.toml [dead_letter]). "
            "A redrive sends letters back through the app's own processing."
        ),
    )
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="DLQ_COMMAND")

    def dlq_command(name: str, run: Callable[[Context, argparse.Namespace], int], help: str, json_out: bool):
        sub = dlq_commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run, json=False)
        if json_out:
            sub.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")
        sub.add_argument("app", help="package (app_user_management) or app name (app-user-management)")
        return sub

    def narrowing(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--since", type=_timestamp, help="only letters that failed at or after this time (ISO-8601)")
        sub.add_argument("--error-class", help="only letters with this error class (e.g. InvalidChangeRecord)")

    sub = dlq_command("list", cmd_dlq_list, "the app's dead letters, oldest failure first", True)
    narrowing(sub)
    sub = dlq_command("show", cmd_dlq_show, "one letter: payload (decoded when it parses), error, times", False)
    sub.add_argument("shard")
    sub.add_argument("seq")
    for name, run, help in (
        (
            "redrive",
            cmd_dlq_redrive,
            "send letters back through the app (decode, filter, transform, guarded write); "
            "settled ones are removed, failing ones stay with their new error",
        ),
        ("discard", cmd_dlq_discard, "delete letters judged unrecoverable"),
    ):
        sub = dlq_command(name, run, help, name == "redrive")
        which = sub.add_mutually_exclusive_group(required=True)
        which.add_argument("--all", action="store_true", help="every letter (narrowed by --since, --error-class)")
        which.add_argument("letters", nargs="*", default=[], metavar="SHARD SEQ", help="letters by shard and sequence")
        narrowing(sub)
        if name == "redrive":
            sub.add_argument(
                "--dry-run", action="store_true", help="decode, filter and plan each letter; write nothing"
            )

    sub = command(
        "backfill",
        cmd_backfill,
        "bring an app up to date with its source table's items (parallel Scan, each item through the app as an "
        "INSERT carrying the item's version: every later change wins); the app keeps consuming its stream",
        True,
    )
    sub.add_argument("app")
    sub.add_argument("--segments", type=int, default=4, help="parallel Scan segments (threads); default 4")
    sub = command(
        "reshard",
        cmd_reshard,
        "split or merge a stream's shards, wait until it is ACTIVE, then until every running app drained the parents",
        True,
    )
    sub.add_argument("stream")
    how = sub.add_mutually_exclusive_group(required=True)
    how.add_argument(
        "--shards", type=int, metavar="N", help="UpdateShardCount (uniform): half to double the open count"
    )
    how.add_argument("--split", metavar="SHARD", help="SplitShard at the middle of its hash range")
    how.add_argument("--merge", nargs=2, metavar=("A", "B"), help="MergeShards of two adjacent shards")
    sub.add_argument("--write-config", action="store_true", help="set the new count in producer_config/pipeline.toml")
    sub.add_argument("--timeout", type=float, default=600, help="seconds to wait for the apps to drain (default 600)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.run(Context(), args))
    except EndpointConnectionError as exc:
        _say(
            f"cdc {args.command}: cannot reach {exc.kwargs.get('endpoint_url')}: is the stack up? (`make up`, `make status`)"
        )
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        _say(f"cdc {args.command}: {exc.response['Error'].get('Message', exc)}: run `make provision`")
    except CdcError as exc:
        _say(f"cdc {args.command}: {exc}")
    except KeyboardInterrupt:
        _say(f"cdc {args.command}: interrupted")
    return 1


if __name__ == "__main__":
    sys.exit(main())
