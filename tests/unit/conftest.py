"""Fixtures for the unit tests: real payloads by name, and a payload factory."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def load_fixture(name: str) -> dict[str, Any]:
    """A JSON fixture from tests/fixtures, parsed (a fresh copy each time)."""
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def reference_record() -> dict[str, Any]:
    """AWS's DynamoDB -> Kinesis change record (MODIFY on Users, microsecond timestamp)."""
    return load_fixture("ddb-kinesis-change-record.json")


@pytest.fixture
def make_payload(reference_record: dict[str, Any]) -> Callable[..., bytes]:
    """Build payload bytes from the reference record, with changes applied.

    ``make_payload(eventName="INSERT", drop=["dynamodb.OldImage"], set={"dynamodb.Keys": {...}})``
    """

    def build(*, drop: tuple[str, ...] = (), set: dict[str, Any] | None = None, **top: Any) -> bytes:
        record = copy.deepcopy(reference_record)
        record.update(top)
        for dotted, value in (set or {}).items():
            *heads, last = dotted.split(".")
            node = record
            for head in heads:
                node = node[head]
            node[last] = value
        for dotted in drop:
            *heads, last = dotted.split(".")
            node = record
            for head in heads:
                node = node[head]
            node.pop(last, None)
        return orjson.dumps(record)

    return build
