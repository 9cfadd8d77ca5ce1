"""A Users INSERT in the format of DynamoDB's Kinesis streaming destination, for the stack tests
that put records straight on a stream (poison records and their neighbours)."""

from __future__ import annotations

import time
import uuid

import orjson

__all__ = ["user_insert"]


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
    return orjson.dumps(
        {
            "awsRegion": "us-east-1",
            "eventID": str(uuid.uuid4()),
            "eventName": "INSERT",
            "userIdentity": None,
            "recordFormat": "application/json",
            "tableName": "Users",
            "eventSource": "aws:dynamodb",
            "dynamodb": {
                "ApproximateCreationDateTime": time.time_ns() // 1000,
                "Keys": {"UserId": {"S": user_id}},
                "NewImage": new_image,
                "SizeBytes": 120,
            },
        }
    )
