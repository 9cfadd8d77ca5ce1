"""What the relay writes to Kinesis: DynamoDB Streams records in the format of DynamoDB's
Kinesis streaming destination (`tests/fixtures/ddb-kinesis-change-record.json`; the envelope
itself is built by ``consumers.shared.envelope``), their partition keys and creation stamps,
and how a page of them is cut into PutRecords calls. Pure functions, no client."""

from __future__ import annotations

import base64
import hashlib
import uuid

import orjson

from consumers.shared import envelope

__all__ = [
    "MAX_PUT_BYTES",
    "MAX_PUT_RECORDS",
    "creation_stamps",
    "event_id",
    "partition_key",
    "put_rounds",
    "repair_image",
    "to_kinesis_record",
]

_EVENT_ID_NAMESPACE = uuid.UUID("6f1c2a7e-3b7d-4c55-9a0e-6a1f0d2b9c41")
MAX_PUT_RECORDS = 500
MAX_PUT_BYTES = 4_500_000  # PutRecords limit is 5 MiB including partition keys


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
    unit = 1_000 if precision == envelope.MICROSECOND else 1_000_000
    start = max(now_ns, after_ns + unit)
    return [start + index * unit for index in range(count)]


def event_id(stream_arn: str, sequence_number: str) -> str:
    """Deterministic: a change relayed twice (after a crash) carries the same eventID."""
    return str(uuid.uuid5(_EVENT_ID_NAMESPACE, f"{stream_arn}/{sequence_number}"))


def repair_image(image: dict) -> dict:
    """An image with DynamoDB Local's empty maps written as AWS writes them (see ``_repair``)."""
    return {attr: _repair(value) for attr, value in image.items()}


def to_kinesis_record(
    change: dict, *, table: str, region: str, stream_arn: str, precision: str, now_ns: int
) -> tuple[bytes, str]:
    """One DynamoDB Streams record (as boto3 returns it) -> (Kinesis data, partition key)."""
    ddb = change[envelope.BODY]
    keys = ddb[envelope.KEYS]
    new_image, old_image = ddb.get(envelope.NEW_IMAGE), ddb.get(envelope.OLD_IMAGE)
    identity = change.get("userIdentity")  # Streams' casing: PrincipalId, Type
    record = envelope.build(
        change[envelope.EVENT_NAME],
        table,
        keys,
        new_image=None if new_image is None else repair_image(new_image),
        old_image=None if old_image is None else repair_image(old_image),
        created_at=envelope.creation_stamp(now_ns, precision),
        region=region,
        event_id=event_id(stream_arn, ddb[envelope.SEQUENCE_NUMBER]),
        user_identity=envelope.identity(identity.get("PrincipalId"), identity.get("Type")) if identity else None,
        size_bytes=ddb.get(envelope.SIZE_BYTES, 0),
    )
    return envelope.to_bytes(record), partition_key(table, keys)


def put_rounds(entries: list[tuple[bytes, str]]) -> list[list[tuple[bytes, str]]]:
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
        while index < len(calls) and (len(calls[index]) >= MAX_PUT_RECORDS or sizes[index] + size > MAX_PUT_BYTES):
            index += 1
        if index == len(calls):
            calls.append([])
            sizes.append(0)
        calls[index].append((data, key))
        sizes[index] += size
        last_call_of[key] = index
    return calls
