"""The change envelope, in both directions: the JSON document DynamoDB's Kinesis streaming
destination writes for one item change (``tests/fixtures/ddb-kinesis-change-record.json``)::

    {"awsRegion", "eventID", "eventName": INSERT | MODIFY | REMOVE, "userIdentity",
     "recordFormat", "tableName",
     "dynamodb": {"ApproximateCreationDateTime", "Keys", "NewImage", "OldImage", "SizeBytes"},
     "eventSource"}

The format is defined here and only here: its field names, ``build`` (the writers: the relay,
the backfill's synthetic INSERTs, the reconciliation, the benchmarks and the tests) with
``to_bytes``, and the envelope-level reading (``parse_payload``, ``table_name``,
``normalise_creation_time``). ``consumers.shared.records`` builds the typed, validated
``ChangeRecord`` on these names; images and keys stay DynamoDB JSON (``consumers.shared.codec``).
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping
from enum import Enum
from typing import Any

import orjson

from consumers.shared.errors import InvalidChangeRecord

__all__ = [
    "AWS_REGION",
    "BODY",
    "CREATED",
    "EVENT_ID",
    "EVENT_NAME",
    "EVENT_SOURCE",
    "EVENT_SOURCE_ARN",
    "KEYS",
    "MICROSECOND",
    "MILLISECOND",
    "NEW_IMAGE",
    "OLD_IMAGE",
    "RECORD_FORMAT",
    "SEQUENCE_NUMBER",
    "SIZE_BYTES",
    "TABLE_NAME",
    "USER_IDENTITY",
    "EventName",
    "build",
    "creation_stamp",
    "identity",
    "normalise_creation_time",
    "parse_payload",
    "table_name",
    "to_bytes",
]

# --- the field names ---------------------------------------------------------------------------
AWS_REGION = "awsRegion"
EVENT_ID = "eventID"
EVENT_NAME = "eventName"
USER_IDENTITY = "userIdentity"
RECORD_FORMAT = "recordFormat"
TABLE_NAME = "tableName"
BODY = "dynamodb"
EVENT_SOURCE = "eventSource"
#: not written by the destination; Streams-shaped emulators (LocalStack) name the table only here
EVENT_SOURCE_ARN = "eventSourceARN"
#: inside BODY
CREATED = "ApproximateCreationDateTime"
KEYS = "Keys"
NEW_IMAGE = "NewImage"
OLD_IMAGE = "OldImage"
SIZE_BYTES = "SizeBytes"
#: inside a DynamoDB Streams record's BODY (the relay's input); the destination drops it
SEQUENCE_NUMBER = "SequenceNumber"
_PRINCIPAL_ID = "principalId"
_IDENTITY_TYPE = "type"

_RECORD_FORMAT_JSON = "application/json"
_EVENT_SOURCE_DYNAMODB = "aws:dynamodb"

#: the destination's ApproximateCreationDateTimePrecision: the unit of CREATED
MICROSECOND = "MICROSECOND"
MILLISECOND = "MILLISECOND"

# CREATED magnitude bands (see normalise_creation_time).
_SECONDS_BELOW = 100_000_000_000  # 1e11 s is year 5138; 1e11 ms is 1973
_MILLIS_BELOW = 100_000_000_000_000  # 1e14 ms is year 5138; 1e14 us is 1973
_MICROS_BELOW = 100_000_000_000_000_000  # 1e17 us is year 5138


class EventName(str, Enum):
    """The kind of item change."""

    INSERT = "INSERT"
    MODIFY = "MODIFY"
    REMOVE = "REMOVE"


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------


def creation_stamp(epoch_ns: int, precision: str = MICROSECOND) -> int:
    """``epoch_ns`` as the destination writes CREATED: microseconds for ``MICROSECOND``,
    otherwise milliseconds."""
    return epoch_ns // (1_000 if precision == MICROSECOND else 1_000_000)


def identity(principal_id: str | None, kind: str | None) -> dict[str, Any]:
    """A ``userIdentity`` (a TTL deletion's is ``identity("dynamodb.amazonaws.com", "Service")``)."""
    return {_PRINCIPAL_ID: principal_id, _IDENTITY_TYPE: kind}


def build(
    event_name: EventName | str,
    table: str,
    keys: Mapping[str, Any],
    *,
    new_image: Mapping[str, Any] | None = None,
    old_image: Mapping[str, Any] | None = None,
    created_at: int | float | str | None = None,
    region: str = "us-east-1",
    event_id: str | None = None,
    user_identity: Mapping[str, Any] | None = None,
    size_bytes: int = 0,
) -> dict[str, Any]:
    """One change envelope, its fields in the destination's order.

    ``keys`` and the images are DynamoDB JSON, written as given (an absent image is left out:
    NewImage for a REMOVE, OldImage for an INSERT); B values may be bytes (``to_bytes`` writes
    them as base64). ``created_at`` is CREATED as written (see ``creation_stamp``); ``None`` is
    now, in microseconds. ``event_id`` ``None`` is a random UUID. Nothing is checked beyond the
    event name: ``ChangeRecord.from_parsed`` is the judge of what was built.
    """
    name = EventName(event_name).value
    body: dict[str, Any] = {
        CREATED: creation_stamp(time.time_ns()) if created_at is None else created_at,
        KEYS: keys,
    }
    if new_image is not None:
        body[NEW_IMAGE] = new_image
    if old_image is not None:
        body[OLD_IMAGE] = old_image
    body[SIZE_BYTES] = size_bytes
    return {
        AWS_REGION: region,
        EVENT_ID: str(uuid.uuid4()) if event_id is None else event_id,
        EVENT_NAME: name,
        USER_IDENTITY: None if user_identity is None else dict(user_identity),
        RECORD_FORMAT: _RECORD_FORMAT_JSON,
        TABLE_NAME: table,
        BODY: body,
        EVENT_SOURCE: _EVENT_SOURCE_DYNAMODB,
    }


def _bytes_to_base64(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def to_bytes(envelope: Mapping[str, Any]) -> bytes:
    """The envelope as the Kinesis record's data (compact JSON; bytes values as base64)."""
    return orjson.dumps(envelope, default=_bytes_to_base64)


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------


def parse_payload(data: bytes | bytearray | memoryview | str, *, sequence_number: str | None = None) -> dict[str, Any]:
    """Parse a Kinesis record's payload (orjson) and check it is a JSON object.

    Raises ``InvalidChangeRecord`` (field ``<payload>``) when it is not JSON or not an object.
    """
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidChangeRecord("<payload>", f"not JSON ({exc})", sequence_number=sequence_number) from exc
    if type(raw) is not dict:
        raise InvalidChangeRecord(
            "<payload>",
            f"not a JSON object (got {type(raw).__name__})",
            sequence_number=sequence_number,
        )
    return raw


def table_name(raw: Mapping[str, Any]) -> str | None:
    """The table an envelope names: ``tableName``, else the one in ``eventSourceARN``
    (``arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>``); None if neither."""
    table = raw.get(TABLE_NAME)
    if type(table) is str and table:
        return table
    arn = raw.get(EVENT_SOURCE_ARN)
    if type(arn) is str and ":table/" in arn:
        name = arn.split(":table/", 1)[1].split("/", 1)[0]
        return name or None
    return None


def normalise_creation_time(value: Any) -> int:
    """ApproximateCreationDateTime (epoch) -> microseconds, deciding the unit by magnitude.

    AWS writes milliseconds, or microseconds when the destination's precision is MICROSECOND;
    DynamoDB Streams-shaped emulators write (possibly fractional, possibly string) seconds.
    Below 1e11 the value is seconds, below 1e14 milliseconds, below 1e17 microseconds (each
    band's upper edge is year 5138 in its unit and year 1973 in the next finer unit, so every
    real timestamp since 1973 is unambiguous). Numeric strings are accepted. Raises
    ``ValueError`` for anything else, for values <= 0 and for values >= 1e17.
    """
    kind = type(value)
    if kind is str:
        try:
            value = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            raise ValueError(f"not a number: {value[:40]!r}") from None
        kind = type(value)
    if kind is int:
        whole: int = value
        if whole <= 0:
            raise ValueError(f"must be positive, got {whole}")
        if whole < _SECONDS_BELOW:
            return whole * 1_000_000
        if whole < _MILLIS_BELOW:
            return whole * 1_000
        if whole < _MICROS_BELOW:
            return whole
        raise ValueError(f"too large for an epoch in s, ms or us: {whole}")
    if kind is float:
        real: float = value
        if not real > 0 or real != real or real == float("inf"):
            raise ValueError(f"must be a positive finite number, got {real}")
        if real < _SECONDS_BELOW:
            return round(real * 1_000_000)
        if real < _MILLIS_BELOW:
            return round(real * 1_000)
        if real < _MICROS_BELOW:
            return round(real)
        raise ValueError(f"too large for an epoch in s, ms or us: {real}")
    raise ValueError(f"must be a number, got {type(value).__name__}")
