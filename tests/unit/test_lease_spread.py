"""`even_spread`: the lease moves `cdc scale` makes where the workers keep running (ECS)."""

from __future__ import annotations

from collections import Counter

import pytest

from infra.ops.leases import even_spread


def _after(owners: dict[str, str | None], plan: dict[str, str]) -> Counter:
    return Counter({**owners, **plan}.values())


def test_a_new_worker_gets_half_of_the_leases_of_the_one_that_held_them_all():
    owners = {f"shard-{i}": "w1" for i in range(4)}
    plan = even_spread(owners, ["w1", "w2"])
    assert len(plan) == 2 and set(plan.values()) == {"w2"}
    assert _after(owners, plan) == Counter({"w1": 2, "w2": 2})


def test_an_even_spread_moves_nothing_and_an_uneven_split_keeps_the_extra_where_it_is():
    assert even_spread({"a": "w1", "b": "w2"}, ["w1", "w2"]) == {}
    assert even_spread({"a": "w1", "b": "w2", "c": "w2"}, ["w1", "w2"]) == {}


def test_leases_of_workers_gone_and_unassigned_ones_go_to_the_workers_alive():
    owners = {"a": "gone", "b": None, "c": "w1", "d": "w1"}
    plan = even_spread(owners, ["w1", "w2"])
    assert set(plan) == {"a", "b"} and _after(owners, plan) == Counter({"w1": 2, "w2": 2})


@pytest.mark.parametrize("leases, workers", [(1, 3), (3, 2), (5, 3), (8, 3), (0, 2)])
def test_every_worker_ends_within_one_lease_of_every_other(leases, workers):
    owners = {f"s{i}": "w0" for i in range(leases)}
    alive = [f"w{i}" for i in range(workers)]
    counts = _after(owners, even_spread(owners, alive))
    loads = [counts.get(w, 0) for w in alive]
    assert sum(loads) == leases and max(loads) - min(loads) <= 1


def test_no_worker_alive_plans_nothing():
    assert even_spread({"a": "w1"}, []) == {}
