"""Names shared by the filter modules: sentinels, the pattern error, JSON type names."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

_EMPTY: dict = {}  # stands in for an absent object on a lookup chain
_MISSING = object()  # an absent field
_COMPLEX = object()  # an index path runs through an array: evaluate every pattern of that path
_NUMBER_TYPES = (int, float)
_OR = "$or"
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
_RESERVED_IN_OR = _OPERATORS | {"exactly", "=", "<", "<=", ">", ">="}

Matcher = Callable[[Any], bool]


class _PatternError(Exception):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


def _is_number(value: Any) -> bool:
    return type(value) in _NUMBER_TYPES and math.isfinite(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if type(value) is bool:
        return "boolean"
    if type(value) in _NUMBER_TYPES:
        return "number"
    if type(value) is str:
        return "string"
    if type(value) is list:
        return "array"
    if type(value) is dict:
        return "object"
    return type(value).__name__
