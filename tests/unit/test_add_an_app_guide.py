"""docs/add-an-app.md: its worked example is the user-notifications app, shown file by file. The
guide's code blocks are the files in the tree (so the guide cannot drift from what runs), and
what the guide says picks the app up by itself does: the app loads, its filter and transform
run, `verify` reads its sink through the kind, the KCL properties and the AWS template (service,
task role, the kind's grants, secrets and parameters) include it."""

from __future__ import annotations

import json
import re

from consumers.runtime.config import discover_apps
from consumers.runtime.daemon import render_properties
from consumers.shared.planning import Upsert, plan_writes
from consumers.shared.records import ChangeRecord
from consumers.sinks.registry import KINDS
from infra.deploy.aws.template import build_template
from producer_config import DEFAULT_PIPELINE_FILE, load_pipeline
from services.config import REPO_ROOT, StackConfig
from tests.records import payload

GUIDE = (REPO_ROOT / "docs" / "add-an-app.md").read_text()
APP_DIR = REPO_ROOT / "consumers" / "user_notifications"
PIPELINE = load_pipeline()
(APP,) = [app for app in discover_apps(PIPELINE) if app.package == "user_notifications"]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE, flags=re.S)


def test_the_guides_blocks_are_the_files_of_the_app_and_its_ledger_table():
    table_block, app_block = _blocks("toml")
    (transform_block,) = _blocks("python")
    assert table_block in DEFAULT_PIPELINE_FILE.read_text()  # step 1
    assert app_block == (APP_DIR / "app.toml").read_text()  # step 2
    assert transform_block == (APP_DIR / "transform.py").read_text()  # step 3
    assert (APP_DIR / "__init__.py").read_text() == ""


def test_the_sink_kind_is_registered_by_one_line_and_named_in_the_guide():
    registry = (REPO_ROOT / "consumers" / "sinks" / "registry.py").read_text()
    assert "from consumers.sinks.webhook.kind import KIND as WEBHOOK" in registry and "webhook" in KINDS
    for module in ("sink.py", "ledger.py", "kind.py"):
        assert (REPO_ROOT / "consumers" / "sinks" / "webhook" / module).exists() and f"`{module}`" in GUIDE


def test_the_app_loads_with_the_name_source_and_sink_the_guide_gives():
    assert (APP.name, APP.stream_name, APP.sink.type, APP.sink.target, APP.dead_letter_table) == (
        "user-notifications",
        "users-changes",
        "webhook",
        "NotificationDeliveries",
        "user-notifications-deadletters",
    )
    assert [s.name for s in APP.sink.subscribers] == ["crm", "security"]


def _record(event: str, old: dict | None, new: dict | None) -> ChangeRecord:
    data = payload(event, "Users", {"UserId": {"S": "u-1"}}, new_image=new, old_image=old)
    return ChangeRecord.from_kinesis(data, sequence_number="1", partition_key="u-1", version_attribute="Version")


def test_its_filter_and_transform_plan_the_events_the_guide_describes():
    user = {"UserId": {"S": "u-1"}, "Email": {"S": "a@x"}, "LastSeenAt": {"N": "1"}, "Version": {"N": "3"}}
    compiled = APP.compile_filter()
    (created,) = plan_writes(_record("INSERT", None, user), APP.load_transform())
    assert type(created) is Upsert and created.document["type"] == "user.created" and created.version == 6
    seen_only = _record("MODIFY", user, {**user, "LastSeenAt": {"N": "2"}, "Version": {"N": "4"}})
    assert not compiled.matches(seen_only.raw)  # changed_attributes: no event for LastSeenAt


def test_verify_reads_its_sink_through_the_kind_from_the_streams_history():
    view = KINDS["webhook"].read_back(APP.sink, PIPELINE, clients=_NoClients())
    assert view.expected is not None and view.label == "webhook:NotificationDeliveries"
    user = {"UserId": {"S": "u-1"}, "Email": {"S": "a@x"}, "Version": {"N": "3"}}

    class Record:
        data = payload("INSERT", "Users", {"UserId": {"S": "u-1"}}, new_image=user, event_id="e-1")
        sequence_number, partition_key, arrival = "1", "u-1", None

    expected = view.expected(APP, [Record()])
    assert expected == {("crm", "u-1", "v6"): {"in_order": True}}  # security: no creations
    assert view.actual() == {}  # the ledger holds nothing yet


class _NoClients:
    """An empty ledger: a DynamoDB client whose scan finds nothing."""

    def aws(self, service):
        class Pages:
            def paginate(self, **_):
                return [{"Items": []}]

        return type("DynamoDb", (), {"get_paginator": lambda self, name: Pages()})()


def test_the_kcl_properties_and_the_aws_template_include_it(tmp_path):
    props = render_properties(APP, PIPELINE, StackConfig.from_env({"CDC_STATE_DIR": str(tmp_path)}), 1)
    assert "applicationName = user-notifications" in props and "streamName = users-changes" in props
    template = build_template(PIPELINE, list(discover_apps(PIPELINE)))
    resources = template["Resources"]
    assert resources["UserNotificationsService"]["Properties"]["ServiceName"] == "user-notifications"
    assert resources["TableNotificationDeliveries"]["Type"] == "AWS::DynamoDB::Table"
    assert {"WebhookSecretCrm", "WebhookSecretSecurity"} <= set(resources)
    assert template["Parameters"]["NotifyReceiverUrl"]["Type"] == "String"
    environment = resources["UserNotificationsTaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Environment"]
    names = {entry["Name"] for entry in environment}
    assert {"NOTIFY_SECRET_CRM_ARN", "NOTIFY_SECRET_SECURITY_ARN", "NOTIFY_RECEIVER_URL"} <= names
    policy = json.dumps(resources["UserNotificationsTaskRole"]["Properties"]["Policies"])
    assert "table/NotificationDeliveries" in policy and "secretsmanager:GetSecretValue" in policy
    assert "table/user-notifications-deadletters" in policy
