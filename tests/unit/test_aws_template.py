"""infra.deploy.aws.template: the CloudFormation template follows producer_config/ and app.toml, and
the generator is deterministic (the template is generated on demand, never committed)."""

from __future__ import annotations

import json

import pytest

from consumers.runtime.config import discover_apps
from consumers.runtime.control import CONTROL_TABLE
from infra.deploy.aws import template as tpl
from infra.deploy.aws.render import to_yaml
from producer_config import load_pipeline

PIPELINE = load_pipeline()
APPS = discover_apps(PIPELINE)
TEMPLATE = tpl.build_template(PIPELINE, APPS)
RESOURCES = TEMPLATE["Resources"]


def of_type(kind: str) -> dict[str, dict]:
    return {name: r["Properties"] for name, r in RESOURCES.items() if r["Type"] == kind}


def test_the_generator_is_deterministic(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert tpl.main(["--out", str(first)]) == 0
    assert tpl.main(["--out", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()
    assert to_yaml(tpl.build_template(load_pipeline(), discover_apps(load_pipeline()))) == first.read_text()


def test_json_output_is_the_same_document(tmp_path):
    out = tmp_path / "t.json"
    assert tpl.main(["--json", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == TEMPLATE


def test_help(capsys):
    with pytest.raises(SystemExit) as done:
        tpl.main(["--help"])
    assert done.value.code == 0
    assert "--out" in capsys.readouterr().out


def test_every_table_of_the_pipeline_and_every_dead_letter_table():
    tables = {p["TableName"]: p for p in of_type("AWS::DynamoDB::Table").values()}
    assert set(tables) == set(PIPELINE.tables) | {a.dead_letter_table for a in APPS} | {CONTROL_TABLE}
    for properties in tables.values():
        assert properties["BillingMode"] == "PAY_PER_REQUEST"
        assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert "StreamSpecification" not in properties  # on AWS the native destination replaces the relay
    for spec in PIPELINE.tables.values():
        properties = tables[spec.name]
        assert [k["AttributeName"] for k in properties["KeySchema"]] == list(spec.key_names)
        if spec.ttl_attribute:
            assert properties["TimeToLiveSpecification"] == {"AttributeName": spec.ttl_attribute, "Enabled": True}
        else:
            assert "TimeToLiveSpecification" not in properties
        if spec.change_stream:
            assert properties["KinesisStreamSpecification"] == {
                "StreamArn": {"Fn::GetAtt": [tpl.logical_id("Stream", spec.change_stream), "Arn"]},
                "ApproximateCreationDateTimePrecision": PIPELINE.creation_time_precision,
            }
        else:
            assert "KinesisStreamSpecification" not in properties
    for app in APPS:
        keys = tables[app.dead_letter_table]["KeySchema"]
        assert keys == [
            {"AttributeName": "ShardId", "KeyType": "HASH"},
            {"AttributeName": "SequenceNumber", "KeyType": "RANGE"},
        ]


def test_every_stream_with_its_shards_retention_and_encryption():
    streams = {p["Name"]: p for p in of_type("AWS::Kinesis::Stream").values()}
    assert set(streams) == set(PIPELINE.streams)
    for spec in PIPELINE.streams.values():
        assert streams[spec.name]["ShardCount"] == spec.shards
        assert streams[spec.name]["RetentionPeriodHours"] == spec.retention_hours
        assert streams[spec.name]["StreamEncryption"]["EncryptionType"] == "KMS"


def test_each_app_runs_as_a_fargate_service_of_app_workers_tasks():
    services = {p["ServiceName"]: p for p in of_type("AWS::ECS::Service").values()}
    assert set(services) == {a.name for a in APPS}
    for app in APPS:
        service = services[app.name]
        assert service["DesiredCount"] == app.workers and service["LaunchType"] == "FARGATE"
        task = RESOURCES[service["TaskDefinition"]["Ref"]]["Properties"]
        [container] = task["ContainerDefinitions"]
        env = {e["Name"]: e["Value"] for e in container["Environment"]}
        assert env["CDC_APP"] == app.package and env["CDC_TARGET"] == "aws" and env["CDC_METRICS"] == "emf"
        assert ("CDC_OPENSEARCH_URL" in env) == (app.sink.type == "opensearch")
        assert container["ReadonlyRootFilesystem"] is True
        log_group = RESOURCES[container["LogConfiguration"]["Options"]["awslogs-group"]["Ref"]]
        assert log_group["Properties"]["LogGroupName"] == f"/kinesis-cdc/{app.name}"


def test_the_domain_is_created_unless_an_existing_one_is_given():
    assert RESOURCES["OpenSearchDomain"]["Condition"] == "CreateOpenSearchDomain"
    assert TEMPLATE["Conditions"]["CreateOpenSearchDomain"] == {
        "Fn::Equals": [{"Ref": "ExistingOpenSearchEndpoint"}, ""]
    }
    domain = RESOURCES["OpenSearchDomain"]["Properties"]
    assert domain["EncryptionAtRestOptions"] == {"Enabled": True}
    assert domain["NodeToNodeEncryptionOptions"] == {"Enabled": True}
    assert domain["DomainEndpointOptions"]["EnforceHTTPS"] is True


def test_without_an_opensearch_app_there_is_no_domain():
    apps = tuple(a for a in APPS if a.sink.type != "opensearch")
    template = tpl.build_template(PIPELINE, apps)
    assert "OpenSearchDomain" not in template["Resources"]
    assert set(template["Conditions"]) == {tpl.ALARM_TOPIC_CONDITION}  # the alarms' own only
    assert not any("OpenSearch" in name for name in template["Parameters"])


def test_every_checkov_skip_says_why():
    for name, resource in RESOURCES.items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert skip["id"].startswith(("CKV_", "CKV2_")) and len(skip["comment"]) > 40, name
    used = {s["id"] for r in RESOURCES.values() for s in r.get("Metadata", {}).get("checkov", {}).get("skip", [])}
    from consumers.sinks.opensearch.kind import DOMAIN_SKIPS  # the kinds' own resources skip their own
    from consumers.sinks.webhook.kind import SECRET_SKIPS

    assert used == {check for skips in (*tpl.SKIPS.values(), DOMAIN_SKIPS, SECRET_SKIPS) for check, _ in skips}


@pytest.mark.parametrize(
    ("parts", "expected"),
    [(("Table", "AppUsers_V2"), "TableAppUsersV2"), (("Stream", "users-changes"), "StreamUsersChanges")],
)
def test_logical_ids(parts, expected):
    assert tpl.logical_id(*parts) == expected


def test_logical_ids_are_unique_per_config():
    names = [tpl.logical_id("Table", t) for t in PIPELINE.tables] + [tpl.logical_id(a.name) for a in APPS]
    assert len(names) == len(set(names))


def test_yaml_writes_every_string_quoted_and_blocks_indented():
    doc = {"A": {"Fn::GetAtt": ["X", "Arn"]}, "L": [{"a": 1, "b": [True, []]}, "0755"], "e": {}, "k y": "true"}
    assert to_yaml(doc) == (
        'A:\n  Fn::GetAtt:\n    - "X"\n    - "Arn"\n'
        'L:\n  - a: 1\n    b:\n      - true\n      - []\n  - "0755"\n'
        'e: {}\n"k y": "true"\n'
    )


def test_yaml_refuses_what_it_cannot_write():
    with pytest.raises(TypeError):
        to_yaml({"a": None})


def test_the_domain_refuses_bulk_bodies_naming_another_index():
    # the sink posts to /<index>/_bulk (its action lines name no index): with explicit indexes
    # refused, the task role's grant on its index path bounds what it can write
    (domain,) = of_type("AWS::OpenSearchService::Domain").values()
    assert domain["AdvancedOptions"] == {"rest.action.multi.allow_explicit_index": "false"}
