"""Users change -> one notification event (pure). The webhook sink sends it to the subscribers
that want its type (``[sink] subscribers`` in app.toml).

Which changes: the app's filter (app.toml) lets through INSERT, REMOVE, and a MODIFY of
``Status``, ``Email`` or ``Workplaces``; nothing here repeats it. Each becomes one event:

    {"id": "<eventID>", "type": "user.created" | "user.updated" | "user.deleted",
     "timestamp": "<the change's time, ISO 8601 UTC>",
     "data": {"user_id": "u-1", "version": 7,
              "changes": {"Email": {"before": "a@x", "after": "b@x"}, ...},
              "workplaces": {"joined": ["w-2"], "left": []}}}

* ``id`` is the change's eventID: the ``webhook-id`` a subscriber de-duplicates on.
* ``changes`` holds every attribute that differs between the images (all of them for a
  creation or a deletion), before and after; ``Version`` and ``WorkplaceIds`` (bookkeeping) are
  left out. Attributes the app's ``[sink] private`` names are removed by the sink before the
  event is signed, wherever they are.
* The event's place in the user's history is its write's ``version``: twice the item's version,
  plus one for a deletion, so a deletion (which carries the version of the item it removed)
  comes after that item's last update.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from consumers.shared.planning import PlannedWrite, Upsert
from consumers.shared.records import ChangeRecord

__all__ = ["BOOKKEEPING", "EVENT_TYPES", "event_of", "transform"]

EVENT_TYPES = ("user.created", "user.updated", "user.deleted")
BOOKKEEPING = frozenset({"Version", "WorkplaceIds"})


def _changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: {"before": before.get(name), "after": after.get(name)}
        for name in sorted((before.keys() | after.keys()) - BOOKKEEPING)
        if before.get(name) != after.get(name)
    }


def event_of(record: ChangeRecord) -> dict[str, Any]:
    before = record.old_image.to_dict() if record.old_image is not None else {}
    after = {} if record.is_removal else record.after.to_dict()
    kind = "deleted" if record.is_removal else "created" if record.old_image is None else "updated"
    joined_before, joined_after = set(before.get("Workplaces") or ()), set(after.get("Workplaces") or ())
    return {
        "id": record.raw["eventID"],
        "type": f"user.{kind}",
        "timestamp": datetime.fromtimestamp(record.created_at_us / 1e6, tz=UTC).isoformat(timespec="microseconds"),
        "data": {
            "user_id": record.keys["UserId"],
            "version": record.version,
            "changes": _changes(before, after),
            "workplaces": {
                "joined": sorted(joined_after - joined_before),
                "left": sorted(joined_before - joined_after),
            },
        },
    }


def transform(record: ChangeRecord) -> Iterable[PlannedWrite]:
    return (Upsert({"UserId": record.keys["UserId"]}, event_of(record), 2 * record.version + record.is_removal),)
