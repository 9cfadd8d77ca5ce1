"""app.toml's ``[scaling]`` and ``[alarms]`` (consumers.runtime.config): defaults, bounds, and
errors that name the file, the key and the fix."""

from __future__ import annotations

import pytest

from consumers.runtime.config import Alarms, Scaling, discover_apps, load_app
from producer_config import ConfigError, load_pipeline
from tests.unit.conftest import APP_DEAD_LETTER, APP_HEAD, APP_SINK

PIPELINE = load_pipeline()
USERS_SHARDS = PIPELINE.streams["users-changes"].shards  # APP_HEAD reads Users


def app_toml(workers: int | None = None, extra: str = "") -> str:
    head = APP_HEAD + (f"workers = {workers}\n" if workers is not None else "")
    return head + APP_SINK + APP_DEAD_LETTER + extra


def refused(app_folder, text: str) -> ConfigError:
    app_folder("x", text)
    with pytest.raises(ConfigError) as error:
        load_app("x", PIPELINE)
    assert "x/app.toml" in str(error.value)
    return error.value


def test_without_the_sections_the_defaults_hold_and_max_is_the_streams_shard_count(app_folder):
    app_folder("x", app_toml())
    app = load_app("x", PIPELINE)
    assert USERS_SHARDS > 1  # else the default max would not be told apart from min
    assert app.scaling == Scaling(
        min_workers=1, max_workers=USERS_SHARDS, target_lag_ms=60_000, scale_out_cooldown_s=60, scale_in_cooldown_s=300
    )
    assert app.alarms == Alarms(lag_ms=300_000, evaluation_periods=3)


def test_the_sections_are_read(app_folder):
    app_folder(
        "x",
        app_toml(
            workers=2,
            extra="[scaling]\nmin_workers = 2\nmax_workers = 3\ntarget_lag_ms = 5000\n"
            "scale_out_cooldown_s = 0\nscale_in_cooldown_s = 900\n"
            "[alarms]\nlag_ms = 20000\nevaluation_periods = 5\n",
        ),
    )
    app = load_app("x", PIPELINE)
    assert app.scaling == Scaling(2, 3, 5000, 0, 900)
    assert app.alarms == Alarms(20_000, 5)


def test_each_app_of_the_repository_scales_up_to_its_streams_shards():
    for app in discover_apps(PIPELINE):
        assert app.scaling.max_workers <= PIPELINE.streams[app.stream_name].shards, app.name
        assert app.scaling.min_workers <= app.workers <= app.scaling.max_workers, app.name


def test_a_max_above_the_shard_count_is_refused_naming_the_key_and_the_fix(app_folder):
    error = refused(app_folder, app_toml(extra=f"[scaling]\nmax_workers = {USERS_SHARDS + 1}\n"))
    assert error.where == "scaling.max_workers"
    assert f"{USERS_SHARDS} shard(s) of stream 'users-changes'" in error.reason
    assert f"set it to {USERS_SHARDS} or less" in error.reason


def test_a_max_below_the_min_is_refused(app_folder):
    error = refused(app_folder, app_toml(workers=2, extra="[scaling]\nmin_workers = 2\nmax_workers = 1\n"))
    assert error.where == "scaling.max_workers" and "less than scaling.min_workers (2)" in error.reason


@pytest.mark.parametrize(
    ("workers", "scaling"),
    [(1, "min_workers = 2\n"), (USERS_SHARDS + 1, ""), (3, "max_workers = 2\n")],
    ids=["below-min", "above-the-default-max", "above-max"],
)
def test_app_workers_outside_the_scaling_range_is_refused(app_folder, workers, scaling):
    error = refused(app_folder, app_toml(workers=workers, extra="[scaling]\n" + scaling))
    assert error.where == "app.workers" and "outside [scaling] min_workers..max_workers" in error.reason


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ("[scaling]\nmin_workers = 0\n", "scaling.min_workers"),
        ("[scaling]\ntarget_lag_ms = 0\n", "scaling.target_lag_ms"),
        ("[scaling]\nscale_in_cooldown_s = -1\n", "scaling.scale_in_cooldown_s"),
        ("[scaling]\nmax_workers = '2'\n", "scaling.max_workers"),
        ("[alarms]\nevaluation_periods = 0\n", "alarms.evaluation_periods"),
        ("[alarms]\nevaluation_periods = 1441\n", "alarms.evaluation_periods"),
    ],
)
def test_bad_values_name_their_key(app_folder, extra, where):
    assert refused(app_folder, app_toml(extra=extra)).where == where


def test_a_lag_alarm_not_above_the_scaling_target_is_refused(app_folder):
    error = refused(app_folder, app_toml(extra="[scaling]\ntarget_lag_ms = 90000\n[alarms]\nlag_ms = 90000\n"))
    assert error.where == "alarms.lag_ms" and "scaling.target_lag_ms (90000)" in error.reason


@pytest.mark.parametrize(
    ("extra", "where", "hint"),
    [
        ("[scaling]\nmax_worker = 2\n", "scaling.max_worker", "did you mean 'max_workers'?"),
        ("[alarms]\ntopic_arn = 'arn:aws:sns:us-east-1:123456789012:t'\n", "alarms.topic_arn", "lag_ms"),
        ("[alarm]\nlag_ms = 1\n", "alarm", "did you mean 'alarms'?"),
    ],
)
def test_unknown_keys_of_the_new_sections_are_refused(app_folder, extra, where, hint):
    error = refused(app_folder, app_toml(extra=extra))
    assert error.where == where and "unknown key" in error.reason and hint in error.reason
