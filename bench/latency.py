"""End-to-end latency per hop on the running local stack, and each app's processing rate.

    python -m bench.latency [--changes 150] [--rate 10]

Creates a few users with one workplace each, then changes their e-mail at a steady rate (each
change reaches all three sinks) and measures, per change:
  relay Users              Users write            -> arrival on users-changes
  app-user-management      arrival on users-changes -> visible in AppUsers_V2
  workplace-user-v2        arrival on users-changes -> visible in WorkplaceUsers_V2
  relay WorkplaceUsers_V2  visible in WorkplaceUsers_V2 -> arrival on workplace-users-v2-changes
  workplace-user-search    arrival on workplace-users-v2-changes -> visible in OpenSearch
("arrival" is Kinesis' ApproximateArrivalTimestamp; "visible" is the first poll, every 10 ms,
that sees the version). Prints p50 / p95 / p99 per hop. Then, from the workers' batch logs,
the records/s each app's processors sustain on their busy batches (>= 100 records).
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
from datetime import datetime, timedelta, timezone

import orjson

from infra import stack as local_stack
from infra.clients import aws_client, opensearch_client
from infra.config import StackConfig
from infra.streams import list_shards
from producer_config import load_pipeline

HOPS = ("relay Users", "app-user-management", "workplace-user-v2", "relay WorkplaceUsers_V2", "workplace-user-search")


def _arrivals(kinesis, stream: str, since: datetime, key) -> dict:
    """(key of the record) -> arrival time (epoch s) of its first copy on the stream."""
    seen = {}
    for shard in list_shards(kinesis, stream):
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                              ShardIteratorType="AT_TIMESTAMP", Timestamp=since)["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            for record in page["Records"]:
                k = key(orjson.loads(record["Data"]))
                if k is not None:
                    seen.setdefault(k, record["ApproximateArrivalTimestamp"].timestamp())
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return seen


def _percentiles(values: list[float]) -> str:
    if len(values) < 2:
        return "n/a"
    q = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {q[49] * 1000:7.0f} ms   p95 {q[94] * 1000:7.0f} ms   p99 {q[98] * 1000:7.0f} ms   (n={len(values)})"


def _processing_rates(stack: StackConfig) -> dict[str, float]:
    rates = {}
    for log in sorted(stack.log_dir.glob("worker-*.log")):
        received = millis = 0.0
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith('{"app"') and '"event": "batch"' in line:
                batch = json.loads(line)
                if batch["received"] >= 100:
                    received, millis = received + batch["received"], millis + batch["ms"]
                    app = batch["app"]
        if millis:
            rates[app] = received / (millis / 1000)
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=150)
    parser.add_argument("--rate", type=float, default=10.0, help="changes per second")
    parser.add_argument("--users", type=int, default=10)
    args = parser.parse_args(argv)
    stack, pipeline = StackConfig.from_env(), load_pipeline()
    local_stack.up(stack, pipeline)
    ddb = aws_client("dynamodb", stack, pipeline.region)
    kinesis = aws_client("kinesis", stack, pipeline.region)
    search = opensearch_client(stack)
    run = uuid.uuid4().hex[:6]
    since = datetime.now(timezone.utc) - timedelta(seconds=1)
    users = [f"lat-{run}-{i}" for i in range(args.users)]
    versions = {u: 1 for u in users}

    def put(user_id: str, version: int) -> None:
        ddb.put_item(TableName="Users", Item={
            "UserId": {"S": user_id}, "Email": {"S": f"{version}.{user_id}@example.com"}, "FirstName": {"S": "Lat"},
            "Version": {"N": str(version)}, "WorkplaceIds": {"SS": ["w-lat"]},
            "Workplaces": {"M": {"w-lat": {"M": {"Role": {"S": "staff"}, "JoinedAt": {"N": "1"}}}}}})

    for user_id in users:
        put(user_id, 1)
    time.sleep(3)

    written: dict[tuple[str, int], float] = {}
    visible: dict[str, dict[tuple[str, int], float]] = {"app": {}, "wp": {}, "search": {}}
    lock = threading.Lock()

    def watch(user_id: str, version: int) -> None:
        pending = {"app", "wp", "search"}
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            for sink in list(pending):
                if sink == "app":
                    item = ddb.get_item(TableName="AppUsers_V2", Key={"UserId": {"S": user_id}}).get("Item")
                    seen = item and int(item["Version"]["N"]) >= version
                elif sink == "wp":
                    item = ddb.get_item(TableName="WorkplaceUsers_V2",
                                        Key={"WorkplaceId": {"S": "w-lat"}, "UserId": {"S": user_id}}).get("Item")
                    seen = item and int(item["Version"]["N"]) >= version
                else:
                    doc = search.get(index="workplace-users-v2", id=f"w-lat#{user_id}", ignore=[404])
                    seen = doc.get("found") and doc["_version"] >= version
                if seen:
                    with lock:
                        visible[sink][(user_id, version)] = time.time()
                    pending.discard(sink)
            time.sleep(0.01)

    print(f"writing {args.changes} e-mail changes at {args.rate}/s over {args.users} users...", file=sys.stderr)
    with ThreadPoolExecutor(max_workers=64) as pool:
        for n in range(args.changes):
            user_id = users[n % len(users)]
            versions[user_id] += 1
            put(user_id, versions[user_id])
            written[(user_id, versions[user_id])] = time.time()
            pool.submit(watch, user_id, versions[user_id])
            time.sleep(1 / args.rate)

    def users_key(change):
        image = change["dynamodb"].get("NewImage") or {}
        return (change["dynamodb"]["Keys"]["UserId"]["S"], int(image["Version"]["N"])) if "Version" in image else None

    users_arrival = _arrivals(kinesis, "users-changes", since, users_key)
    wp_arrival = _arrivals(kinesis, "workplace-users-v2-changes", since, users_key)
    hops = {name: [] for name in HOPS}
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
    print(f"latency per hop ({args.changes} changes at {args.rate}/s; polling 200 ms in the KCL, 50 ms in the relay):")
    for name in HOPS:
        print(f"  {name:<26} {_percentiles(hops[name])}")
    end_to_end = [visible["search"][k] - t0 for k, t0 in written.items() if k in visible["search"]]
    print(f"  {'Users -> OpenSearch':<26} {_percentiles(end_to_end)}")
    for user_id in users:
        ddb.delete_item(TableName="Users", Key={"UserId": {"S": user_id}})
    print("processing rate of one worker on busy batches (from the worker logs):")
    for app, rate in _processing_rates(stack).items():
        print(f"  {app:<26} {rate:8.0f} records/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
