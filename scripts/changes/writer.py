"""Writing the generated changes to `Users`: `apply_changes`, one change at a time or in batches
of distinct keys written concurrently, each key's changes always in their order.

Every change is its own conditional write (`scripts.changes.model`'s conditions), so its own
stream record; one at a time through the boto3 `Table` resource (`write_change`), batched as
TransactWriteItems (`scripts.changes.transactions`). Both ride through outages
(`scripts.changes.outages`).
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed

from tqdm import tqdm

from scripts.changes.model import (
    CREATE_CONDITION,
    DELETE_CONDITION,
    UPDATE_CONDITION,
    ChangeKind,
    UserChange,
    without_empty_sets,
)
from scripts.changes.outages import through_outages
from scripts.changes.transactions import plain_client, write_transaction

__all__ = [
    "BATCH_SIZE",
    "CONCURRENCY",
    "MAX_BATCH",
    "apply_changes",
    "holds",
    "plan_batches",
    "plan_rounds",
    "write_change",
]

MAX_BATCH = 100  # TransactWriteItems takes at most 100 actions, on distinct items
BATCH_SIZE, CONCURRENCY = 25, 4  # the command's defaults (`apply_changes` writes one by one unless told)
WINDOW = 1000  # changes planned into rounds at a time (see `plan_rounds`)


def plan_rounds(changes: Iterable[UserChange]) -> list[list[UserChange]]:
    """The changes in rounds in which each key appears at most once: a key's n-th change goes to
    round n, so the successive changes of one key are in successive rounds, in their order.
    Within a round the changes keep their relative order. Writing the rounds one after the other,
    each round's changes in any order or at once, writes every key's changes in order."""
    rounds: list[list[UserChange]] = []
    seen: Counter = Counter()
    for change in changes:
        n = seen[change.user_id]
        seen[change.user_id] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(change)
    return rounds


def plan_batches(changes: Iterable[UserChange], batch_size: int) -> list[list[list[UserChange]]]:
    """`plan_rounds`, each round cut into batches of at most `batch_size` changes."""
    return [[round_[i : i + batch_size] for i in range(0, len(round_), batch_size)] for round_ in plan_rounds(changes)]


def apply_changes(
    table,
    changes: Iterator[UserChange],
    *,
    total: int,
    rate: float | None = None,
    progress: bool = True,
    batch_size: int = 1,
    concurrency: int = 1,
    client=None,
) -> int:
    """Write each change to the boto3 `Table` resource, at most `rate` per second; returns how
    many were written.

    Every change is its own write, so its own stream record (INSERT / MODIFY / REMOVE with its
    images), and the writes are conditional on the stored item: a creation on the key being
    absent (it never overwrites an item, even one written since the scan), an update on an
    older Version, a delete on the Version we know; so a generator with a stale view fails
    loudly instead of writing versions backwards or over an item it did not write.

    With the defaults (`batch_size` 1, `concurrency` 1) the changes are written one at a time,
    in order, one PutItem / DeleteItem each (a refused one raises ConditionalCheckFailedException).
    Otherwise the changes are taken `WINDOW` at a time (fewer with a `rate`: a tenth of a second's
    worth), planned into rounds in which each key appears once (`plan_rounds`), and each round is
    written as batches of up to `batch_size` changes, `concurrency` batches at a time, before the
    next round starts: each key's changes land in order, changes of different keys may land in
    another order than generated. With `batch_size` > 1 a batch is one TransactWriteItems call
    (its actions keep their conditions and each makes its own stream record) through `client`,
    a plain DynamoDB client (default: `plain_client(table)`); a transaction cancelled by
    conflicts or throttling is tried again with back-off, one cancelled by a change raises
    `scripts.changes.transactions.ChangeRefused` naming it, once the round's other batches are done.
    """
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be 1..{MAX_BATCH}, not {batch_size}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    if batch_size == 1 and concurrency == 1:
        window = 1
    else:
        window = max(1, min(WINDOW, math.ceil(rate / 10))) if rate else WINDOW
    if batch_size > 1 and client is None:
        client = plain_client(table)
    table_name = table.name

    def write(batch: list[UserChange]) -> int:
        if batch_size == 1:
            write_change(table, batch[0])
        else:
            write_transaction(client, table_name, batch)
        return len(batch)

    next_at = time.monotonic()
    written = 0
    with (
        tqdm(total=total, disable=not progress, unit="chg", file=sys.stderr) as bar,
        ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="generate-changes") as pool,
    ):
        while chunk := list(itertools.islice(changes, window)):
            if rate:
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_at = max(next_at + len(chunk) / rate, time.monotonic() - 1.0)
            for batches in plan_batches(chunk, batch_size):
                if len(batches) == 1 or concurrency == 1:
                    for batch in batches:
                        written += write(batch)
                        bar.update(len(batch))
                    continue
                failures: list[BaseException] = []
                for future in as_completed([pool.submit(write, batch) for batch in batches]):
                    if (error := future.exception()) is not None:
                        failures.append(error)
                    else:
                        written += future.result()
                        bar.update(future.result())
                if failures:
                    raise failures[0]
    return written


def write_change(table, change: UserChange) -> None:
    """One conditional write to the boto3 `Table` resource, riding through outages (see
    `through_outages`)."""
    through_outages(lambda: _put_or_delete(table, change), lambda: holds(table, change))


def holds(table, change: UserChange) -> bool:
    """Whether the `Table` resource holds exactly what ``change`` wrote (a delete: no item).
    Through the resource: its client takes Python values, not the wire format of `scripts.changes.transactions`."""
    item = table.get_item(Key={"UserId": change.user_id}, ConsistentRead=True).get("Item")
    if change.item is None:
        return item is None
    return item is not None and item.get("Version") == change.version


def _put_or_delete(table, change: UserChange) -> None:
    if change.item is None:
        table.delete_item(
            Key={"UserId": change.user_id},
            ConditionExpression=DELETE_CONDITION,
            ExpressionAttributeValues={":v": change.version},
        )
    elif change.kind is ChangeKind.CREATE:
        table.put_item(Item=without_empty_sets(change.item), ConditionExpression=CREATE_CONDITION)
    else:
        table.put_item(
            Item=without_empty_sets(change.item),
            ConditionExpression=UPDATE_CONDITION,
            ExpressionAttributeValues={":v": change.version},
        )
