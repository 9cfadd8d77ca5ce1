"""The tests' one builder of change envelopes (the format of DynamoDB's Kinesis streaming
destination), on ``consumers.shared.envelope``: every test that needs a change record, as a
dict or as a Kinesis payload, builds it here; the Users INSERTs are what the stack tests put
straight on a stream (poison records and their neighbours)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from consumers.shared import envelope
from consumers.shared.envelope import EventName

__all__ = ["STAMP", "change", "change_record", "edited", "payload", "user_insert"]

#: a fixed ApproximateCreationDateTime in microseconds (2026-11-26), for deterministic records
STAMP = 1_795_731_005_123_456


def change(
    event: EventName | str,
    table: str,
    keys: Mapping[str, Any],
    *,
    new_image: Mapping[str, Any] | None = None,
    old_image: Mapping[str, Any] | None = None,
    created_at: int | float | str | None = STAMP,
    **fields: Any,
) -> dict[str, Any]:
    """A change envelope (a dict, to edit or to filter on); ``fields`` are ``envelope.build``'s
    (``event_id``, ``region``, ``user_identity``, ``size_bytes``). ``created_at=None``: now."""
    return envelope.build(event, table, keys, new_image=new_image, old_image=old_image, created_at=created_at, **fields)


def payload(event: EventName | str, table: str, keys: Mapping[str, Any], **kwargs: Any) -> bytes:
    """``change(...)`` as a Kinesis record's data."""
    return envelope.to_bytes(change(event, table, keys, **kwargs))


def user_insert(user_id: str, version: int, **image) -> bytes:
    """An INSERT of user ``user_id`` at ``version``, now; ``image`` adds or replaces attributes
    (DynamoDB JSON, e.g. ``Roles={"N": "5"}``)."""
    new_image = {
        "UserId": {"S": user_id},
        "Email": {"S": f"{user_id}@Example.com"},
        "FirstName": {"S": "Poison"},
        "LastName": {"S": "Neighbour"},
        "Version": {"N": str(version)},
        **image,
    }
    return change_record("Users", {"UserId": {"S": user_id}}, new_image)


def change_record(table: str, keys: dict, image: dict, event: str = "INSERT") -> bytes:
    """A change of ``table``'s item ``keys``, now: ``image`` (DynamoDB JSON, keys included) is the
    NewImage of an INSERT, or the OldImage of a REMOVE."""
    removal = event == EventName.REMOVE
    return payload(
        event,
        table,
        keys,
        new_image=None if removal else image,
        old_image=image if removal else None,
        created_at=None,
        size_bytes=120,
    )


def edited(data: bytes, edit: Callable[[dict], object]) -> bytes:
    """``data`` (a JSON change record) after ``edit`` changed its parsed document in place."""
    document = orjson.loads(data)
    edit(document)
    return orjson.dumps(document)
