"""`cdc` on the AWS target, end to end, against the emulators (conftest.py): ECS services whose
tasks the Fargate stand-in runs as the project's real workers, LocalStack's Kinesis and
DynamoDB, the project's OpenSearch node. The tests run in this order and share the deployment."""

from __future__ import annotations

import json
import uuid
from collections import Counter

from consumers.runtime.control import ControlStore
from infra.deploy.aws.template import CLUSTER_NAME
from infra.ops.leases import read_leases
from producer_config import thaw
from scripts.changes.generator import UserChangeGenerator
from scripts.changes.writer import apply_changes
from services.clients import aws_client, aws_resource, opensearch_client
from tests.cli import cdc, cdc_json
from tests.converge import assert_converges

APP = "workplace_user_search"
APP_NAME = "workplace-user-search"
STREAM = "workplace-users-v2-changes"
INDEX = "workplace-users-v2"
LOCAL_COMPONENTS = ("DynamoDB Local", "kinesis-mock", "Change relay", "OpenSearch ", "LocalStack", "Stack supervisor")


def _write_changes(aws, pipeline, count: int, seed: int) -> None:
    users = aws_resource("dynamodb", aws.stack, pipeline.region).Table("Users")
    generator = UserChangeGenerator(users=20, seed=seed, prefix=f"aws-{uuid.uuid4().hex[:6]}-")
    changes = list(generator.changes(count))
    apply_changes(users, iter(changes), total=len(changes), progress=False)


def _open_leases_per_owner(aws, pipeline) -> Counter:
    leases = read_leases(aws_client("dynamodb", aws.stack, pipeline.region), APP_NAME)
    return Counter(lease.owner for lease in leases if not lease.ended)


def _rebuild_index_from_nothing(aws, pipeline) -> None:
    """The index deleted and created again, empty, as pipeline.toml declares it (`cdc provision`
    would, but it refuses a stream resharded away from pipeline.toml). Deleting its documents
    would not do: an OpenSearch delete keeps the document's version (gc_deletes), so a replay's
    older versions would rightly be refused as stale."""
    search = opensearch_client(aws.stack)
    search.indices.delete(index=INDEX)
    spec = pipeline.indexes[INDEX]
    search.indices.create(
        index=INDEX, body={"settings": {"index": thaw(spec.settings)}, "mappings": thaw(spec.mappings)}
    )
    assert search.count(index=INDEX)["count"] == 0


def test_status_on_aws_lists_no_local_component_and_shows_each_ecs_service(aws, pipeline):
    _write_changes(aws, pipeline, 60, seed=31)
    assert_converges(aws.stack, pipeline)
    result = cdc("status", env=aws.env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [name for name in LOCAL_COMPONENTS if name in result.stdout], result.stdout
    assert "none run here" in result.stdout
    report = cdc_json("status", env=aws.env)
    apps = {row["app"]: row for row in report["apps"]}
    assert set(apps) == {"app-user-management", "workplace-user-v2", "user-notifications", APP_NAME}
    for row in apps.values():
        assert (row["workers"], row["desired"], row["state"]) == (1, 1, "running"), row
    shards = [row for row in report["shards"] if row["app"] == APP_NAME]
    assert shards and all(row["owner"] and row["checkpoint"] for row in shards), shards
    # the lag the KCL published to CloudWatch (moto): metricsLevel SUMMARY on AWS, per shard
    assert any(row["behind_ms"] is not None for row in shards), shards


def test_alarms_autoscaling_and_a_dashboard_per_app_in_the_template_and_on_the_emulator(aws, pipeline):
    resources = aws.template["Resources"].values()
    kinds = Counter(resource["Type"] for resource in resources)
    assert kinds["AWS::ApplicationAutoScaling::ScalableTarget"] == 4  # one per app
    assert kinds["AWS::ApplicationAutoScaling::ScalingPolicy"] == 4  # one per app
    assert kinds["AWS::CloudWatch::Dashboard"] == 4  # one per app
    assert kinds["AWS::CloudWatch::Alarm"] >= 9
    scaling = aws.client("application-autoscaling")
    targets = {t["ResourceId"]: t for t in scaling.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]}
    search = targets[f"service/{CLUSTER_NAME}/{APP_NAME}"]
    assert search["MinCapacity"] >= 1
    assert search["MaxCapacity"] == pipeline.streams[STREAM].shards  # app.toml: max = the stream's shards
    policies = scaling.describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"]
    assert {p["ResourceId"] for p in policies} == set(targets)
    alarms = aws.client("cloudwatch").describe_alarms()["MetricAlarms"]
    named = [a for a in alarms if APP_NAME in a["AlarmName"]]
    assert {a["MetricName"] for a in named} >= {"MillisBehindLatest", "DeadLettered"}
    dashboards = {d["DashboardName"] for d in aws.client("cloudwatch").list_dashboards()["DashboardEntries"]}
    assert f"kinesis-cdc-{APP_NAME}" in dashboards
    body = json.loads(aws.client("cloudwatch").get_dashboard(DashboardName=f"kinesis-cdc-{APP_NAME}")["DashboardBody"])
    assert body["widgets"]


def test_scale_from_one_worker_to_two_sets_the_desired_count_and_spreads_the_leases_evenly(aws, pipeline):
    rows = cdc_json("scale", APP, "2", env=aws.env)
    ecs = aws.client("ecs")
    (service,) = ecs.describe_services(cluster=CLUSTER_NAME, services=[APP_NAME])["services"]
    assert service["desiredCount"] == 2
    assert len([t for t in aws.fargate.tasks if t.service == APP_NAME]) == 2
    shards = pipeline.streams[STREAM].shards
    assert sorted(row["open_leases"] for row in rows) == [shards // 2, shards - shards // 2]
    assert sorted(_open_leases_per_owner(aws, pipeline).values()) == [shards // 2, shards - shards // 2]
    apps = {row["app"]: row for row in cdc_json("apps", env=aws.env)}
    assert (apps[APP_NAME]["workers"], apps[APP_NAME]["desired"]) == (2, 2)


def test_a_deleted_index_is_rebuilt_exactly_by_a_replay(aws, pipeline):
    _rebuild_index_from_nothing(aws, pipeline)
    (report,) = cdc_json("replay", APP, "--from-trim-horizon", env=aws.env)
    assert report["records"] > 0
    assert_converges(aws.stack, pipeline)
    (service,) = aws.client("ecs").describe_services(cluster=CLUSTER_NAME, services=[APP_NAME])["services"]
    assert service["desiredCount"] == 2  # the count it had before the replay


def test_a_replay_after_a_reshard_rebuilds_the_index_exactly(aws, pipeline):
    shards = pipeline.streams[STREAM].shards
    result = cdc_json("reshard", STREAM, "--shards", str(shards + 1), env=aws.env)
    assert result["after"] == shards + 1
    _write_changes(aws, pipeline, 60, seed=32)
    assert_converges(aws.stack, pipeline)
    _rebuild_index_from_nothing(aws, pipeline)
    (report,) = cdc_json("replay", APP, "--from-trim-horizon", env=aws.env)
    assert report["records"] > 0
    assert_converges(aws.stack, pipeline)
    # the published start stays while a lease sits on the AT_TIMESTAMP sentinel (a shard without
    # a record since the start); the next start or scale clears it once none does
    control = ControlStore(aws_client("dynamodb", aws.stack, pipeline.region))
    leases_db = aws_client("dynamodb", aws.stack, pipeline.region)
    unused_before = all(lease.checkpoint != "AT_TIMESTAMP" for lease in read_leases(leases_db, APP_NAME))
    cdc_json("scale", APP, "2", env=aws.env)
    if unused_before:
        assert control.start_at(APP_NAME) is None
    if any(lease.checkpoint == "AT_TIMESTAMP" for lease in read_leases(leases_db, APP_NAME)):
        assert control.start_at(APP_NAME) is not None
