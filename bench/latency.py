"""End-to-end latency per hop on the running local stack, and each app's processing rate.

    python -m bench.latency [--changes 150] [--rate 10]

Creates a few users with one workplace each, then changes their e-mail at a steady rate (each
change reaches all three sinks) and measures, per change:
  relay Users              Users write            -> arrival on users-changes
  app-user-management      arrival on users-changes -> visible in AppUsers_V2
  workplace-user-v2        arrival on users-changes -> visible in WorkplaceUsers_V2
  relay WorkplaceUsers_V2  visible in WorkplaceUsers_V2 -> arrival on workplace-users-v2-changes
  workplace-user-search    arrival on workplace-users-v2-changes -> visible in OpenSearch
("arrival" is Kinesis' ApproximateArrivalTimestamp; "visible" is the first poll, every 20 ms,
one batched read per sink, that sees the version; a later version also counts, as the sinks
may skip over a version). Prints p50 / p95 / p99 per hop. Then the records/s one worker per app
sustains: the workers are stopped, changes written, the workers started, and the time until
every sink agrees is measured, with the processors' own rate from their batch logs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson

from infra import stack as local_stack
from producer_config import load_pipeline
from targets.clients import aws_client, opensearch_client
from targets.config import StackConfig
from targets.kinesis import read_stream

HOPS = ("relay Users", "app-user-management", "workplace-user-v2", "relay WorkplaceUsers_V2", "workplace-user-search")


def _arrivals(kinesis, stream: str, since: datetime, key) -> dict:
    """(key of the record) -> arrival time (epoch s) of its first copy on the stream."""
    seen: dict = {}
    for record in read_stream(kinesis, stream, since):
        k = key(orjson.loads(record.data))
        if k is not None:
            seen.setdefault(k, record.arrival.timestamp() if record.arrival else time.time())
    return seen


def _percentiles(values: list[float]) -> str:
    if len(values) < 2:
        return "n/a"
    q = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {q[49] * 1000:7.0f} ms   p95 {q[94] * 1000:7.0f} ms   p99 {q[98] * 1000:7.0f} ms   (n={len(values)})"


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
    from scripts.generate_changes import UserChangeGenerator, apply_changes
    from targets.clients import aws_resource

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=150)
    parser.add_argument("--rate", type=float, default=10.0, help="changes per second")
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--catch-up", type=int, default=1500, help="changes written while the workers are stopped")
    args = parser.parse_args(argv)
    stack, pipeline = StackConfig.from_env(), load_pipeline()
    local_stack.up(stack, pipeline)
    ddb = aws_client("dynamodb", stack, pipeline.region)
    kinesis = aws_client("kinesis", stack, pipeline.region)
    search = opensearch_client(stack)
    run = uuid.uuid4().hex[:6]
    since = datetime.now(UTC) - timedelta(seconds=1)
    users = [f"lat-{run}-{i}" for i in range(args.users)]
    versions = {u: 1 for u in users}

    def put(user_id: str, version: int) -> None:
        ddb.put_item(
            TableName="Users",
            Item={
                "UserId": {"S": user_id},
                "Email": {"S": f"{version}.{user_id}@example.com"},
                "FirstName": {"S": "Lat"},
                "Version": {"N": str(version)},
                "WorkplaceIds": {"SS": ["w-lat"]},
                "Workplaces": {"M": {"w-lat": {"M": {"Role": {"S": "staff"}, "JoinedAt": {"N": "1"}}}}},
            },
        )

    for user_id in users:
        put(user_id, 1)
    warm_up = time.monotonic() + 180  # workers just started hold no lease yet: wait for the pipeline
    while search.count(index="workplace-users-v2", body={"query": {"prefix": {"UserId": f"lat-{run}-"}}})[
        "count"
    ] < len(users):
        if time.monotonic() > warm_up:
            raise SystemExit("the pipeline did not deliver the warm-up users to OpenSearch within 180 s")
        time.sleep(0.5)

    written: dict[tuple[str, int], float] = {}
    visible: dict[str, dict[tuple[str, int], float]] = {"app": {}, "wp": {}, "search": {}}
    done = threading.Event()

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
            if users_pending:
                now_seen = stored_versions(sink, users_pending)
                stamp = time.time()
                for user_id, version in pending_keys:
                    if now_seen.get(user_id, 0) >= version:
                        visible[sink][(user_id, version)] = stamp
            if done.is_set() and time.time() - last_write[0] > 60:
                return
            time.sleep(0.02)

    last_write = [time.time()]
    pollers = [threading.Thread(target=poll, args=(sink,), daemon=True) for sink in visible]
    for thread in pollers:
        thread.start()
    print(f"writing {args.changes} e-mail changes at {args.rate}/s over {args.users} users...", file=sys.stderr)
    for n in range(args.changes):
        user_id = users[n % len(users)]
        versions[user_id] += 1
        put(user_id, versions[user_id])
        written[(user_id, versions[user_id])] = last_write[0] = time.time()
        time.sleep(1 / args.rate)
    done.set()
    for thread in pollers:
        thread.join()

    def users_key(change):
        image = change["dynamodb"].get("NewImage") or {}
        return (change["dynamodb"]["Keys"]["UserId"]["S"], int(image["Version"]["N"])) if "Version" in image else None

    users_arrival = _arrivals(kinesis, "users-changes", since, users_key)
    wp_arrival = _arrivals(kinesis, "workplace-users-v2-changes", since, users_key)
    hops: dict[str, list[float]] = {name: [] for name in HOPS}
    for key, t0 in written.items():
        if key in users_arrival:
            hops["relay Users"].append(users_arrival[key] - t0)
            if key in visible["app"]:
                hops["app-user-management"].append(visible["app"][key] - users_arrival[key])
            if key in visible["wp"]:
                hops["workplace-user-v2"].append(visible["wp"][key] - users_arrival[key])
        if key in wp_arrival and key in visible["wp"]:
            hops["relay WorkplaceUsers_V2"].append(max(0.0, wp_arrival[key] - visible["wp"][key]))
        if key in wp_arrival and key in visible["search"]:
            hops["workplace-user-search"].append(visible["search"][key] - wp_arrival[key])
    print(f"latency per hop ({args.changes} changes at {args.rate}/s; KCL polling 500 ms, relay 50 ms):")
    for name in HOPS:
        print(f"  {name:<26} {_percentiles(hops[name])}")
    end_to_end = [visible["search"][k] - t0 for k, t0 in written.items() if k in visible["search"]]
    print(f"  {'Users -> OpenSearch':<26} {_percentiles(end_to_end)}")
    for user_id in users:
        ddb.delete_item(TableName="Users", Key={"UserId": {"S": user_id}})
    if args.catch_up:
        catch_up(stack, pipeline, args.catch_up)
    return 0


if __name__ == "__main__":
    sys.exit(main())
