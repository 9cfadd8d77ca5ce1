"""User-change generator: creates, updates and deletes users of the `Users` table.

Each change is one write to `Users` (so one record on its change stream). `Version` grows by
one on every change of a user; a (re-)creation starts at the current time in milliseconds,
so a key deleted and created again (even by another run) continues above its old versions,
as the pipeline requires of writers. The generator keeps a tally of what it did, by kind, so tests
can check what the consumers' filters must drop (e.g. LastSeenAt-only touches).

It continues from the users already in the table (`adopt`), and leaves alone every item it did
not write: one without a non-negative integral `Version` or not shaped like a generated user
is not adopted, its key is never picked (no update, delete or creation over it; a creation is
conditional on the key being absent anyway), and `main` says on stderr how many it left alone
and why.

It rides through outages: a write whose endpoint is unreachable, silent or answering 5xx is
tried again with back-off for up to 5 minutes, and a try refused by its condition after a lost
answer counts as written when the table holds the change (it never writes a change twice).

    python -m scripts.generate_changes --changes 1000 --users 50 --rate 200 --seed 1
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any

import boto3
from boto3.dynamodb.types import TypeSerializer
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from tqdm import tqdm

__all__ = [
    "ChangeKind",
    "ChangeRefused",
    "UserChange",
    "UserChangeGenerator",
    "apply_changes",
    "WORKPLACES",
    "foreign_reason",
    "holds",
    "plan_batches",
    "plan_rounds",
    "write_change",
]

WORKPLACES = tuple(f"w-{i:03d}" for i in range(1, 13))
ROLES = ("member", "admin", "billing", "auditor")
WORKPLACE_ROLES = ("owner", "manager", "staff", "guest")
TITLES = ("Engineer", "Designer", "Nurse", "Chef", "Driver", "Analyst")
FIRST = ("Ada", "Grace", "Alan", "Linus", "Edsger", "Barbara", "Ken", "Margaret")
LAST = ("Lovelace", "Hopper", "Turing", "Torvalds", "Dijkstra", "Liskov", "Thompson", "Hamilton")
STATUSES = ("active", "invited", "suspended")

_NUMBER, _TEXT, _SET, _MAP = "a number", "a string", "a set", "a map"
#: what a generated user holds (`_new_user` + Version), and what the generator reads of one
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


CREATE_CONDITION = "attribute_not_exists(UserId)"
UPDATE_CONDITION = "attribute_not_exists(UserId) OR Version < :v"

MAX_BATCH = 100  # TransactWriteItems takes at most 100 actions, on distinct items
BATCH_SIZE, CONCURRENCY = 25, 4  # the command's defaults (`apply_changes` writes one by one unless told)
WINDOW = 1000  # changes planned into rounds at a time (see `plan_rounds`)
#: cancellation reasons of a transaction that say nothing about its changes: it is tried again
RETRYABLE_REASONS = frozenset(
    {"None", "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}
)
#: errors of the whole call that say nothing about its changes: it is tried again, same token
RETRYABLE_ERRORS = frozenset({"InternalServerError", "TransactionInProgressException"})
RETRIES = 10  # tries again after a retryable cancellation, backing off 50 ms doubling up to 2 s (~12 s in all)
#: the endpoint is unreachable or did not answer: the write is tried again, for up to OUTAGE_S
OUTAGE_ERRORS = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)
OUTAGE_S = 300.0


class ChangeRefused(RuntimeError):
    """A batch's transaction was cancelled because of some of its changes (e.g. a condition failed:
    the table holds something the generator did not expect); none of that batch was written."""

    def __init__(self, refused: list[tuple[UserChange, str]], message: str):
        self.refused = refused
        super().__init__(message)


def plan_rounds(changes: Iterable[UserChange]) -> list[list[UserChange]]:
    """The changes in rounds in which each key appears at most once: a key's n-th change goes to
    round n, so the successive changes of one key are in successive rounds, in their order.
    Within a round the changes keep their relative order. Writing the rounds one after the other,
    each round's changes in any order or at once, writes every key's changes in order."""
    rounds: list[list[UserChange]] = []
    seen: Counter = Counter()
    for change in changes:
        n = seen[change.user_id]
        seen[change.user_id] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(change)
    return rounds


def plan_batches(changes: Iterable[UserChange], batch_size: int) -> list[list[list[UserChange]]]:
    """`plan_rounds`, each round cut into batches of at most `batch_size` changes."""
    return [[round_[i : i + batch_size] for i in range(0, len(round_), batch_size)] for round_ in plan_rounds(changes)]


def apply_changes(
    table,
    changes: Iterator[UserChange],
    *,
    total: int,
    rate: float | None = None,
    progress: bool = True,
    batch_size: int = 1,
    concurrency: int = 1,
    client=None,
) -> int:
    """Write each change to the boto3 `Table` resource, at most `rate` per second; returns how
    many were written.

    Every change is its own write, so its own stream record (INSERT / MODIFY / REMOVE with its
    images), and the writes are conditional on the stored item: a creation on the key being
    absent (it never overwrites an item, even one written since the scan), an update on an
    older Version, a delete on the Version we know; so a generator with a stale view fails
    loudly instead of writing versions backwards or over an item it did not write.

    With the defaults (`batch_size` 1, `concurrency` 1) the changes are written one at a time,
    in order, one PutItem / DeleteItem each (a refused one raises ConditionalCheckFailedException).
    Otherwise the changes are taken `WINDOW` at a time (fewer with a `rate`: a tenth of a second's
    worth), planned into rounds in which each key appears once (`plan_rounds`), and each round is
    written as batches of up to `batch_size` changes, `concurrency` batches at a time, before the
    next round starts: each key's changes land in order, changes of different keys may land in
    another order than generated. With `batch_size` > 1 a batch is one TransactWriteItems call
    (its actions keep their conditions and each makes its own stream record) through `client`,
    a plain DynamoDB client (default: `plain_client(table)`); a transaction cancelled by
    conflicts or throttling is tried again with back-off, one cancelled by a change raises
    `ChangeRefused` naming it, once the round's other batches are done.
    """
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be 1..{MAX_BATCH}, not {batch_size}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    if batch_size == 1 and concurrency == 1:
        window = 1
    else:
        window = max(1, min(WINDOW, math.ceil(rate / 10))) if rate else WINDOW
    if batch_size > 1 and client is None:
        client = plain_client(table)
    table_name = table.name

    def write(batch: list[UserChange]) -> int:
        if batch_size == 1:
            write_change(table, batch[0])
        else:
            _write_transaction(client, table_name, batch)
        return len(batch)

    next_at = time.monotonic()
    written = 0
    with (
        tqdm(total=total, disable=not progress, unit="chg", file=sys.stderr) as bar,
        ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="generate-changes") as pool,
    ):
        while chunk := list(itertools.islice(changes, window)):
            if rate:
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_at = max(next_at + len(chunk) / rate, time.monotonic() - 1.0)
            for batches in plan_batches(chunk, batch_size):
                if len(batches) == 1 or concurrency == 1:
                    for batch in batches:
                        written += write(batch)
                        bar.update(len(batch))
                    continue
                failures: list[BaseException] = []
                for future in as_completed([pool.submit(write, batch) for batch in batches]):
                    if (error := future.exception()) is not None:
                        failures.append(error)
                    else:
                        written += future.result()
                        bar.update(future.result())
                if failures:
                    raise failures[0]
    return written


def plain_client(table):
    """A plain DynamoDB client to `table`'s endpoint, region, settings and credentials, without
    parameter validation: the batched writes serialize their requests themselves (`_wire`),
    which costs a third of what the resource's transformations (a deep copy and a walk of every
    request, then the validation) cost per change; on a 2-core machine that CPU is DynamoDB
    Local's. The credentials come through botocore's `_get_credentials` (private)."""
    source = table.meta.client
    credentials = source._get_credentials()
    frozen = credentials.get_frozen_credentials() if credentials is not None else None
    return boto3.session.Session().client(
        "dynamodb",
        endpoint_url=source.meta.endpoint_url,
        region_name=source.meta.region_name,
        config=source.meta.config.merge(Config(parameter_validation=False)),
        **(
            {
                "aws_access_key_id": frozen.access_key,
                "aws_secret_access_key": frozen.secret_key,
                "aws_session_token": frozen.token,
            }
            if frozen is not None
            else {}
        ),
    )


def write_change(table, change: UserChange) -> None:
    """One conditional write to the boto3 `Table` resource, riding through outages (see
    `_through_outages`)."""
    _through_outages(lambda: _put_or_delete(table, change), lambda: holds(table, change))


def holds(table, change: UserChange) -> bool:
    """Whether the `Table` resource holds exactly what ``change`` wrote (a delete: no item).
    Through the resource: its client takes Python values, not the wire format `_stored` uses."""
    item = table.get_item(Key={"UserId": change.user_id}, ConsistentRead=True).get("Item")
    if change.item is None:
        return item is None
    return item is not None and item.get("Version") == change.version


def _put_or_delete(table, change: UserChange) -> None:
    if change.item is None:
        table.delete_item(
            Key={"UserId": change.user_id},
            ConditionExpression="Version = :v",
            ExpressionAttributeValues={":v": change.version},
        )
    elif change.kind is ChangeKind.CREATE:
        table.put_item(Item=_without_empty_sets(change.item), ConditionExpression=CREATE_CONDITION)
    else:
        table.put_item(
            Item=_without_empty_sets(change.item),
            ConditionExpression=UPDATE_CONDITION,
            ExpressionAttributeValues={":v": change.version},
        )


def _through_outages(write, stored, *, outage_s: float | None = None, sleep=time.sleep) -> None:
    """``write()`` until it returns. An unreachable or silent endpoint (`OUTAGE_ERRORS`) or a 5xx
    is waited out, backing off from 0.1 s to 5 s, for up to ``outage_s`` (`OUTAGE_S`); then the
    error is raised. A try that failed that way may still have been applied (only its answer was
    lost), and so may one that botocore retried by itself (a read timeout while DynamoDB Local
    was paused: its retry is refused, the first attempt was applied): whenever a try is refused
    by its condition and ``stored()`` finds the change in the table, it was written once, and
    counts once."""
    deadline, attempt = None, 0
    while True:
        try:
            write()
            return
        except (*OUTAGE_ERRORS, ClientError) as exc:
            if isinstance(exc, ClientError) and not _server_error(exc):
                if _refused_by_condition(exc) and stored():
                    return
                raise
            deadline = deadline or time.monotonic() + (OUTAGE_S if outage_s is None else outage_s)
            if time.monotonic() > deadline:
                raise
            attempt += 1
            sleep(min(5.0, 0.1 * 2 ** min(attempt, 6)))


def _server_error(exc: ClientError) -> bool:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return type(status) is int and status >= 500


def _refused_by_condition(exc: ClientError) -> bool:
    error = exc.response.get("Error", {}).get("Code")
    if error == "ConditionalCheckFailedException":
        return True
    reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
    return error == "TransactionCanceledException" and "ConditionalCheckFailed" in reasons


def _stored(client, table_name: str, changes: list[UserChange]) -> bool:
    """Whether the table holds exactly what ``changes`` wrote (a delete: no item)."""
    for change in changes:
        item = client.get_item(TableName=table_name, Key={"UserId": {"S": change.user_id}}, ConsistentRead=True).get(
            "Item"
        )
        if change.item is None:
            if item is not None:
                return False
        elif item is None or item.get("Version") != {"N": str(change.version)}:
            return False
    return True


_SERIALIZER = TypeSerializer()


def _wire(value: Any) -> dict:
    """A Python value as a DynamoDB AttributeValue (the generator's types fast, others by boto3)."""
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is int or kind is Decimal:
        return {"N": str(value)}
    if kind is dict:
        return {"M": {k: _wire(v) for k, v in value.items()}}
    if (kind is set or kind is frozenset) and value and all(type(v) is str for v in value):
        return {"SS": sorted(value)}
    return _SERIALIZER.serialize(value)


def _action(table_name: str, change: UserChange) -> dict:
    """`change` as one action of a TransactWriteItems (wire format), with `write_change`'s condition."""
    if change.item is None:
        return {
            "Delete": {
                "TableName": table_name,
                "Key": {"UserId": {"S": change.user_id}},
                "ConditionExpression": "Version = :v",
                "ExpressionAttributeValues": {":v": _wire(change.version)},
            }
        }
    item = {name: _wire(value) for name, value in _without_empty_sets(change.item).items()}
    put: dict[str, Any] = {"TableName": table_name, "Item": item}
    if change.kind is ChangeKind.CREATE:
        put["ConditionExpression"] = CREATE_CONDITION
    else:
        put["ConditionExpression"] = UPDATE_CONDITION
        put["ExpressionAttributeValues"] = {":v": _wire(change.version)}
    return {"Put": put}


def _write_transaction(client, table_name: str, batch: list[UserChange]) -> None:
    """One TransactWriteItems of the batch (distinct keys); all of it is written or none.
    Every try carries the same ClientRequestToken, so no retry (botocore's after a timeout, or
    ours after DynamoDB Local's "timed out waiting for a lock" InternalServerError) can apply
    the transaction twice."""
    actions = [_action(table_name, change) for change in batch]
    token = uuid.uuid4().hex
    for attempt in itertools.count():
        try:
            _through_outages(
                lambda: client.transact_write_items(TransactItems=actions, ClientRequestToken=token),
                lambda: _stored(client, table_name, batch),
            )
            return
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in RETRYABLE_ERRORS and attempt < RETRIES:
                time.sleep(min(2.0, 0.05 * 2**attempt))
                continue
            if code != "TransactionCanceledException":
                raise
            codes = [reason.get("Code", "None") for reason in exc.response.get("CancellationReasons", [])]
            refused = [
                (change, code) for change, code in zip(batch, codes, strict=False) if code not in RETRYABLE_REASONS
            ]
            if refused or attempt >= RETRIES:
                described = refused or [
                    (change, code) for change, code in zip(batch, codes, strict=False) if code != "None"
                ]
                raise ChangeRefused(
                    refused,
                    f"a batch of {len(batch)} changes was not written"
                    + (f" after {attempt + 1} tries" if not refused else "")
                    + ": "
                    + "; ".join(
                        f"{change.user_id} ({change.kind.value}, version {change.version}): {code}"
                        for change, code in described[:5]
                    )
                    + (f" and {len(described) - 5} more" if len(described) > 5 else "")
                    + (
                        " (the table changed since the generator read it, or holds an item it did not write)"
                        if any(code == "ConditionalCheckFailed" for _, code in refused)
                        else ""
                    ),
                ) from exc
            time.sleep(random.uniform(0.5, 1.0) * min(2.0, 0.05 * 2**attempt))


def _without_empty_sets(item: dict) -> dict:
    return {k: v for k, v in item.items() if not (isinstance(v, set) and not v)}


def main(argv: list[str] | None = None) -> int:
    from producer_config import load_pipeline
    from services.clients import aws_resource
    from services.config import StackConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=100, help="how many changes to write")
    parser.add_argument("--users", type=int, default=50, help="size of the user population")
    parser.add_argument("--rate", type=float, default=None, help="changes per second (default: as fast as possible)")
    parser.add_argument(
        "--batch-size",
        type=_bounded(1, MAX_BATCH),
        default=BATCH_SIZE,
        help=f"changes per write call, 1-{MAX_BATCH}: above 1 a TransactWriteItems of distinct keys, each change "
        f"still its own conditional write and stream record; 1: one PutItem / DeleteItem each (default: {BATCH_SIZE})",
    )
    parser.add_argument(
        "--concurrency",
        type=_bounded(1, 64),
        default=CONCURRENCY,
        help=f"batches written at once, always of different keys; each key's changes stay in order "
        f"(default: {CONCURRENCY}; --batch-size 1 --concurrency 1 writes the changes one by one, in order)",
    )
    parser.add_argument("--seed", type=int, default=int(time.time()), help="random seed")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    pipeline = load_pipeline()
    stack = StackConfig.from_env()
    table = aws_resource("dynamodb", stack, pipeline.region).Table("Users")
    generator = UserChangeGenerator(users=args.users, seed=args.seed)
    generator.adopt(item for page in _scan(table) for item in page)
    if (summary := generator.foreign_summary()) is not None:
        print(summary, file=sys.stderr)
    started = time.monotonic()
    try:
        written = apply_changes(
            table,
            generator.changes(args.changes),
            total=args.changes,
            rate=args.rate,
            progress=not args.no_progress,
            batch_size=args.batch_size,
            concurrency=args.concurrency,
        )
    except ChangeRefused as exc:
        print(f"generate_changes: {exc}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    print(
        f"wrote {written} changes in {elapsed:.1f}s ({written / elapsed:.0f}/s): "
        + ", ".join(f"{k}={v}" for k, v in sorted(generator.tally.items())),
        file=sys.stderr,
    )
    return 0


def _bounded(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low}-{high}, not {value}")
        return value

    return parse


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
