"""Users change -> AppUsers_V2 item (pure; the rules are in docs/reliability.md).

* Key: UserId. One item per user, carrying the source Version (added by the sink).
* The user profile (Email, DisplayName, Status: `consumers.domain.users`); Roles sorted;
  WorkplaceCount = number of workplace memberships.
* Activity attributes (LastSeenAt) are not projected; the app's `changed_attributes` filter
  drops MODIFYs that touch only them, so they cost no write.
* REMOVE deletes (a tombstone with the removed version).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from consumers.domain.users import PROFILE_ATTRIBUTES, user_profile
from consumers.shared.planning import PlannedWrite, delete, upsert
from consumers.shared.records import ChangeRecord

__all__ = ["PROJECTED_ATTRIBUTES", "project_user", "transform"]

# The Users attributes the projection reads: a MODIFY changing none of them changes nothing.
PROJECTED_ATTRIBUTES = (*PROFILE_ATTRIBUTES, "Roles", "Workplaces")


def project_user(user: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **user_profile(user),
        "Roles": sorted(user.get("Roles") or ()),
        "WorkplaceCount": len(user.get("Workplaces") or {}),
    }


def transform(record: ChangeRecord) -> Iterable[PlannedWrite]:
    key = {"UserId": record.keys["UserId"]}
    if record.is_removal:
        return (delete(record, key),)
    return (upsert(record, key, project_user(record.after)),)
