"""The batched writer: a batch of changes of distinct keys as one TransactWriteItems, all of it
written or none, each change still its own conditional action and stream record.

The requests are serialized here (`_wire`) and sent through a plain client without parameter
validation (`plain_client`): the boto3 resource's transformations cost three times as much
CPU per change, and on a 2-core machine that CPU is DynamoDB Local's. A transaction cancelled by
conflicts or throttling, or failed by a transient server error, is tried again (`RETRIES` times,
backing off `TRANSACTION_BACKOFF`, jittered after a cancellation so that concurrent batches
spread apart); one cancelled because of a change raises `ChangeRefused` naming it.
"""

from __future__ import annotations

import itertools
import time
import uuid
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.types import TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError

from base.retry import Backoff
from scripts.changes.model import (
    CREATE_CONDITION,
    DELETE_CONDITION,
    UPDATE_CONDITION,
    ChangeKind,
    UserChange,
    without_empty_sets,
)
from scripts.changes.outages import through_outages

__all__ = ["RETRIES", "RETRYABLE_ERRORS", "RETRYABLE_REASONS", "ChangeRefused", "plain_client", "write_transaction"]

#: cancellation reasons of a transaction that say nothing about its changes: it is tried again
RETRYABLE_REASONS = frozenset(
    {"None", "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}
)
#: errors of the whole call that say nothing about its changes: it is tried again, same token
RETRYABLE_ERRORS = frozenset({"InternalServerError", "TransactionInProgressException"})
RETRIES = 10  # tries again after a retryable cancellation, backing off 50 ms doubling up to 2 s (~12 s in all)
#: the wait after the n-th try failed by a retryable error; after a retryable cancellation the same, scaled by 0.5-1
TRANSACTION_BACKOFF = Backoff(first_s=0.05, cap_s=2.0)
CANCELLED_BACKOFF = Backoff(first_s=0.05, cap_s=2.0, jitter=0.5)


class ChangeRefused(RuntimeError):
    """A batch's transaction was cancelled because of some of its changes (e.g. a condition failed:
    the table holds something the generator did not expect); none of that batch was written."""

    def __init__(self, refused: list[tuple[UserChange, str]], message: str):
        self.refused = refused
        super().__init__(message)


def plain_client(table):
    """A plain DynamoDB client to `table`'s endpoint, region, settings and credentials, without
    parameter validation: the batched writes serialize their requests themselves (`_wire`),
    which costs a third of what the resource's transformations (a deep copy and a walk of every
    request, then the validation) cost per change; on a 2-core machine that CPU is DynamoDB
    Local's. The credentials come through botocore's `_get_credentials` (private)."""
    source = table.meta.client
    credentials = source._get_credentials()
    frozen = credentials.get_frozen_credentials() if credentials is not None else None
    return boto3.session.Session().client(
        "dynamodb",
        endpoint_url=source.meta.endpoint_url,
        region_name=source.meta.region_name,
        config=source.meta.config.merge(Config(parameter_validation=False)),
        **(
            {
                "aws_access_key_id": frozen.access_key,
                "aws_secret_access_key": frozen.secret_key,
                "aws_session_token": frozen.token,
            }
            if frozen is not None
            else {}
        ),
    )


def _stored(client, table_name: str, changes: list[UserChange]) -> bool:
    """Whether the table holds exactly what ``changes`` wrote (a delete: no item)."""
    for change in changes:
        item = client.get_item(TableName=table_name, Key={"UserId": {"S": change.user_id}}, ConsistentRead=True).get(
            "Item"
        )
        if change.item is None:
            if item is not None:
                return False
        elif item is None or item.get("Version") != {"N": str(change.version)}:
            return False
    return True


_SERIALIZER = TypeSerializer()


def _wire(value: Any) -> dict:
    """A Python value as a DynamoDB AttributeValue (the generator's types fast, others by boto3)."""
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is int or kind is Decimal:
        return {"N": str(value)}
    if kind is dict:
        return {"M": {k: _wire(v) for k, v in value.items()}}
    if (kind is set or kind is frozenset) and value and all(type(v) is str for v in value):
        return {"SS": sorted(value)}
    return _SERIALIZER.serialize(value)


def _action(table_name: str, change: UserChange) -> dict:
    """`change` as one action of a TransactWriteItems (wire format), with `write_change`'s condition."""
    if change.item is None:
        return {
            "Delete": {
                "TableName": table_name,
                "Key": {"UserId": {"S": change.user_id}},
                "ConditionExpression": DELETE_CONDITION,
                "ExpressionAttributeValues": {":v": _wire(change.version)},
            }
        }
    item = {name: _wire(value) for name, value in without_empty_sets(change.item).items()}
    put: dict[str, Any] = {"TableName": table_name, "Item": item}
    if change.kind is ChangeKind.CREATE:
        put["ConditionExpression"] = CREATE_CONDITION
    else:
        put["ConditionExpression"] = UPDATE_CONDITION
        put["ExpressionAttributeValues"] = {":v": _wire(change.version)}
    return {"Put": put}


def write_transaction(client, table_name: str, batch: list[UserChange]) -> None:
    """One TransactWriteItems of the batch (distinct keys); all of it is written or none.
    Every try carries the same ClientRequestToken, so no retry (botocore's after a timeout, or
    ours after DynamoDB Local's "timed out waiting for a lock" InternalServerError) can apply
    the transaction twice."""
    actions = [_action(table_name, change) for change in batch]
    token = uuid.uuid4().hex
    for attempt in itertools.count():
        try:
            through_outages(
                lambda: client.transact_write_items(TransactItems=actions, ClientRequestToken=token),
                lambda: _stored(client, table_name, batch),
            )
            return
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in RETRYABLE_ERRORS and attempt < RETRIES:
                time.sleep(TRANSACTION_BACKOFF.delay(attempt + 1))
                continue
            if code != "TransactionCanceledException":
                raise
            codes = [reason.get("Code", "None") for reason in exc.response.get("CancellationReasons", [])]
            refused = [
                (change, code) for change, code in zip(batch, codes, strict=False) if code not in RETRYABLE_REASONS
            ]
            if refused or attempt >= RETRIES:
                described = refused or [
                    (change, code) for change, code in zip(batch, codes, strict=False) if code != "None"
                ]
                raise ChangeRefused(
                    refused,
                    f"a batch of {len(batch)} changes was not written"
                    + (f" after {attempt + 1} tries" if not refused else "")
                    + ": "
                    + "; ".join(
                        f"{change.user_id} ({change.kind.value}, version {change.version}): {code}"
                        for change, code in described[:5]
                    )
                    + (f" and {len(described) - 5} more" if len(described) > 5 else "")
                    + (
                        " (the table changed since the generator read it, or holds an item it did not write)"
                        if any(code == "ConditionalCheckFailed" for _, code in refused)
                        else ""
                    ),
                ) from exc
            time.sleep(CANCELLED_BACKOFF.delay(attempt + 1))
