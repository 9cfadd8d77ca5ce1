"""The change generator over a table that holds items it did not write (no server).

``adopt`` is given a scan result as a boto3 ``Table`` returns it (numbers as ``Decimal``):
users an earlier run wrote, and foreign items. ``apply_changes`` writes to a table double
that records the requests and evaluates their conditions as DynamoDB does.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from scripts.generate_changes import (
    ChangeKind,
    UserChangeGenerator,
    apply_changes,
    foreign_reason,
)


def as_scanned(value):
    """A value as a boto3 resource reads it back: every number a Decimal."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, dict):
        return {k: as_scanned(v) for k, v in value.items()}
    return value


def earlier_run(users: int = 10, seed: int = 1, changes: int = 300) -> list[dict]:
    """What an earlier run left in the table."""
    generator = UserChangeGenerator(users=users, seed=seed)
    list(generator.changes(changes))
    return [as_scanned(item) for item in generator.state.values()]


def generated_user(user_id: str, **overrides) -> dict:
    item = {
        "UserId": user_id,
        "Email": "a@example.com",
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "Status": "active",
        "Roles": {"member"},
        "Workplaces": {"w-001": {"Role": "staff", "Title": "Chef", "JoinedAt": Decimal(1)}},
        "LastSeenAt": Decimal(1),
        "CreatedAt": Decimal(1),
        "UpdatedAt": Decimal(1),
        "Version": Decimal(4),
    }
    item.update(overrides)
    return {k: v for k, v in item.items() if v is not None}


FOREIGN = [
    {"UserId": "u-00001", "Name": "imported by hand"},  # no Version at all
    generated_user("u-00002", Version="7"),  # a string Version
    generated_user("u-00003", Version=Decimal("2.5")),  # not integral
    generated_user("u-00004", LastSeenAt=None),  # one attribute missing
    generated_user("u-00005", Workplaces={"w-001": "staff"}),  # another shape inside
    {"UserId": "legacy-1", "Version": Decimal(3), "Email": "x@example.com"},  # outside the key space
]


def test_foreign_items_are_not_adopted_and_the_reason_is_kept():
    # GIVEN a scan holding what an earlier run wrote, among foreign items
    ours = [item for item in earlier_run() if item["UserId"] not in {f["UserId"] for f in FOREIGN}]
    generator = UserChangeGenerator(users=10, seed=2)
    # WHEN the generator adopts it
    adopted = generator.adopt(ours + FOREIGN)
    # THEN it adopts its own users only, and knows why it left each other item alone
    assert adopted == len(ours) and set(generator.state) == {item["UserId"] for item in ours}
    assert generator.foreign == {
        "u-00001": "without a Version",
        "u-00002": "whose Version is not a non-negative integer",
        "u-00003": "whose Version is not a non-negative integer",
        "u-00004": "not shaped like a generated user (no LastSeenAt)",
        "u-00005": "not shaped like a generated user (a Workplaces entry without a Role)",
        "legacy-1": "not shaped like a generated user (no FirstName)",
    }
    assert all(generator.versions[item["UserId"]] == int(item["Version"]) for item in ours)
    # AND says so in one line, with how many sit in its key space
    assert generator.foreign_summary() == (
        "left 6 item(s) of the table alone, not written by this generator (5 in its key space u-00000..u-00009, "
        "whose keys it never picks): "
        "2 whose Version is not a non-negative integer, e.g. 'u-00002', 'u-00003'; "
        "1 not shaped like a generated user (a Workplaces entry without a Role), e.g. 'u-00005'; "
        "1 not shaped like a generated user (no FirstName), e.g. 'legacy-1'; "
        "1 not shaped like a generated user (no LastSeenAt), e.g. 'u-00004'; "
        "1 without a Version, e.g. 'u-00001'"
    )


def test_no_summary_when_every_item_is_the_generators_own():
    generator = UserChangeGenerator(users=10, seed=2)
    generator.adopt(earlier_run())
    assert generator.foreign == {} and generator.foreign_summary() is None


def test_changes_never_touch_a_foreign_key_and_continue_the_adopted_users():
    # GIVEN a generator that adopted an earlier run's users and left five keys of its ten alone
    earlier = {item["UserId"]: item for item in earlier_run() if item["UserId"] not in {f["UserId"] for f in FOREIGN}}
    generator = UserChangeGenerator(users=10, seed=3)
    generator.adopt([*earlier.values(), *FOREIGN])
    # WHEN it makes many changes
    changes = list(generator.changes(2_000))
    # THEN none is on a foreign key, every free key is used
    touched = {change.user_id for change in changes}
    assert touched.isdisjoint(generator.foreign)
    assert touched == {f"u-{i:05d}" for i in (0, 6, 7, 8, 9)}
    # AND an adopted user's first change continues from its stored version, not a creation
    for user_id, item in earlier.items():
        first = next(change for change in changes if change.user_id == user_id)
        assert first.kind is not ChangeKind.CREATE
        assert first.version == int(item["Version"]) + (first.kind is not ChangeKind.DELETE)


def test_a_key_space_taken_entirely_by_foreign_items_is_an_error_that_says_so():
    generator = UserChangeGenerator(users=2, seed=1)
    generator.adopt([{"UserId": "u-00000"}, {"UserId": "u-00001", "Version": Decimal(1)}])
    with pytest.raises(RuntimeError, match="every key of u-00000..u-00001 holds an item this generator did not write"):
        next(generator.changes(1))


def test_the_reasons_for_one_item():
    assert foreign_reason(generated_user("u-1")) is None
    assert foreign_reason(generated_user("u-1", Version=4)) is None  # plain ints (not scanned) too
    assert foreign_reason(generated_user("u-1", Version=True)) == "whose Version is not a non-negative integer"
    assert foreign_reason(generated_user("u-1", Version=Decimal(-1))) == "whose Version is not a non-negative integer"
    assert (
        foreign_reason(generated_user("u-1", Roles=["member"])) == "not shaped like a generated user (Roles not a set)"
    )
    assert foreign_reason({"Version": Decimal(1)}) == "without a string UserId"


class ConditionalTable:
    """A boto3 ``Table`` double: keeps items by UserId, records each request, and evaluates the
    generator's conditions as DynamoDB does (a comparison with a missing attribute is false)."""

    class ConditionalCheckFailed(Exception):
        pass

    def __init__(self, items=()):
        self.items = {item["UserId"]: dict(item) for item in items}
        self.requests: list[tuple[str, str, str]] = []

    def _check(self, user_id: str, condition: str, values: dict) -> None:
        stored = self.items.get(user_id)
        version = None if stored is None else stored.get("Version")
        numeric = isinstance(version, (int, Decimal)) and not isinstance(version, bool)
        if condition == "attribute_not_exists(UserId)":
            holds = stored is None
        elif condition == "attribute_not_exists(UserId) OR Version < :v":
            holds = stored is None or (numeric and version < values[":v"])
        elif condition == "Version = :v":
            holds = numeric and version == values[":v"]
        else:
            raise AssertionError(f"unexpected condition {condition!r}")
        if not holds:
            raise self.ConditionalCheckFailed(f"{user_id}: {condition}")

    def put_item(self, Item, ConditionExpression, ExpressionAttributeValues=None):
        self.requests.append(("put", Item["UserId"], ConditionExpression))
        self._check(Item["UserId"], ConditionExpression, ExpressionAttributeValues or {})
        self.items[Item["UserId"]] = Item

    def delete_item(self, Key, ConditionExpression, ExpressionAttributeValues):
        self.requests.append(("delete", Key["UserId"], ConditionExpression))
        self._check(Key["UserId"], ConditionExpression, ExpressionAttributeValues)
        del self.items[Key["UserId"]]


def test_a_creation_is_conditional_on_the_key_being_absent_and_never_overwrites_an_item():
    # GIVEN a generator that saw an empty table, and a foreign item written since, with a low Version
    generator = UserChangeGenerator(users=1, seed=4)
    generator.adopt([])
    table = ConditionalTable([{"UserId": "u-00000", "Version": Decimal(1), "Name": "written since the scan"}])
    # WHEN it creates that user
    with pytest.raises(ConditionalTable.ConditionalCheckFailed):
        apply_changes(table, generator.changes(1), total=1, progress=False)
    # THEN the creation was conditional on the key being absent, and the foreign item is intact
    assert table.requests == [("put", "u-00000", "attribute_not_exists(UserId)")]
    assert table.items["u-00000"]["Name"] == "written since the scan"


def test_updates_and_deletes_stay_guarded_by_the_version():
    generator = UserChangeGenerator(users=3, seed=5)
    table = ConditionalTable()
    written = apply_changes(table, generator.changes(200), total=200, progress=False)
    assert written == 200
    conditions = {(kind, condition) for kind, _, condition in table.requests}
    assert conditions == {
        ("put", "attribute_not_exists(UserId)"),
        ("put", "attribute_not_exists(UserId) OR Version < :v"),
        ("delete", "Version = :v"),
    }
    assert {user_id: item["Version"] for user_id, item in table.items.items()} == {
        user_id: item["Version"] for user_id, item in generator.state.items()
    }
