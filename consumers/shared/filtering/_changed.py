"""``changed_attributes``: a MODIFY passes only when a named attribute differs (raw DynamoDB JSON)."""

from __future__ import annotations

import base64
from decimal import Decimal, InvalidOperation
from typing import Any

from consumers.shared.envelope import BODY, EVENT_NAME, NEW_IMAGE, OLD_IMAGE
from consumers.shared.filtering._common import Matcher

__all__ = ["changed_test"]


def _number_value(text: Any) -> Any:
    try:
        return Decimal(text)
    except (InvalidOperation, TypeError, ValueError):
        return ("unparsed", text)


def _blob(value: Any) -> Any:
    if type(value) is str:
        try:
            return base64.b64decode(value)
        except ValueError:
            return value
    return bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else value


def _same_value(a: Any, b: Any) -> bool:
    """Raw DynamoDB JSON equality: numbers numerically, sets order-insensitively."""
    if a == b:
        return True
    if type(a) is not dict or type(b) is not dict or len(a) != 1 or len(b) != 1:
        return False
    ((tag, x),) = a.items()
    ((other_tag, y),) = b.items()
    if tag != other_tag:
        return False
    try:
        if tag == "N":
            return bool(_number_value(x) == _number_value(y))
        if tag == "SS":
            return set(x) == set(y)
        if tag == "NS":
            return {_number_value(v) for v in x} == {_number_value(v) for v in y}
        if tag == "BS":
            return {_blob(v) for v in x} == {_blob(v) for v in y}
        if tag == "B":
            return bool(_blob(x) == _blob(y))
        if tag == "L":
            return (
                type(x) is list
                and type(y) is list
                and len(x) == len(y)
                and all(_same_value(p, q) for p, q in zip(x, y, strict=True))
            )
        if tag == "M":
            return (
                type(x) is dict and type(y) is dict and x.keys() == y.keys() and all(_same_value(x[k], y[k]) for k in x)
            )
    except TypeError:  # malformed (unhashable set members...): treat as changed
        return False
    return False


def changed_test(names: tuple[str, ...]) -> Matcher:
    def changed(record: Any) -> bool:
        if type(record) is not dict or record.get(EVENT_NAME) != "MODIFY":
            return True
        body = record.get(BODY)
        if type(body) is not dict:
            return True
        old = body.get(OLD_IMAGE)
        new = body.get(NEW_IMAGE)
        if type(old) is not dict or type(new) is not dict:
            return True
        for name in names:
            if not _same_value(old.get(name), new.get(name)):
                return True
        return False

    return changed
