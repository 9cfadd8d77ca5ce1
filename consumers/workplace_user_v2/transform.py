"""Users change -> WorkplaceUsers_V2 items, one per (WorkplaceId, UserId) membership (pure).

A user's memberships live in `Workplaces` (a map WorkplaceId -> {Role, Title, JoinedAt});
`WorkplaceIds` (a string set) lists the same ids for filtering. Each membership item carries
the membership (Role, Title, JoinedAt) and the user profile (Email, DisplayName, Status:
`consumers.domain.users`), so a membership item changes when either changes.

* INSERT: an upsert per membership in NewImage.
* MODIFY: compares OldImage and NewImage: memberships only in NewImage are created, those only
  in OldImage deleted; those in both are updated when their item differs, else untouched.
* REMOVE: deletes every membership in OldImage.
All writes carry the user's version, so replays and reordering converge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from consumers.domain.users import user_profile
from consumers.shared.planning import PlannedWrite, delete, skip, upsert
from consumers.shared.records import ChangeRecord

__all__ = ["membership_items", "transform"]


def membership_items(user: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """WorkplaceId -> the membership item (without keys) of a user image; {} for None."""
    if user is None:
        return {}
    profile = user_profile(user)
    return {
        workplace_id: {
            **profile,
            "Role": membership.get("Role") or "member",
            "Title": membership.get("Title") or "",
            "JoinedAt": membership.get("JoinedAt"),
        }
        for workplace_id, membership in (user.get("Workplaces") or {}).items()
    }


def transform(record: ChangeRecord) -> Iterable[PlannedWrite]:
    user_id = record.keys["UserId"]
    before = membership_items(record.old_image)
    after = {} if record.is_removal else membership_items(record.after)
    writes: list[PlannedWrite] = []
    for workplace_id in sorted(before.keys() - after.keys()):
        writes.append(delete(record, {"WorkplaceId": workplace_id, "UserId": user_id}))
    for workplace_id, item in sorted(after.items()):
        if before.get(workplace_id) != item:
            writes.append(upsert(record, {"WorkplaceId": workplace_id, "UserId": user_id}, item))
    return writes or (skip("no membership changed"),)
