"""How far the relay is behind its table's DynamoDB Stream: the stage between a table and its
Kinesis stream, for `cdc status`.

The relay writes where it is now (``<relay dir>/<table>.live.json``: each stream shard's last
relayed sequence number, rewritten at most every second; not the saved position, which waits
for Kinesis to have stored the records). `backlog` reads the stream after those positions: how
many changes wait, and how old the oldest of them is (its ApproximateCreationDateTime). A relay
that is stopped or stuck shows a growing age; one that keeps up shows none waiting.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from botocore.exceptions import ClientError

from services.clients import error_code

__all__ = ["RelayBacklog", "backlog", "live_path", "write_live"]

#: at most this many waiting changes are counted per shard (a page each; the count says "at least")
_COUNT_PAGES = 10


@dataclass(frozen=True, slots=True)
class RelayBacklog:
    table: str
    waiting: int  # changes in the table's stream not relayed yet (at least: counting stops at a cap)
    capped: bool  # the count stopped at the cap
    oldest_age_s: float | None  # how long ago the oldest waiting change was made; None: none waits
    position_age_s: float | None  # how old the relay's live position is (None: it never wrote one)


def live_path(relay_dir: Path, table: str) -> Path:
    return relay_dir / f"{table}.live.json"


def write_live(path: Path, stream_arn: str, shards: dict[str, dict[str, Any]]) -> None:
    """The relay's position now (no fsync: a report, not a position to resume from)."""
    tmp = path.with_suffix(".tmp-live")
    tmp.write_bytes(orjson.dumps({"at": time.time(), "stream_arn": stream_arn, "shards": shards}))
    os.replace(tmp, path)


def backlog(streams: Any, ddb: Any, table: str, relay_dir: Path) -> RelayBacklog:
    """What waits in ``table``'s DynamoDB Stream after the relay's live position (``streams``:
    a DynamoDB Streams client; ``ddb``: DynamoDB, for the stream's ARN)."""
    live, saved = _read(live_path(relay_dir, table)), _read(relay_dir / f"{table}.json")
    arn = ddb.describe_table(TableName=table)["Table"].get("LatestStreamArn")
    # the live position; before the relay wrote one, the saved position it resumes from
    positions: dict[str, dict[str, Any]] = next(
        (p.get("shards", {}) for p in (live, saved) if p.get("stream_arn") == arn), {}
    )
    waiting, capped, oldest = 0, False, None
    if arn:
        description = streams.describe_stream(StreamArn=arn)["StreamDescription"]
        for shard in description["Shards"]:
            state = positions.get(shard["ShardId"], {})
            if state.get("done"):
                continue
            count, first, full = _after(streams, arn, shard["ShardId"], state.get("seq"))
            waiting, capped = waiting + count, capped or full
            if first is not None:
                oldest = first if oldest is None else min(oldest, first)
    now = time.time()
    return RelayBacklog(
        table,
        waiting,
        capped,
        None if oldest is None else max(0.0, now - oldest),
        None if "at" not in live else max(0.0, now - float(live["at"])),
    )


def _read(path: Path) -> dict[str, Any]:
    try:
        found = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return found if isinstance(found, dict) else {}


def _after(streams: Any, arn: str, shard_id: str, seq: str | None) -> tuple[int, float | None, bool]:
    """Records of one shard after ``seq`` (all when None): how many (up to the cap), when the
    first was made (epoch s), whether the count stopped at the cap."""
    kwargs: dict[str, Any] = {"StreamArn": arn, "ShardId": shard_id}
    kwargs.update(
        {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": seq}
        if seq
        else {"ShardIteratorType": "TRIM_HORIZON"}
    )
    try:
        iterator = streams.get_shard_iterator(**kwargs)["ShardIterator"]
    except ClientError as exc:
        if error_code(exc) in ("TrimmedDataAccessException", "ResourceNotFoundException"):
            return 0, None, False
        raise
    count, first = 0, None
    for _ in range(_COUNT_PAGES):
        page = streams.get_records(ShardIterator=iterator, Limit=1000)
        records = page.get("Records", [])
        if records and first is None:
            first = records[0]["dynamodb"]["ApproximateCreationDateTime"].timestamp()
        count += len(records)
        iterator = page.get("NextShardIterator")
        if not records or not iterator:
            return count, first, False
    return count, first, True
