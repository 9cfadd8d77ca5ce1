"""Change relay: DynamoDB Streams -> Kinesis, in the format of DynamoDB's Kinesis streaming destination.

Local infrastructure only. DynamoDB Local has no Kinesis streaming destination, so this
process reads every source table's DynamoDB Stream and writes each change to the table's
Kinesis stream exactly as AWS would (`shared/reference/ddb-kinesis-change-record.json`).
On AWS or LocalStack the native destination does this job and the relay is not started.

Guarantees:
  * per item order: the partition key is derived from the item's key, so all changes of one
    item land on one Kinesis shard; a PutRecords call never holds two changes of one item, and
    a failed record is retried before the item's next change is sent;
  * durability: after a batch is fully written, the position (last DynamoDB Streams sequence
    number per stream shard) is saved atomically under the state folder; a crash repeats at
    most the batch in flight (duplicates carry the same eventID);
  * lineage: a stream shard is read only after its parent shard was read to its end.

``ApproximateCreationDateTime`` is stamped by the relay when it reads the change (DynamoDB
Local truncates its own to the minute), at the precision the pipeline file asks for.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import logging
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from botocore.exceptions import ClientError

from infra.clients import aws_client, error_code
from infra.config import StackConfig, StackError
from producer_config import PipelineConfig, TableSpec, load_pipeline

__all__ = ["Relay", "RelayPosition", "to_kinesis_record", "partition_key"]

log = logging.getLogger("cdc.relay")

_EVENT_ID_NAMESPACE = uuid.UUID("6f1c2a7e-3b7d-4c55-9a0e-6a1f0d2b9c41")
_MAX_PUT_RECORDS = 500
_MAX_PUT_BYTES = 4_500_000  # PutRecords limit is 5 MiB including partition keys
_POLL_IDLE_S = 0.05
_SHARD_REFRESH_S = 5.0


# ------------------------------------------------------------------------- record format
def _bytes_to_base64(value):
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _repair(value: dict) -> dict:
    """DynamoDB Local's stream records write an empty map as {} (no type), at any depth;
    AWS writes {"M": {}}. An AttributeValue is never empty otherwise, so {} is unambiguous."""
    if not value:
        return {"M": {}}
    if "M" in value:
        return {"M": {k: _repair(v) for k, v in value["M"].items()}}
    if "L" in value:
        return {"L": [_repair(v) for v in value["L"]]}
    return value


def partition_key(table: str, keys: dict) -> str:
    """Stable per item: md5 of the table name and the item's canonical key JSON."""
    canonical = orjson.dumps(keys, option=orjson.OPT_SORT_KEYS, default=_bytes_to_base64)
    return hashlib.md5(table.encode() + b"\0" + canonical).hexdigest()


def creation_stamps(count: int, *, now_ns: int, after_ns: int, precision: str) -> list[int]:
    """``ApproximateCreationDateTime`` (in ns) for ``count`` changes read in stream order:
    now, or just after the previous page's last one, one unit of ``precision`` apart. Distinct
    stamps keep the changes of one item ordered where an item has no version attribute (the
    version then falls back to this time); one stamp per page made them tie."""
    unit = 1_000 if precision == "MICROSECOND" else 1_000_000
    start = max(now_ns, after_ns + unit)
    return [start + index * unit for index in range(count)]


def to_kinesis_record(
    change: dict, *, table: str, region: str, stream_arn: str, precision: str, now_ns: int
) -> tuple[bytes, str]:
    """One DynamoDB Streams record (as boto3 returns it) -> (Kinesis data, partition key)."""
    ddb = change["dynamodb"]
    image = {
        "ApproximateCreationDateTime": now_ns // (1_000 if precision == "MICROSECOND" else 1_000_000),
        "Keys": ddb["Keys"],
    }
    for name in ("NewImage", "OldImage"):
        if name in ddb:
            image[name] = {attr: _repair(value) for attr, value in ddb[name].items()}
    image["SizeBytes"] = ddb.get("SizeBytes", 0)
    identity = change.get("userIdentity")
    record = {
        "awsRegion": region,
        # Deterministic: a change relayed twice (after a crash) carries the same eventID.
        "eventID": str(uuid.uuid5(_EVENT_ID_NAMESPACE, f"{stream_arn}/{ddb['SequenceNumber']}")),
        "eventName": change["eventName"],
        "userIdentity": None if not identity else {
            "principalId": identity.get("PrincipalId"), "type": identity.get("Type"),
        },
        "recordFormat": "application/json",
        "tableName": table,
        "dynamodb": image,
        "eventSource": "aws:dynamodb",
    }
    return orjson.dumps(record, default=_bytes_to_base64), partition_key(table, ddb["Keys"])


# --------------------------------------------------------------------------- positions
@dataclass(slots=True)
class RelayPosition:
    """Where the relay is in one table's DynamoDB Stream; saved after every written batch."""

    path: Path
    stream_arn: str | None = None
    shards: dict[str, dict] = field(default_factory=dict)  # shard id -> {"seq": str|None, "done": bool}

    @classmethod
    def load(cls, path: Path) -> "RelayPosition":
        try:
            raw = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return cls(path)
        except orjson.JSONDecodeError as exc:
            raise StackError(f"relay position file {path} is corrupt ({exc}); move it away to start over") from exc
        return cls(path, raw.get("stream_arn"), raw.get("shards", {}))

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps({"stream_arn": self.stream_arn, "shards": self.shards}, option=orjson.OPT_INDENT_2))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def reset(self, stream_arn: str) -> None:
        self.stream_arn, self.shards = stream_arn, {}


# ------------------------------------------------------------------------------- relay
class Relay:
    """Relays one source table. `run()` loops until `stop` is set."""

    def __init__(self, table: TableSpec, pipeline: PipelineConfig, stack: StackConfig, stop: threading.Event):
        self.table = table
        self.pipeline = pipeline
        self.stop = stop
        self.stream_name = table.change_stream
        self.ddb = aws_client("dynamodb", stack, pipeline.region)
        self.streams = aws_client("dynamodbstreams", stack, pipeline.region)
        self.kinesis = aws_client("kinesis", stack, pipeline.region)
        stack.relay_dir.mkdir(parents=True, exist_ok=True)
        self.position = RelayPosition.load(stack.relay_dir / f"{table.name}.json")
        self.iterators: dict[str, str] = {}
        self.relayed = 0
        self.last_stamp_ns = 0

    # -- shards and lineage
    def _stream_arn(self) -> str:
        arn = self.ddb.describe_table(TableName=self.table.name)["Table"].get("LatestStreamArn")
        if not arn:
            raise StackError(f"table {self.table.name} has no DynamoDB Stream: run `make provision`")
        return arn

    def _shards(self, arn: str) -> list[dict]:
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
        state = self.position.shards
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
        seq = self.position.shards.get(shard_id, {}).get("seq")
        kwargs = {"StreamArn": arn, "ShardId": shard_id}
        if seq:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=seq)
        else:
            kwargs.update(ShardIteratorType="TRIM_HORIZON")
        return self.streams.get_shard_iterator(**kwargs)["ShardIterator"]

    # -- the loop
    def run(self) -> None:
        arn = self._stream_arn()
        if self.position.stream_arn != arn:
            if self.position.stream_arn:
                log.warning("table %s has a new stream %s (was %s): starting it from TRIM_HORIZON",
                            self.table.name, arn, self.position.stream_arn)
            self.position.reset(arn)
            self.position.save()
        readable: list[str] = []
        refreshed = 0.0
        while not self.stop.is_set():
            if time.monotonic() - refreshed > _SHARD_REFRESH_S or not readable:
                readable = self._readable(self._shards(arn))
                refreshed = time.monotonic()
            moved = 0
            for shard_id in list(readable):
                moved += self._pump(arn, shard_id)
                if self.position.shards.get(shard_id, {}).get("done"):
                    readable = self._readable(self._shards(arn))
            if not moved:
                self.stop.wait(_POLL_IDLE_S)

    def _pump(self, arn: str, shard_id: str) -> int:
        """Read one batch from a shard, write it to Kinesis, save the position."""
        if shard_id not in self.iterators:
            self.iterators[shard_id] = self._iterator(arn, shard_id)
        try:
            page = self.streams.get_records(ShardIterator=self.iterators[shard_id], Limit=1000)
        except ClientError as exc:
            if error_code(exc) == "ExpiredIteratorException":
                del self.iterators[shard_id]
                return 0
            if error_code(exc) == "TrimmedDataAccessException":
                # After a saved position this means changes were trimmed before we relayed them.
                # From TRIM_HORIZON (no position yet) DynamoDB Local sometimes answers it for a
                # brand-new shard: a new iterator works.
                seq = self.position.shards.get(shard_id, {}).get("seq")
                if seq:
                    log.error("table %s shard %s: changes after %s were trimmed before they were relayed: "
                              "LOST; resuming at TRIM_HORIZON", self.table.name, shard_id, seq)
                    self.position.shards[shard_id] = {"seq": None, "done": False}
                else:
                    log.warning("table %s shard %s: TrimmedDataAccessException at TRIM_HORIZON; retrying",
                                self.table.name, shard_id)
                del self.iterators[shard_id]
                return 0
            raise
        records = page.get("Records", [])
        if records:
            self._put(arn, records)
        state = self.position.shards.setdefault(shard_id, {"seq": None, "done": False})
        if records:
            state["seq"] = records[-1]["dynamodb"]["SequenceNumber"]
        next_iterator = page.get("NextShardIterator")
        if next_iterator:
            self.iterators[shard_id] = next_iterator
        else:
            state["done"] = True
            self.iterators.pop(shard_id, None)
        if records or not next_iterator:
            self.position.save()
        return len(records)

    def _put(self, arn: str, changes: list[dict]) -> None:
        precision = self.pipeline.creation_time_precision
        stamps = creation_stamps(len(changes), now_ns=time.time_ns(), after_ns=self.last_stamp_ns, precision=precision)
        self.last_stamp_ns = stamps[-1]
        encoded = [
            to_kinesis_record(
                c, table=self.table.name, region=self.pipeline.region, stream_arn=arn,
                precision=precision, now_ns=stamp,
            )
            for c, stamp in zip(changes, stamps)
        ]
        for request in _rounds(encoded):
            self._put_all(request)
        self.relayed += len(changes)

    def _put_all(self, entries: list[tuple[bytes, str]]) -> None:
        """PutRecords with retries of the failed entries only (one entry per item per call)."""
        delay = 0.05
        pending = entries
        while pending:
            response = self.kinesis.put_records(
                StreamName=self.stream_name,
                Records=[{"Data": data, "PartitionKey": key} for data, key in pending],
            )
            if not response.get("FailedRecordCount"):
                return
            failed = [entry for entry, result in zip(pending, response["Records"]) if "ErrorCode" in result]
            log.warning("table %s: %d of %d records not accepted (%s); retrying in %.2fs", self.table.name,
                        len(failed), len(pending), response["Records"][0].get("ErrorCode"), delay)
            pending = failed
            if self.stop.wait(delay):
                raise StackError("relay stopping with a batch not fully written; it will be repeated")
            delay = min(delay * 2, 2.0)


def _rounds(entries: list[tuple[bytes, str]]) -> list[list[tuple[bytes, str]]]:
    """Split into PutRecords calls that hold at most one change per item, in order, within limits.

    The n-th change of an item goes to a later call than its (n-1)-th, so retrying a failed
    entry can never overtake an earlier change of the same item.
    """
    calls: list[list[tuple[bytes, str]]] = []
    sizes: list[int] = []
    last_call_of: dict[str, int] = {}
    for data, key in entries:
        index = last_call_of.get(key, -1) + 1
        size = len(data) + len(key)
        while index < len(calls) and (len(calls[index]) >= _MAX_PUT_RECORDS or sizes[index] + size > _MAX_PUT_BYTES):
            index += 1
        if index == len(calls):
            calls.append([])
            sizes.append(0)
        calls[index].append((data, key))
        sizes[index] += size
        last_call_of[key] = index
    return calls



# -------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", help="state folder (default: CDC_STATE_DIR or .state)")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(threadName)s %(message)s")
    env = dict(os.environ, **({"CDC_STATE_DIR": args.state_dir} if args.state_dir else {}))
    stack = StackConfig.from_env(env)
    pipeline = load_pipeline()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    failures: list[BaseException] = []
    relays = [Relay(table, pipeline, stack, stop) for table in pipeline.source_tables]

    def guarded(relay: Relay) -> None:
        try:
            relay.run()
        except BaseException as exc:  # noqa: BLE001 - one table failing stops the process loudly
            if not stop.is_set():
                log.exception("relay of table %s failed", relay.table.name)
                failures.append(exc)
            stop.set()

    threads = [threading.Thread(target=guarded, args=(r,), name=r.table.name, daemon=True) for r in relays]
    for thread in threads:
        thread.start()
    heartbeat = stack.relay_dir / "heartbeat"
    log.info("relaying %s", ", ".join(f"{r.table.name} -> {r.stream_name}" for r in relays))
    last_report = time.monotonic()
    heartbeat.touch()
    while not stop.wait(1.0):
        heartbeat.touch()
        if time.monotonic() - last_report >= 30:
            log.info("relayed so far: %s", ", ".join(f"{r.table.name}={r.relayed}" for r in relays))
            last_report = time.monotonic()
    for thread in threads:
        thread.join(timeout=30)
    heartbeat.unlink(missing_ok=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
