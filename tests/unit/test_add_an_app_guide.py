"""docs/add-an-app.md, followed step by step on a fresh app: its code blocks are what this test
writes (the pipeline table, the app.toml, the transform), so the guide cannot drift from what
works. Then what the guide says picks the app up by itself is checked: the app loads, its
filter and transform run, `verify` expects its items, the KCL properties and the AWS template
(service, task role, sink grants, dead letters, autoscaling) include it."""

from __future__ import annotations

import json
import re

import pytest

import consumers
from consumers.runtime import config
from consumers.runtime.daemon import render_properties
from consumers.shared.planning import Upsert, plan_writes
from consumers.shared.records import ChangeRecord
from consumers.verify import expected_contents
from infra.deploy.aws.template import build_template
from producer_config import DEFAULT_PIPELINE_FILE, load_pipeline
from services.config import REPO_ROOT, StackConfig
from tests.records import payload

GUIDE = (REPO_ROOT / "docs" / "add-an-app.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE, flags=re.S)


@pytest.fixture()
def guide_app(tmp_path, monkeypatch):
    """Steps 1-3 of the guide, in a folder the loaders read instead of consumers/."""
    table_block, app_block = _blocks("toml")
    (transform_block,) = _blocks("python")
    pipeline_file = tmp_path / "pipeline.toml"
    pipeline_file.write_text(DEFAULT_PIPELINE_FILE.read_text() + "\n" + table_block)  # step 1
    apps = tmp_path / "consumers"
    (apps / "user_emails").mkdir(parents=True)
    (apps / "user_emails" / "__init__.py").write_text("")
    (apps / "user_emails" / "app.toml").write_text(app_block)  # step 2
    (apps / "user_emails" / "transform.py").write_text(transform_block)  # step 3
    monkeypatch.setattr(config, "APPS_DIR", apps)
    monkeypatch.setattr(consumers, "__path__", [*consumers.__path__, str(apps)])
    pipeline = load_pipeline(pipeline_file)
    (app,) = config.discover_apps(pipeline)
    return pipeline, app


def _record(event: str, old: dict | None, new: dict | None) -> ChangeRecord:
    data = payload(event, "Users", {"UserId": {"S": "u-1"}}, new_image=new, old_image=old)
    return ChangeRecord.from_kinesis(data, sequence_number="1", partition_key="u-1", version_attribute="Version")


USER = {"UserId": {"S": "u-1"}, "Email": {"S": "Ann@Example.com"}, "LastSeenAt": {"N": "1"}, "Version": {"N": "3"}}


def test_the_guides_app_loads_with_the_name_source_and_sink_it_gives(guide_app):
    pipeline, app = guide_app
    assert (app.package, app.name, app.stream_name) == ("user_emails", "user-emails", "users-changes")
    assert (app.sink.type, app.sink.target, app.dead_letter_table) == (
        "dynamodb",
        "UserEmails",
        "user-emails-deadletters",
    )
    assert pipeline.tables["UserEmails"].version_attribute == "Version"


def test_its_filter_and_transform_plan_the_writes_the_guide_describes(guide_app):
    _, app = guide_app
    compiled, transform = app.compile_filter(), app.load_transform()
    insert = _record("INSERT", None, USER)
    (write,) = plan_writes(insert, transform)
    assert type(write) is Upsert and write.document["Email"] == "ann@example.com" and write.version == 3
    seen_only = _record("MODIFY", USER, {**USER, "LastSeenAt": {"N": "2"}, "Version": {"N": "4"}})
    assert not compiled.matches(seen_only.raw)  # changed_attributes: no write for LastSeenAt
    removed = _record("REMOVE", USER, None)
    assert [type(w).__name__ for w in plan_writes(removed, transform)] == ["Delete"]


def test_verify_expects_its_items_from_the_source_table(guide_app):
    _, app = guide_app
    items = iter([{"UserId": {"S": "u-1"}, "Email": {"S": "Ann@Example.com"}, "Version": {"N": "3"}}])
    expected = expected_contents(app, items, lambda upsert: (json.dumps(upsert.key), dict(upsert.document)))
    assert list(expected.values()) == [{"Email": "ann@example.com"}]


def test_the_kcl_properties_and_the_aws_template_include_it(guide_app, tmp_path):
    pipeline, app = guide_app
    props = render_properties(app, pipeline, StackConfig.from_env({"CDC_STATE_DIR": str(tmp_path)}), 1)
    assert "applicationName = user-emails" in props and "streamName = users-changes" in props
    resources = build_template(pipeline, [app])["Resources"]
    assert resources["UserEmailsService"]["Properties"]["ServiceName"] == "user-emails"
    assert resources["TableUserEmails"]["Type"] == "AWS::DynamoDB::Table"
    assert "UserEmailsScalableTarget" in resources
    policy = json.dumps(resources["UserEmailsTaskRole"]["Properties"]["Policies"])
    assert "table/UserEmails" in policy and "table/user-emails-deadletters" in policy and "dynamodb:PutItem" in policy
