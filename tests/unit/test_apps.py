"""The three apps' pure transforms, their configuration, and the generated KCL properties."""

from __future__ import annotations

import re

import orjson
import pytest

from consumers.app_user_management import transform as app_users
from consumers.runtime.config import discover_apps, load_app
from consumers.runtime.daemon import render_properties
from consumers.shared.planning import Delete, Skip, Upsert, plan_writes
from consumers.shared.records import ChangeRecord, encode_image
from consumers.sinks.dynamodb import TOMBSTONE_ATTRIBUTE
from consumers.workplace_user_search import transform as search
from consumers.workplace_user_v2 import transform as workplace
from producer_config import ConfigError, load_pipeline
from services.config import StackConfig
from tests.records import payload
from tests.unit.conftest import APP_DEAD_LETTER, APP_HEAD, APP_SINK

PIPELINE = load_pipeline()


def record(event: str, new: dict | None, old: dict | None, table: str = "Users", keys=("UserId",)) -> ChangeRecord:
    image = new or old
    data = payload(
        event,
        table,
        encode_image({k: image[k] for k in keys}),
        new_image=None if new is None else encode_image(new),
        old_image=None if old is None else encode_image(old),
        size_bytes=1,
    )
    return ChangeRecord.from_kinesis(data, sequence_number="1", partition_key="p")


def user(version: int, **changes) -> dict:
    return {
        "UserId": "u1",
        "Email": " Ada@Example.COM ",
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "Status": "Active",
        "Roles": {"member", "admin"},
        "LastSeenAt": 5,
        "Version": version,
        "Workplaces": {
            "w-1": {"Role": "staff", "Title": "Engineer", "JoinedAt": 100},
            "w-2": {"Role": "owner", "Title": "Chef", "JoinedAt": 200},
        },
        **changes,
    }


# ------------------------------------------------------------------- app-user-management
def test_user_projection_normalises_fields():
    (write,) = plan_writes(record("INSERT", user(3), None), app_users.transform)
    assert write == Upsert(
        {"UserId": "u1"},
        {
            "Email": "ada@example.com",
            "DisplayName": "Ada Lovelace",
            "Status": "active",
            "Roles": ["admin", "member"],
            "WorkplaceCount": 2,
        },
        3,
    )


def test_user_projection_falls_back_to_the_email_local_part_and_active():
    projected = app_users.project_user({"Email": "Grace@X.org"})
    assert projected["DisplayName"] == "grace" and projected["Status"] == "active" and projected["WorkplaceCount"] == 0


def test_user_removal_deletes_at_the_removed_version():
    assert plan_writes(record("REMOVE", None, user(9)), app_users.transform) == (Delete({"UserId": "u1"}, 9),)


def test_changed_attributes_cover_exactly_what_the_projection_reads():
    app = load_app("app_user_management", PIPELINE)
    assert set(app.changed_attributes) == set(app_users.PROJECTED_ATTRIBUTES)
    touch = orjson.loads(record("MODIFY", user(4, LastSeenAt=99), user(3)).raw_payload)
    rename = orjson.loads(record("MODIFY", user(4, FirstName="Augusta"), user(3)).raw_payload)
    compiled = app.compile_filter()
    assert not compiled.matches(touch) and compiled.matches(rename)


# --------------------------------------------------------------------- workplace-user-v2
def keys_of(writes, kind):
    return sorted(w.key["WorkplaceId"] for w in writes if isinstance(w, kind))


def test_insert_creates_one_item_per_membership_with_user_fields():
    writes = plan_writes(record("INSERT", user(1), None), workplace.transform)
    assert keys_of(writes, Upsert) == ["w-1", "w-2"]
    first = next(w for w in writes if w.key["WorkplaceId"] == "w-1")
    assert first.key == {"WorkplaceId": "w-1", "UserId": "u1"} and first.version == 1
    assert first.document == {
        "Email": "ada@example.com",
        "DisplayName": "Ada Lovelace",
        "Status": "active",
        "Role": "staff",
        "Title": "Engineer",
        "JoinedAt": 100,
    }


def test_modify_adds_removes_and_updates_only_what_changed():
    old = user(4)
    new = user(
        5,
        Workplaces={
            "w-1": {"Role": "manager", "Title": "Engineer", "JoinedAt": 100},
            "w-3": {"Role": "guest", "Title": "Driver", "JoinedAt": 300},
        },
    )
    writes = plan_writes(record("MODIFY", new, old), workplace.transform)
    assert keys_of(writes, Upsert) == ["w-1", "w-3"] and keys_of(writes, Delete) == ["w-2"]
    assert all(w.version == 5 for w in writes)


def test_modify_of_a_user_field_updates_every_membership():
    writes = plan_writes(record("MODIFY", user(5, Email="new@x.org"), user(4)), workplace.transform)
    assert keys_of(writes, Upsert) == ["w-1", "w-2"]


def test_modify_without_membership_effect_is_a_skip():
    assert plan_writes(record("MODIFY", user(5, Roles={"member"}), user(4)), workplace.transform) == (
        Skip("no membership changed"),
    )


def test_remove_deletes_every_membership():
    writes = plan_writes(record("REMOVE", None, user(7)), workplace.transform)
    assert keys_of(writes, Delete) == ["w-1", "w-2"] and all(w.version == 7 for w in writes)


@pytest.mark.parametrize(
    "event,new,old,passes",
    [
        ("INSERT", user(1), None, True),
        ("INSERT", user(1, Workplaces={}), None, False),
        ("REMOVE", None, user(3, Workplaces={}), False),
        ("MODIFY", user(3, Workplaces={}), user(2), True),  # the last membership removed
        ("MODIFY", user(3, LastSeenAt=9), user(2), False),  # activity only
        ("MODIFY", user(3, Roles={"x"}), user(2), False),  # not in a membership item
        ("MODIFY", user(3, Status="suspended"), user(2), True),
    ],
)
def test_workplace_filter(event, new, old, passes):
    def with_ids(image):
        if image is not None and image["Workplaces"]:
            image = {**image, "WorkplaceIds": set(image["Workplaces"])}
        return image

    raw = orjson.loads(record(event, with_ids(new), with_ids(old)).raw_payload)
    assert load_app("workplace_user_v2", PIPELINE).compile_filter().matches(raw) is passes


# ----------------------------------------------------------------- workplace-user-search
MEMBER = {
    "WorkplaceId": "w-1",
    "UserId": "u1",
    "Email": "a@b.c",
    "DisplayName": "A",
    "Status": "active",
    "Role": "staff",
    "Title": "T",
    "JoinedAt": 1,
    "Version": 6,
}
WP_KEYS = ("WorkplaceId", "UserId")


def test_search_indexes_the_searchable_fields_at_the_item_version():
    (write,) = plan_writes(record("INSERT", MEMBER, None, "WorkplaceUsers_V2", WP_KEYS), search.transform)
    assert write.version == 6 and write.key == {"WorkplaceId": "w-1", "UserId": "u1"}
    assert write.document == {
        "Email": "a@b.c",
        "DisplayName": "A",
        "Status": "active",
        "Role": "staff",
        "Title": "T",
        "JoinedAt": 1,
        "Version": 6,
    }


@pytest.mark.parametrize(
    "event,new,old",
    [
        ("REMOVE", None, MEMBER),
        ("MODIFY", {"WorkplaceId": "w-1", "UserId": "u1", "Version": 7, TOMBSTONE_ATTRIBUTE: True}, MEMBER),
    ],
)
def test_search_deletes_on_remove_and_on_tombstone(event, new, old):
    (write,) = plan_writes(record(event, new, old, "WorkplaceUsers_V2", WP_KEYS), search.transform)
    assert isinstance(write, Delete) and write.version == (7 if new else 6)


def test_search_filter_ignores_ttl_removals_of_tombstones():
    app = load_app("workplace_user_search", PIPELINE)
    raw = orjson.loads(record("REMOVE", None, MEMBER, "WorkplaceUsers_V2", WP_KEYS).raw_payload)
    raw["userIdentity"] = None  # as in every record the destination writes for a user's change
    assert app.compile_filter().matches(raw)
    raw["userIdentity"] = {"principalId": "dynamodb.amazonaws.com", "type": "Service"}
    assert not app.compile_filter().matches(raw)


# ------------------------------------------------------------------ config and properties
def test_every_app_has_its_own_lease_table_and_dead_letter_table():
    apps = discover_apps(PIPELINE)
    assert {a.package for a in apps} == {
        "app_user_management",
        "user_notifications",
        "workplace_user_v2",
        "workplace_user_search",
    }
    assert len({a.name for a in apps}) == len({a.dead_letter_table for a in apps}) == 4


def test_properties_are_generated_from_the_app_and_the_stack():
    app = load_app("workplace_user_search", PIPELINE)
    stack = StackConfig.from_env({"CDC_KINESIS_PORT": "5001", "CDC_DYNAMODB_PORT": "5002", "CDC_LEASES_PORT": "5003"})
    props = dict(
        line.split(" = ", 1)
        for line in render_properties(app, PIPELINE, stack, 2).splitlines()
        if line and not line.startswith("#")
    )
    assert props["applicationName"] == "workplace-user-search"
    assert props["streamName"] == "workplace-users-v2-changes"
    assert props["workerId"] == "workplace-user-search-worker-2"
    # the lease tables live on the local stack's second DynamoDB Local (StackConfig.leases_endpoint)
    assert props["kinesisEndpoint"] == "http://127.0.0.1:5001" and props["dynamoDBEndpoint"] == "http://127.0.0.1:5003"
    assert props["retrievalMode"] == "POLLING" and props["metricsLevel"] == "NONE"
    assert props["maxRecords"] == str(app.max_records)
    assert props["executableName"].endswith("-m consumers.runtime.worker --app workplace_user_search")


def test_a_trim_horizon_start_is_written_at_the_streams_creation_when_it_is_given(tmp_path):
    app = load_app("app_user_management", PIPELINE)
    stack = StackConfig.from_env({"CDC_STATE_DIR": str(tmp_path)})

    def start(**kwargs) -> dict[str, str]:
        text = render_properties(app, PIPELINE, stack, 1, **kwargs)
        return {
            k: v for k, v in (line.split(" = ", 1) for line in text.splitlines() if " = " in line) if "initial" in k
        }

    assert app.starting_position == "TRIM_HORIZON"
    assert start() == {"initialPositionInStream": "TRIM_HORIZON"}
    assert start(stream_created=1_700_000_000.0) == {"initialPositionInStreamExtended": "1700000000"}
    # a replay's start, published in the app's control item, wins over both
    published = {"initialPositionInStreamExtended": "1600000000"}
    assert start(start_at=1_600_000_000.4, stream_created=1_700_000_000.0) == published


def test_a_bad_app_config_names_the_file_the_key_and_the_reason(app_folder):
    from consumers.runtime import config

    app_folder("bad", APP_HEAD + APP_SINK + APP_DEAD_LETTER + '[batch]\nstarting_position = "EARLIEST"\n')
    with pytest.raises(ConfigError) as error:
        config.load_app("bad", PIPELINE)
    assert "bad/app.toml" in str(error.value) and "batch.starting_position" in str(error.value)
    assert "EARLIEST" in str(error.value)


@pytest.mark.parametrize(
    ("extra", "where", "hint"),
    [
        ("[batch]\nmax_record = 100\n", "batch.max_record", "did you mean 'max_records'?"),
        ("[retries]\nmax_attempts = 3\n", "retries", "did you mean 'retry'?"),
        (
            "[sink]\ntype = 'dynamodb'\ntarget = 'AppUsers_V2'\nwrite_stratgy = 'transactions'\n",
            "sink.write_stratgy",
            "write_strategy",
        ),
    ],
)
def test_a_misspelt_app_config_key_is_refused_with_the_key_it_resembles(app_folder, extra, where, hint):
    from consumers.runtime import config

    app_folder("typo", APP_HEAD + APP_DEAD_LETTER + ("" if extra.startswith("[sink]") else APP_SINK) + extra)
    with pytest.raises(ConfigError) as error:
        config.load_app("typo", PIPELINE)
    message = str(error.value)
    assert "typo/app.toml" in message and f"{where}: unknown key" in message and hint in message


def test_a_worker_whose_transform_does_not_import_stops_before_the_kcl_starts(
    app_folder, tmp_path, monkeypatch, caplog
):
    from consumers.runtime import daemon

    head = APP_HEAD.replace('"m:f"', '"consumers.no_such_module:transform"')
    app_folder("broken", head + APP_SINK + APP_DEAD_LETTER)
    monkeypatch.setattr(daemon.subprocess, "Popen", lambda *a, **k: pytest.fail("the KCL was started"))
    assert daemon.main(["--app", "broken", "--state-dir", str(tmp_path / "state")]) == 2
    assert re.search(r"broken/app.toml: app.transform: cannot import", caplog.text)


def test_an_unknown_filter_operator_names_the_file_the_pattern_and_the_operator(app_folder):
    from consumers.runtime import config

    pattern = 'Filters = [{ Pattern = \'{"eventName": [{"sufix": "X"}]}\' }]\n'
    app_folder("f", APP_HEAD + APP_SINK + APP_DEAD_LETTER + "[filter.criteria]\n" + pattern)
    with pytest.raises(
        ConfigError, match=r"f/app.toml: filter.criteria: Filters\[0\].Pattern .*unrecognized match type 'sufix'"
    ):
        config.load_app("f", PIPELINE)


def test_up_refuses_to_start_anything_when_a_transform_does_not_import(app_folder, tmp_path):
    from dataclasses import replace

    from infra.local import stack as stacks
    from producer_config import load_pipeline
    from services.config import StackConfig

    head = APP_HEAD.replace('"m:f"', '"consumers.no_such_module:transform"')
    app_folder("broken", head + APP_SINK + APP_DEAD_LETTER)
    state = tmp_path / "state"
    with pytest.raises(ConfigError, match=r"broken/app.toml: app.transform: cannot import"):
        stacks.up(replace(StackConfig.from_env({}), state_dir=state), load_pipeline())
    assert not state.exists()  # nothing was started
