"""The `cdc dlq` commands: list, show, redrive and discard one app's dead letters (its
dead-letter table, app.toml [dead_letter]). A redrive sends letters back through the app's own
processing; what a letter is and how it is redriven is `infra.ops.deadletters`."""

from __future__ import annotations

import argparse
import json
import sys

from tqdm import tqdm

from consumers.runtime.config import AppConfig
from consumers.runtime.deadletter import DeadLetter
from infra.ops import deadletters
from infra.ops.cli.context import Context
from infra.ops.cli.output import print_result, print_rows, progress_off, say, table
from services.config import StackError

__all__ = ["cmd_dlq_discard", "cmd_dlq_list", "cmd_dlq_redrive", "cmd_dlq_show"]


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
        say(f"not in {table} (already redriven or discarded?): {'; '.join(missing)}")
    return chosen


def cmd_dlq_list(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args.app)
    found = deadletters.letters(
        ctx.client("dynamodb"), app.dead_letter_table, since=args.since, error_class=args.error_class
    )
    rows = sorted((deadletters.row(letter) for letter in found), key=lambda r: r["failed_at"])
    print_rows(args, rows, ("shard", "sequence", "error_class", "failed_at", "redrives", "bytes", "error"))
    say(f"{app.name}: {len(rows)} dead letter(s) in {app.dead_letter_table}")
    return 0


def cmd_dlq_show(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args.app)
    letter = deadletters.read_letter(ctx.client("dynamodb"), app.dead_letter_table, args.shard, args.seq)
    if letter is None:
        say(f"no dead letter {args.shard} {args.seq} in {app.dead_letter_table}")
        return 1
    detail = deadletters.detail(letter)
    if args.json:
        print(json.dumps(detail, indent=1, default=str))
    else:
        for key, value in detail.items():
            shown = json.dumps(value, indent=1, default=str) if isinstance(value, (dict, list)) else value
            print(f"{key}: {shown}")
    return 0


def cmd_dlq_redrive(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args.app)
    chosen = _chosen_letters(ctx, app, args)
    with tqdm(
        total=len(chosen), unit="letter", file=sys.stderr, disable=progress_off(args), desc=f"redrive {app.name}"
    ) as bar:
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
    say(
        f"{app.name}: {'dry run, nothing written: ' if args.dry_run else ''}{report.settled} of {report.letters} "
        f"letter(s) {'would settle' if args.dry_run else 'settled and removed'}; {report.failed} failed again "
        f"(kept with the new error), {report.not_redrivable} not redrivable"
    )
    return 0 if report.settled + report.changed_meanwhile == report.letters else 1


def cmd_dlq_discard(ctx: Context, args: argparse.Namespace) -> int:
    app = ctx.app(args.app)
    chosen = _chosen_letters(ctx, app, args)
    deleted = deadletters.discard(ctx.client("dynamodb"), app.dead_letter_table, chosen)
    print_result(args, app=app.name, chosen=len(chosen), discarded=deleted)
    say(f"{app.name}: discarded {deleted} of {len(chosen)} letter(s) (a letter that changed meanwhile is kept)")
    return 0 if deleted == len(chosen) else 1
