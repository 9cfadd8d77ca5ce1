"""user-notifications: webhook deliveries per second beside the receiver's own ceiling, and the
time from a change to its delivery.

    python -m bench.notifications [--quick]

On the running (or started) local stack, three measurements in one run:
  ceiling   the local webhook receiver alone: signed deliveries POSTed straight to it by four
            client processes (as many as the app's shard processors), 16 requests in flight in
            all, over keep-alive connections, for a few seconds; what it verifies and records
            per second;
  capacity  the app stopped, a burst of K user changes written to Users (K = 5,000; quick 1,500),
            the app started: deliveries acknowledged per second at the receiver from the first
            to the last of the run's deliveries (the app drains a backlog: its sustained rate,
            its KCL start-up not counted);
  latency   changes at a steady 50/s for 30 s (quick 15 s): for each delivery, the receiver's
            clock when it arrived minus the change's time (the event's ``timestamp``: its
            ApproximateCreationDateTime, which the local relay stamps as it reads the change),
            p50 and p99.
Every delivery counted is a first one (``first``: the receiver had not acknowledged its
``webhook-id``) with a verified signature; the run ends with ``make verify`` clean.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from bench.figures import Figure, Section, Series
from consumers.runtime.config import discover_apps
from consumers.runtime.latency import quantile
from consumers.verify import wait_converged
from infra.local import stack as local_stack
from infra.local.webhooks import ReceiverClient, receiver_url, subscriber_secrets
from infra.ops.apps import local_workers
from producer_config import load_pipeline
from scripts.changes.generator import UserChangeGenerator
from scripts.changes.writer import apply_changes
from services.clients import aws_resource
from services.config import StackConfig

__all__ = ["measure"]

CONCURRENCY = 16
PROCESSES = 4  # the app's shard processors: one per shard of users-changes


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _post_for(args: tuple[str, str, str, float, int]) -> int:
    """One client process: ``CONCURRENCY // PROCESSES`` threads POSTing signed events until the deadline."""
    import urllib3
    from standardwebhooks.webhooks import Webhook

    url, secret, run, deadline, process = args
    sign = Webhook(secret).sign
    pool = urllib3.PoolManager(maxsize=CONCURRENCY)

    def loop(thread: int) -> int:
        sent = 0
        while time.time() < deadline:
            event_id = f"ceiling-{run}-{process}-{thread}-{sent}"
            body = json.dumps({"id": event_id, **_CEILING_EVENT}).encode()
            now = datetime.now(UTC)
            headers = {
                "content-type": "application/json",
                "webhook-id": event_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": sign(event_id, now, body),
            }
            answer = pool.request("POST", url, body=body, headers=headers, retries=False)
            assert answer.status == 200, (answer.status, answer.data[:200])
            sent += 1
        return sent

    with ThreadPoolExecutor(CONCURRENCY // PROCESSES) as threads:
        return sum(threads.map(loop, range(CONCURRENCY // PROCESSES)))


_CEILING_EVENT = {
    "type": "user.updated",
    "timestamp": "2026-12-04T00:00:00+00:00",
    "data": {"user_id": "ceiling", "version": 1, "changes": {"Email": {"before": "a@x.org", "after": "b@x.org"}}},
}


def _ceiling(stack: StackConfig, seconds: float) -> float:
    """Signed deliveries/s the receiver alone takes: PROCESSES client processes (as many as the
    app's shard processors), CONCURRENCY requests in flight in all, a typical event body."""
    from concurrent.futures import ProcessPoolExecutor

    url, secret, run = receiver_url(stack) + "/hooks/crm", subscriber_secrets(stack)["crm"], uuid.uuid4().hex[:6]
    deadline = time.time() + seconds
    started = time.monotonic()
    with ProcessPoolExecutor(PROCESSES) as processes:
        total = sum(processes.map(_post_for, [(url, secret, run, deadline, p) for p in range(PROCESSES)]))
    return total / (time.monotonic() - started)


def _run_deliveries(receiver: ReceiverClient, prefix: str) -> list[dict]:
    return [
        r
        for r in receiver.deliveries()
        if r["first"]
        and r["verified"]
        and str(((r.get("event") or {}).get("data") or {}).get("user_id", "")).startswith(prefix)
    ]


def _write(stack: StackConfig, changes: int, prefix: str, rate: float | None) -> None:
    pipeline = load_pipeline()
    users = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    generator = UserChangeGenerator(users=max(100, changes // 5), seed=23, prefix=prefix)
    apply_changes(
        users, generator.changes(changes), total=changes, rate=rate, progress=False, batch_size=25, concurrency=4
    )


def _settle(stack: StackConfig, timeout_s: float) -> None:
    reports = wait_converged(stack, load_pipeline(), timeout_s=timeout_s, poll_s=3)
    if not all(r.ok for r in reports):
        raise RuntimeError("sinks not converged: " + "; ".join(str(r) for r in reports if not r.ok))


def measure(quick: bool) -> Section:
    stack, pipeline = StackConfig.from_env(), load_pipeline()
    local_stack.up(stack, pipeline)
    receiver = ReceiverClient(stack)
    section = Section("user-notifications: webhook deliveries (local stack, local receiver)")
    warm = f"nw-{uuid.uuid4().hex[:5]}-"  # the app consumes (its KCL started, its leases taken)
    _write(stack, 50, warm, rate=None)
    deadline = time.monotonic() + 300
    while not _run_deliveries(receiver, warm):
        if time.monotonic() > deadline:
            raise RuntimeError("user-notifications delivered nothing in 300 s: is its worker running? (`cdc status`)")
        time.sleep(1)
    _settle(stack, 600)

    ceiling = _ceiling(stack, 3 if quick else 8)
    _say(f"   receiver alone: {ceiling:,.0f} signed deliveries/s")

    burst = 1_500 if quick else 5_000
    prefix = f"nb-{uuid.uuid4().hex[:5]}-"
    app = next(a for a in discover_apps(pipeline) if a.name == "user-notifications")
    workers = local_workers(stack, app, pipeline.region)
    workers.stop(why="bench: a backlog to drain")  # the burst waits on the stream, whole
    try:
        _write(stack, burst, prefix, rate=None)
    finally:
        workers.start()
    _settle(stack, 600 + burst / 5)
    delivered = _run_deliveries(receiver, prefix)
    span = max(r["received_at"] for r in delivered) - min(r["received_at"] for r in delivered)
    rate = len(delivered) / span
    _say(f"   burst: {len(delivered):,} deliveries in {span:.1f} s")
    section.figures.append(
        Figure(
            f"deliveries/s acknowledged, draining a burst of {burst:,} changes ({len(delivered):,} deliveries)",
            rate,
            "deliveries/s",
            ceiling=ceiling,
            ceiling_name=f"the receiver alone: {PROCESSES} client processes, {CONCURRENCY} signed POSTs in flight",
        )
    )

    steady_s, steady_rate = (15, 50) if quick else (30, 50)
    prefix = f"nl-{uuid.uuid4().hex[:5]}-"
    _write(stack, steady_s * steady_rate, prefix, rate=steady_rate)
    _settle(stack, 300)
    delivered = _run_deliveries(receiver, prefix)
    points = sorted(
        (r["received_at"], int((r["received_at"] - datetime.fromisoformat(r["event"]["timestamp"]).timestamp()) * 1000))
        for r in delivered
    )
    latencies = sorted(ms for _, ms in points)
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        section.figures.append(
            Figure(
                f"change to delivery {name}, {steady_rate} changes/s for {steady_s} s ({len(delivered):,} deliveries)",
                float(quantile(latencies, q) or 0),
                "ms",
            )
        )
    t0 = points[0][0]
    section.series.append(
        Series(
            "Change to delivery at a steady rate",
            "seconds since the first delivery",
            "ms",
            {"latency": [(at - t0, ms) for at, ms in points]},
        )
    )
    section.notes.extend(
        [
            "Ceiling: the receiver (Python's ThreadingHTTPServer verifying each Standard Webhooks signature and "
            "appending it to its log) under 16 concurrent keep-alive POSTs from one process.",
            "Capacity: the app's four shard processors, each delivering its batch's (subscriber, user) chains 16 at a "
            "time and recording the batch's acknowledgements in the ledger (DynamoDB Local) once; two subscribers "
            "(crm takes every event type, security updates and deletions).",
            "Latency: from the change's ApproximateCreationDateTime to the receiver's arrival clock, same host; "
            "polling every 1 s (the third reader of users-changes) is most of it.",
        ]
    )
    return section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.notifications", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    from bench.report import print_section

    print_section(measure(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
