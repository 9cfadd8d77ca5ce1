"""What the change generator writes: a user of the `Users` table (its workplaces, roles and
profile), a change of one (`ChangeKind`, `UserChange`), and the conditions every write of a
change carries.

A generated user has the shape `USER_SHAPE`; an item of the table without it (or without a
non-negative integral `Version`) was not written by the generator and is left alone
(`foreign_reason`). The conditions keep every key's versions growing whoever writes: a creation
needs the key absent, an update an older `Version`, a delete the `Version` the generator knows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

__all__ = [
    "CREATE_CONDITION",
    "DELETE_CONDITION",
    "UPDATE_CONDITION",
    "USER_SHAPE",
    "WORKPLACES",
    "ChangeKind",
    "UserChange",
    "foreign_reason",
    "without_empty_sets",
]

WORKPLACES = tuple(f"w-{i:03d}" for i in range(1, 13))
ROLES = ("member", "admin", "billing", "auditor")
WORKPLACE_ROLES = ("owner", "manager", "staff", "guest")
TITLES = ("Engineer", "Designer", "Nurse", "Chef", "Driver", "Analyst")
FIRST = ("Ada", "Grace", "Alan", "Linus", "Edsger", "Barbara", "Ken", "Margaret")
LAST = ("Lovelace", "Hopper", "Turing", "Torvalds", "Dijkstra", "Liskov", "Thompson", "Hamilton")
STATUSES = ("active", "invited", "suspended")

_NUMBER, _TEXT, _SET, _MAP = "a number", "a string", "a set", "a map"
#: what a generated user holds (`UserChangeGenerator._new_user` + Version), and what the generator reads of one
USER_SHAPE = {
    "Email": _TEXT,
    "FirstName": _TEXT,
    "LastName": _TEXT,
    "Status": _TEXT,
    "Roles": _SET,
    "Workplaces": _MAP,
    "LastSeenAt": _NUMBER,
    "CreatedAt": _NUMBER,
    "UpdatedAt": _NUMBER,
}


def _kind(value: Any) -> str | None:
    if type(value) is str:
        return _TEXT
    if isinstance(value, (int, Decimal)) and type(value) is not bool:
        return _NUMBER
    if isinstance(value, (set, frozenset)):
        return _SET
    if isinstance(value, Mapping):
        return _MAP
    return None


def _integral(value: Any) -> int | None:
    """``value`` as a non-negative int if it is one (a boto3 resource reads numbers as Decimal)."""
    if type(value) is int:
        return value if value >= 0 else None
    if type(value) is Decimal and value.is_finite() and value == value.to_integral_value() and value >= 0:
        return int(value)
    return None


def foreign_reason(item: Mapping[str, Any]) -> str | None:
    """Why ``item`` (as a boto3 ``Table`` reads it) is not a user this generator wrote, or None."""
    if type(item.get("UserId")) is not str:
        return "without a string UserId"
    if "Version" not in item:
        return "without a Version"
    if _integral(item["Version"]) is None:
        return "whose Version is not a non-negative integer"
    for name, kind in USER_SHAPE.items():
        if name not in item:
            return f"not shaped like a generated user (no {name})"
        if _kind(item[name]) != kind:
            return f"not shaped like a generated user ({name} not {kind})"
    for membership in item["Workplaces"].values():
        if not isinstance(membership, Mapping) or type(membership.get("Role")) is not str:
            return "not shaped like a generated user (a Workplaces entry without a Role)"
    return None


class ChangeKind(str, Enum):
    CREATE = "create"
    PROFILE = "profile"  # Email / FirstName / Status
    ROLES = "roles"  # Roles only (not part of a membership item)
    MEMBERSHIP_ADD = "membership_add"
    MEMBERSHIP_REMOVE = "membership_remove"
    MEMBERSHIP_CHANGE = "membership_change"
    TOUCH = "touch"  # LastSeenAt only
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class UserChange:
    kind: ChangeKind
    user_id: str
    version: int  # the Version its stream record carries (a REMOVE: the deleted item's)
    item: dict | None  # the user's whole new item (plain Python values); None for DELETE


CREATE_CONDITION = "attribute_not_exists(UserId)"
UPDATE_CONDITION = "attribute_not_exists(UserId) OR Version < :v"
DELETE_CONDITION = "Version = :v"


def without_empty_sets(item: dict) -> dict:
    """``item`` as DynamoDB stores it: an empty set is no attribute."""
    return {k: v for k, v in item.items() if not (isinstance(v, set) and not v)}
