"""The user-change generator: creates, updates and deletes users of the `Users` table, one
change at a time, deterministically for a seed.

Each change is one write to `Users` (so one record on its change stream). `Version` grows by
one on every change of a user; a (re-)creation starts at the current time in milliseconds,
so a key deleted and created again (even by another run) continues above its old versions,
as the pipeline requires of writers. The generator keeps a tally of what it did, by kind, so tests
can check what the consumers' filters must drop (e.g. LastSeenAt-only touches).

It continues from the users already in the table (`adopt`), and leaves alone every item it did
not write: one without a non-negative integral `Version` or not shaped like a generated user
(`scripts.changes.model.foreign_reason`) is not adopted, its key is never picked (no update,
delete or creation over it; a creation is conditional on the key being absent anyway), and the
command says on stderr how many it left alone and why (`foreign_summary`).

Writing the changes is `scripts.changes.writer`'s.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from scripts.changes.model import (
    FIRST,
    LAST,
    ROLES,
    STATUSES,
    TITLES,
    WORKPLACE_ROLES,
    WORKPLACES,
    ChangeKind,
    UserChange,
    foreign_reason,
)

__all__ = ["UserChangeGenerator"]


@dataclass(slots=True)
class UserChangeGenerator:
    """Deterministic for a seed; holds the users it believes exist and their last version."""

    users: int = 50
    seed: int = 0
    prefix: str = "u-"  # tests give each run its own key space
    rng: random.Random = field(init=False)
    state: dict[str, dict] = field(default_factory=dict)  # live users: id -> item
    versions: dict[str, int] = field(default_factory=dict)  # every id ever written -> last version
    tally: Counter = field(default_factory=Counter)
    foreign: dict[str, str] = field(default_factory=dict)  # items left alone: UserId -> why
    _free: tuple[str, ...] | None = field(default=None, init=False, repr=False)  # pickable ids, if some are foreign

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def adopt(self, items: Iterable[Mapping[str, Any]]) -> int:
        """Continue from users already in the table (e.g. a second `make demo`); returns how
        many it adopted. Items it did not write (see `foreign_reason`) are not adopted but
        remembered in `foreign`: their keys are never picked."""
        adopted = 0
        for item in items:
            reason = foreign_reason(item)
            if reason is not None:
                self.foreign[str(item.get("UserId"))] = reason
                continue
            self.state[item["UserId"]] = dict(item)
            self.versions[item["UserId"]] = int(item["Version"])  # integral: checked above
            adopted += 1
        key_space = [self._user_id(i) for i in range(self.users)]
        free = tuple(user_id for user_id in key_space if user_id not in self.foreign)
        self._free = free if len(free) < len(key_space) else None
        return adopted

    def foreign_summary(self) -> str | None:
        """One line on the items left alone (for stderr), or None when there are none."""
        if not self.foreign:
            return None
        by_reason: dict[str, list[str]] = {}
        for user_id, reason in self.foreign.items():
            by_reason.setdefault(reason, []).append(user_id)
        reasons = "; ".join(
            f"{len(ids)} {reason}, e.g. {', '.join(repr(i) for i in sorted(ids)[:3])}"
            for reason, ids in sorted(by_reason.items(), key=lambda entry: (-len(entry[1]), entry[0]))
        )
        taken = self.users - len(self._free) if self._free is not None else 0
        return (
            f"left {len(self.foreign)} item(s) of the table alone, not written by this generator ({taken} in "
            f"its key space {self._user_id(0)}..{self._user_id(self.users - 1)}, whose keys it never picks): "
            f"{reasons}"
        )

    def changes(self, count: int) -> Iterator[UserChange]:
        for _ in range(count):
            change = self._next()
            self.tally[change.kind.value] += 1
            yield change

    def creations(self) -> Iterator[UserChange]:
        """A CREATE of every user of the key space that does not exist yet, in key order (a
        table of ``users`` items to start from)."""
        for index in range(self.users):
            user_id = self._user_id(index)
            if user_id not in self.state and user_id not in self.foreign:
                version = max(self.versions.get(user_id, 0) + 1, time.time_ns() // 1_000_000)
                item = self._new_user(user_id)
                self._tally_workplace_relevance(ChangeKind.CREATE, None, item)
                self.tally[ChangeKind.CREATE.value] += 1
                yield self._stored(ChangeKind.CREATE, user_id, version, item)

    # -- one change
    def _user_id(self, index: int) -> str:
        return f"{self.prefix}{index:05d}"

    def _pick(self) -> str:
        if self._free is None:  # no foreign item in the key space
            return self._user_id(self.rng.randrange(self.users))
        if not self._free:
            raise RuntimeError(
                f"every key of {self._user_id(0)}..{self._user_id(self.users - 1)} holds an item "
                "this generator did not write: nothing to change (use another --users or prefix)"
            )
        return self.rng.choice(self._free)

    def _next(self) -> UserChange:
        rng = self.rng
        user_id = self._pick()
        version = self.versions.get(user_id, 0) + 1
        current = self.state.get(user_id)
        if current is None:
            # A (re-)creation continues above any version this key had before, even one deleted
            # by an earlier run this generator knows nothing about: it starts at the clock (ms).
            version = max(version, time.time_ns() // 1_000_000)
            kind, item = ChangeKind.CREATE, self._new_user(user_id)
        else:
            kind = rng.choices(
                (
                    ChangeKind.PROFILE,
                    ChangeKind.MEMBERSHIP_ADD,
                    ChangeKind.MEMBERSHIP_REMOVE,
                    ChangeKind.MEMBERSHIP_CHANGE,
                    ChangeKind.TOUCH,
                    ChangeKind.DELETE,
                ),
                weights=(20, 15, 10, 10, 35, 10),
            )[0]
            item = None
            if kind is not ChangeKind.DELETE:
                kind, item = self._mutate(kind, dict(current))
        self._tally_workplace_relevance(kind, current, item)
        if item is None:  # a delete writes no version: its REMOVE record carries the last one
            del self.state[user_id]
            return UserChange(kind, user_id, version - 1, None)
        return self._stored(kind, user_id, version, item)

    def _stored(self, kind: ChangeKind, user_id: str, version: int, item: dict) -> UserChange:
        if item["Workplaces"]:
            item["WorkplaceIds"] = set(item["Workplaces"])
        else:
            item.pop("WorkplaceIds", None)  # DynamoDB stores no empty set
        item["Version"] = version
        if kind is not ChangeKind.TOUCH:
            item["UpdatedAt"] = int(time.time())
        self.state[user_id] = item
        self.versions[user_id] = version
        return UserChange(kind, user_id, version, item)

    def _tally_workplace_relevance(self, kind: ChangeKind, before: dict | None, after: dict | None) -> None:
        """Count the changes that cannot affect a membership item: the user has no workplace
        before nor after, or only LastSeenAt / Roles changed."""
        had = bool(before and before["Workplaces"])
        has = bool(after and after["Workplaces"])
        if not (had or has) or kind in (ChangeKind.TOUCH, ChangeKind.ROLES):
            self.tally["no_membership_effect"] += 1

    def _new_user(self, user_id: str) -> dict:
        rng = self.rng
        first, last = rng.choice(FIRST), rng.choice(LAST)
        now = int(time.time())
        return {
            "UserId": user_id,
            "Email": f"{first}.{last}.{user_id}@Example.COM",
            "FirstName": first,
            "LastName": last,
            "Status": rng.choice(STATUSES),
            "Roles": set(rng.sample(ROLES, rng.randint(1, 2))),
            "Workplaces": {w: self._membership() for w in rng.sample(WORKPLACES, rng.randint(0, 3))},
            "LastSeenAt": now,
            "CreatedAt": now,
            "UpdatedAt": now,
        }

    def _membership(self) -> dict:
        return {
            "Role": self.rng.choice(WORKPLACE_ROLES),
            "Title": self.rng.choice(TITLES),
            "JoinedAt": int(time.time()),
        }

    def _mutate(self, kind: ChangeKind, item: dict) -> tuple[ChangeKind, dict]:
        """Apply one change of the kind; returns the kind actually applied (a membership
        change of a user without memberships, or an addition to a user in every workplace,
        becomes a touch) and the new item."""
        rng = self.rng
        workplaces = dict(item["Workplaces"])
        if kind is ChangeKind.PROFILE:
            field_name = rng.choice(("Email", "FirstName", "Status", "Roles"))
            options: dict[str, list[Any]] = {
                "Email": [f"{name}.{item['UserId']}@Mail.Example.ORG" for name in FIRST],
                "FirstName": list(FIRST),
                "Status": list(STATUSES),
                "Roles": [{r} for r in ROLES] + [{ROLES[0], r} for r in ROLES[1:]],
            }
            choices = options[field_name]
            item[field_name] = rng.choice([c for c in choices if c != item.get(field_name)])
            if field_name == "Roles":
                kind = ChangeKind.ROLES
        elif kind is ChangeKind.MEMBERSHIP_ADD and len(workplaces) < len(WORKPLACES):
            free = [w for w in WORKPLACES if w not in workplaces]
            workplaces[rng.choice(free)] = self._membership()
        elif kind is ChangeKind.MEMBERSHIP_REMOVE and workplaces:
            del workplaces[rng.choice(sorted(workplaces))]
        elif kind is ChangeKind.MEMBERSHIP_CHANGE and workplaces:
            wid = rng.choice(sorted(workplaces))
            old = workplaces[wid]
            workplaces[wid] = {**old, "Role": rng.choice([r for r in WORKPLACE_ROLES if r != old["Role"]])}
        else:
            kind = ChangeKind.TOUCH
            item["LastSeenAt"] = item["LastSeenAt"] + rng.randint(1, 3600)
        item["Workplaces"] = workplaces
        return kind, item
