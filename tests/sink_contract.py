"""The sink contract: what every sink keeps, whatever stores it. One suite, run against the
memory sink and the DynamoDB sink on a fake client (tests/unit/test_sink_contract.py) and
against every real sink on the real servers (tests/integration/test_sink_contract_real.py).

A test module subclasses ``SinkContract`` (or ``TransactionsContract``) and gives it a
``harness`` fixture. What the contract asks:
  * one answer per write, in order, a ``Skip`` answered SKIPPED;
  * the version guard: an upsert applies only over an older version, a delete wins the tie
    and leaves a tombstone an older (or tied) upsert cannot overwrite;
  * every order of one item's history, written one by one or in one batch, ends at the
    newest change; a full replay changes nothing (every upsert answered STALE).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from consumers.shared.planning import APPLIED, SKIPPED, STALE, Delete, Skip, Upsert, WriteCounts
from consumers.sinks import Sink

#: one item's history: created at 1, updated at 2 and 3, deleted (a REMOVE carries version 3)
HISTORY = ("upsert1", "upsert2", "upsert3", "delete3")
ORDERS = sorted(itertools.permutations(HISTORY))


def history(key: dict[str, Any], names: tuple[str, ...] | list[str]) -> list[Upsert | Delete]:
    made = {
        "upsert1": Upsert(key, {"Name": "one"}, 1),
        "upsert2": Upsert(key, {"Name": "two"}, 2),
        "upsert3": Upsert(key, {"Name": "three"}, 3),
        "delete3": Delete(key, 3),
    }
    return [made[name] for name in names]


@dataclass(frozen=True)
class Stored:
    """What a sink holds for a key: ``name`` (the document's Name) or a deletion. A version the
    sink does not show (OpenSearch forgets a deleted document's) is None."""

    name: str | None
    version: int | None
    deleted: bool


@dataclass
class Harness:
    sink: Sink
    new_key: Callable[[], dict[str, Any]]  # a key no other test uses
    stored: Callable[[dict[str, Any]], Stored | None]  # None: the sink never held the key


class SinkContract:
    """Subclass it with a ``harness`` fixture."""

    def assert_deleted_at_3(self, harness: Harness, key: dict[str, Any]) -> None:
        stored = harness.stored(key)
        assert stored is not None and stored.deleted and stored.version in (3, None), stored

    @pytest.mark.parametrize("order", ORDERS, ids="-".join)
    def test_every_order_of_a_history_written_one_by_one_ends_at_the_delete(self, harness, order):
        key = harness.new_key()
        answers = [harness.sink.write([write]) for write in history(key, order)]
        assert all(len(a) == 1 and a[0].outcome.settled for a in answers)
        assert WriteCounts.of(a[0] for a in answers).applied >= 1
        self.assert_deleted_at_3(harness, key)
        # a full replay changes nothing (the delete re-writes its identical tombstone on the tie)
        replay = [harness.sink.write([write]) for write in history(key, order)]
        assert all(r == [STALE] for r, name in zip(replay, order, strict=True) if name != "delete3")
        self.assert_deleted_at_3(harness, key)

    @pytest.mark.parametrize("order", ORDERS, ids="-".join)
    def test_every_order_of_a_history_in_one_batch_ends_at_the_delete(self, harness, order):
        key = harness.new_key()
        answers = harness.sink.write(history(key, order))
        assert len(answers) == 4 and all(a.outcome.settled for a in answers) and APPLIED in answers
        self.assert_deleted_at_3(harness, key)

    def test_only_newer_upserts_apply_and_a_delete_wins_the_tie(self, harness):
        key, sink = harness.new_key(), harness.sink
        assert sink.write(history(key, ["upsert2"])) == [APPLIED]
        assert sink.write(history(key, ["upsert1"])) == [STALE]
        assert sink.write(history(key, ["upsert2"])) == [STALE]  # a duplicate
        assert sink.write(history(key, ["upsert3"])) == [APPLIED]
        assert harness.stored(key) == Stored("three", 3, False)
        assert sink.write([Delete(key, 3)]) == [APPLIED]  # deletes win the tie
        assert sink.write([Upsert(key, {"Name": "late"}, 3)]) == [STALE]  # and keep it
        self.assert_deleted_at_3(harness, key)

    def test_one_answer_per_write_in_order_skips_included(self, harness):
        first, second = harness.new_key(), harness.new_key()
        writes = [
            Upsert(first, {"Name": "a"}, 2),
            Skip("nothing to do"),
            Upsert(first, {"Name": "old"}, 1),
            Upsert(second, {"Name": "b"}, 1),
        ]
        answers = harness.sink.write(writes)
        assert answers[1] == SKIPPED and answers[3] == APPLIED
        assert WriteCounts.of(answers) == WriteCounts(applied=2, stale=1, skipped=1)
        assert harness.stored(first) == Stored("a", 2, False) and harness.stored(second) == Stored("b", 1, False)

    def test_a_replayed_batch_is_answered_stale_write_by_write(self, harness):
        keys = [harness.new_key() for _ in range(20)]
        writes = [Upsert(key, {"Name": f"n{i}"}, 1 + i % 3) for i, key in enumerate(keys)]
        assert harness.sink.write(writes) == [APPLIED] * len(writes)
        assert harness.sink.write(writes) == [STALE] * len(writes)


@dataclass
class TransactionsHarness:
    """A DynamoDB sink maker over one client; ``transactions()`` the actions of each
    ``TransactWriteItems`` the client was sent, in order."""

    make_sink: Callable[..., Any]  # (strategy, workers=1) -> DynamoDbSink
    new_key: Callable[[], dict[str, Any]]
    transactions: Callable[[], list[int]]
    stored: Callable[[dict[str, Any]], Stored | None]


class TransactionsContract:
    """The DynamoDB sink's two write strategies answer alike; transactions batch as promised."""

    def test_both_strategies_answer_a_batch_with_one_write_per_key_alike(self, txn):
        from consumers.sinks.dynamodb import WriteStrategy

        rng = random.Random(11)
        plan = [(rng.choice([None, 1, 2, 3]), rng.random() < 0.3, rng.randint(1, 4)) for _ in range(150)]
        answers = {}
        for strategy in WriteStrategy:
            sink = txn.make_sink(strategy, workers=4)
            keys = [txn.new_key() for _ in plan]
            setup = [
                Upsert(k, {"Name": "before"}, stored) for k, (stored, _, _) in zip(keys, plan, strict=True) if stored
            ]
            assert sink.write(setup) == [APPLIED] * len(setup)
            answers[strategy] = sink.write(
                [
                    Delete(k, v) if is_delete else Upsert(k, {"Name": "after"}, v)
                    for k, (_, is_delete, v) in zip(keys, plan, strict=True)
                ]
            )
        assert answers[WriteStrategy.TRANSACTIONS] == answers[WriteStrategy.CONDITIONAL_PUTS]
        counts = WriteCounts.of(answers[WriteStrategy.TRANSACTIONS])
        assert counts.stale > 0 and counts.applied > 0

    def test_a_transaction_holds_the_newest_write_of_each_key(self, txn):
        from consumers.sinks.dynamodb import WriteStrategy

        sink = txn.make_sink(WriteStrategy.TRANSACTIONS)
        key, other = txn.new_key(), txn.new_key()
        before = len(txn.transactions())
        answers = sink.write([*history(key, ["upsert1", "upsert3", "upsert2"]), Upsert(other, {"Name": "x"}, 1)])
        assert answers == [STALE, APPLIED, STALE, APPLIED]  # 1 and 2 superseded by 3
        assert txn.transactions()[before:] == [2]  # one action per key
        assert txn.stored(key) == Stored("three", 3, False)

    def test_a_cancelled_transaction_answers_the_stale_write_and_applies_the_rest(self, txn):
        from consumers.sinks.dynamodb import WriteStrategy

        sink = txn.make_sink(WriteStrategy.TRANSACTIONS)
        old, *fresh = (txn.new_key() for _ in range(4))
        assert sink.write([Upsert(old, {"Name": "newer"}, 5)]) == [APPLIED]
        before = len(txn.transactions())
        answers = sink.write(
            [
                Upsert(fresh[0], {"Name": "f"}, 1),
                Upsert(old, {"Name": "older"}, 2),
                *(Upsert(k, {"Name": "f"}, 1) for k in fresh[1:]),
            ]
        )
        assert answers == [APPLIED, STALE, APPLIED, APPLIED]
        assert txn.transactions()[before:] == [4, 3]  # the cancelled one, the rest again
        assert txn.stored(old) == Stored("newer", 5, False)

    @pytest.mark.parametrize("workers", [1, 4])
    def test_more_than_100_writes_go_in_several_transactions(self, txn, workers):
        from consumers.sinks.dynamodb import WriteStrategy

        sink = txn.make_sink(WriteStrategy.TRANSACTIONS, workers)
        writes = [Upsert(txn.new_key(), {"Name": "n"}, 1) for _ in range(230)]
        before = len(txn.transactions())
        assert sink.write(writes) == [APPLIED] * 230
        assert sorted(txn.transactions()[before:]) == [30, 100, 100]
        assert sink.write(writes) == [STALE] * 230  # and a replay finds them all
