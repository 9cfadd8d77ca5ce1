"""Change relay: DynamoDB Streams -> Kinesis, in the format of DynamoDB's Kinesis streaming destination.

Local infrastructure only. DynamoDB Local has no Kinesis streaming destination, so this
process reads every source table's DynamoDB Stream and writes each change to the table's
Kinesis stream exactly as AWS would (`tests/fixtures/ddb-kinesis-change-record.json`).
On AWS or LocalStack the native destination does this job and the relay is not started.

Guarantees:
  * per item order: the partition key is derived from the item's key, so all changes of one
    item land on one Kinesis shard; a PutRecords call never holds two changes of one item, and
    a failed record is retried before the item's next change is sent;
  * durability: the position (last DynamoDB Streams sequence number per stream shard) is saved
    atomically under the state folder, but only past records Kinesis has stored for good
    (`services.durability`: the local stack's kinesis-mock saves snapshots, and a SIGKILL loses
    what it acknowledged since). A written batch is held until then; its last record is then
    read back, and only if it is still there does the saved position move past it. A missing
    record means Kinesis lost acknowledged records (it restarted from an older snapshot): the
    relay goes back to its saved position and writes them again. A restart of
    the relay repeats the held batches; repeats carry the same eventID, and the consumers'
    version checks make them harmless;
  * supervision: any failure (an endpoint down, a lost record) restarts that table's relay
    from its saved position after a back-off; the heartbeat file, which `make status` reads,
    is only touched while every table's loop completes;
  * lineage: a stream shard is read only after its parent shard was read to its end;
  * loss is loud: when DynamoDB Streams trimmed changes before they were relayed, the gap is
    recorded in the position file and `make status` reports it until the file is reset.

``ApproximateCreationDateTime`` is stamped by the relay when it reads the change (DynamoDB
Local truncates its own to the minute), at the precision the pipeline file asks for.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from botocore.exceptions import ClientError

from base.retry import Backoff
from infra.relay.backlog import live_path, write_live
from infra.relay.format import creation_stamps, put_rounds, to_kinesis_record
from producer_config import PipelineConfig, TableSpec, load_pipeline
from services.clients import aws_client, error_code
from services.config import StackConfig, StackError
from services.durability import DurableGate, durability_for

__all__ = ["POLL_IDLE_S", "KinesisLostRecords", "Relay", "RelayPosition", "Written", "next_idle_wait"]

log = logging.getLogger("cdc.relay")

#: the wait after a loop that moved nothing doubles from the first to the second value, and is
#: back to the first after a loop that moved records. Every DynamoDB Streams poll is a request
#: DynamoDB Local serves between the sinks' transactions, one at a time: an idle stack polled
#: each shard 20 times a second; the cap bounds what an idle relay adds to a change's latency.
POLL_IDLE_S = (0.05, 0.25)
_SHARD_REFRESH_S = 5.0
#: a table's relay starts again after failure n (n = 1, 2, ...): 1, 2, 4, 8, 16, then 30 s
_RESTART_BACKOFF = Backoff(first_s=1.0, cap_s=30.0)
#: PutRecords again after a partial failure n: 0.05, 0.1, 0.2, ... up to 2 s
_PUT_BACKOFF = Backoff(first_s=0.05, cap_s=2.0)
_HEALTHY_LOOP_AGE_S = 10.0
#: how often the relay writes where it is now, for `cdc status` (infra.relay.backlog)
_LIVE_EVERY_S = 1.0


def next_idle_wait(last_s: float, moved: int) -> float:
    """The relay's wait after its next loop that moves nothing (``POLL_IDLE_S``)."""
    return POLL_IDLE_S[0] if moved else min(2 * last_s, POLL_IDLE_S[1])


# --------------------------------------------------------------------------- positions
@dataclass(slots=True)
class RelayPosition:
    """Where the relay is in one table's DynamoDB Stream, and the gaps it knows of."""

    path: Path
    stream_arn: str | None = None
    shards: dict[str, dict] = field(default_factory=dict)  # shard id -> {"seq": str|None, "done": bool}
    gaps: list[dict] = field(default_factory=list)  # changes trimmed before they were relayed

    @classmethod
    def load(cls, path: Path) -> RelayPosition:
        try:
            raw = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return cls(path)
        except orjson.JSONDecodeError as exc:
            raise StackError(f"relay position file {path} is corrupt ({exc}); move it away to start over") from exc
        return cls(path, raw.get("stream_arn"), raw.get("shards", {}), raw.get("gaps", []))

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(
                orjson.dumps(
                    {"stream_arn": self.stream_arn, "shards": self.shards, "gaps": self.gaps},
                    option=orjson.OPT_INDENT_2,
                )
            )
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def reset(self, stream_arn: str) -> None:
        self.stream_arn, self.shards = stream_arn, {}


@dataclass(frozen=True, slots=True)
class Written:
    """One batch of one stream shard written to Kinesis: where that shard now stands, and the
    batch's last record as Kinesis acknowledged it (None when the page was empty)."""

    shard_id: str
    seq: str | None
    done: bool
    last: tuple[str, str, bytes] | None  # (Kinesis shard id, sequence number, data)


class KinesisLostRecords(StackError):
    """A record Kinesis acknowledged is gone (kinesis-mock restarted before saving it)."""


# ------------------------------------------------------------------------------- relay
class Relay:
    """Relays one source table from its saved position. `run()` loops until `stop` is set and
    raises on any failure; `main` then builds a new one, which starts from the saved position."""

    def __init__(self, table: TableSpec, pipeline: PipelineConfig, stack: StackConfig, stop: threading.Event):
        self.table = table
        self.pipeline = pipeline
        self.stop = stop
        self.stream_name = table.stream
        self.ddb = aws_client("dynamodb", stack, pipeline.region)
        self.streams = aws_client("dynamodbstreams", stack, pipeline.region)
        self.kinesis = aws_client("kinesis", stack, pipeline.region)
        stack.relay_dir.mkdir(parents=True, exist_ok=True)
        self.saved = RelayPosition.load(stack.relay_dir / f"{table.name}.json")
        # where reading stands; ahead of `saved` by the held batches
        self.shards: dict[str, dict] = {sid: dict(state) for sid, state in self.saved.shards.items()}
        self.durability = durability_for(stack, self.kinesis, self.stream_name)
        self.held: DurableGate[Written] = DurableGate(self.durability)
        self.iterators: dict[str, str] = {}
        self.relayed = 0
        self.last_stamp_ns = 0
        self.loop_at = 0.0  # time.monotonic() of the last completed loop
        self.live_file, self.live_at = live_path(stack.relay_dir, table.name), 0.0

    # -- shards and lineage
    def _stream_arn(self) -> str:
        arn = self.ddb.describe_table(TableName=self.table.name)["Table"].get("LatestStreamArn")
        if not arn:
            raise StackError(f"table {self.table.name} has no DynamoDB Stream: run `make provision`")
        return arn

    def _list_shards(self, arn: str) -> list[dict]:
        shards, start = [], None
        while True:
            kwargs = {"StreamArn": arn, **({"ExclusiveStartShardId": start} if start else {})}
            desc = self.streams.describe_stream(**kwargs)["StreamDescription"]
            shards.extend(desc["Shards"])
            start = desc.get("LastEvaluatedShardId")
            if not start:
                return shards

    def _readable(self, shards: list[dict]) -> list[str]:
        """Shards not finished whose parent is finished or gone (trimmed), oldest first."""
        known = {s["ShardId"] for s in shards}
        state = self.shards
        ready = []
        for shard in shards:
            sid, parent = shard["ShardId"], shard.get("ParentShardId")
            if state.get(sid, {}).get("done"):
                continue
            if parent and parent in known and not state.get(parent, {}).get("done"):
                continue
            ready.append(sid)
        return ready

    def _iterator(self, arn: str, shard_id: str) -> str:
        seq = self.shards.get(shard_id, {}).get("seq")
        kwargs = {"StreamArn": arn, "ShardId": shard_id}
        if seq:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=seq)
        else:
            kwargs.update(ShardIteratorType="TRIM_HORIZON")
        return self.streams.get_shard_iterator(**kwargs)["ShardIterator"]

    # -- the loop
    def run(self) -> None:
        arn = self._stream_arn()
        if self.saved.stream_arn != arn:
            if self.saved.stream_arn:
                log.warning(
                    "table %s has a new stream %s (was %s): starting it from TRIM_HORIZON",
                    self.table.name,
                    arn,
                    self.saved.stream_arn,
                )
            self.saved.reset(arn)
            self.saved.save()
            self.shards = {}
        readable: list[str] = []
        refreshed, idle_s = 0.0, POLL_IDLE_S[0]
        while not self.stop.is_set():
            if time.monotonic() - refreshed > _SHARD_REFRESH_S or not readable:
                readable = self._readable(self._list_shards(arn))
                refreshed = time.monotonic()
            moved = 0
            for shard_id in list(readable):
                moved += self._pump(arn, shard_id)
                if self.shards.get(shard_id, {}).get("done"):
                    readable = self._readable(self._list_shards(arn))
            self._save_due()
            self.loop_at = time.monotonic()
            if self.loop_at - self.live_at >= _LIVE_EVERY_S:
                write_live(self.live_file, arn, self.shards)
                self.live_at = self.loop_at
            if not moved:
                self.stop.wait(idle_s)
            idle_s = next_idle_wait(idle_s, moved)

    def _pump(self, arn: str, shard_id: str) -> int:
        """Read one page from a shard and write it to Kinesis; the batch is then held."""
        if shard_id not in self.iterators:
            self.iterators[shard_id] = self._iterator(arn, shard_id)
        try:
            page = self.streams.get_records(ShardIterator=self.iterators[shard_id], Limit=1000)
        except ClientError as exc:
            if error_code(exc) == "ExpiredIteratorException":
                del self.iterators[shard_id]
                return 0
            if error_code(exc) == "TrimmedDataAccessException":
                self._trimmed(shard_id)
                del self.iterators[shard_id]
                return 0
            raise
        records = page.get("Records", [])
        last = self._put(arn, records) if records else None
        state = self.shards.setdefault(shard_id, {"seq": None, "done": False})
        if records:
            state["seq"] = records[-1]["dynamodb"]["SequenceNumber"]
        next_iterator = page.get("NextShardIterator")
        if next_iterator:
            self.iterators[shard_id] = next_iterator
        else:
            state["done"] = True
            self.iterators.pop(shard_id, None)
        if records or not next_iterator:
            self.held.hold(time.time_ns() + 1, Written(shard_id, state["seq"], state["done"], last))
        return len(records)

    def _trimmed(self, shard_id: str) -> None:
        """TrimmedDataAccessException. After a position this means changes were trimmed before
        they were relayed: recorded as a gap (reported by `make status`), then reading goes on
        from TRIM_HORIZON. Without a position DynamoDB Local sometimes answers it for a
        brand-new shard, where a new iterator works."""
        seq = self.shards.get(shard_id, {}).get("seq")
        if not seq:
            log.warning(
                "table %s shard %s: TrimmedDataAccessException at TRIM_HORIZON; retrying", self.table.name, shard_id
            )
            return
        log.error(
            "table %s shard %s: changes after %s were trimmed before they were relayed: LOST; resuming at TRIM_HORIZON",
            self.table.name,
            shard_id,
            seq,
        )
        self.shards[shard_id] = {"seq": None, "done": False}
        self.saved.gaps.append(
            {"shard": shard_id, "after": seq, "detected": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        )
        self.saved.save()

    def _save_due(self) -> None:
        """Save the position of the batches Kinesis has stored, once their newest record reads
        back (an endpoint that loses records loses everything acknowledged after a point)."""
        due = self.held.due()
        if not due:
            return
        probe = next((written.last for written in reversed(due) if written.last is not None), None)
        if probe is not None and not self.durability.still_stored(*probe):
            raise KinesisLostRecords(
                f"table {self.table.name}: Kinesis no longer has a record it acknowledged "
                f"({probe[0]} {probe[1]}); the emulator lost records (restarted before saving them?)"
            )
        for written in due:
            self.saved.shards[written.shard_id] = {"seq": written.seq, "done": written.done}
        self.saved.save()
        self.held.release(len(due))

    def _put(self, arn: str, changes: list[dict]) -> tuple[str, str, bytes]:
        """Write one page in order; returns its last record as Kinesis acknowledged it."""
        precision = self.pipeline.creation_time_precision
        stamps = creation_stamps(len(changes), now_ns=time.time_ns(), after_ns=self.last_stamp_ns, precision=precision)
        self.last_stamp_ns = stamps[-1]
        encoded = [
            to_kinesis_record(
                c,
                table=self.table.name,
                region=self.pipeline.region,
                stream_arn=arn,
                precision=precision,
                now_ns=stamp,
            )
            for c, stamp in zip(changes, stamps, strict=True)
        ]
        for request in put_rounds(encoded):
            acked = self._put_all(request)
        self.relayed += len(changes)
        return acked

    def _put_all(self, entries: list[tuple[bytes, str]]) -> tuple[str, str, bytes]:
        """PutRecords with retries of the failed entries only (one entry per item per call).
        Returns the record acknowledged last: (shard id, sequence number, data)."""
        attempt = 0
        pending = entries
        while True:
            response = self.kinesis.put_records(
                StreamName=self.stream_name,
                Records=[{"Data": data, "PartitionKey": key} for data, key in pending],
            )
            results = response["Records"]
            if not response.get("FailedRecordCount"):
                # the newest acknowledgement: this call holds what failed before, nothing else
                return results[-1]["ShardId"], results[-1]["SequenceNumber"], pending[-1][0]
            failed = [entry for entry, result in zip(pending, results, strict=True) if "ErrorCode" in result]
            attempt += 1
            delay = _PUT_BACKOFF.delay(attempt)
            log.warning(
                "table %s: %d of %d records not accepted (%s); retrying in %.2fs",
                self.table.name,
                len(failed),
                len(pending),
                next(r["ErrorCode"] for r in results if "ErrorCode" in r),
                delay,
            )
            pending = failed
            if self.stop.wait(delay):
                raise StackError("relay stopping with a batch not fully written; it will be repeated")


# -------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", help="state folder (default: CDC_STATE_DIR or .state)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(threadName)s %(message)s"
    )
    env = dict(os.environ, **({"CDC_STATE_DIR": args.state_dir} if args.state_dir else {}))
    stack = StackConfig.from_env(env)
    pipeline = load_pipeline()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    current: dict[str, Relay] = {}
    threads = [
        threading.Thread(target=supervise, args=(table, pipeline, stack, stop, current), name=table.name, daemon=True)
        for table in pipeline.source_tables
    ]
    for thread in threads:
        thread.start()
    heartbeat = stack.relay_dir / "heartbeat"
    log.info("relaying %s", ", ".join(f"{t.name} -> {t.change_stream}" for t in pipeline.source_tables))
    last_report = time.monotonic()
    while not stop.wait(1.0):
        relays = [current.get(t.name) for t in pipeline.source_tables]
        if all(r is not None and time.monotonic() - r.loop_at < _HEALTHY_LOOP_AGE_S for r in relays):
            heartbeat.touch()
        if time.monotonic() - last_report >= 30:
            log.info(
                "relayed so far: %s",
                ", ".join(f"{r.table.name}={r.relayed} ({len(r.held)} held)" for r in relays if r is not None),
            )
            last_report = time.monotonic()
    for thread in threads:
        thread.join(timeout=30)
    heartbeat.unlink(missing_ok=True)
    return 0


def supervise(
    table: TableSpec, pipeline: PipelineConfig, stack: StackConfig, stop: threading.Event, current: dict[str, Relay]
) -> None:
    """Run one table's relay until `stop`; after a failure start again from the saved position,
    at once when Kinesis lost records, else after a back-off (reset once a loop completed)."""
    failures = 0
    while not stop.is_set():
        relay = None
        try:
            current[table.name] = relay = Relay(table, pipeline, stack, stop)
            relay.run()
            return
        except Exception as exc:  # noqa: BLE001 - every failure is retried from the saved position
            if stop.is_set():
                return
            failures = 1 if relay is not None and relay.loop_at else failures + 1
            delay = 0.0 if isinstance(exc, KinesisLostRecords) else _RESTART_BACKOFF.delay(failures)
            log.error(
                "relay of table %s failed: %s: %s; starting again from its saved position in %gs",
                table.name,
                type(exc).__name__,
                exc,
                delay,
            )
        stop.wait(delay)


if __name__ == "__main__":
    sys.exit(main())
