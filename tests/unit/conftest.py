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


#: the smallest valid app.toml: a DynamoDB sink fed by Users; tests add or replace sections
APP_HEAD = '[app]\nname = "x"\nsource_table = "Users"\ntransform = "m:f"\n'
APP_SINK = '[sink]\ntype = "dynamodb"\ntarget = "AppUsers_V2"\n'
APP_DEAD_LETTER = '[dead_letter]\ntable = "d"\n'


@pytest.fixture
def app_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    """``write(package, text)``: ``consumers/<package>/app.toml`` holds ``text``, in a folder the
    app loader reads instead of consumers/."""
    from consumers.runtime import config

    monkeypatch.setattr(config, "APPS_DIR", tmp_path)

    def write(package: str, text: str) -> None:
        (tmp_path / package).mkdir(exist_ok=True)
        (tmp_path / package / "app.toml").write_text(text)

    return write
