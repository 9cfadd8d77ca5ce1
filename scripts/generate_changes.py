"""User-change generator: creates, updates and deletes users of the `Users` table.

Each change is one write to `Users` (so one record on its change stream). `Version` grows by
one on every change of a user; a (re-)creation starts at the current time in milliseconds,
so a key deleted and created again (even by another run) continues above its old versions,
as the pipeline requires of writers. The generator keeps a tally of what it did, by kind, so tests
can check what the consumers' filters must drop (e.g. LastSeenAt-only touches).

    python -m scripts.generate_changes --changes 1000 --users 50 --rate 200 --seed 1
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterator

from tqdm import tqdm

__all__ = ["ChangeKind", "UserChange", "UserChangeGenerator", "apply_changes"]

WORKPLACES = tuple(f"w-{i:03d}" for i in range(1, 13))
ROLES = ("member", "admin", "billing", "auditor")
WORKPLACE_ROLES = ("owner", "manager", "staff", "guest")
TITLES = ("Engineer", "Designer", "Nurse", "Chef", "Driver", "Analyst")
FIRST = ("Ada", "Grace", "Alan", "Linus", "Edsger", "Barbara", "Ken", "Margaret")
LAST = ("Lovelace", "Hopper", "Turing", "Torvalds", "Dijkstra", "Liskov", "Thompson", "Hamilton")
STATUSES = ("active", "invited", "suspended")


class ChangeKind(str, Enum):
    CREATE = "create"
    PROFILE = "profile"            # Email / FirstName / Status
    ROLES = "roles"                # Roles only (not part of a membership item)
    MEMBERSHIP_ADD = "membership_add"
    MEMBERSHIP_REMOVE = "membership_remove"
    MEMBERSHIP_CHANGE = "membership_change"
    TOUCH = "touch"                # LastSeenAt only
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class UserChange:
    kind: ChangeKind
    user_id: str
    version: int       # the Version its stream record carries (a REMOVE: the deleted item's)
    item: dict | None  # the user's whole new item (plain Python values); None for DELETE


@dataclass(slots=True)
class UserChangeGenerator:
    """Deterministic for a seed; holds the users it believes exist and their last version."""

    users: int = 50
    seed: int = 0
    prefix: str = "u-"  # tests give each run its own key space
    rng: random.Random = field(init=False)
    state: dict[str, dict] = field(default_factory=dict)      # live users: id -> item
    versions: dict[str, int] = field(default_factory=dict)    # every id ever written -> last version
    tally: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def adopt(self, items) -> None:
        """Continue from users already in the table (e.g. a second `make demo`)."""
        for item in items:
            self.state[item["UserId"]] = dict(item)
            self.versions[item["UserId"]] = int(item["Version"])

    def changes(self, count: int) -> Iterator[UserChange]:
        for _ in range(count):
            change = self._next()
            self.tally[change.kind.value] += 1
            yield change

    # -- one change
    def _next(self) -> UserChange:
        rng = self.rng
        user_id = f"{self.prefix}{rng.randrange(self.users):05d}"
        version = self.versions.get(user_id, 0) + 1
        current = self.state.get(user_id)
        if current is None:
            # A (re-)creation continues above any version this key had before, even one deleted
            # by an earlier run this generator knows nothing about: it starts at the clock (ms).
            version = max(version, time.time_ns() // 1_000_000)
            kind, item = ChangeKind.CREATE, self._new_user(user_id)
        else:
            kind = rng.choices(
                (ChangeKind.PROFILE, ChangeKind.MEMBERSHIP_ADD, ChangeKind.MEMBERSHIP_REMOVE,
                 ChangeKind.MEMBERSHIP_CHANGE, ChangeKind.TOUCH, ChangeKind.DELETE),
                weights=(20, 15, 10, 10, 35, 10),
            )[0]
            item = None
            if kind is not ChangeKind.DELETE:
                kind, item = self._mutate(kind, dict(current))
        self._tally_workplace_relevance(kind, current, item)
        if item is None:  # a delete writes no version: its REMOVE record carries the last one
            del self.state[user_id]
            return UserChange(kind, user_id, version - 1, None)
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
        return {"Role": self.rng.choice(WORKPLACE_ROLES), "Title": self.rng.choice(TITLES),
                "JoinedAt": int(time.time())}

    def _mutate(self, kind: ChangeKind, item: dict) -> tuple[ChangeKind, dict]:
        """Apply one change of the kind; returns the kind actually applied (a membership
        change of a user without memberships becomes a touch) and the new item."""
        rng = self.rng
        workplaces = dict(item["Workplaces"])
        if kind is ChangeKind.PROFILE:
            field_name = rng.choice(("Email", "FirstName", "Status", "Roles"))
            choices = {
                "Email": [f"{name}.{item['UserId']}@Mail.Example.ORG" for name in FIRST],
                "FirstName": list(FIRST),
                "Status": list(STATUSES),
                "Roles": [{r} for r in ROLES] + [{ROLES[0], r} for r in ROLES[1:]],
            }[field_name]
            item[field_name] = rng.choice([c for c in choices if c != item.get(field_name)])
            if field_name == "Roles":
                kind = ChangeKind.ROLES
        elif kind is ChangeKind.MEMBERSHIP_ADD:
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


def apply_changes(table, changes: Iterator[UserChange], *, total: int, rate: float | None = None,
                  progress: bool = True) -> int:
    """Write each change to the boto3 `Table` resource, in order, at most `rate` per second.

    Writes are conditional on the stored Version (older for a put, the one we know for a
    delete), so a generator with a stale view fails loudly instead of writing versions backwards.
    """
    interval = 1.0 / rate if rate else 0.0
    next_at = time.monotonic()
    written = 0
    for change in tqdm(changes, total=total, disable=not progress, unit="chg", file=sys.stderr):
        if interval:
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_at = max(next_at + interval, time.monotonic() - 1.0)
        if change.item is None:
            table.delete_item(Key={"UserId": change.user_id}, ConditionExpression="Version = :v",
                              ExpressionAttributeValues={":v": change.version})
        else:
            table.put_item(Item=_without_empty_sets(change.item),
                           ConditionExpression="attribute_not_exists(UserId) OR Version < :v",
                           ExpressionAttributeValues={":v": change.version})
        written += 1
    return written


def _without_empty_sets(item: dict) -> dict:
    return {k: v for k, v in item.items() if not (isinstance(v, set) and not v)}


def main(argv: list[str] | None = None) -> int:
    from targets.clients import aws_resource
    from targets.config import StackConfig
    from producer_config import load_pipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=100, help="how many changes to write")
    parser.add_argument("--users", type=int, default=50, help="size of the user population")
    parser.add_argument("--rate", type=float, default=None, help="changes per second (default: as fast as possible)")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="random seed")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    pipeline = load_pipeline()
    stack = StackConfig.from_env()
    table = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    generator = UserChangeGenerator(users=args.users, seed=args.seed)
    generator.adopt(item for page in _scan(table) for item in page)
    started = time.monotonic()
    written = apply_changes(table, generator.changes(args.changes), total=args.changes, rate=args.rate,
                            progress=not args.no_progress)
    elapsed = time.monotonic() - started
    print(f"wrote {written} changes in {elapsed:.1f}s ({written / elapsed:.0f}/s): "
          + ", ".join(f"{k}={v}" for k, v in sorted(generator.tally.items())), file=sys.stderr)
    return 0


def _scan(table) -> Iterator[list[dict]]:
    kwargs: dict = {}
    while True:
        page = table.scan(ConsistentRead=True, **kwargs)
        yield page["Items"]
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


if __name__ == "__main__":
    sys.exit(main())
