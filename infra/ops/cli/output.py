"""How `cdc` talks: reports to stdout (an aligned table, or JSON with ``--json``), messages and
progress to stderr. Every command prints through these, so a script can read stdout as data and
a person still sees what happens."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["print_result", "print_rows", "progress_off", "say", "say_service_events", "table"]


def say(message: str) -> None:
    """A message for the person at the terminal: stderr, at once (stdout is the report)."""
    print(message, file=sys.stderr, flush=True)


def progress_off(args: argparse.Namespace) -> bool:
    """No progress bar for ``--json``, nor when stderr is not a terminal (a log file, a pipe)."""
    return bool(args.json) or not sys.stderr.isatty()


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows as an aligned text table (None shows as -)."""
    cells = [[("-" if row.get(c) is None else str(row[c])) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def print_rows(args: argparse.Namespace, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    """The command's report: ``rows`` as JSON with ``--json``, else as a table of ``columns``."""
    print(json.dumps(rows, indent=1, default=str) if args.json else table(rows, columns))


def print_result(args: argparse.Namespace, **result: Any) -> None:
    """A command whose report is its messages (stderr): with ``--json``, its result as one JSON
    object on stdout for scripts; without, nothing more."""
    if args.json:
        print(json.dumps(result, indent=1, default=str))


def say_service_events(rows: Sequence[dict[str, Any]]) -> None:
    """For each app whose ECS service does not run all its tasks: the service's latest events
    (a task that keeps failing to start says why there)."""
    for row in rows:
        if row.get("events") and row["state"] not in ("running", "stopped (desired 0)"):
            say(f"{row['app']} ({row['state']}), latest service events:\n  " + "\n  ".join(row["events"]))
