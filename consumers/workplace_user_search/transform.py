"""WorkplaceUsers_V2 change -> one document of the `workplace-users-v2` index (pure).

* Document id `<WorkplaceId>#<UserId>` (the app's sink.document_id template).
* INSERT / MODIFY: index the membership item's searchable fields with the item's Version as
  the external version.
* REMOVE, or a MODIFY that turns the item into a tombstone (how the DynamoDB sink deletes):
  delete the document at that version.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from consumers.shared.planning import PlannedWrite, delete, upsert
from consumers.shared.records import ChangeRecord

__all__ = ["SEARCH_FIELDS", "search_document", "transform"]

SEARCH_FIELDS = ("Email", "DisplayName", "Role", "Title", "Status", "JoinedAt")


def search_document(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: item[name] for name in SEARCH_FIELDS if item.get(name) is not None}


def transform(record: ChangeRecord) -> Iterable[PlannedWrite]:
    key = {"WorkplaceId": record.keys["WorkplaceId"], "UserId": record.keys["UserId"]}
    if record.is_removal:
        return (delete(record, key),)
    return (upsert(record, key, {**search_document(record.new_image), "Version": record.version}),)
