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

from consumers.runtime.config import AppConfig, discover_apps
from consumers.shared.errors import CdcError
from infra import stack
from infra.apps import AppWorkers
from infra.provision import provision
from infra.replay import replay, replay_start
from infra.status import app_row, shard_rows, stream_row
from producer_config import PipelineConfig, load_pipeline
from targets.clients import aws_client, error_code, lease_client
from targets.config import StackConfig, StackError
from targets.kinesis import list_shards

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
