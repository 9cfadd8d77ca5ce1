"""A deterministic YAML writer for CloudFormation templates (block style, long-form intrinsic
functions), so the template needs no YAML library in the project's venv.

Every string is written as a JSON string, which is a YAML double-quoted scalar: no value is ever
read back as another type (``"true"``, ``"0755"``, ``"1e3"`` stay strings). Keys are written
plain when they are CloudFormation-style identifiers (``Fn::GetAtt``, ``AWS::Region``), quoted
otherwise. `make iac-check` checks that YAML and JSON outputs load to the same document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["to_yaml"]

_PLAIN_KEY = re.compile(r"[A-Za-z][A-Za-z0-9]*(::[A-Za-z][A-Za-z0-9]*)*")


def to_yaml(document: Mapping[str, Any]) -> str:
    return "".join(_mapping(document, 0))


def _key(key: str) -> str:
    return key if _PLAIN_KEY.fullmatch(key) else json.dumps(key)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as a template value")


def _is_block(value: Any) -> bool:
    return isinstance(value, Mapping | list | tuple) and len(value) > 0


def _empty(value: Any) -> str:
    return "{}" if isinstance(value, Mapping) else "[]"


def _mapping(value: Mapping[str, Any], indent: int) -> list[str]:
    pad, lines = " " * indent, []
    for key, item in value.items():
        if not isinstance(key, str):
            raise TypeError(f"template keys are strings, got {key!r}")
        if _is_block(item):
            lines.append(f"{pad}{_key(key)}:\n")
            lines.extend(_block(item, indent + 2))
        elif isinstance(item, Mapping | list | tuple):
            lines.append(f"{pad}{_key(key)}: {_empty(item)}\n")
        else:
            lines.append(f"{pad}{_key(key)}: {_scalar(item)}\n")
    return lines


def _sequence(value: Sequence[Any], indent: int) -> list[str]:
    pad, lines = " " * indent, []
    for item in value:
        if _is_block(item):
            # the first line of the item's block goes on the dash's line
            inner = _block(item, indent + 2)
            lines.append(f"{pad}- {inner[0].lstrip()}")
            lines.extend(inner[1:])
        elif isinstance(item, Mapping | list | tuple):
            lines.append(f"{pad}- {_empty(item)}\n")
        else:
            lines.append(f"{pad}- {_scalar(item)}\n")
    return lines


def _block(value: Any, indent: int) -> list[str]:
    return _mapping(value, indent) if isinstance(value, Mapping) else _sequence(value, indent)
