"""What operations tell an app's workers, kept where every worker reads it: one item per app in
the target's own DynamoDB (table ``kinesis-cdc-control``, hash key ``app`` = the app's KCL name).

``start_at`` (epoch seconds): leases the KCL creates start AT_TIMESTAMP there instead of the
app's ``starting_position``. `cdc replay` publishes it before the workers start again, and clears
it once no lease sits on the AT_TIMESTAMP sentinel any more. Until then every worker needs it at
its start, on a laptop or in an ECS task (`consumers.runtime.daemon` reads it): a lease the KCL
created AT_TIMESTAMP keeps that sentinel as its checkpoint until its processor checkpoints a
record, and without the time KCL 3.1.3 fails the shard's initialization (a NullPointerException
in IteratorBuilder), forever.

How many workers run is the scheduler's business, not the workers': an ECS service's desired
count, or the local supervisor's count (`consumers.runtime.overrides`). ``resume_workers`` keeps
the count an ECS service had when `cdc stop` set it to 0, for `cdc start`.

The local stack and LocalStack keep the table in their DynamoDB (`make clean` wipes it with the
rest); on AWS the template creates it, and a task role may read its own app's item only.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

__all__ = ["CONTROL_KEY", "CONTROL_TABLE", "ControlStore"]

CONTROL_TABLE = "kinesis-cdc-control"
CONTROL_KEY = "app"


class ControlStore:
    """The apps' control items, through a DynamoDB client (boto3, low level)."""

    def __init__(self, dynamodb: Any, table: str = CONTROL_TABLE) -> None:
        self.dynamodb, self.table = dynamodb, table

    def _key(self, app_name: str) -> dict[str, Any]:
        return {CONTROL_KEY: {"S": app_name}}

    def start_at(self, app_name: str) -> float | None:
        """The replay start the app's new leases take; None (no item, or no table yet): the app.toml's."""
        return self._number(app_name, "start_at")

    def _number(self, app_name: str, field: str) -> float | None:
        try:
            item = self.dynamodb.get_item(TableName=self.table, Key=self._key(app_name), ConsistentRead=True)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return None
            raise
        value = item.get("Item", {}).get(field, {}).get("N")
        return float(value) if value is not None else None

    def _set(self, app_name: str, field: str, value: float | None) -> None:
        if value is None:
            self.dynamodb.update_item(TableName=self.table, Key=self._key(app_name), UpdateExpression=f"REMOVE {field}")
        else:
            self.dynamodb.update_item(
                TableName=self.table,
                Key=self._key(app_name),
                UpdateExpression=f"SET {field} = :value",
                ExpressionAttributeValues={":value": {"N": repr(value)}},
            )

    def resume_count(self, app_name: str) -> int | None:
        value = self._number(app_name, "resume_workers")
        return int(value) if value is not None else None

    def set_resume_count(self, app_name: str, count: int | None) -> None:
        self._set(app_name, "resume_workers", count)

    def publish_start(self, app_name: str, start_at: float) -> None:
        self._set(app_name, "start_at", float(start_at))

    def clear_start(self, app_name: str) -> None:
        self._set(app_name, "start_at", None)
