"""Names shared by the filter modules: sentinels, the pattern error, JSON type names."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "COMPLEX",
    "EMPTY",
    "MISSING",
    "OR",
    "RESERVED_IN_OR",
    "InexactNumber",
    "Matcher",
    "Path",
    "PatternError",
    "is_number",
    "json_type",
]

EMPTY: dict[str, Any] = {}  # stands in for an absent object on a lookup chain
MISSING = object()  # an absent field
COMPLEX = object()  # an index path runs through an array: evaluate every pattern of that path
OR = "$or"
_OPERATORS = frozenset(
    {
        "prefix",
        "suffix",
        "equals-ignore-case",
        "wildcard",
        "anything-but",
        "numeric",
        "exists",
        "cidr",
    }
)
# names that cannot be field names inside a $or branch (event-ruler's reserved words)
RESERVED_IN_OR = _OPERATORS | {"exactly", "=", "<", "<=", ">", ">="}
_NUMBER_TYPES = (int, float)

Matcher = Callable[[Any], bool]
#: a field path inside a pattern or a record: the keys from the top
Path = tuple[str, ...]


class PatternError(Exception):
    """A bad pattern: ``path`` inside the pattern and the ``reason`` (InvalidFilterPattern's)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class InexactNumber:
    """A number literal of a pattern's JSON text that event-ruler refuses as a numeric operand
    (see ``_numbers``): ``text`` as written, ``nearest`` the double it reads as."""

    text: str
    nearest: float

    def __repr__(self) -> str:
        return self.text


def is_number(value: Any) -> bool:
    """A JSON number: an int (bool is not) or a finite float."""
    return type(value) is int or (type(value) is float and math.isfinite(value))


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if type(value) is bool:
        return "boolean"
    if type(value) in _NUMBER_TYPES or type(value) is InexactNumber:
        return "number"
    if type(value) is str:
        return "string"
    if type(value) is list:
        return "array"
    if type(value) is dict:
        return "object"
    return type(value).__name__
