"""`freshness`: each app's end-to-end lag along its path (relay, upstream app, own shards)."""

from __future__ import annotations

from consumers.runtime.config import discover_apps
from infra.ops.status import freshness
from producer_config import load_pipeline

APPS = list(discover_apps(load_pipeline()))


def _rows(lags: dict[str, int], relay: dict[str, float]):
    app_rows = [{"app": app.name} for app in APPS]
    shard_rows = [{"app": name, "lag_ms": lag} for name, lag in lags.items()] + [{"app": APPS[0].name, "lag_ms": None}]
    relay_rows = [{"table": table, "oldest_age_s": age} for table, age in relay.items()]
    freshness(APPS, app_rows, shard_rows, relay_rows)
    return {row["app"]: (row["lag_ms"], row["freshness_ms"]) for row in app_rows}


def test_a_derived_tables_reader_is_as_stale_as_the_app_that_writes_that_table():
    rows = _rows({"app-user-management": 100, "workplace-user-v2": 5_000, "workplace-user-search": 200}, {})
    assert rows["app-user-management"] == (100, 100)
    assert rows["workplace-user-v2"] == (5_000, 5_000)
    # WorkplaceUsers_V2 is written by workplace-user-v2: a Users change not in it yet is not in the index
    assert rows["workplace-user-search"] == (200, 5_000)


def test_the_relay_backlog_of_a_source_table_counts_for_every_app_downstream():
    rows = _rows(
        {"app-user-management": 0, "workplace-user-v2": 0, "workplace-user-search": 0, "user-notifications": 0},
        {"Users": 7.5},
    )
    assert {name: fresh for name, (_, fresh) in rows.items()} == {
        "app-user-management": 7_500,
        "user-notifications": 7_500,
        "workplace-user-v2": 7_500,
        "workplace-user-search": 7_500,
    }
