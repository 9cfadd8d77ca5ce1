"""DynamoDB JSON <-> Python values, losslessly.

Decoding (``decode_value``, ``decode_image``):

====== ==========================================================================
``S``  ``str``
``N``  ``int`` when the value is integral (``"5"``, ``"-0"``, ``"1.0"``, ``"1E+2"``),
       else ``decimal.Decimal`` (``"1.50"`` stays ``Decimal("1.50")``); never ``float``
``B``  ``bytes`` (base64 text in the JSON stream; ``bytes`` accepted as well)
``BOOL`` ``bool``; ``NULL`` ``None`` (the only valid form is ``{"NULL": true}``)
``SS``/``NS``/``BS`` ``set`` of the element type (DynamoDB forbids empty sets and duplicates: rejected)
``L``  ``list``; ``M`` ``dict`` -- nested to any depth
====== ==========================================================================

``encode_value`` / ``encode_image`` are the inverse: ``str``->S, ``bool``->BOOL, ``None``->NULL,
``int``->N (``str(int)``), finite ``Decimal``->N (``str(d)``, exponent kept, so
``Decimal("1.50")`` round-trips; integral Decimals decode back as ``int``),
``bytes``/``bytearray``/``memoryview``->B, ``Mapping``->M (``str`` keys only), ``list``/``tuple``->L,
``set``/``frozenset``-> SS, NS or BS by element type (all ``str``, all ``int``/``Decimal``, or all
bytes; elements sorted so the output is deterministic; empty or mixed sets are rejected).
``float`` is rejected (inexact: use ``int`` or ``Decimal``), as is every other type.
``binary=BinaryFormat.BASE64`` (default) writes B as base64 text as in the JSON stream;
``BinaryFormat.RAW`` keeps ``bytes``, which is what a boto3 *client* wants (it base64-encodes on
the wire itself).

Every failure, either way, is a ``DynamoJsonError`` naming the attribute path and the reason.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from typing import Any

from consumers.shared.errors import DynamoJsonError

__all__ = [
    "BinaryFormat",
    "decode_image",
    "decode_number",
    "decode_value",
    "encode_image",
    "encode_value",
]

_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_MAX_ADJUSTED_EXPONENT = 125  # DynamoDB numbers: magnitude 1E-130 .. 9.9999...E+125
_MIN_ADJUSTED_EXPONENT = -130


class BinaryFormat(Enum):
    """How ``encode_image`` writes B / BS values."""

    BASE64 = "base64"  # base64 text, as in the DynamoDB JSON of the Kinesis stream
    RAW = "raw"  # bytes, as boto3's low-level client expects


# ---------------------------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------------------------


class _BadValue(Exception):
    """Internal, decoding and encoding: the reason and the path segments (innermost first)
    collected while unwinding; the public functions raise it as ``DynamoJsonError``."""

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
        raise _BadValue(f"N value must be a string, got {type(text).__name__}")
    if text.isascii():
        try:
            if text.isdigit() or (text[:1] == "-" and text[1:].isdigit()):
                return int(text)
        except ValueError:  # more digits than int() converts
            raise _BadValue(f"N value has too many digits ({len(text)})") from None
    if _NUMBER_RE.fullmatch(text) is None:
        raise _BadValue(f"N value {text[:40]!r} is not a number")
    number = Decimal(text)
    if number and not _MIN_ADJUSTED_EXPONENT <= number.adjusted() <= _MAX_ADJUSTED_EXPONENT:
        raise _BadValue(f"N value {text[:40]!r} is outside DynamoDB's number range")
    if number == number.to_integral_value():
        return int(number)
    return number


def _binary(value: Any) -> bytes:
    if type(value) is str:
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _BadValue("B value is not valid base64") from None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise _BadValue(f"B value must be base64 text or bytes, got {type(value).__name__}")


def _set_items(tag: str, items: Any) -> list[Any]:
    if type(items) is not list:
        raise _BadValue(f"{tag} value must be a list, got {type(items).__name__}")
    if not items:
        raise _BadValue(f"{tag} value is an empty set (DynamoDB sets cannot be empty)")
    return items


def _unique(tag: str, items: list[Any], values: set[Any]) -> set[Any]:
    """``values`` (the decoded ``items``), unless two items were one value: DynamoDB refuses a
    set with duplicates, so a record holding one was not written by DynamoDB."""
    if len(values) != len(items):
        raise _BadValue(f"{tag} value holds duplicates ({len(items)} elements, {len(values)} distinct)")
    return values


def _decode(value: Any) -> Any:
    if type(value) is not dict or len(value) != 1:
        if type(value) is dict:
            raise _BadValue(f"expected exactly one type key, got {sorted(value)!r}")
        raise _BadValue(f"expected a DynamoDB JSON object, got {type(value).__name__}")
    ((tag, inner),) = value.items()
    if tag == "S":
        if type(inner) is str:
            return inner
        raise _BadValue(f"S value must be a string, got {type(inner).__name__}")
    if tag == "N":
        return _number(inner)
    if tag == "M":
        if type(inner) is not dict:
            raise _BadValue(f"M value must be an object, got {type(inner).__name__}")
        out = {}
        for key, item in inner.items():
            try:
                out[key] = _decode(item)
            except _BadValue as exc:
                exc.segments.append(key)
                raise
        return out
    if tag == "L":
        if type(inner) is not list:
            raise _BadValue(f"L value must be a list, got {type(inner).__name__}")
        out_list = []
        for index, item in enumerate(inner):
            try:
                out_list.append(_decode(item))
            except _BadValue as exc:
                exc.segments.append(f"[{index}]")
                raise
        return out_list
    if tag == "BOOL":
        if type(inner) is bool:
            return inner
        raise _BadValue(f"BOOL value must be true or false, got {inner!r}")
    if tag == "NULL":
        if inner is True:
            return None
        raise _BadValue(f"NULL value must be true, got {inner!r}")
    if tag == "SS":
        items = _set_items(tag, inner)
        for index, item in enumerate(items):
            if type(item) is not str:
                bad = _BadValue(f"SS element must be a string, got {type(item).__name__}")
                bad.segments.append(f"[{index}]")
                raise bad
        return _unique(tag, items, set(items))
    if tag == "NS" or tag == "BS":
        convert = _number if tag == "NS" else _binary
        items, result = _set_items(tag, inner), set()
        for index, item in enumerate(items):
            try:
                result.add(convert(item))
            except _BadValue as exc:
                exc.segments.append(f"[{index}]")
                raise
        return _unique(tag, items, result)
    if tag == "B":
        return _binary(inner)
    raise _BadValue(f"unknown DynamoDB type {tag!r}")


def decode_value(value: Any, *, path: str = "") -> Any:
    """Decode one DynamoDB JSON attribute value (``{"S": "x"}``) to a Python value.

    Raises ``DynamoJsonError`` naming the path (prefixed with ``path``) of the bad value.
    """
    try:
        return _decode(value)
    except _BadValue as exc:
        raise DynamoJsonError(exc.path(path), exc.reason) from exc


def decode_image(image: Mapping[str, Any]) -> dict[str, Any]:
    """Decode a DynamoDB JSON map (a NewImage, OldImage or Keys) to a dict of Python values."""
    if not isinstance(image, Mapping):
        raise DynamoJsonError("", f"an image must be an object, got {type(image).__name__}")
    out = {}
    for name, value in image.items():
        try:
            out[name] = _decode(value)
        except _BadValue as exc:
            raise DynamoJsonError(exc.path(name), exc.reason) from exc
    return out


# ---------------------------------------------------------------------------------------------
# encoding
# ---------------------------------------------------------------------------------------------


def _decimal_text(number: Decimal) -> str:
    if not number.is_finite():
        raise _BadValue(f"Decimal {number} is not finite")
    if number and not _MIN_ADJUSTED_EXPONENT <= number.adjusted() <= _MAX_ADJUSTED_EXPONENT:
        raise _BadValue(f"Decimal {number} is outside DynamoDB's number range")
    return str(number)


def _encode_set(values: set[Any] | frozenset[Any], raw_binary: bool) -> dict[str, Any]:
    if not values:
        raise _BadValue("empty sets cannot be stored in DynamoDB")
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
    raise _BadValue(f"a set must hold only str, only numbers or only bytes, got {names}")


def _encode(value: Any, raw_binary: bool) -> dict[str, Any]:
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
        raise _BadValue("float is not supported (inexact): use int or decimal.Decimal")
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _BadValue(f"map keys must be str, got {type(key).__name__} {key!r}")
            try:
                out[key] = _encode(item, raw_binary)
            except _BadValue as exc:
                exc.segments.append(key)
                raise
        return {"M": out}
    if kind is list or kind is tuple:
        items = []
        for index, item in enumerate(value):
            try:
                items.append(_encode(item, raw_binary))
            except _BadValue as exc:
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
    raise _BadValue(f"unsupported type {kind.__name__}")


def encode_value(value: Any, *, binary: BinaryFormat = BinaryFormat.BASE64, path: str = "") -> dict[str, Any]:
    """Encode one Python value as a DynamoDB JSON attribute value (``"x"`` -> ``{"S": "x"}``)."""
    try:
        return _encode(value, binary is BinaryFormat.RAW)
    except _BadValue as exc:
        raise DynamoJsonError(exc.path(path), exc.reason) from exc


def encode_image(item: Mapping[str, Any], *, binary: BinaryFormat = BinaryFormat.BASE64) -> dict[str, dict[str, Any]]:
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
        except _BadValue as exc:
            raise DynamoJsonError(exc.path(name), exc.reason) from exc
    return out


def decode_number(text: Any) -> int | Decimal:
    """The value of an N attribute's text (``"8"`` -> 8); ``DynamoJsonError`` when it is not one."""
    try:
        return _number(text)
    except _BadValue as exc:
        raise DynamoJsonError("", exc.reason) from None
