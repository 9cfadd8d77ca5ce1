"""End-to-end latency per hop on the running local stack, and each app's processing rate.

    python -m bench.latency [--quick] [--changes 3000] [--rate 100] [--users 50] [--catch-up N]

Creates users with one workplace each, then changes their e-mail at a steady rate (each
change reaches all three sinks) and measures, per change:
  relay Users              Users write            -> arrival on users-changes
  app-user-management      arrival on users-changes -> visible in AppUsers_V2
  workplace-user-v2        arrival on users-changes -> visible in WorkplaceUsers_V2
  relay WorkplaceUsers_V2  visible in WorkplaceUsers_V2 -> arrival on workplace-users-v2-changes
  workplace-user-search    arrival on workplace-users-v2-changes -> visible in OpenSearch
("arrival" is Kinesis' ApproximateArrivalTimestamp; "visible" is the first poll, every 20 ms,
one batched read per sink, that sees the version; a later version also counts, as the sinks
may skip over a version). ``measure(quick)`` returns p50 / p95 / p99 per hop at 100 changes/s
(the issue's target: p99 <= 1 s per hop), 3,000 changes (quick 600), each its own PutItem from
a few writer threads. With ``--catch-up N`` the CLI also measures the records/s one worker per
app sustains (`catch_up`; bench.apps measures each app against its ceilings).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
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
HOPS = ("relay Users", "app-user-management", "workplace-user-v2", "relay WorkplaceUsers_V2", "workplace-user-search")


def _arrivals(kinesis, stream: str, since: datetime, key) -> dict:
    """(key of the record) -> arrival time (epoch s) of its first copy on the stream."""
    seen: dict = {}
    for record in read_stream(kinesis, stream, since):
        k = key(orjson.loads(record.data))
        if k is not None:
            seen.setdefault(k, record.arrival.timestamp() if record.arrival else time.time())
    return seen


def _batch_rates(stack: StackConfig, offsets: dict[str, int]) -> dict[str, tuple[int, float]]:
    """Per app, over the batches logged after `offsets` (log sizes before the catch-up):
    records received and the wall time from the first batch's start to the last one's end."""
    spans: dict[str, list[float]] = {}
    for log in sorted(stack.log_dir.glob("worker-*.log")):
        with open(log, "rb") as fh:
            fh.seek(offsets.get(str(log), 0))
            lines = fh.read().decode(errors="replace").splitlines()
        for line in lines:
            if line.startswith('{"app"') and '"event": "batch"' in line:
                batch = json.loads(line)
                span = spans.setdefault(batch["app"], [0.0, float("inf"), 0.0])
                span[0] += batch["received"]
                span[1] = min(span[1], batch["ts"] - batch["ms"] / 1000)
                span[2] = max(span[2], batch["ts"])
    return {app: (int(received), end - start) for app, (received, start, end) in spans.items()}


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
    offsets = {str(p): p.stat().st_size for p in stack.log_dir.glob("worker-*.log")}
    started = time.monotonic()
    local_stack.up(stack, pipeline)
    while not all(r.ok for r in verify(stack, pipeline)):
        time.sleep(1)
    print(
        f"catch-up: {changes} changes behind, all sinks equal {time.monotonic() - started:.1f}s after the "
        f"workers started (KCL start-up and lease assignment included)"
    )
    for app, (received, seconds) in _batch_rates(stack, offsets).items():
        print(
            f"  {app:<26} {received:>6} records in {seconds:6.1f}s of processing = "
            f"{received / seconds:6.0f} records/s (one worker, all its shards)"
        )


TARGET_P99_S = 1.0
#: the writes go out every tick, one BatchWriteItem of the tick's changes
_TICK_S = 0.1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, help="default 3,000 (quick: 600)")
    parser.add_argument("--rate", type=float, default=100.0, help="changes per second")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--catch-up", type=int, default=0, help="changes written while the workers are stopped")
    args = parser.parse_args(argv)
    from bench.report import print_section

    print_section(measure(args.quick, changes=args.changes, rate=args.rate, users=args.users), "latency")
    if args.catch_up:
        catch_up(StackConfig.from_env(), load_pipeline(), args.catch_up)
    return 0


def _item(user_id: str, version: int) -> dict:
    return {
        "UserId": {"S": user_id},
        "Email": {"S": f"{version}.{user_id}@example.com"},
        "FirstName": {"S": "Lat"},
        "Version": {"N": str(version)},
        "WorkplaceIds": {"SS": ["w-lat"]},
        "Workplaces": {"M": {"w-lat": {"M": {"Role": {"S": "staff"}, "JoinedAt": {"N": "1"}}}}},
    }


def _quantiles(values: list[float]) -> tuple[float, float, float] | None:
    if len(values) < 2:
        return None
    q = statistics.quantiles(values, n=100, method="inclusive")
    return q[49], q[94], q[98]


def measure(quick: bool, changes: int | None = None, rate: float = 100.0, users: int = 100) -> Section:
    """p50 / p95 / p99 per hop at ``rate`` changes/s on the running (or started) local stack."""
    changes = changes or (600 if quick else 3_000)
    stack, pipeline = StackConfig.from_env(), load_pipeline()
    local_stack.up(stack, pipeline)
    ddb = aws_client("dynamodb", stack, pipeline.region)
    kinesis = aws_client("kinesis", stack, pipeline.region)
    search = opensearch_client(stack)
    run = uuid.uuid4().hex[:6]
    since = datetime.now(UTC) - timedelta(seconds=1)
    user_ids = [f"lat-{run}-{i}" for i in range(users)]
    versions = dict.fromkeys(user_ids, 1)

    def put(user_id: str, version: int) -> None:
        ddb.put_item(TableName="Users", Item=_item(user_id, version))

    for user_id in user_ids:
        put(user_id, 1)
    warm_up = time.monotonic() + 180  # workers just started hold no lease yet: wait for the pipeline
    while search.count(index="workplace-users-v2", body={"query": {"prefix": {"UserId": f"lat-{run}-"}}})[
        "count"
    ] < len(user_ids):
        if time.monotonic() > warm_up:
            raise RuntimeError("the pipeline did not deliver the warm-up users to OpenSearch within 180 s")
        time.sleep(0.5)

    written: dict[tuple[str, int], float] = {}
    visible: dict[str, dict[tuple[str, int], float]] = {"app": {}, "wp": {}, "search": {}}
    done = threading.Event()
    last_write = [time.time()]

    def stored_versions(sink: str, pending: list[str]) -> dict[str, int]:
        """One batched read per poll: BatchGetItem (DynamoDB) or _mget (OpenSearch)."""
        if sink == "search":
            docs = search.mget(index="workplace-users-v2", body={"ids": [f"w-lat#{u}" for u in pending]})["docs"]
            return {d["_id"].split("#", 1)[1]: d["_version"] for d in docs if d.get("found")}
        table = "AppUsers_V2" if sink == "app" else "WorkplaceUsers_V2"
        keys = [{"UserId": {"S": u}, **({"WorkplaceId": {"S": "w-lat"}} if sink == "wp" else {})} for u in pending]
        items = ddb.batch_get_item(RequestItems={table: {"Keys": keys, "ConsistentRead": True}})["Responses"][table]
        return {i["UserId"]["S"]: int(i["Version"]["N"]) for i in items}

    def poll(sink: str) -> None:
        """Every 20 ms, note when each written version first becomes visible in the sink."""
        while not done.is_set() or any(k not in visible[sink] for k in list(written)):
            pending_keys = [k for k in list(written) if k not in visible[sink]]
            users_pending = sorted({u for u, _ in pending_keys})
            for chunk in range(0, len(users_pending), 100):  # BatchGetItem takes 100 keys
                now_seen = stored_versions(sink, users_pending[chunk : chunk + 100])
                stamp = time.time()
                for user_id, version in pending_keys:
                    if now_seen.get(user_id, 0) >= version:
                        visible[sink][(user_id, version)] = stamp
            if done.is_set() and time.time() - last_write[0] > 60:
                return
            time.sleep(0.02)

    pollers = [threading.Thread(target=poll, args=(sink,), daemon=True) for sink in visible]
    for thread in pollers:
        thread.start()
    print(f"writing {changes} e-mail changes at {rate}/s over {users} users...", file=sys.stderr)

    def write(batch: list[tuple[str, int]]) -> None:
        """One BatchWriteItem of a tick's changes (each its own item write, so its own stream
        record; distinct users, as a batch requires); what DynamoDB leaves unprocessed is retried."""
        requests = [{"PutRequest": {"Item": _item(user_id, version)}} for user_id, version in batch]
        while requests:
            answer = ddb.batch_write_item(RequestItems={"Users": requests})
            requests = answer.get("UnprocessedItems", {}).get("Users", [])
        stamp = time.time()
        for key in batch:
            written[key] = stamp
        last_write[0] = stamp

    # every tick (0.1 s) the tick's changes in one BatchWriteItem. A few writers, so that a slow
    # call does not hold the next tick back (a put loop cannot keep 100/s on a busy machine); the
    # users are split between the writers and each writer writes its ticks in turn, so the
    # changes of one user reach Users in version order.
    writers = 8
    groups = [user_ids[g::writers] for g in range(writers)]
    per_tick = max(1, round(rate * _TICK_S))
    if per_tick > min(25, min(len(group) for group in groups)):
        raise ValueError(
            f"{rate}/s needs {per_tick} changes per {_TICK_S} s tick: give --users >= {per_tick * writers}"
        )
    pools = [ThreadPoolExecutor(max_workers=1) for _ in range(writers)]
    began = time.monotonic()
    futures = []
    turn = [0] * writers
    try:
        for tick, first in enumerate(range(0, changes, per_tick)):
            group = tick % writers
            batch = []
            for _ in range(min(per_tick, changes - first)):
                user_id = groups[group][turn[group] % len(groups[group])]
                turn[group] += 1
                versions[user_id] += 1
                batch.append((user_id, versions[user_id]))
            delay = began + tick * _TICK_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pools[group].submit(write, batch))
        for future in futures:
            future.result()
    finally:
        for pool in pools:
            pool.shutdown()
    achieved = changes / (time.monotonic() - began)
    done.set()
    for thread in pollers:
        thread.join()

    def users_key(change):
        body = change[envelope.BODY]
        image = body.get(envelope.NEW_IMAGE) or {}
        return (body[envelope.KEYS]["UserId"]["S"], int(image["Version"]["N"])) if "Version" in image else None

    users_arrival = _arrivals(kinesis, "users-changes", since, users_key)
    wp_arrival = _arrivals(kinesis, "workplace-users-v2-changes", since, users_key)
    hops: dict[str, list[tuple[float, float]]] = {name: [] for name in HOPS}  # (written at, latency)
    for key, t0 in written.items():
        if key in users_arrival:
            hops["relay Users"].append((t0, users_arrival[key] - t0))
            if key in visible["app"]:
                hops["app-user-management"].append((t0, visible["app"][key] - users_arrival[key]))
            if key in visible["wp"]:
                hops["workplace-user-v2"].append((t0, visible["wp"][key] - users_arrival[key]))
        if key in wp_arrival and key in visible["wp"]:
            hops["relay WorkplaceUsers_V2"].append((t0, max(0.0, wp_arrival[key] - visible["wp"][key])))
        if key in wp_arrival and key in visible["search"]:
            hops["workplace-user-search"].append((t0, visible["search"][key] - wp_arrival[key]))
    hops["Users -> OpenSearch"] = [
        (t0, visible["search"][k] - t0) for k, t0 in written.items() if k in visible["search"]
    ]
    for user_id in user_ids:
        ddb.delete_item(TableName="Users", Key={"UserId": {"S": user_id}})

    kcl_ms = {app.name: app.polling_interval_ms for app in discover_apps(pipeline)}
    contains = {
        "relay Users": f"the relay's idle poll ({RELAY_POLL_MS} ms) and a PutRecords",
        "relay WorkplaceUsers_V2": f"the relay's idle poll ({RELAY_POLL_MS} ms) and a PutRecords",
        "Users -> OpenSearch": "every hop above",
    }
    for app, ms in kcl_ms.items():
        contains[app] = f"the KCL's idleTimeBetweenReads ({ms} ms), the batch, the sink write"
    figures = []
    for name in (*HOPS, "Users -> OpenSearch"):
        values = [latency for _, latency in hops[name]]
        quantiles = _quantiles(values)
        if quantiles is None:
            figures.append(Figure(f"{name} p99", float("nan"), "s", note=f"only {len(values)} changes seen"))
            continue
        p50, p95, p99 = quantiles
        per_hop = name != "Users -> OpenSearch"
        figures.append(
            Figure(
                f"{name} p99",
                p99,
                "s",
                target=f"p99 <= {TARGET_P99_S:.0f} s per hop at 100 changes/s" if per_hop else "",
                met=(p99 <= TARGET_P99_S) if per_hop else None,
                note=f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, n={len(values)}/{changes}; contains "
                f"{contains.get(name, '-')}",
            )
        )
    start = min(written.values(), default=0.0)
    series = [
        Series(
            "latency of each change per hop, over the run",
            "seconds since the first write",
            "latency (s)",
            {name: sorted((t0 - start, latency) for t0, latency in hops[name]) for name in HOPS},
        )
    ]
    notes = [
        f"{changes:,} e-mail changes at {rate:g} changes/s asked, {achieved:.1f}/s achieved (one "
        f"BatchWriteItem of {per_tick} every {_TICK_S} s from {writers} threads, each user's changes from one thread in order; each change its own item write) over {users} users, each with one workplace: every change reaches "
        "all three sinks.",
        "relay hops: Users write (or first visibility in WorkplaceUsers_V2) -> ApproximateArrivalTimestamp on the "
        "stream; app hops: arrival -> first poll (every 20 ms, one batched read per sink) that sees the version "
        "or a later one.",
        "No ceiling per hop: the polling interval each hop contains is given in its note (a floor on the hop's "
        "latency, not a ceiling on a rate).",
        f"kinesis-mock persistence every {stack.kinesis_persist_interval} (the stack's setting); a save stalls "
        "every call to the emulator while it runs, which shows as spikes in the chart.",
    ]
    return Section(f"Latency per hop at {rate:g} changes/s", figures, series, notes)


if __name__ == "__main__":
    sys.exit(main())
