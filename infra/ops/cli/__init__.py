"""`cdc`: operate the pipeline. `make up/down/status/clean/provision/apps/scale/replay` call it.

Every command reads its settings from the environment (CDC_* variables, docs/configuration.md) and
`producer_config/pipeline.toml`. Reports go to stdout (tables, or JSON with ``--json``),
messages and progress to stderr. Exit status: 0 done, 1 the command could not do it (one line
says why and what to do, never a traceback), 2 bad usage, 130 interrupted (Ctrl-C).

This package: the parser and `main` (here: every command, its arguments, how errors become an
exit status); the commands by what they work on (`stack_commands`: the stack and its streams,
`app_commands`: one app, `dlq_commands`: an app's dead letters); `context` (the target, the
pipeline, the apps, clients) and `output` (tables, ``--json``, messages). `python -m
infra.ops.cli` runs `main` (``__main__``), as does the ``cdc`` script (pyproject.toml).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from base.errors import CdcError
from infra.ops.cli.app_commands import cmd_apps, cmd_backfill, cmd_replay, cmd_scale, cmd_start, cmd_stop
from infra.ops.cli.context import Context
from infra.ops.cli.dlq_commands import cmd_dlq_discard, cmd_dlq_list, cmd_dlq_redrive, cmd_dlq_show
from infra.ops.cli.output import say
from infra.ops.cli.stack_commands import cmd_clean, cmd_down, cmd_provision, cmd_reshard, cmd_status, cmd_up
from services.clients import error_code

__all__ = ["main"]

_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


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


def _since(text: str) -> datetime:
    """``--since``, the same everywhere: a point in time, given as a duration ago (30m) or as an
    ISO-8601 time with a zone."""
    if _DURATION.fullmatch(text.strip()):
        return datetime.now(UTC) - _duration(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration (90s, 30m, 2h, 1d) or an ISO-8601 time (2026-12-01T10:00:00Z)"
        ) from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give a time zone (e.g. {text}Z)")
    return when


# ----------------------------------------------------------------------------- the parser
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cdc", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[Context, argparse.Namespace], int], help: str):
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run, json=False)
        sub.add_argument("--json", action="store_true", help="print the result as JSON, for scripts")
        return sub

    command("up", cmd_up, "start what is not running, provision, start the relay and the workers (idempotent)")
    command("down", cmd_down, "stop every component and every worker of the stack; data stays")
    command("clean", cmd_clean, "stop everything and wipe the state folder (data, logs, positions, scale counts)")
    command("provision", cmd_provision, "apply producer_config/pipeline.toml to the target (idempotent)")
    command("apps", cmd_apps, "each app: source stream, sink, workers running and wanted, state, dead letters")
    sub = command(
        "stop", cmd_stop, "stop one app's workers gracefully (they checkpoint); wait until their leases expire"
    )
    sub.add_argument("app", help="package (app_user_management) or app name (app-user-management)")
    sub = command("start", cmd_start, "start one app's workers (the scaled count, or --workers N, kept)")
    sub.add_argument("app")
    sub.add_argument("--workers", type=int, help="how many (kept in the state folder, as `scale` does)")
    sub = command("scale", cmd_scale, "run N workers of one app with its open leases spread evenly (0: stopped)")
    sub.add_argument("app")
    sub.add_argument("workers", type=int, metavar="N")
    sub = command("replay", cmd_replay, "process one app's stream again from a point of its retention window")
    sub.add_argument("app")
    where = sub.add_mutually_exclusive_group(required=True)
    where.add_argument("--from-trim-horizon", action="store_true", help="from the oldest record the stream holds")
    where.add_argument("--at", type=_timestamp, help="from this time (ISO-8601 with a zone; whole seconds)")
    where.add_argument("--since", type=_since, help="from this long ago (90s, 30m, 2h, 1d) or this ISO-8601 time")
    sub = command("status", cmd_status, "components; per app and shard: lease owner, checkpoint, lag, rate; streams")
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

    def dlq_command(name: str, run: Callable[[Context, argparse.Namespace], int], help: str):
        sub = dlq_commands.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run, json=False)
        sub.add_argument("--json", action="store_true", help="print the result as JSON, for scripts")
        sub.add_argument("app", help="package (app_user_management) or app name (app-user-management)")
        return sub

    def narrowing(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--since",
            type=_since,
            help="only letters that failed this long ago (30m, 2h) or at this ISO-8601 time or later",
        )
        sub.add_argument("--error-class", help="only letters with this error class (e.g. InvalidChangeRecord)")

    sub = dlq_command("list", cmd_dlq_list, "the app's dead letters, oldest failure first")
    narrowing(sub)
    sub = dlq_command("show", cmd_dlq_show, "one letter: payload (decoded when it parses), error, times")
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
        sub = dlq_command(name, run, help)
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
    )
    sub.add_argument("app")
    sub.add_argument("--segments", type=int, default=4, help="parallel Scan segments (threads); default 4")
    sub = command(
        "reshard",
        cmd_reshard,
        "split or merge a stream's shards, wait until it is ACTIVE, then until every running app drained the parents",
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
        say(
            f"cdc {args.command}: cannot reach {exc.kwargs.get('endpoint_url')}: is the stack up? (`make up`, `make status`)"
        )
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message") or str(exc)
        if error_code(exc) == "ResourceNotFoundException":
            say(f"cdc {args.command}: {message}: run `make provision`")
        else:
            operation = exc.operation_name
            say(f"cdc {args.command}: {operation} refused: {error_code(exc)}: {message}")
    except BotoCoreError as exc:  # no credentials, no region, a timeout...
        say(f"cdc {args.command}: {exc}")
    except CdcError as exc:
        say(f"cdc {args.command}: {exc}")
    except KeyboardInterrupt:
        say(f"cdc {args.command}: interrupted")
        return 130  # 128 + SIGINT, as a shell reports it
    return 1
