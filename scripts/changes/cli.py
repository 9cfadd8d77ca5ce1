"""User-change generator: creates, updates and deletes users of the `Users` table.

The command (`python -m scripts.generate_changes`): continues from the users the table holds
(saying on stderr which items it leaves alone), writes ``--changes`` changes at most ``--rate``
per second, in transactions of ``--batch-size`` distinct keys, ``--concurrency`` at a time, and
says what it wrote, by kind. Exit status 1 when a change was refused (the table changed under it).

    python -m scripts.generate_changes --changes 1000 --users 50 --rate 200 --seed 1
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator

from scripts.changes.generator import UserChangeGenerator
from scripts.changes.transactions import ChangeRefused
from scripts.changes.writer import BATCH_SIZE, CONCURRENCY, MAX_BATCH, apply_changes

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    from producer_config import load_pipeline
    from services.clients import aws_resource
    from services.config import StackConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=100, help="how many changes to write")
    parser.add_argument("--users", type=int, default=50, help="size of the user population")
    parser.add_argument("--rate", type=float, default=None, help="changes per second (default: as fast as possible)")
    parser.add_argument(
        "--batch-size",
        type=_bounded(1, MAX_BATCH),
        default=BATCH_SIZE,
        help=f"changes per write call, 1-{MAX_BATCH}: above 1 a TransactWriteItems of distinct keys, each change "
        f"still its own conditional write and stream record; 1: one PutItem / DeleteItem each (default: {BATCH_SIZE})",
    )
    parser.add_argument(
        "--concurrency",
        type=_bounded(1, 64),
        default=CONCURRENCY,
        help=f"batches written at once, always of different keys; each key's changes stay in order "
        f"(default: {CONCURRENCY}; --batch-size 1 --concurrency 1 writes the changes one by one, in order)",
    )
    parser.add_argument("--seed", type=int, default=int(time.time()), help="random seed")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    pipeline = load_pipeline()
    stack = StackConfig.from_env()
    table = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    generator = UserChangeGenerator(users=args.users, seed=args.seed)
    generator.adopt(item for page in _scan(table) for item in page)
    if (summary := generator.foreign_summary()) is not None:
        print(summary, file=sys.stderr)
    started = time.monotonic()
    try:
        written = apply_changes(
            table,
            generator.changes(args.changes),
            total=args.changes,
            rate=args.rate,
            progress=not args.no_progress,
            batch_size=args.batch_size,
            concurrency=args.concurrency,
        )
    except ChangeRefused as exc:
        print(f"generate_changes: {exc}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    print(
        f"wrote {written} changes in {elapsed:.1f}s ({written / elapsed:.0f}/s): "
        + ", ".join(f"{k}={v}" for k, v in sorted(generator.tally.items())),
        file=sys.stderr,
    )
    return 0


def _bounded(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low}-{high}, not {value}")
        return value

    return parse


def _scan(table) -> Iterator[list[dict]]:
    kwargs: dict = {}
    while True:
        page = table.scan(ConsistentRead=True, **kwargs)
        yield page["Items"]
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
