"""DynamoDB change records as they arrive through Kinesis (the record view).

``ChangeRecord`` is one change built from one Kinesis record, typed and checked; the record's
JSON format (the change envelope: field names, building, parsing) is defined in
``consumers.shared.envelope``, and ``from_parsed`` reads it by those names. The hot path is::

    raw = parse_payload(data, sequence_number=seq)          # orjson, once
    if compiled_filter.matches(raw):                        # filters work on the raw dict
        record = ChangeRecord.from_parsed(raw, data, sequence_number=seq, partition_key=pk)

(``ChangeRecord.from_kinesis`` does both steps.) Images are ``LazyImage`` mappings that decode
an attribute on first access (``consumers.shared.codec``) and cache it; malformed DynamoDB JSON
inside an image therefore raises ``InvalidChangeRecord`` (naming the attribute path) when that
attribute is first read, or at once with ``ChangeRecord.validate()``. Keys, the version
attribute and the envelope are checked when the record is built.

The codec's public names (``decode_image``, ``encode_image``, ``BinaryFormat`` ...) and the
envelope's reading ones (``parse_payload``, ``EventName``, ``normalise_creation_time``) stay
importable from here. (About 360 lines: ``from_parsed`` checks the whole envelope in
one function on purpose, it is the hot path.)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from consumers.shared.codec import (
    BinaryFormat,
    decode_image,
    decode_number,
    decode_value,
    encode_image,
    encode_value,
)
from consumers.shared.envelope import (
    _MICROS_BELOW,
    _MILLIS_BELOW,
    BODY,
    CREATED,
    EVENT_NAME,
    EVENT_SOURCE_ARN,
    KEYS,
    NEW_IMAGE,
    OLD_IMAGE,
    TABLE_NAME,
    EventName,
    normalise_creation_time,
    parse_payload,
    table_name,
)
from consumers.shared.errors import DynamoJsonError, InvalidChangeRecord

__all__ = [
    "BinaryFormat",
    "ChangeRecord",
    "EventName",
    "LazyImage",
    "decode_image",
    "decode_value",
    "encode_image",
    "encode_value",
    "normalise_creation_time",
    "parse_payload",
]

_EVENT_NAMES = {member.value: member for member in EventName}


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

    def _fail(self, exc: DynamoJsonError) -> InvalidChangeRecord:
        return InvalidChangeRecord(f"{self._field}.{exc.path}", exc.reason, sequence_number=self._sequence_number)

    def __getitem__(self, name: str) -> Any:
        cache = self._cache
        if name in cache:
            return cache[name]
        raw_value = self._raw[name]
        try:
            value = cache[name] = decode_value(raw_value, path=name)
        except DynamoJsonError as exc:
            raise self._fail(exc) from exc
        return value

    def get(self, name: str, default: Any = None) -> Any:
        cache = self._cache
        if name in cache:
            return cache[name]
        raw_value = self._raw.get(name, _ABSENT)
        if raw_value is _ABSENT:
            return default
        try:
            value = cache[name] = decode_value(raw_value, path=name)
        except DynamoJsonError as exc:
            raise self._fail(exc) from exc
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


def _integral_version(raw_value: Any) -> int:
    """``{"N": "8"}`` -> 8; ValueError for anything but a non-negative integral N."""
    if type(raw_value) is not dict or len(raw_value) != 1 or "N" not in raw_value:
        raise ValueError(f"must be an N attribute, got {raw_value!r:.60}")
    text = raw_value["N"]
    if type(text) is str and text.isascii() and text.isdigit():
        return int(text)
    try:
        number = decode_number(text)
    except DynamoJsonError as exc:
        raise ValueError(exc.reason) from None
    if type(number) is not int:
        raise ValueError(f"must be an integral N, got {text!r}")
    if number < 0:
        raise ValueError(f"must not be negative, got {number}")
    return number


_EMPTY: dict[str, Any] = {}
# the fields InvalidChangeRecord names
_KEYS_FIELD = f"{BODY}.{KEYS}"
_CREATED_FIELD = f"{BODY}.{CREATED}"
_NEW_FIELD = f"{BODY}.{NEW_IMAGE}"
_OLD_FIELD = f"{BODY}.{OLD_IMAGE}"
_tuple_new = tuple.__new__


def _invalid(sequence_number: str | None, field_name: str, reason: str) -> InvalidChangeRecord:
    return InvalidChangeRecord(field_name, reason, sequence_number=sequence_number)


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
        name = raw.get(EVENT_NAME)
        event_name = _EVENT_NAMES.get(name) if type(name) is str else None
        if event_name is None:
            reason = "missing" if name is None else f"unknown event name {name!r:.40}"
            raise _invalid(seq, EVENT_NAME, reason)
        table = raw.get(TABLE_NAME)
        if type(table) is not str or not table:
            table = table_name(raw)
            if table is None:
                raise _invalid(seq, TABLE_NAME, f"missing (and no {EVENT_SOURCE_ARN} names a table)")
        body = raw.get(BODY)
        if type(body) is not dict:
            raise _invalid(seq, BODY, "missing" if body is None else "not an object")
        raw_keys = body.get(KEYS)
        if type(raw_keys) is not dict or not raw_keys:
            reason = "missing" if raw_keys is None else "not a non-empty object"
            raise _invalid(seq, _KEYS_FIELD, reason)
        keys = {}
        for key_name, key_value in raw_keys.items():
            try:
                keys[key_name] = decode_value(key_value, path=key_name)
            except DynamoJsonError as exc:
                raise _invalid(seq, f"{_KEYS_FIELD}.{exc.path}", exc.reason) from exc
        stamp = body.get(CREATED)
        if type(stamp) is int and _MILLIS_BELOW <= stamp < _MICROS_BELOW:
            created_at_us = stamp  # the common case: microsecond precision
        else:
            try:
                created_at_us = normalise_creation_time(stamp)
            except ValueError as exc:
                reason = "missing" if stamp is None else str(exc)
                raise _invalid(seq, _CREATED_FIELD, reason) from exc
        raw_new = body.get(NEW_IMAGE)
        raw_old = body.get(OLD_IMAGE)
        if raw_new is None:
            if event_name is not EventName.REMOVE:
                raise _invalid(seq, _NEW_FIELD, f"missing on {event_name.value}")
            new_image = None
        elif type(raw_new) is not dict:
            raise _invalid(seq, _NEW_FIELD, "not an object")
        else:
            new_image = LazyImage(raw_new, _NEW_FIELD, seq)
        if raw_old is None:
            old_image = None
        elif type(raw_old) is not dict:
            raise _invalid(seq, _OLD_FIELD, "not an object")
        else:
            old_image = LazyImage(raw_old, _OLD_FIELD, seq)
        version_value = (raw_new if raw_new is not None else raw_old or _EMPTY).get(version_attribute)
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
                    image_field = _NEW_FIELD if new_image is not None else _OLD_FIELD
                    field_name = f"{image_field}.{version_attribute}"
                    raise _invalid(seq, field_name, f"bad version: {exc}") from exc
        if not isinstance(data, bytes):
            data = data.encode() if isinstance(data, str) else bytes(data)
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
    def after(self) -> LazyImage:
        """The item after an INSERT or MODIFY: its NewImage (checked present when the record
        was built). ``ValueError`` for a REMOVE, which leaves no item."""
        image = self.new_image
        if image is None:
            raise ValueError(f"a {self.event_name.value} change has no NewImage")
        return image

    @property
    def is_removal(self) -> bool:
        """True for REMOVE: the item is gone after this change."""
        return self.event_name is EventName.REMOVE

    def validate(self) -> None:
        """Decode every attribute of both images now; raises ``InvalidChangeRecord``."""
        for image in (self.new_image, self.old_image):
            if image is not None:
                image.to_dict()
