"""End-to-end latency per hop on the running stack (local stack or LocalStack), and each app's
processing rate.

    python -m bench.latency [--quick] [--changes 3000] [--rate 100] [--users 200] [--catch-up N]

Creates users with one workplace each, lets the pipeline go idle, then changes their e-mail at
a steady rate (each change reaches all three sinks): the first changes arrive as a burst on
idle workers. Per change and hop, the latency between two stamps (``HOP_STAMPS``): the writer's
clock before its write call, Kinesis' ApproximateArrivalTimestamp (ms) of the change's record
on each stream, and the batch of each app that processed that record, found by its sequence
number in the batch lines of the workers' logs (``delivered_at``: the batch reached the
processor; ``applied_at``: its writes had all returned). Every stamp is a lower bound of the
hop's start or an upper bound of its end, so no hop can measure below zero beyond Kinesis' ms
precision; one that does fails the run (``NegativeLatency``). No poller reads the sinks while
it writes (a reader competing with the sinks for DynamoDB Local skewed the old figures); after
the last write, one batched read per sink a second waits for the final versions.

``measure(quick)`` returns p50 / p95 / p99 per hop at 100 changes/s (the targets: p99 <= 1 s per
hop, <= 2 s Users -> OpenSearch), and without ``--quick`` also at 300 changes/s (the knee), with
each app's batch breakdown (waiting, processing, sink write, checkpoint). With ``--catch-up N``
the CLI also measures the records/s one worker per app sustains (`catch_up`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from bench.figures import Figure, Section, Series
from consumers.runtime.config import discover_apps
from consumers.shared import envelope
from infra.local import stack as local_stack
from infra.relay.pump import POLL_IDLE_S
from producer_config import load_pipeline
from services.clients import aws_client, opensearch_client
from services.config import StackConfig
from services.kinesis import read_stream

#: the relay's idle poll, from its first to its longest wait (infra.relay.pump.POLL_IDLE_S)
RELAY_POLL_MS = "-".join(f"{s * 1000:.0f}" for s in POLL_IDLE_S)


def catch_up(stack: StackConfig, pipeline, changes: int) -> None:
    """Stop the workers, write `changes` user changes, start them, time until all sinks agree."""
    from consumers.verify import verify
    from scripts.changes.generator import UserChangeGenerator
    from scripts.changes.writer import apply_changes
    from services.clients import aws_resource

    workers = local_stack.workers(stack, pipeline)
    for worker in workers:
        worker.process.signal_stop()
    for worker in workers:
        worker.process.stop(timeout_s=60)
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    generator = UserChangeGenerator(users=300, seed=9, prefix=f"cu-{uuid.uuid4().hex[:6]}-")
    apply_changes(users, generator.changes(changes), total=changes, progress=False)
    since = time.time()
    started = time.monotonic()
    local_stack.up(stack, pipeline)
    while not all(r.ok for r in verify(stack, pipeline)):
        time.sleep(1)
    print(
        f"catch-up: {changes} changes behind, all sinks equal {time.monotonic() - started:.1f}s after the "
        f"workers started (KCL start-up and lease assignment included)"
    )
    for app, batches in read_batches(stack, since).items():
        received = sum(batch.line["received"] for batch in batches)
        seconds = max(b.applied_at for b in batches) - min(b.delivered_at for b in batches)
        print(
            f"  {app:<26} {received:>6} records in {seconds:6.1f}s of processing = "
            f"{received / seconds:6.0f} records/s (one worker, all its shards)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, help="default 3,000 (quick: 600)")
    parser.add_argument("--rate", type=float, help="changes per second (default 100, and 300 without --quick)")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--catch-up", type=int, default=0, help="changes written while the workers are stopped")
    args = parser.parse_args(argv)
    from bench.report import print_section

    print_section(measure(args.quick, changes=args.changes, rate=args.rate, users=args.users), "latency")
    if args.catch_up:
        catch_up(StackConfig.from_env(), load_pipeline(), args.catch_up)
    return 0


TARGET_P99_S = 1.0
TARGET_END_TO_END_P99_S = 2.0
#: Kinesis' ApproximateArrivalTimestamp has ms precision; every other stamp is this machine's
#: time.time(). A hop below -CLOCK_PRECISION_S is a measurement error: the run fails.
CLOCK_PRECISION_S = 0.002
#: BatchWriteItem takes at most 25 items
_MAX_PER_CALL = 25
#: the pipeline idles this long before the changes start: they arrive as a burst on idle workers
_IDLE_BEFORE_S = 3.0


class NegativeLatency(RuntimeError):
    """A hop measured below zero beyond the clocks' precision: a stamp is wrong."""


@dataclass(frozen=True)
class Batch:
    """One batch line of an app's worker log (`consumers.runtime.worker`)."""

    app: str
    shard: str
    first: int
    last: int
    delivered_at: float
    applied_at: float
    line: dict

    def holds(self, shard: str, sequence: int) -> bool:
        return shard == self.shard and self.first <= sequence <= self.last


def read_batches(stack: StackConfig, since: float) -> dict[str, list[Batch]]:
    """Per app, the batches delivered after ``since`` (epoch s), from the workers' logs."""
    batches: dict[str, list[Batch]] = {}
    for log in sorted(stack.log_dir.glob("worker-*.log")):
        with open(log, "rb") as fh:
            for raw in fh:
                if not raw.startswith(b'{"app"') or b'"event": "batch"' not in raw:
                    continue
                line = json.loads(raw)
                if "applied_at" not in line or line["delivered_at"] < since:
                    continue
                batches.setdefault(line["app"], []).append(
                    Batch(
                        line["app"],
                        line["shard"],
                        int(line["first"]),
                        int(line["last"]),
                        line["delivered_at"],
                        line["applied_at"],
                        line,
                    )
                )
    for found in batches.values():
        found.sort(key=lambda batch: batch.applied_at)
    return batches


def _first_batch(batches: list[Batch], shard: str, sequence: str) -> Batch | None:
    """The first batch that processed the record (a later one may repeat it after a restart)."""
    number = int(sequence)
    return next((batch for batch in batches if batch.holds(shard, number)), None)


def _records(kinesis, stream: str, since: datetime) -> dict[tuple[str, int], tuple[str, str, float]]:
    """(user, version) -> (shard, sequence number, arrival in epoch s) of its first record."""
    found: dict[tuple[str, int], tuple[str, str, float]] = {}
    for record in read_stream(kinesis, stream, since):
        body = orjson.loads(record.data)[envelope.BODY]
        image = body.get(envelope.NEW_IMAGE) or {}
        if "Version" in image and record.arrival is not None:
            key = (body[envelope.KEYS]["UserId"]["S"], int(image["Version"]["N"]))
            found.setdefault(key, (record.shard_id, record.sequence_number, record.arrival.timestamp()))
    return found


def _quantiles(values: list[float]) -> tuple[float, float, float] | None:
    if len(values) < 2:
        return None
    q = statistics.quantiles(values, n=100, method="inclusive")
    return q[49], q[94], q[98]


def _item(user_id: str, version: int) -> dict:
    return {
        "UserId": {"S": user_id},
        "Email": {"S": f"{version}.{user_id}@example.com"},
        "FirstName": {"S": "Lat"},
        "Version": {"N": str(version)},
        "WorkplaceIds": {"SS": ["w-lat"]},
        "Workplaces": {"M": {"w-lat": {"M": {"Role": {"S": "staff"}, "JoinedAt": {"N": "1"}}}}},
    }


#: what each hop compares: (the stamp it starts from, the stamp it ends at)
HOP_STAMPS = {
    "relay Users": ("the writer's clock before the write call", "Kinesis' arrival on users-changes (ms)"),
    "app-user-management": ("arrival on users-changes", "the batch's writes all returned (the worker's clock)"),
    "workplace-user-v2": ("arrival on users-changes", "the batch's writes all returned (the worker's clock)"),
    "relay WorkplaceUsers_V2": (
        "delivery of the workplace-user-v2 batch that wrote the item (before its write began)",
        "arrival on workplace-users-v2-changes",
    ),
    "workplace-user-search": ("arrival on workplace-users-v2-changes", "the batch's bulk request returned"),
    "Users -> OpenSearch": ("the writer's clock before the write call", "the search batch's bulk request returned"),
}


def _wait_visible(stack: StackConfig, pipeline, final: dict[str, int], timeout_s: float) -> None:
    """Until each sink holds every user's final version (one batched read per sink per second)."""
    ddb, search = aws_client("dynamodb", stack, pipeline.region), opensearch_client(stack)
    users = sorted(final)
    deadline = time.monotonic() + timeout_s

    def stored(sink: str, chunk: list[str]) -> dict[str, int]:
        if sink == "search":
            docs = search.mget(index="workplace-users-v2", body={"ids": [f"w-lat#{u}" for u in chunk]})["docs"]
            return {d["_id"].split("#", 1)[1]: d["_version"] for d in docs if d.get("found")}
        table = "AppUsers_V2" if sink == "app" else "WorkplaceUsers_V2"
        keys = [{"UserId": {"S": u}, **({"WorkplaceId": {"S": "w-lat"}} if sink == "wp" else {})} for u in chunk]
        items = ddb.batch_get_item(RequestItems={table: {"Keys": keys, "ConsistentRead": True}})["Responses"][table]
        return {i["UserId"]["S"]: int(i["Version"]["N"]) for i in items}

    pending = {"app", "wp", "search"}
    while pending:
        for sink in sorted(pending):
            seen: dict[str, int] = {}
            for at in range(0, len(users), 100):
                seen.update(stored(sink, users[at : at + 100]))
            if all(seen.get(u, 0) >= v for u, v in final.items()):
                pending.discard(sink)
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"{', '.join(sorted(pending))} did not reach the final versions in {timeout_s:.0f} s")
        time.sleep(1)


def _write(stack: StackConfig, pipeline, user_ids: list[str], changes: int, rate: float) -> tuple[dict, float]:
    """``changes`` e-mail changes at ``rate``/s: every tick one BatchWriteItem of the tick's
    changes (each its own item write, so its own stream record; distinct users, as a batch
    requires), from a few writer threads, so that a slow call does not hold the next tick back;
    each user's changes from one thread, in version order. Returns (user, version) -> the
    writer's clock before its call, and the rate achieved."""
    ddb = aws_client("dynamodb", stack, pipeline.region)
    writers = 8
    groups = [user_ids[g::writers] for g in range(writers)]
    per_tick = max(1, min(_MAX_PER_CALL, round(rate * 0.1)))
    tick_s = per_tick / rate
    if per_tick > min(len(group) for group in groups):
        raise ValueError(f"{rate}/s needs {per_tick} users per writer: give --users >= {per_tick * writers}")
    versions = dict.fromkeys(user_ids, 1)
    sent: dict[tuple[str, int], float] = {}

    def write(batch: list[tuple[str, int]]) -> None:
        requests = [{"PutRequest": {"Item": _item(user_id, version)}} for user_id, version in batch]
        stamp = time.time()
        for key in batch:
            sent[key] = stamp
        while requests:  # what DynamoDB leaves unprocessed is sent again
            answer = ddb.batch_write_item(RequestItems={"Users": requests})
            requests = answer.get("UnprocessedItems", {}).get("Users", [])

    pools = [ThreadPoolExecutor(max_workers=1) for _ in range(writers)]
    turn = [0] * writers
    began = time.monotonic()
    futures = []
    try:
        for tick, first in enumerate(range(0, changes, per_tick)):
            group = tick % writers
            batch = []
            for _ in range(min(per_tick, changes - first)):
                user_id = groups[group][turn[group] % len(groups[group])]
                turn[group] += 1
                versions[user_id] += 1
                batch.append((user_id, versions[user_id]))
            delay = began + tick * tick_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pools[group].submit(write, batch))
        for future in futures:
            future.result()
    finally:
        for pool in pools:
            pool.shutdown()
    return sent, changes / (time.monotonic() - began)


def _hops(sent, users_records, wp_records, batches) -> dict[str, list[tuple[float, float]]]:
    """Per hop, (written at, latency) of each change (see HOP_STAMPS). A change that a newer
    one of its user superseded within one batch of workplace-user-v2 is never written to
    WorkplaceUsers_V2 (a batch writes each item's newest version only): it has no record on
    workplace-users-v2-changes, and Users -> OpenSearch times it by the first newer version
    that reached the index, as a reader of the index sees it."""
    hops: dict[str, list[tuple[float, float]]] = {name: [] for name in HOP_STAMPS}
    empty: list[Batch] = []
    written_versions: dict[str, list[int]] = {}
    for user, version in sorted(wp_records):
        written_versions.setdefault(user, []).append(version)
    for key, t0 in sent.items():
        if key not in users_records:
            continue
        shard, sequence, arrived = users_records[key]
        hops["relay Users"].append((t0, arrived - t0))
        for app in ("app-user-management", "workplace-user-v2"):
            batch = _first_batch(batches.get(app, empty), shard, sequence)
            if batch is not None:
                hops[app].append((t0, batch.applied_at - arrived))
        user, version = key
        shown = next((v for v in written_versions.get(user, []) if v >= version), None)
        if shown is None or (user, shown) not in users_records:
            continue
        wrote = _first_batch(batches.get("workplace-user-v2", empty), *users_records[(user, shown)][:2])
        if wrote is None:
            continue
        wp_shard, wp_sequence, wp_arrived = wp_records[(user, shown)]
        indexed = _first_batch(batches.get("workplace-user-search", empty), wp_shard, wp_sequence)
        if shown == version:  # the hops of the record itself, once
            hops["relay WorkplaceUsers_V2"].append((t0, wp_arrived - wrote.delivered_at))
            if indexed is not None:
                hops["workplace-user-search"].append((t0, indexed.applied_at - wp_arrived))
        if indexed is not None:
            hops["Users -> OpenSearch"].append((t0, indexed.applied_at - t0))
    return hops


def _breakdown(batches: dict[str, list[Batch]], apps: list[str]) -> list[Figure]:
    """Per app, where a batch's time goes (p50 / p99 over the run's batches, ms)."""
    figures = []
    parts = {
        "waiting (oldest record's arrival -> delivery)": lambda line: line["wait_oldest_ms"],
        "processing (decode, filter, transform)": lambda line: line["ms"] - line["sink_ms"],
        "sink write": lambda line: line["sink_ms"],
        "checkpoint": lambda line: line["checkpoint_ms"],
    }
    for app in apps:
        lines = [batch.line for batch in batches.get(app, [])]
        sizes = [line["received"] for line in lines]
        for part, value in parts.items():
            values = [float(value(line)) for line in lines if value(line) is not None]
            quantiles = _quantiles(values)
            if quantiles is None:
                continue
            p50, _, p99 = quantiles
            figures.append(
                Figure(
                    f"{app}: {part} p99",
                    p99 / 1000,
                    "s",
                    note=f"p50 {p50:.0f} ms over {len(lines)} batches of {statistics.mean(sizes):.1f} records on average",
                )
            )
    return figures


def measure(quick: bool, changes: int | None = None, rate: float | None = None, users: int = 200) -> Section:
    """Per-hop p50 / p95 / p99 at 100 changes/s (full runs also at 300/s: the knee) on the
    running (or started) stack of ``CDC_TARGET``."""
    rates = [rate] if rate else ([100.0] if quick else [100.0, 300.0])
    changes = changes or (600 if quick else 3_000)
    stack, pipeline = StackConfig.from_env(), load_pipeline()
    local_stack.up(stack, pipeline)
    figures: list[Figure] = []
    series: list[Series] = []
    notes: list[str] = []
    negatives: list[str] = []
    # A first pass at the first rate, reported in a note only: JVMs just started (DynamoDB
    # Local, OpenSearch, the KCL daemons) compile their hot code during their first minute and
    # take the two cores from the pipeline; that is start-up, not the latency of a burst.
    warm_up = _measure_at(stack, pipeline, changes // 2, rates[0], users)
    negatives += [f.note for f in warm_up.figures if f.name.startswith("NEGATIVE")]
    notes.append(
        f"warm-up pass first ({changes // 2:,} changes at {rates[0]:g}/s, not in the figures): "
        + ", ".join(f"{f.name.split(' p99')[0]} p99 {f.value:.2f} s" for f in warm_up.figures if " p99 at " in f.name)
    )
    for each in rates:
        section = _measure_at(stack, pipeline, changes, each, users)
        figures += section.figures
        series += section.series
        notes += section.notes
        negatives += [f.note for f in section.figures if f.name.startswith("NEGATIVE")]
    if negatives:
        raise NegativeLatency("; ".join(negatives))
    notes.append(
        "What each hop compares: "
        + "; ".join(f"{hop}: {start} -> {end}" for hop, (start, end) in HOP_STAMPS.items())
        + f". Every stamp is this machine's clock except Kinesis' arrival stamps (ms): a hop below "
        f"-{CLOCK_PRECISION_S * 1000:.0f} ms fails the run."
    )
    notes.append(
        f"target {stack.target.value}; kinesis-mock persistence every {stack.kinesis_persist_interval} "
        "(a save stalls every call to the emulator while it runs)."
    )
    return Section("Latency per hop", figures, series, notes)


def _measure_at(stack: StackConfig, pipeline, changes: int, rate: float, users: int) -> Section:
    run = uuid.uuid4().hex[:6]
    user_ids = [f"lat-{run}-{i}" for i in range(users)]
    ddb = aws_client("dynamodb", stack, pipeline.region)
    for at in range(0, len(user_ids), _MAX_PER_CALL):
        requests = [{"PutRequest": {"Item": _item(u, 1)}} for u in user_ids[at : at + _MAX_PER_CALL]]
        while requests:
            requests = (
                ddb.batch_write_item(RequestItems={"Users": requests}).get("UnprocessedItems", {}).get("Users", [])
            )
    # workers just started hold no lease yet: wait for the pipeline
    _wait_visible(stack, pipeline, dict.fromkeys(user_ids, 1), timeout_s=180)
    time.sleep(_IDLE_BEFORE_S)
    since = datetime.now(UTC) - timedelta(seconds=1)
    print(f"writing {changes} e-mail changes at {rate:g}/s over {users} users...", file=sys.stderr)
    sent, achieved = _write(stack, pipeline, user_ids, changes, rate)
    final = {user_id: max(v for u, v in sent if u == user_id) for user_id in {u for u, _ in sent}}
    _wait_visible(stack, pipeline, final, timeout_s=300)
    kinesis = aws_client("kinesis", stack, pipeline.region)
    users_records = _records(kinesis, "users-changes", since)
    wp_records = _records(kinesis, "workplace-users-v2-changes", since)
    batches = read_batches(stack, since.timestamp())
    hops = _hops(sent, users_records, wp_records, batches)
    for user_id in user_ids:
        ddb.delete_item(TableName="Users", Key={"UserId": {"S": user_id}})

    figures = []
    for name, measured in hops.items():
        values = [latency for _, latency in measured]
        below = [v for v in values if v < -CLOCK_PRECISION_S]
        if below:
            figures.append(
                Figure(
                    f"NEGATIVE {name} at {rate:g}/s",
                    min(below),
                    "s",
                    note=f"{name}: {len(below)} changes below -{CLOCK_PRECISION_S * 1000:.0f} ms, down to {min(below):.3f} s",
                )
            )
        quantiles = _quantiles(values)
        if quantiles is None:
            figures.append(
                Figure(f"{name} p99 at {rate:g}/s", float("nan"), "s", note=f"only {len(values)} changes seen")
            )
            continue
        p50, p95, p99 = quantiles
        limit = TARGET_END_TO_END_P99_S if name == "Users -> OpenSearch" else TARGET_P99_S
        figures.append(
            Figure(
                f"{name} p99 at {rate:g}/s",
                p99,
                "s",
                target=f"p99 <= {limit:.0f} s at 100 changes/s" if rate == 100 else "",
                met=(p99 <= limit) if rate == 100 else None,
                note=f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, n={len(values)}/{changes}",
            )
        )
    apps = ["app-user-management", "workplace-user-v2", "workplace-user-search"]
    figures += _breakdown(batches, apps)
    start = min(sent.values(), default=0.0)
    series = [
        Series(
            f"latency of each change per hop at {rate:g} changes/s, from the first write of a burst on idle workers",
            "seconds since the first write",
            "latency (s)",
            {name: sorted((t0 - start, latency) for t0, latency in hops[name]) for name in HOP_STAMPS},
        )
    ]
    kcl_ms = {app.name: app.polling_interval_ms for app in discover_apps(pipeline)}
    notes = [
        f"{rate:g} changes/s asked, {achieved:.1f}/s achieved: {changes:,} e-mail changes over {users} users with "
        f"one workplace each, every change reaching all three sinks, after {_IDLE_BEFORE_S:g} s of an idle pipeline. "
        "Apps poll each shard every "
        + ", ".join(f"{name} {ms} ms" for name, ms in kcl_ms.items())
        + f" (idleTimeBetweenReadsInMillis); the relay's idle poll is {RELAY_POLL_MS} ms."
    ]
    return Section(f"Latency per hop at {rate:g} changes/s", figures, series, notes)


if __name__ == "__main__":
    sys.exit(main())
