"""WorkplaceUsers_V2 change -> one document of the `workplace-users-v2` index (pure).

* Document id `<WorkplaceId>#<UserId>` (the app's sink.document_id template).
* INSERT / MODIFY: index the membership item's searchable fields with the item's Version as
  the external version.
* REMOVE, or a MODIFY that turns the item into a tombstone, deletes the document at that
  version: WorkplaceUsers_V2 is written by our DynamoDB sink, which deletes an item by
  replacing it with a tombstone (the kind's public convention, ``consumers.sinks.dynamodb.tombstones``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from consumers.shared.planning import PlannedWrite, delete, upsert
from consumers.shared.records import ChangeRecord
from consumers.sinks.dynamodb.tombstones import is_tombstone

__all__ = ["SEARCH_FIELDS", "is_deleted", "search_document", "transform"]

SEARCH_FIELDS = ("Email", "DisplayName", "Role", "Title", "Status", "JoinedAt")


def search_document(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: item[name] for name in SEARCH_FIELDS if item.get(name) is not None}


def is_deleted(record: ChangeRecord) -> bool:
    """REMOVE, or the item replaced by the DynamoDB sink's tombstone."""
    return record.is_removal or is_tombstone(record.after)


def transform(record: ChangeRecord) -> Iterable[PlannedWrite]:
    key = {"WorkplaceId": record.keys["WorkplaceId"], "UserId": record.keys["UserId"]}
    if is_deleted(record):
        return (delete(record, key),)
    return (upsert(record, key, {**search_document(record.after), "Version": record.version}),)
