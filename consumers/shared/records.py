"""DynamoDB change records as they arrive through Kinesis, and DynamoDB JSON <-> Python values.

Decoding (``decode_image``, ``LazyImage``) maps DynamoDB JSON losslessly:

====== ==========================================================================
``S``  ``str``
``N``  ``int`` when the value is integral (``"5"``, ``"-0"``, ``"1.0"``, ``"1E+2"``),
       else ``decimal.Decimal`` (``"1.50"`` stays ``Decimal("1.50")``); never ``float``
``B``  ``bytes`` (base64 text in the JSON stream; ``bytes`` accepted as well)
``BOOL`` ``bool``; ``NULL`` ``None`` (the only valid form is ``{"NULL": true}``)
``SS``/``NS``/``BS`` ``set`` of the element type (DynamoDB forbids empty sets: rejected)
``L``  ``list``; ``M`` ``dict`` -- nested to any depth
====== ==========================================================================

``encode_image`` is the inverse: ``str``->S, ``bool``->BOOL, ``None``->NULL, ``int``->N
(``str(int)``), finite ``Decimal``->N (``str(d)``, exponent kept, so ``Decimal("1.50")``
round-trips; integral Decimals decode back as ``int``), ``bytes``/``bytearray``/``memoryview``
->B, ``Mapping``->M (``str`` keys only), ``list``/``tuple``->L, ``set``/``frozenset``-> SS, NS
or BS by element type (all ``str``, all ``int``/``Decimal``, or all bytes; elements sorted so
the output is deterministic; empty or mixed sets are rejected). ``float`` is rejected (inexact:
use ``int`` or ``Decimal``), as is every other type. ``binary=BinaryFormat.BASE64`` (default)
writes B as base64 text as in the JSON stream; ``BinaryFormat.RAW`` keeps ``bytes``, which is
what a boto3 *client* wants (it base64-encodes on the wire itself).

``ChangeRecord`` is one change built from one Kinesis record. The hot path is::

    raw = parse_payload(data, sequence_number=seq)          # orjson, once
    if compiled_filter.matches(raw):                        # filters work on the raw dict
        record = ChangeRecord.from_parsed(raw, data, sequence_number=seq, partition_key=pk)

(``ChangeRecord.from_kinesis`` does both steps.) Images are ``LazyImage`` mappings that decode
an attribute on first access and cache it; malformed DynamoDB JSON inside an image therefore
raises ``InvalidChangeRecord`` (naming the attribute path) when that attribute is first read,
or at once with ``ChangeRecord.validate()``. Keys, the version attribute and the envelope are
checked when the record is built.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, NamedTuple

import orjson

from consumers.shared.errors import DynamoJsonError, InvalidChangeRecord

__all__ = [
    "BinaryFormat",
    "ChangeRecord",
    "EventName",
    "LazyImage",
    "TOMBSTONE_ATTRIBUTE",
    "TOMBSTONE_TTL_ATTRIBUTE",
    "decode_image",
    "decode_value",
    "encode_image",
    "encode_value",
    "normalise_creation_time",
    "parse_payload",
]

#: Attribute that marks an item written by the DynamoDB sink as a logical delete (a tombstone).
#: Its value is ``{"BOOL": true}``; its presence alone makes the item a tombstone.
TOMBSTONE_ATTRIBUTE = "_cdc_tombstone"
#: Attribute holding a tombstone's expiry (epoch seconds); enable table TTL on it.
TOMBSTONE_TTL_ATTRIBUTE = "_cdc_expires_at"

# ApproximateCreationDateTime magnitude bands (see normalise_creation_time).
_SECONDS_BELOW = 100_000_000_000  # 1e11 s is year 5138; 1e11 ms is 1973
_MILLIS_BELOW = 100_000_000_000_000  # 1e14 ms is year 5138; 1e14 us is 1973
_MICROS_BELOW = 100_000_000_000_000_000  # 1e17 us is year 5138

_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_MAX_ADJUSTED_EXPONENT = 125  # DynamoDB numbers: magnitude 1E-130 .. 9.9999...E+125
_MIN_ADJUSTED_EXPONENT = -130


class EventName(str, Enum):
    """The kind of item change."""

    INSERT = "INSERT"
    MODIFY = "MODIFY"
    REMOVE = "REMOVE"


_EVENT_NAMES = {member.value: member for member in EventName}


class BinaryFormat(Enum):
    """How ``encode_image`` writes B / BS values."""

    BASE64 = "base64"  # base64 text, as in the DynamoDB JSON of the Kinesis stream
    RAW = "raw"  # bytes, as boto3's low-level client expects


# ---------------------------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------------------------


class _DecodeError(Exception):
    """Internal: carries the path segments (innermost first) while unwinding."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.segments: list[str] = []

    def path(self, head: str = "") -> str:
        parts = [head] if head else []
        for segment in reversed(self.segments):
            parts.append(segment if segment.startswith("[") or not parts else "." + segment)
        return "".join(parts)


def _number(text: Any) -> int | Decimal:
    if type(text) is not str:
        raise _DecodeError(f"N value must be a string, got {type(text).__name__}")
    if text.isascii():
        try:
            if text.isdigit() or (text[:1] == "-" and text[1:].isdigit()):
                return int(text)
        except ValueError:  # more digits than int() converts
            raise _DecodeError(f"N value has too many digits ({len(text)})") from None
    if _NUMBER_RE.fullmatch(text) is None:
        raise _DecodeError(f"N value {text[:40]!r} is not a number")
    number = Decimal(text)
    if number and not _MIN_ADJUSTED_EXPONENT <= number.adjusted() <= _MAX_ADJUSTED_EXPONENT:
        raise _DecodeError(f"N value {text[:40]!r} is outside DynamoDB's number range")
    if number == number.to_integral_value():
        return int(number)
    return number


def _binary(value: Any) -> bytes:
    if type(value) is str:
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _DecodeError("B value is not valid base64") from None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise _DecodeError(f"B value must be base64 text or bytes, got {type(value).__name__}")


def _set_items(tag: str, items: Any) -> list:
    if type(items) is not list:
        raise _DecodeError(f"{tag} value must be a list, got {type(items).__name__}")
    if not items:
        raise _DecodeError(f"{tag} value is an empty set (DynamoDB sets cannot be empty)")
    return items


def _decode(value: Any) -> Any:
    if type(value) is not dict or len(value) != 1:
        if type(value) is dict:
            raise _DecodeError(f"expected exactly one type key, got {sorted(value)!r}")
        raise _DecodeError(f"expected a DynamoDB JSON object, got {type(value).__name__}")
    ((tag, inner),) = value.items()
    if tag == "S":
        if type(inner) is str:
            return inner
        raise _DecodeError(f"S value must be a string, got {type(inner).__name__}")
    if tag == "N":
        return _number(inner)
    if tag == "M":
        if type(inner) is not dict:
            raise _DecodeError(f"M value must be an object, got {type(inner).__name__}")
        out = {}
        for key, item in inner.items():
            try:
                out[key] = _decode(item)
            except _DecodeError as exc:
                exc.segments.append(key)
                raise
        return out
    if tag == "L":
        if type(inner) is not list:
            raise _DecodeError(f"L value must be a list, got {type(inner).__name__}")
        out_list = []
        for index, item in enumerate(inner):
            try:
                out_list.append(_decode(item))
            except _DecodeError as exc:
                exc.segments.append(f"[{index}]")
                raise
        return out_list
    if tag == "BOOL":
        if type(inner) is bool:
            return inner
        raise _DecodeError(f"BOOL value must be true or false, got {inner!r}")
    if tag == "NULL":
        if inner is True:
            return None
        raise _DecodeError(f"NULL value must be true, got {inner!r}")
    if tag == "SS":
        items = _set_items(tag, inner)
        for index, item in enumerate(items):
            if type(item) is not str:
                exc = _DecodeError(f"SS element must be a string, got {type(item).__name__}")
                exc.segments.append(f"[{index}]")
                raise exc
        return set(items)
    if tag == "NS" or tag == "BS":
        convert = _number if tag == "NS" else _binary
        result = set()
        for index, item in enumerate(_set_items(tag, inner)):
            try:
                result.add(convert(item))
            except _DecodeError as exc:
                exc.segments.append(f"[{index}]")
                raise
        return result
    if tag == "B":
        return _binary(inner)
    raise _DecodeError(f"unknown DynamoDB type {tag!r}")


def decode_value(value: Any, *, path: str = "") -> Any:
    """Decode one DynamoDB JSON attribute value (``{"S": "x"}``) to a Python value.

    Raises ``DynamoJsonError`` naming the path (prefixed with ``path``) of the bad value.
    """
    try:
        return _decode(value)
    except _DecodeError as exc:
        raise DynamoJsonError(exc.path(path), exc.reason) from exc


def decode_image(image: Mapping[str, Any]) -> dict[str, Any]:
    """Decode a DynamoDB JSON map (a NewImage, OldImage or Keys) to a dict of Python values."""
    if not isinstance(image, Mapping):
        raise DynamoJsonError("", f"an image must be an object, got {type(image).__name__}")
    out = {}
    for name, value in image.items():
        try:
            out[name] = _decode(value)
        except _DecodeError as exc:
            raise DynamoJsonError(exc.path(name), exc.reason) from exc
    return out


# ---------------------------------------------------------------------------------------------
# encoding
# ---------------------------------------------------------------------------------------------


def _decimal_text(number: Decimal) -> str:
    if not number.is_finite():
        raise _DecodeError(f"Decimal {number} is not finite")
    if number and not _MIN_ADJUSTED_EXPONENT <= number.adjusted() <= _MAX_ADJUSTED_EXPONENT:
        raise _DecodeError(f"Decimal {number} is outside DynamoDB's number range")
    return str(number)


def _encode_set(values: set | frozenset, raw_binary: bool) -> dict:
    if not values:
        raise _DecodeError("empty sets cannot be stored in DynamoDB")
    kinds = {type(item) for item in values}
    if kinds == {str}:
        return {"SS": sorted(values)}
    if kinds <= {int, Decimal}:
        return {"NS": [str(v) if type(v) is int else _decimal_text(v) for v in sorted(values)]}
    if kinds <= {bytes, bytearray, memoryview}:
        blobs = sorted(bytes(v) for v in values)
        if raw_binary:
            return {"BS": blobs}
        return {"BS": [base64.b64encode(b).decode("ascii") for b in blobs]}
    names = sorted(kind.__name__ for kind in kinds)
    raise _DecodeError(f"a set must hold only str, only numbers or only bytes, got {names}")


def _encode(value: Any, raw_binary: bool) -> dict:
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is bool:
        return {"BOOL": value}
    if kind is int:
        return {"N": str(value)}
    if value is None:
        return {"NULL": True}
    if kind is Decimal:
        return {"N": _decimal_text(value)}
    if kind is float:
        raise _DecodeError("float is not supported (inexact): use int or decimal.Decimal")
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _DecodeError(f"map keys must be str, got {type(key).__name__} {key!r}")
            try:
                out[key] = _encode(item, raw_binary)
            except _DecodeError as exc:
                exc.segments.append(key)
                raise
        return {"M": out}
    if kind is list or kind is tuple:
        items = []
        for index, item in enumerate(value):
            try:
                items.append(_encode(item, raw_binary))
            except _DecodeError as exc:
                exc.segments.append(f"[{index}]")
                raise
        return {"L": items}
    if kind is set or kind is frozenset:
        return _encode_set(value, raw_binary)
    if isinstance(value, (bytes, bytearray, memoryview)):
        blob = bytes(value)
        return {"B": blob if raw_binary else base64.b64encode(blob).decode("ascii")}
    if isinstance(value, int) and not isinstance(value, bool):  # IntEnum and friends
        return {"N": str(int(value))}
    raise _DecodeError(f"unsupported type {kind.__name__}")


def encode_value(
    value: Any, *, binary: BinaryFormat = BinaryFormat.BASE64, path: str = ""
) -> dict[str, Any]:
    """Encode one Python value as a DynamoDB JSON attribute value (``"x"`` -> ``{"S": "x"}``)."""
    try:
        return _encode(value, binary is BinaryFormat.RAW)
    except _DecodeError as exc:
        raise DynamoJsonError(exc.path(path), exc.reason) from exc


def encode_image(
    item: Mapping[str, Any], *, binary: BinaryFormat = BinaryFormat.BASE64
) -> dict[str, dict[str, Any]]:
    """Encode a mapping of Python values as a DynamoDB JSON map (inverse of ``decode_image``)."""
    if not isinstance(item, Mapping):
        raise DynamoJsonError("", f"an item must be a mapping, got {type(item).__name__}")
    raw_binary = binary is BinaryFormat.RAW
    out = {}
    for name, value in item.items():
        if type(name) is not str:
            raise DynamoJsonError(repr(name), "attribute names must be str")
        try:
            out[name] = _encode(value, raw_binary)
        except _DecodeError as exc:
            raise DynamoJsonError(exc.path(name), exc.reason) from exc
    return out


# ---------------------------------------------------------------------------------------------
# lazy images
# ---------------------------------------------------------------------------------------------


class LazyImage(Mapping[str, Any]):
    """A read-only mapping over a raw DynamoDB JSON image that decodes each attribute on first
    access and caches it. Iteration and ``len``/``in`` never decode. Treat the returned values
    (dicts, lists, sets) as read-only: they are cached and shared.

    A malformed attribute raises ``InvalidChangeRecord`` (field ``dynamodb.<Image>.<path>``).
    """

    __slots__ = ("_raw", "_cache", "_field", "_sequence_number")

    def __init__(
        self,
        raw: Mapping[str, Any],
        field: str = "image",
        sequence_number: str | None = None,
    ) -> None:
        self._raw = raw
        self._cache: dict[str, Any] = {}
        self._field = field
        self._sequence_number = sequence_number

    @property
    def raw(self) -> Mapping[str, Any]:
        """The image exactly as in the payload (DynamoDB JSON)."""
        return self._raw

    def _fail(self, name: str, exc: _DecodeError) -> InvalidChangeRecord:
        cause = DynamoJsonError(exc.path(name), exc.reason)
        error = InvalidChangeRecord(
            f"{self._field}.{cause.path}", exc.reason, sequence_number=self._sequence_number
        )
        error.__cause__ = cause
        return error

    def __getitem__(self, name: str) -> Any:
        cache = self._cache
        if name in cache:
            return cache[name]
        raw_value = self._raw[name]
        try:
            value = cache[name] = _decode(raw_value)
        except _DecodeError as exc:
            raise self._fail(name, exc) from exc
        return value

    def get(self, name: str, default: Any = None) -> Any:
        cache = self._cache
        if name in cache:
            return cache[name]
        raw_value = self._raw.get(name, _ABSENT)
        if raw_value is _ABSENT:
            return default
        try:
            value = cache[name] = _decode(raw_value)
        except _DecodeError as exc:
            raise self._fail(name, exc) from exc
        return value

    def __contains__(self, name: object) -> bool:
        return name in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def to_dict(self) -> dict[str, Any]:
        """Decode every attribute (cached) and return a new plain dict."""
        return {name: self[name] for name in self._raw}

    def __repr__(self) -> str:
        return f"LazyImage({self._field}, {len(self._raw)} attributes)"


_ABSENT = object()


# ---------------------------------------------------------------------------------------------
# change records
# ---------------------------------------------------------------------------------------------


def parse_payload(data: bytes | bytearray | memoryview | str, *, sequence_number: str | None = None) -> dict:
    """Parse a Kinesis record's payload (orjson) and check it is a JSON object.

    Raises ``InvalidChangeRecord`` (field ``<payload>``) when it is not JSON or not an object.
    """
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidChangeRecord(
            "<payload>", f"not JSON ({exc})", sequence_number=sequence_number
        ) from exc
    if type(raw) is not dict:
        raise InvalidChangeRecord(
            "<payload>",
            f"not a JSON object (got {type(raw).__name__})",
            sequence_number=sequence_number,
        )
    return raw


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
        if value <= 0:
            raise ValueError(f"must be positive, got {value}")
        if value < _SECONDS_BELOW:
            return value * 1_000_000
        if value < _MILLIS_BELOW:
            return value * 1_000
        if value < _MICROS_BELOW:
            return value
        raise ValueError(f"too large for an epoch in s, ms or us: {value}")
    if kind is float:
        if not value > 0 or value != value or value == float("inf"):
            raise ValueError(f"must be a positive finite number, got {value}")
        if value < _SECONDS_BELOW:
            return round(value * 1_000_000)
        if value < _MILLIS_BELOW:
            return round(value * 1_000)
        if value < _MICROS_BELOW:
            return round(value)
        raise ValueError(f"too large for an epoch in s, ms or us: {value}")
    raise ValueError(f"must be a number, got {type(value).__name__}")


def _integral_version(raw_value: Any) -> int:
    """``{"N": "8"}`` -> 8; ValueError for anything but a non-negative integral N."""
    if type(raw_value) is not dict or len(raw_value) != 1 or "N" not in raw_value:
        raise ValueError(f"must be an N attribute, got {raw_value!r:.60}")
    text = raw_value["N"]
    if type(text) is str and text.isascii() and text.isdigit():
        return int(text)
    try:
        number = _number(text)
    except _DecodeError as exc:
        raise ValueError(exc.reason) from None
    if type(number) is not int:
        raise ValueError(f"must be an integral N, got {text!r}")
    if number < 0:
        raise ValueError(f"must not be negative, got {number}")
    return number


_EMPTY: dict = {}
_tuple_new = tuple.__new__


def _invalid(sequence_number: str | None, field_name: str, reason: str) -> InvalidChangeRecord:
    return InvalidChangeRecord(field_name, reason, sequence_number=sequence_number)


def _table_from_arn(arn: Any) -> str | None:
    # arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>
    if type(arn) is str and ":table/" in arn:
        name = arn.split(":table/", 1)[1].split("/", 1)[0]
        return name or None
    return None


class _ChangeRecordFields(NamedTuple):
    table: str
    event_name: EventName
    keys: dict[str, Any]
    new_image: LazyImage | None
    old_image: LazyImage | None
    created_at_us: int
    version: int
    sequence_number: str | None
    partition_key: str | None
    arrival_time: datetime | None
    raw_payload: bytes
    raw: dict[str, Any]


class ChangeRecord(_ChangeRecordFields):
    """One item change, built from one Kinesis record by ``from_kinesis`` / ``from_parsed``.

    Immutable (a typed named tuple rather than a frozen dataclass: building one is ~10x
    cheaper, which matters on the hot path; do not rely on it being a tuple).

    ``version`` orders changes of one item: the integral N attribute named by
    ``version_attribute`` in NewImage (OldImage for REMOVE); when the image has no such
    attribute, ``created_at_us``. Give every item of a table the attribute, or none: mixing the
    two scales makes timestamp versions win. ``keys`` are decoded; ``new_image``/``old_image``
    are ``LazyImage``; ``raw`` is the parsed payload and ``raw_payload`` its bytes, for
    dead-letter reports.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return (
            f"ChangeRecord(table={self.table!r}, event_name={self.event_name.value}, "
            f"keys={self.keys!r}, version={self.version}, created_at_us={self.created_at_us}, "
            f"sequence_number={self.sequence_number!r})"
        )

    @classmethod
    def from_kinesis(
        cls,
        data: bytes,
        *,
        sequence_number: str | None,
        partition_key: str | None,
        arrival_time: datetime | None = None,
        version_attribute: str = "Version",
    ) -> ChangeRecord:
        """Parse and validate one Kinesis record's payload. Raises ``InvalidChangeRecord``."""
        raw = parse_payload(data, sequence_number=sequence_number)
        return cls.from_parsed(
            raw,
            data,
            sequence_number=sequence_number,
            partition_key=partition_key,
            arrival_time=arrival_time,
            version_attribute=version_attribute,
        )

    @classmethod
    def from_parsed(
        cls,
        raw: dict[str, Any],
        data: bytes,
        *,
        sequence_number: str | None,
        partition_key: str | None,
        arrival_time: datetime | None = None,
        version_attribute: str = "Version",
    ) -> ChangeRecord:
        """Build from a payload already parsed by ``parse_payload`` (``data`` is kept as is).

        Raises ``InvalidChangeRecord`` naming the field and the reason.
        """
        seq = sequence_number
        if type(raw) is not dict:
            raise _invalid(seq, "<payload>", f"not a JSON object (got {type(raw).__name__})")
        name = raw.get("eventName")
        event_name = _EVENT_NAMES.get(name) if type(name) is str else None
        if event_name is None:
            reason = "missing" if name is None else f"unknown event name {name!r:.40}"
            raise _invalid(seq, "eventName", reason)
        table = raw.get("tableName")
        if type(table) is not str or not table:
            table = _table_from_arn(raw.get("eventSourceARN"))
            if table is None:
                raise _invalid(seq, "tableName", "missing (and no eventSourceARN names a table)")
        body = raw.get("dynamodb")
        if type(body) is not dict:
            raise _invalid(seq, "dynamodb", "missing" if body is None else "not an object")
        raw_keys = body.get("Keys")
        if type(raw_keys) is not dict or not raw_keys:
            reason = "missing" if raw_keys is None else "not a non-empty object"
            raise _invalid(seq, "dynamodb.Keys", reason)
        keys = {}
        for key_name, key_value in raw_keys.items():
            try:
                keys[key_name] = _decode(key_value)
            except _DecodeError as exc:
                raise _invalid(seq, f"dynamodb.Keys.{exc.path(key_name)}", exc.reason) from exc
        stamp = body.get("ApproximateCreationDateTime")
        if type(stamp) is int and _MILLIS_BELOW <= stamp < _MICROS_BELOW:
            created_at_us = stamp  # the common case: microsecond precision
        else:
            try:
                created_at_us = normalise_creation_time(stamp)
            except ValueError as exc:
                reason = "missing" if stamp is None else str(exc)
                raise _invalid(seq, "dynamodb.ApproximateCreationDateTime", reason) from exc
        raw_new = body.get("NewImage")
        raw_old = body.get("OldImage")
        if raw_new is None:
            if event_name is not EventName.REMOVE:
                raise _invalid(seq, "dynamodb.NewImage", f"missing on {event_name.value}")
            new_image = None
        elif type(raw_new) is not dict:
            raise _invalid(seq, "dynamodb.NewImage", "not an object")
        else:
            new_image = LazyImage(raw_new, "dynamodb.NewImage", seq)
        if raw_old is None:
            old_image = None
        elif type(raw_old) is not dict:
            raise _invalid(seq, "dynamodb.OldImage", "not an object")
        else:
            old_image = LazyImage(raw_old, "dynamodb.OldImage", seq)
        version_value = (raw_new if new_image is not None else raw_old or _EMPTY).get(version_attribute)
        if version_value is None:
            version = created_at_us
        else:
            text = version_value.get("N") if type(version_value) is dict else None
            if type(text) is str and text.isascii() and text.isdigit() and len(version_value) == 1:
                version = int(text)
            else:
                try:
                    version = _integral_version(version_value)
                except ValueError as exc:
                    image_name = "NewImage" if new_image is not None else "OldImage"
                    field_name = f"dynamodb.{image_name}.{version_attribute}"
                    raise _invalid(seq, field_name, f"bad version: {exc}") from exc
        if type(data) is not bytes:
            data = bytes(data.encode() if type(data) is str else data)
        return _tuple_new(
            cls,
            (
                table,
                event_name,
                keys,
                new_image,
                old_image,
                created_at_us,
                version,
                seq,
                partition_key,
                arrival_time,
                data,
                raw,
            ),
        )

    @property
    def is_tombstone(self) -> bool:
        """True when NewImage carries ``TOMBSTONE_ATTRIBUTE``: the item was replaced by a
        tombstone written by the DynamoDB sink, i.e. it was logically deleted."""
        image = self.new_image
        return image is not None and TOMBSTONE_ATTRIBUTE in image.raw

    @property
    def effective_event(self) -> EventName:
        """``REMOVE`` for a tombstone written over an item (INSERT/MODIFY), else ``event_name``."""
        image = self.new_image
        if image is not None and TOMBSTONE_ATTRIBUTE in image.raw:
            return EventName.REMOVE
        return self.event_name

    @property
    def is_removal(self) -> bool:
        """True for REMOVE and for tombstones: the item is gone after this change."""
        return self.effective_event is EventName.REMOVE

    def validate(self) -> None:
        """Decode every attribute of both images now; raises ``InvalidChangeRecord``."""
        for image in (self.new_image, self.old_image):
            if image is not None:
                image.to_dict()
