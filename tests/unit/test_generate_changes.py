"""The change generator over a table that holds items it did not write (no server).

``adopt`` is given a scan result as a boto3 ``Table`` returns it (numbers as ``Decimal``):
users an earlier run wrote, and foreign items. ``apply_changes`` writes to a table double
that records the requests and evaluates their conditions as DynamoDB does; batched, to a
client double that applies TransactWriteItems as DynamoDB does (all or nothing, one action per
item, conditions) and records the order in which each key's changes landed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from decimal import Decimal

import pytest
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from scripts.changes.cli import main
from scripts.changes.generator import UserChangeGenerator
from scripts.changes.model import WORKPLACES, ChangeKind, UserChange, foreign_reason
from scripts.changes.outages import through_outages
from scripts.changes.transactions import ChangeRefused
from scripts.changes.writer import apply_changes, plan_batches, plan_rounds


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


def test_a_membership_added_to_a_user_in_every_workplace_becomes_a_touch():
    # (it raised IndexError choosing a free workplace among none, in long runs over few users)
    generator = UserChangeGenerator(users=1, seed=1)
    everywhere = generated_user("u-00000", Workplaces={w: {"Role": "staff"} for w in WORKPLACES})
    kind, item = generator._mutate(ChangeKind.MEMBERSHIP_ADD, dict(everywhere))
    assert kind is ChangeKind.TOUCH and item["Workplaces"] == everywhere["Workplaces"]
    assert item["LastSeenAt"] > everywhere["LastSeenAt"]


class ConditionalTable:
    """A boto3 ``Table`` double: keeps items by UserId, records each request, and evaluates the
    generator's conditions as DynamoDB does (a comparison with a missing attribute is false)."""

    class ConditionalCheckFailed(Exception):
        pass

    name = "Users"

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


# -- batched writing: the plan


def changes_with_deletes_and_recreations(users: int = 6, count: int = 600, seed: int = 3) -> list[UserChange]:
    changes = list(UserChangeGenerator(users=users, seed=seed).changes(count))
    kinds = Counter(change.kind for change in changes)
    assert kinds[ChangeKind.DELETE] > 10 and kinds[ChangeKind.CREATE] > users  # re-creations of deleted keys
    return changes


def test_rounds_hold_each_key_once_and_each_keys_changes_in_successive_rounds():
    changes = changes_with_deletes_and_recreations()
    rounds = plan_rounds(changes)
    # every change exactly once (deletes included, as deletes)
    assert sorted(map(id, (c for r in rounds for c in r))) == sorted(map(id, changes))
    # a key at most once per round
    assert all(len({c.user_id for c in r}) == len(r) for r in rounds)
    # written round after round, each key's changes come in the generated order
    by_key: dict[str, list[UserChange]] = defaultdict(list)
    for change in changes:
        by_key[change.user_id].append(change)
    landed: dict[str, list[UserChange]] = defaultdict(list)
    for round_ in rounds:
        for change in round_:
            landed[change.user_id].append(change)
    assert landed == by_key
    # and a round keeps the generated order of its changes
    position = {id(c): i for i, c in enumerate(changes)}
    assert all([position[id(c)] for c in r] == sorted(position[id(c)] for c in r) for r in rounds)
    # as many rounds as the busiest key has changes: no round more than needed
    assert len(rounds) == max(len(v) for v in by_key.values())


def test_batches_cut_each_round_without_losing_or_moving_a_change():
    changes = changes_with_deletes_and_recreations(users=60, count=900)
    planned = plan_batches(changes, 25)
    assert [[c for batch in batches for c in batch] for batches in planned] == plan_rounds(changes)
    assert all(1 <= len(batch) <= 25 for batches in planned for batch in batches)
    assert max(len(batch) for batches in planned for batch in batches) == 25


def test_a_delete_stays_a_delete_carrying_the_version_it_removes():
    changes = changes_with_deletes_and_recreations()
    for change in (c for r in plan_rounds(changes) for c in r):
        assert (change.kind is ChangeKind.DELETE) == (change.item is None)


# -- batched writing: against a TransactWriteItems double


class TransactingClient:
    """A DynamoDB client double for ``transact_write_items`` (wire format): the actions' items
    must be distinct, every condition is checked before anything is written, and a cancelled
    transaction writes nothing. It fails when two transactions in flight share a key, records
    each write as a stream record would (key, event, version) and can cancel the first
    ``conflicts`` calls with TransactionConflict, and fail the first ``lock_timeouts`` calls
    whole with DynamoDB Local's InternalServerError, writing nothing (the tokens of the calls
    failed so and of the calls that wrote are kept)."""

    def __init__(self, items=(), conflicts: int = 0, pause_s: float = 0.002, lock_timeouts: int = 0):
        self.items = {item["UserId"]: dict(item) for item in items}
        self.stream: list[tuple[str, str, int]] = []
        self.calls: list[int] = []
        self.conflicts = conflicts
        self.lock_timeouts = lock_timeouts
        self.failed_tokens: set[str] = set()
        self.written_tokens: set[str] = set()
        self.pause_s = pause_s
        self.in_flight: set[str] = set()
        self.transactions_in_flight = 0
        self.most_in_flight = 0
        self.lock = threading.Lock()

    @staticmethod
    def _cancelled(codes: list[str]) -> ClientError:
        return ClientError(
            {
                "Error": {"Code": "TransactionCanceledException", "Message": f"cancelled {codes}"},
                "CancellationReasons": [{"Code": code} for code in codes],
            },
            "TransactWriteItems",
        )

    def get_item(self, TableName, Key, ConsistentRead):
        """The read-back after a refusal (wire format; only the Version matters to it)."""
        with self.lock:
            stored = self.items.get(Key["UserId"]["S"])
        return {} if stored is None else {"Item": {"Version": {"N": str(stored["Version"])}}}

    def _holds(self, action: dict) -> bool:
        ((verb, body),) = action.items()
        key = body["Item"]["UserId"]["S"] if verb == "Put" else body["Key"]["UserId"]["S"]
        stored = self.items.get(key)
        value = int(body["ExpressionAttributeValues"][":v"]["N"]) if "ExpressionAttributeValues" in body else None
        condition = body["ConditionExpression"]
        if condition == "attribute_not_exists(UserId)":
            return stored is None
        if condition == "attribute_not_exists(UserId) OR Version < :v":
            return stored is None or ("Version" in stored and stored["Version"] < value)
        assert condition == "Version = :v", condition
        return stored is not None and stored.get("Version") == value

    def transact_write_items(self, TransactItems, ClientRequestToken):
        keys = [(a.get("Put", {}).get("Item") or a["Delete"]["Key"])["UserId"]["S"] for a in TransactItems]
        with self.lock:
            if self.lock_timeouts:
                self.lock_timeouts -= 1
                self.failed_tokens.add(ClientRequestToken)
                raise ClientError(
                    {"Error": {"Code": "InternalServerError", "Message": "too long waiting for a lock"}},
                    "TransactWriteItems",
                )
        if len(set(keys)) != len(keys):
            raise ClientError(
                {"Error": {"Code": "ValidationException", "Message": "multiple operations on one item"}},
                "TransactWriteItems",
            )
        with self.lock:
            assert self.in_flight.isdisjoint(keys), "two transactions in flight write the same key"
            self.in_flight.update(keys)
            self.transactions_in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.transactions_in_flight)
        try:
            time.sleep(self.pause_s)  # lets the batches of a round overlap
            with self.lock:
                self.calls.append(len(TransactItems))
                if self.conflicts:
                    self.conflicts -= 1
                    raise self._cancelled(["None"] * (len(keys) - 1) + ["TransactionConflict"])
                codes = ["None" if self._holds(a) else "ConditionalCheckFailed" for a in TransactItems]
                if any(code != "None" for code in codes):
                    raise self._cancelled(codes)
                self.written_tokens.add(ClientRequestToken)
                for key, action in zip(keys, TransactItems, strict=True):
                    if "Put" in action:
                        item = {k: TypeDeserializer().deserialize(v) for k, v in action["Put"]["Item"].items()}
                        self.stream.append((key, "MODIFY" if key in self.items else "INSERT", int(item["Version"])))
                        self.items[key] = item
                    else:
                        removed = self.items.pop(key)
                        self.stream.append((key, "REMOVE", int(removed["Version"])))
        finally:
            with self.lock:
                self.in_flight.difference_update(keys)
                self.transactions_in_flight -= 1


def expected_stream(changes: list[UserChange]) -> dict[str, list[tuple[str, int]]]:
    event = {ChangeKind.CREATE: "INSERT", ChangeKind.DELETE: "REMOVE"}
    by_key: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for change in changes:
        by_key[change.user_id].append((event.get(change.kind, "MODIFY"), change.version))
    return by_key


def landed_stream(client: TransactingClient) -> dict[str, list[tuple[str, int]]]:
    by_key: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for key, event, version in client.stream:
        by_key[key].append((event, version))
    return by_key


def test_a_batched_run_writes_every_change_once_each_key_in_order_in_concurrent_transactions():
    # GIVEN a generator over few keys (many deletes and re-creations of one key) and a table double
    generator = UserChangeGenerator(users=60, seed=7)
    changes = list(generator.changes(1500))
    client = TransactingClient()
    # WHEN the changes are written in batches of 25, 4 at a time
    written = apply_changes(
        ConditionalTable(),
        iter(changes),
        total=len(changes),
        progress=False,
        batch_size=25,
        concurrency=4,
        client=client,
    )
    # THEN each change is its own write, each key's in the generated order, deletes as deletes
    assert written == len(changes) == len(client.stream)
    assert landed_stream(client) == expected_stream(changes)
    # AND the table ends as the generator believes it is
    assert client.items == generator.state
    # AND it took transactions of up to 25 distinct keys, several at once
    assert max(client.calls) == 25 and len(client.calls) < len(changes) / 10
    assert client.most_in_flight > 1


def _assert_all_written_despite(client: TransactingClient, seed: int) -> None:
    """200 changes in batches of 10, 2 at a time, through ``client``: every one lands, in order."""
    generator = UserChangeGenerator(users=30, seed=seed)
    changes = list(generator.changes(200))
    written = apply_changes(
        ConditionalTable(),
        iter(changes),
        total=len(changes),
        progress=False,
        batch_size=10,
        concurrency=2,
        client=client,
    )
    assert written == len(changes) and landed_stream(client) == expected_stream(changes)
    assert client.items == generator.state


def test_a_transaction_cancelled_by_conflicts_is_tried_again_not_dropped():
    _assert_all_written_despite(TransactingClient(conflicts=3), seed=8)


def test_a_transaction_failed_whole_by_a_lock_timeout_is_tried_again_with_the_same_token():
    client = TransactingClient(lock_timeouts=4)
    _assert_all_written_despite(client, seed=9)
    assert client.lock_timeouts == 0 and client.failed_tokens <= client.written_tokens  # tried again, same token


def test_a_batched_creation_never_overwrites_an_item_written_since_the_scan():
    # GIVEN a generator that saw an empty table, and a foreign item written since, with a low Version
    generator = UserChangeGenerator(users=1, seed=4)
    generator.adopt([])
    foreign = {"UserId": "u-00000", "Version": 1, "Name": "written since the scan"}
    client = TransactingClient([foreign])
    # WHEN it writes in batches
    with pytest.raises(ChangeRefused, match=r"u-00000 \(create, version \d+\): ConditionalCheckFailed") as refused:
        apply_changes(
            ConditionalTable(),
            generator.changes(5),
            total=5,
            progress=False,
            batch_size=25,
            concurrency=2,
            client=client,
        )
    # THEN it fails loudly naming the change, and the foreign item is intact
    assert [(change.user_id, code) for change, code in refused.value.refused] == [("u-00000", "ConditionalCheckFailed")]
    assert client.items == {"u-00000": foreign} and client.stream == []


def test_the_command_refuses_a_batch_size_above_the_transaction_limit(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--batch-size", "101"])
    assert exited.value.code == 2 and "must be 1-100, not 101" in capsys.readouterr().err


def test_creations_create_every_missing_user_of_the_key_space_once_and_changes_continue_them():
    generator = UserChangeGenerator(users=30, seed=5, prefix="c-")
    first = list(generator.changes(10))
    created = list(generator.creations())
    existing = {c.user_id for c in first if c.item is not None}
    assert all(c.kind is ChangeKind.CREATE and c.item["Version"] == c.version for c in created)
    assert {c.user_id for c in created}.isdisjoint(existing)
    assert len(generator.state) == 30 and list(generator.creations()) == []
    live = set(generator.state)
    for change in generator.changes(200):  # every user exists: a CREATE only follows a DELETE
        assert (change.kind is ChangeKind.CREATE) == (change.user_id not in live)
        live.symmetric_difference_update({change.user_id} if change.item is None or change.user_id not in live else ())


def _client_error(code: str, status: int = 400, reasons: list | None = None) -> ClientError:
    response = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    if reasons is not None:
        response["CancellationReasons"] = [{"Code": reason} for reason in reasons]
    return ClientError(response, "PutItem")


def _script(*outcomes):
    """A write that raises or returns the outcomes in turn, counting its calls."""
    calls = []

    def write():
        calls.append(1)
        outcome = outcomes[len(calls) - 1]
        if isinstance(outcome, BaseException):
            raise outcome

    return write, calls


def test_the_generator_waits_out_an_unreachable_endpoint_and_a_5xx():
    from botocore.exceptions import EndpointConnectionError

    slept = []
    write, calls = _script(
        EndpointConnectionError(endpoint_url="http://x"), _client_error("ServiceUnavailable", 503), None
    )
    through_outages(write, lambda: pytest.fail("nothing was refused"), sleep=slept.append)
    assert len(calls) == 3 and len(slept) == 2 and slept[0] < slept[1]


def test_a_write_applied_before_its_answer_was_lost_counts_once_and_is_not_written_twice():
    from botocore.exceptions import ReadTimeoutError

    # the first try was applied, its answer timed out; the second is refused by its condition
    write, calls = _script(ReadTimeoutError(endpoint_url="http://x"), _client_error("ConditionalCheckFailedException"))
    through_outages(write, lambda: True, sleep=lambda s: None)
    assert len(calls) == 2
    # a transaction's refusal says so in its reasons
    write, _ = _script(
        ReadTimeoutError(endpoint_url="http://x"),
        _client_error("TransactionCanceledException", reasons=["ConditionalCheckFailed", "None"]),
    )
    through_outages(write, lambda: True, sleep=lambda s: None)


def test_a_refusal_is_raised_when_the_table_holds_something_else():
    from botocore.exceptions import EndpointConnectionError

    refused = _client_error("ConditionalCheckFailedException")
    write, _ = _script(EndpointConnectionError(endpoint_url="http://x"), refused)
    with pytest.raises(ClientError):
        through_outages(write, lambda: False, sleep=lambda s: None)
    write, _ = _script(refused)
    with pytest.raises(ClientError):
        through_outages(write, lambda: False, sleep=lambda s: None)


def test_a_first_refusal_of_a_change_the_table_holds_counts_once():
    """botocore retries a timed-out request itself: its retry is refused by the condition the
    first attempt (applied, its answer lost) made true. The loop saw one refused try only."""
    write, calls = _script(_client_error("ConditionalCheckFailedException"))
    through_outages(write, lambda: True, sleep=lambda s: None)
    assert len(calls) == 1


def test_an_outage_longer_than_the_limit_is_raised():
    from botocore.exceptions import EndpointConnectionError

    down = EndpointConnectionError(endpoint_url="http://x")
    write, calls = _script(down, down, down)
    with pytest.raises(EndpointConnectionError):
        through_outages(write, lambda: False, outage_s=-1, sleep=lambda s: None)
    assert len(calls) == 1


def test_the_back_offs_wait_as_the_generator_always_did():
    """The generator's waits, from the project's one policy (`base.retry.Backoff`): through an
    outage 0.2 s doubling to 5 s; between tries of a transaction 50 ms doubling to 2 s, after a
    cancellation scaled by a random factor of 0.5-1."""
    import random

    from scripts.changes.outages import OUTAGE_BACKOFF
    from scripts.changes.transactions import CANCELLED_BACKOFF, TRANSACTION_BACKOFF

    assert [OUTAGE_BACKOFF.delay(n) for n in range(1, 40)] == [min(5.0, 0.1 * 2 ** min(n, 6)) for n in range(1, 40)]
    assert [TRANSACTION_BACKOFF.delay(n + 1) for n in range(11)] == [min(2.0, 0.05 * 2**n) for n in range(11)]
    rng = random.Random(3)
    for n in range(11):
        ceiling = min(2.0, 0.05 * 2**n)
        assert 0.5 * ceiling <= CANCELLED_BACKOFF.delay(n + 1, rng) <= ceiling
