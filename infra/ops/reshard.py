"""`cdc reshard STREAM`: change a stream's shards, then watch every app drain the parents.

Three ways, as Kinesis has them: ``--shards N`` (UpdateShardCount, UNIFORM_SCALING: from half to
double the open shards), ``--split SHARD`` (SplitShard at the middle of its hash range),
``--merge A B`` (MergeShards of two adjacent shards). It waits until the stream is ACTIVE again
and reports the parents closed and the children opened; then, for every app that reads the
stream, whether each parent's lease reached SHARD_END (the KCL reads a child only after its
parents ended, so per-item order holds across the reshard), until every running app has
drained them. An app scaled to 0 drains when it starts: it is reported, not waited for.

`producer_config/pipeline.toml` keeps the shard count provisioning checks: ``--write-config``
rewrites that line, otherwise the line to change is printed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.ops.workers import Workers
from services.config import StackError
from services.kinesis import list_shards

__all__ = ["ReshardResult", "drain_rows", "reshard", "wait_drained", "write_shard_count"]

_MAX_HASH = 2**128 - 1


@dataclass(frozen=True, slots=True)
class ReshardResult:
    stream: str
    before: int  # open shards
    after: int
    parents: tuple[str, ...]  # closed by the reshard
    children: tuple[str, ...]  # opened by it
    seconds: float  # until the stream was ACTIVE with its new shards


def _open(shards: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["ShardId"]: s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]}


def reshard(
    kinesis: Any,
    stream: str,
    *,
    shards: int | None = None,
    split: str | None = None,
    merge: tuple[str, str] | None = None,
    timeout_s: float = 120,
) -> ReshardResult:
    """Apply one reshard to ``stream`` and wait until it is ACTIVE with its new open shards."""
    before = _open(list_shards(kinesis, stream))
    began = time.monotonic()
    if shards is not None:
        if not len(before) / 2 <= shards <= len(before) * 2 or shards == len(before):
            raise StackError(
                f"--shards {shards}: {stream} has {len(before)} open shards; UpdateShardCount goes from "
                f"{-(-len(before) // 2)} to {len(before) * 2} in one step (and not to the same count)"
            )
        kinesis.update_shard_count(StreamName=stream, TargetShardCount=shards, ScalingType="UNIFORM_SCALING")
    elif split is not None:
        shard = before.get(split)
        if shard is None:
            raise StackError(f"--split {split}: not an open shard of {stream} (open: {', '.join(sorted(before))})")
        low, high = (int(shard["HashKeyRange"][k]) for k in ("StartingHashKey", "EndingHashKey"))
        if high == low:
            raise StackError(f"--split {split}: its hash range holds one key; it cannot be split")
        kinesis.split_shard(StreamName=stream, ShardToSplit=split, NewStartingHashKey=str((low + high + 1) // 2))
    elif merge is not None:
        first, second = (before.get(m) for m in merge)
        if first is None or second is None:
            raise StackError(f"--merge {' '.join(merge)}: both must be open shards of {stream}")
        ranges = sorted(
            (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
            for s in (first, second)
        )
        if ranges[0][1] + 1 != ranges[1][0]:
            raise StackError(f"--merge {' '.join(merge)}: their hash ranges are not adjacent")
        kinesis.merge_shards(StreamName=stream, ShardToMerge=merge[0], AdjacentShardToMerge=merge[1])
    else:
        raise StackError("give --shards N, --split SHARD or --merge A B")
    deadline = time.monotonic() + timeout_s
    while True:
        summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        if summary["StreamStatus"] == "ACTIVE":
            after = _open(list_shards(kinesis, stream))
            if set(after) != set(before) and (shards is None or len(after) == shards):
                break
        if time.monotonic() > deadline:
            raise StackError(f"{stream} is {summary['StreamStatus']} {timeout_s:.0f}s after the reshard request")
        time.sleep(0.5)
    return ReshardResult(
        stream,
        len(before),
        len(after),
        tuple(sorted(set(before) - set(after))),
        tuple(sorted(set(after) - set(before))),
        time.monotonic() - began,
    )


def drain_rows(workers: Sequence[Workers], parents: Sequence[str]) -> list[dict[str, Any]]:
    """Per app reading the stream and per parent: its lease's owner and checkpoint."""
    rows = []
    for app_workers in workers:
        leases = {lease.shard_id: lease for lease in app_workers.leases()}
        for parent in parents:
            lease = leases.get(parent)
            rows.append(
                {
                    "app": app_workers.app.name,
                    "parent": parent,
                    "owner": lease.owner if lease else None,
                    "checkpoint": lease.checkpoint if lease else "(no lease yet)",
                    "drained": bool(lease and lease.ended),
                    "running": app_workers.running_count() > 0,
                }
            )
    return rows


def wait_drained(
    workers: Sequence[Workers],
    parents: Sequence[str],
    *,
    timeout_s: float = 600,
    show: Callable[[list[dict[str, Any]]], None] = lambda rows: None,
) -> list[dict[str, Any]]:
    """Until every running app's lease of every parent is at SHARD_END; ``show`` each new picture."""
    deadline, last = time.monotonic() + timeout_s, None
    while True:
        rows = drain_rows(workers, parents)
        if rows != last:
            show(rows)
            last = rows
        if all(row["drained"] or not row["running"] for row in rows):
            return rows
        if time.monotonic() > deadline:
            waiting = sorted({f"{r['app']}:{r['parent']}" for r in rows if r["running"] and not r["drained"]})
            raise StackError(f"parents not drained after {timeout_s:.0f}s: {', '.join(waiting)} (see `cdc status`)")
        time.sleep(1.0)


def write_shard_count(path: Path, stream: str, shards: int) -> tuple[str, bool]:
    """The ``shards = N`` line of ``[streams.<stream>]`` in ``path``, set to ``shards`` when it is
    written back; returns (the new line, whether the file changed)."""
    text = path.read_text()
    section = re.search(rf"^\[streams\.{re.escape(stream)}\]\s*$", text, re.MULTILINE)
    if section is None:
        raise StackError(f"{path}: no [streams.{stream}] section")
    end = re.search(r"^\[", text[section.end() :], re.MULTILINE)
    body_end = section.end() + (end.start() if end else len(text) - section.end())
    body = text[section.end() : body_end]
    line = re.search(r"^shards\s*=\s*\d+", body, re.MULTILINE)
    if line is None:
        raise StackError(f"{path}: [streams.{stream}] has no shards line")
    new = f"shards = {shards}"
    updated = text[: section.end()] + body[: line.start()] + new + body[line.end() :] + text[body_end:]
    if updated != text:
        path.write_text(updated)
    return new, updated != text
