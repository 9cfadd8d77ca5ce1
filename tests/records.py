"""A Users INSERT in the format of DynamoDB's Kinesis streaming destination, for the stack tests
that put records straight on a stream (poison records and their neighbours)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import orjson

__all__ = ["change_record", "edited", "user_insert"]


def user_insert(user_id: str, version: int, **image) -> bytes:
    """An INSERT of user ``user_id`` at ``version``; ``image`` adds or replaces attributes
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
    """A change of ``table``'s item ``keys``: ``image`` (DynamoDB JSON, keys included) is the
    NewImage of an INSERT, or the OldImage of a REMOVE."""
    return orjson.dumps(
        {
            "awsRegion": "us-east-1",
            "eventID": str(uuid.uuid4()),
            "eventName": event,
            "userIdentity": None,
            "recordFormat": "application/json",
            "tableName": table,
            "eventSource": "aws:dynamodb",
            "dynamodb": {
                "ApproximateCreationDateTime": time.time_ns() // 1000,
                "Keys": keys,
                "OldImage" if event == "REMOVE" else "NewImage": image,
                "SizeBytes": 120,
            },
        }
    )


def edited(payload: bytes, edit: Callable[[dict], object]) -> bytes:
    """``payload`` (a JSON change record) after ``edit`` changed its parsed document in place."""
    document = orjson.loads(payload)
    edit(document)
    return orjson.dumps(document)
