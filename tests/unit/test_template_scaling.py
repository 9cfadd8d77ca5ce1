"""infra.deploy.aws.template, per app: Application Auto Scaling on the lag, three alarms and a
dashboard from app.toml's ``[scaling]`` and ``[alarms]``; and the control table."""

from __future__ import annotations

import json
import re

import pytest

from consumers.runtime import metrics
from consumers.runtime.config import discover_apps, load_app
from consumers.runtime.control import CONTROL_KEY, CONTROL_TABLE
from infra.deploy.aws import template as tpl
from producer_config import load_pipeline
from tests.unit.conftest import APP_DEAD_LETTER, APP_HEAD, APP_SINK

PIPELINE = load_pipeline()
APPS = discover_apps(PIPELINE)
TEMPLATE = tpl.build_template(PIPELINE, APPS)
RESOURCES = TEMPLATE["Resources"]
PSEUDO = {"AWS::Region": PIPELINE.region, "AWS::Partition": "aws", "AWS::AccountId": "123456789012"}


def of_type(template: dict, kind: str) -> dict[str, dict]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def app_resources(template: dict, app, kind: str) -> list[dict]:
    prefix = tpl.logical_id(app.name)
    return [r for name, r in of_type(template, kind).items() if name.startswith(prefix)]


def substituted(text: str) -> str:
    return re.sub(r"\$\{([^}]+)\}", lambda m: PSEUDO[m[1]], text)


def scaled_app(app_folder, extra: str, workers: int = 1):
    app_folder("x", APP_HEAD + f"workers = {workers}\n" + APP_SINK + APP_DEAD_LETTER + extra)
    app = load_app("x", PIPELINE)
    return app, tpl.build_template(PIPELINE, [app])


# ------------------------------------------------------------------------------ autoscaling
def test_the_scalable_target_takes_min_and_max_from_app_toml(app_folder):
    app, template = scaled_app(
        app_folder, "[scaling]\nmin_workers = 2\nmax_workers = 3\ntarget_lag_ms = 7000\n", workers=2
    )
    [target] = of_type(template, "AWS::ApplicationAutoScaling::ScalableTarget").values()
    assert (target["Properties"]["MinCapacity"], target["Properties"]["MaxCapacity"]) == (2, 3)
    [policy] = of_type(template, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    assert policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 7000
    # the service still starts at app.workers (a stack update sets it back there)
    [service] = of_type(template, "AWS::ECS::Service").values()
    assert service["Properties"]["DesiredCount"] == 2


@pytest.mark.parametrize("app", APPS, ids=lambda a: a.name)
def test_by_default_an_app_scales_from_one_worker_to_its_streams_shards(app):
    [target] = app_resources(TEMPLATE, app, "AWS::ApplicationAutoScaling::ScalableTarget")
    properties = target["Properties"]
    assert properties["MinCapacity"] == 1
    assert properties["MaxCapacity"] == PIPELINE.streams[app.stream_name].shards
    assert properties["ServiceNamespace"] == "ecs" and properties["ScalableDimension"] == "ecs:service:DesiredCount"
    service = f"{tpl.logical_id(app.name)}Service"
    assert RESOURCES[service]["Properties"]["ServiceName"] == app.name
    assert properties["ResourceId"] == {
        "Fn::Join": ["/", ["service", {"Ref": "Cluster"}, {"Fn::GetAtt": [service, "Name"]}]]
    }
    assert "RoleARN" not in properties  # Application Auto Scaling's service-linked role for ECS


@pytest.mark.parametrize("app", APPS, ids=lambda a: a.name)
def test_the_policy_tracks_the_lag_the_apps_processors_publish(app):
    [policy] = app_resources(TEMPLATE, app, "AWS::ApplicationAutoScaling::ScalingPolicy")
    properties = policy["Properties"]
    assert properties["PolicyType"] == "TargetTrackingScaling"
    assert properties["ScalingTargetId"] == {"Ref": f"{tpl.logical_id(app.name)}ScalableTarget"}
    configuration = properties["TargetTrackingScalingPolicyConfiguration"]
    assert configuration["TargetValue"] == app.scaling.target_lag_ms == 60_000
    assert (configuration["ScaleOutCooldown"], configuration["ScaleInCooldown"]) == (60, 300)
    metric = configuration["CustomizedMetricSpecification"]
    assert metric == {
        "Namespace": "KinesisCdc",
        "MetricName": "MillisBehindLatest",
        "Dimensions": [{"Name": "App", "Value": app.name}],
        "Statistic": "Maximum",
    }
    # ... which is what an EMF document of the app declares
    document = metrics.emf_document(app.name, "shardId-0", {"behind_ms": 5}, timestamp_ms=1)
    [directive] = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == metric["Namespace"]
    assert {m["Name"] for m in directive["Metrics"]} == {metric["MetricName"]}
    assert directive["Dimensions"] == [[d["Name"] for d in metric["Dimensions"]]]
    assert {d["Name"]: document[d["Name"]] for d in metric["Dimensions"]} == {"App": app.name}


# ------------------------------------------------------------------------------ alarms
def alarms_of(app) -> dict[str, dict]:
    return {
        r["Properties"]["MetricName"]: r["Properties"] for r in app_resources(TEMPLATE, app, "AWS::CloudWatch::Alarm")
    }


@pytest.mark.parametrize("app", APPS, ids=lambda a: a.name)
def test_each_app_has_a_lag_a_dead_letter_and_a_tasks_alarm(app):
    alarms = alarms_of(app)
    assert set(alarms) == {"MillisBehindLatest", "DeadLettered", "PendingTaskCount"}
    emf_dimensions = [{"Name": "App", "Value": app.name}]
    lag = alarms["MillisBehindLatest"]
    assert (lag["Namespace"], lag["Dimensions"], lag["Statistic"]) == ("KinesisCdc", emf_dimensions, "Maximum")
    assert (lag["Threshold"], lag["EvaluationPeriods"], lag["Period"]) == (300_000, 3, 60)
    assert lag["ComparisonOperator"] == "GreaterThanThreshold"
    dead = alarms["DeadLettered"]
    assert (dead["Namespace"], dead["Dimensions"], dead["Statistic"]) == ("KinesisCdc", emf_dimensions, "Sum")
    assert (dead["Threshold"], dead["ComparisonOperator"], dead["EvaluationPeriods"]) == (0, "GreaterThanThreshold", 1)
    assert dead["TreatMissingData"] == "notBreaching"
    tasks = alarms["PendingTaskCount"]
    assert tasks["Namespace"] == "ECS/ContainerInsights"  # the cluster enables Container Insights
    assert RESOURCES["Cluster"]["Properties"]["ClusterSettings"] == [{"Name": "containerInsights", "Value": "enabled"}]
    assert tasks["Dimensions"] == [
        {"Name": "ClusterName", "Value": RESOURCES["Cluster"]["Properties"]["ClusterName"]},
        {"Name": "ServiceName", "Value": app.name},
    ]
    assert (tasks["Statistic"], tasks["Threshold"], tasks["EvaluationPeriods"]) == ("Maximum", 0, 5)
    for alarm in alarms.values():
        assert app.name in alarm["AlarmName"]
        assert (
            alarm["AlarmActions"] == alarm["OKActions"] == {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], []]}
        )
        assert alarm["MetricName"] in metrics.METRICS or alarm["Namespace"] == "ECS/ContainerInsights"


def test_the_lag_alarm_follows_app_toml(app_folder):
    app, template = scaled_app(app_folder, "[alarms]\nlag_ms = 120000\nevaluation_periods = 7\n")
    [lag] = [
        r["Properties"]
        for r in of_type(template, "AWS::CloudWatch::Alarm").values()
        if r["Properties"]["MetricName"] == "MillisBehindLatest"
    ]
    assert (lag["Threshold"], lag["EvaluationPeriods"]) == (120_000, 7)


def test_a_latency_alarm_watches_the_processors_p99_when_app_toml_asks_for_one(app_folder):
    """Opt-in: after a replay the latency of the replayed changes is their age."""
    assert all("ChangeToApplyLatency" not in alarms_of(app) for app in APPS)
    app, template = scaled_app(app_folder, "[alarms]\nlatency_p99_ms = 5000\n")
    [latency] = [
        r["Properties"]
        for r in of_type(template, "AWS::CloudWatch::Alarm").values()
        if r["Properties"]["MetricName"] == "ChangeToApplyLatency"
    ]
    assert (latency["Namespace"], latency["Dimensions"]) == ("KinesisCdc", [{"Name": "App", "Value": app.name}])
    assert (latency["ExtendedStatistic"], latency["Threshold"], latency["EvaluationPeriods"]) == ("p99", 5000, 3)
    assert "Statistic" not in latency and latency["TreatMissingData"] == "notBreaching"


def test_the_alarms_notify_the_topic_parameter_only_when_one_is_given():
    parameter = TEMPLATE["Parameters"]["AlarmTopicArn"]
    assert parameter["Default"] == ""
    assert TEMPLATE["Conditions"]["HasAlarmTopic"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}
    pattern = re.compile(parameter["AllowedPattern"])
    assert pattern.fullmatch("") and pattern.fullmatch("arn:aws:sns:us-east-1:123456789012:cdc-alarms")
    assert not pattern.fullmatch("cdc-alarms") and not pattern.fullmatch("arn:aws:sqs:us-east-1:123456789012:q")


# ------------------------------------------------------------------------------ dashboards
@pytest.mark.parametrize("app", APPS, ids=lambda a: a.name)
def test_each_app_has_a_dashboard_whose_body_is_json_about_the_app(app):
    [dashboard] = app_resources(TEMPLATE, app, "AWS::CloudWatch::Dashboard")
    properties = dashboard["Properties"]
    assert properties["DashboardName"] == f"kinesis-cdc-{app.name}"
    text = properties["DashboardBody"]["Fn::Sub"]
    assert set(re.findall(r"\$\{([^}]+)\}", text)) <= set(PSEUDO)  # nothing else for Fn::Sub to resolve
    body = json.loads(substituted(text))
    graphs = [w["properties"] for w in body["widgets"] if w["type"] == "metric"]
    for graph in graphs:
        assert graph["region"] == PIPELINE.region
        for row in graph["metrics"]:
            assert app.name in row  # every line is the app's own
    shown = {row[1] for graph in graphs for row in graph["metrics"]}
    expected = {
        "MillisBehindLatest",
        "Received",
        "Applied",
        "Stale",
        "DeadLettered",
        "BatchDuration",
        "ChangeToApplyLatency",
    }
    assert shown == expected | {"DesiredTaskCount", "RunningTaskCount", "PendingTaskCount"}
    [alarm_widget] = [w["properties"] for w in body["widgets"] if w["type"] == "alarm"]
    names = sorted(a["Properties"]["AlarmName"] for a in app_resources(TEMPLATE, app, "AWS::CloudWatch::Alarm"))
    prefix = f"arn:aws:cloudwatch:{PIPELINE.region}:123456789012:alarm:"
    assert sorted(alarm_widget["alarms"]) == [prefix + name for name in names]
    base = tpl.logical_id(app.name)
    assert set(dashboard["DependsOn"]) == {
        name for name in of_type(TEMPLATE, "AWS::CloudWatch::Alarm") if name.startswith(base)
    }


def test_a_dashboard_output_per_app():
    for app in APPS:
        dashboard = f"{tpl.logical_id(app.name)}Dashboard"
        assert TEMPLATE["Outputs"][f"{dashboard}Name"] == {"Value": {"Ref": dashboard}}


# ------------------------------------------------------------------------------ control table
def test_the_control_table_is_created_once_like_the_other_tables():
    [control] = [
        r for r in of_type(TEMPLATE, "AWS::DynamoDB::Table").values() if r["Properties"]["TableName"] == CONTROL_TABLE
    ]
    assert RESOURCES["ControlTable"] is control
    properties = control["Properties"]
    assert properties["KeySchema"] == [{"AttributeName": CONTROL_KEY, "KeyType": "HASH"}]
    assert properties["AttributeDefinitions"] == [{"AttributeName": CONTROL_KEY, "AttributeType": "S"}]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["SSESpecification"] == {"SSEEnabled": True}
    assert "KinesisStreamSpecification" not in properties and "TimeToLiveSpecification" not in properties
    assert control["DeletionPolicy"] == "Retain"
