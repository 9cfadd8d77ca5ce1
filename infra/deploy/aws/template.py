"""The pipeline's CloudFormation template, generated from `producer_config/` and every
`consumers/*/app.toml` (through their loaders): one source of truth for the local stack,
LocalStack and AWS.

    .venv/bin/python -m infra.deploy.aws.template [--out FILE] [--json]

What it holds: the tables of `pipeline.toml` (PAY_PER_REQUEST, point-in-time recovery, TTL
where configured, the Kinesis streaming destination of each change source with the configured
ApproximateCreationDateTimePrecision; no DynamoDB Streams: on AWS only the local relay would
read them), the Kinesis streams (shards, retention, KMS encryption), what each sink kind in use
adds (``SinkKind.deployment``: the OpenSearch domain, or the ``ExistingOpenSearch*`` parameters
for one you have), the control table ``kinesis-cdc-control`` (`consumers.runtime.control`: one
item per app, which each task role may read for its own app only), and per app: its dead-letter
table, a log group, an IAM task role (`infra.deploy.aws.iam`: least privilege), an ECS task
definition, a Fargate service whose desired count is ``app.workers``, and from app.toml's
``[scaling]`` and ``[alarms]``:

  * Application Auto Scaling of the service between ``min_workers`` and ``max_workers`` (at most
    the source stream's shards): target tracking of ``target_lag_ms`` on the Maximum of the EMF
    metric ``MillisBehindLatest`` (namespace ``KinesisCdc``, dimension ``App``; published per
    batch of records only, so an idle app keeps its count). No RoleARN: the service-linked role
    of Application Auto Scaling for ECS. The service keeps ``DesiredCount: app.workers``: a stack
    update that changes the service sets the count back to it, and the scaling moves it again at
    its next activity;
  * three alarms, each notifying the ``AlarmTopicArn`` parameter's SNS topic when one is given:
    the lag (``lag_ms`` for ``evaluation_periods`` minutes), any dead letter in a minute, and a
    task PENDING for five minutes in a row (Container Insights: tasks that fail to start or keep
    stopping);
  * a CloudWatch dashboard ``kinesis-cdc-<app>``: lag, records per minute, batch duration, the
    service's tasks, the alarms.

The KCL creates its own lease tables at the first start (the task role may create those three
names only).

Why plain CloudFormation generated from Python rather than the CDK: the template is a function
of two loaders this project already has, so Python builds it in one pure function that unit
tests can read as a dict (the IAM test walks every statement); the CDK would add Node.js, a
bootstrap stack in the account, and a synthesis step between the config and what is deployed,
for abstractions (L2 grants) whose output we would have to re-check line by line anyway to
prove least privilege. The output is deterministic: same config, same bytes.

Every checkov finding the template does not fix is skipped in the resource's ``Metadata``, with
the reason (`SKIPS`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from consumers.runtime.config import AppConfig, discover_apps
from consumers.runtime.control import CONTROL_KEY, CONTROL_TABLE
from consumers.runtime.deadletter import DEAD_LETTER_KEY
from consumers.runtime.metrics import METRICS, NAMESPACE
from consumers.sinks.registry import kind_of
from infra.deploy.aws import iam
from infra.deploy.aws.render import to_yaml
from producer_config import PipelineConfig, TableSpec, load_pipeline

__all__ = [
    "ALARM_TOPIC_CONDITION",
    "SKIPS",
    "TASK_CPU",
    "TASK_MEMORY",
    "alarm_names",
    "build_template",
    "dashboard_name",
    "logical_id",
    "main",
]

Json = dict[str, Any]

#: Fargate size of one worker task: one KCL JVM (-Xmx384m) and one Python process per shard it leases
TASK_CPU = "512"
TASK_MEMORY = "1024"
CLUSTER_NAME = "kinesis-cdc"
CONTAINER_NAME = "worker"
LOG_RETENTION_DAYS = 30
#: the container's stdout, the awslogs driver's pipe: one log event per EMF document
#: (consumers.runtime.metrics explains why not stderr)
METRICS_PATH = "/proc/1/fd/1"
#: Application Auto Scaling's names for an ECS service's task count
SCALABLE_DIMENSION = "ecs:service:DesiredCount"
#: the period of every alarm and of the dashboard's graphs (EMF metrics are per minute at most here)
PERIOD_S = 60
#: Container Insights' namespace (the cluster enables it): per service, Desired/Running/PendingTaskCount
CONTAINER_INSIGHTS = "ECS/ContainerInsights"
#: periods of 60 s with a task PENDING before the tasks alarm fires: a Fargate task starts in one
#: or two minutes (image pull, ENI), so five in a row are tasks that keep failing to start or
#: keep being replaced after they stopped
TASKS_PENDING_PERIODS = 5
#: the condition under which the alarms notify ``AlarmTopicArn`` (a parameter: none by default)
ALARM_TOPIC_CONDITION = "HasAlarmTopic"

#: checkov findings left as they are, each with its reason, by resource kind
SKIPS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "table": (
        (
            "CKV_AWS_119",
            "Encrypted at rest with the AWS managed key (SSESpecification); a customer managed key would add a key "
            "policy to maintain and KMS requests per read and write for no access control this stack needs",
        ),
    ),
    "log_group": (
        (
            "CKV_AWS_158",
            "Log events hold change records' keys and counts, encrypted at rest by CloudWatch Logs' own keys; "
            "a customer managed key adds a key policy for the logs service and no control this stack needs",
        ),
    ),
}


def logical_id(*parts: str) -> str:
    """A CloudFormation logical id from names: ``("Table", "AppUsers_V2")`` -> ``TableAppUsersV2``."""
    return "".join(word[:1].upper() + word[1:] for part in parts for word in re.split(r"[^A-Za-z0-9]+", part) if word)


def _ref(name: str) -> Json:
    return {"Ref": name}


def _arn(resource: str, attribute: str = "Arn") -> Json:
    return {"Fn::GetAtt": [resource, attribute]}


def _sub(text: str) -> Json:
    return {"Fn::Sub": text}


def _skips(kind: str) -> Json:
    return {"checkov": {"skip": [{"id": check, "comment": why} for check, why in SKIPS[kind]]}}


def _tags(**extra: str) -> list[Json]:
    return [{"Key": key, "Value": value} for key, value in {"project": "kinesis-cdc", **extra}.items()]


_PARAMETERS: Json = {
    "VpcId": {"Type": "AWS::EC2::VPC::Id", "Description": "VPC of the worker tasks (and of the OpenSearch domain)"},
    "SubnetIds": {
        "Type": "List<AWS::EC2::Subnet::Id>",
        "Description": "Private subnets of the worker tasks, at least two in different zones (the first two also "
        "hold the OpenSearch domain); they reach AWS APIs through a NAT gateway or VPC endpoints",
    },
    "AssignPublicIp": {
        "Type": "String",
        "AllowedValues": ["DISABLED", "ENABLED"],
        "Default": "DISABLED",
        "Description": "ENABLED only for public subnets without a NAT gateway",
    },
    "ImageRepositoryName": {
        "Type": "String",
        "Default": "kinesis-cdc-worker",
        "Description": "ECR repository of the worker image (infra/deploy/aws/worker.Dockerfile), in this account and region",
    },
    "ImageTag": {"Type": "String", "Description": "Tag of the worker image to run (e.g. the git commit)"},
    "AlarmTopicArn": {
        "Type": "String",
        "Default": "",
        "AllowedPattern": "^(arn:[a-z-]+:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_.-]+)?$",
        "Description": "SNS topic every alarm notifies when it fires and when it is OK again (empty: no notification)",
    },
}
_CONDITIONS: Json = {ALARM_TOPIC_CONDITION: {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}}


class _Cfn:
    """The intrinsics and conventions a sink kind builds its part with (``consumers.sinks.deploy.Cfn``)."""

    ref = staticmethod(lambda name: _ref(name))
    sub = staticmethod(lambda text: _sub(text))
    get_att = staticmethod(lambda resource, attribute="Arn": _arn(resource, attribute))
    table_arn = staticmethod(lambda name: iam.table_arn(name))
    tags = staticmethod(lambda **extra: _tags(**extra))
    skips = staticmethod(lambda kind: _skips(kind))


CFN = _Cfn()


def _table(spec: TableSpec, streams: Mapping[str, str]) -> Json:
    properties: Json = {
        "TableName": spec.name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": k.name, "AttributeType": k.type} for k in spec.key_attributes],
        "KeySchema": [
            {"AttributeName": k.name, "KeyType": kind}
            for k, kind in zip(spec.key_attributes, ("HASH", "RANGE")[: len(spec.key_attributes)], strict=True)
        ],
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "SSESpecification": {"SSEEnabled": True},
        "Tags": _tags(),
    }
    if spec.ttl_attribute:
        properties["TimeToLiveSpecification"] = {"AttributeName": spec.ttl_attribute, "Enabled": True}
    if spec.change_stream:
        properties["KinesisStreamSpecification"] = {"StreamArn": _arn(streams[spec.change_stream])}
    return {
        "Type": "AWS::DynamoDB::Table",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Metadata": _skips("table"),
        "Properties": properties,
    }


def _dead_letter_spec(name: str) -> TableSpec:
    from producer_config import KeyAttribute

    hash_key, range_key = (KeyAttribute(k["name"], k["type"]) for k in DEAD_LETTER_KEY)
    return TableSpec(name, hash_key, range_key, None, None, None)


def _control_spec() -> TableSpec:
    """The control table of `consumers.runtime.control`: one item per app, keyed by its name."""
    from producer_config import KeyAttribute

    return TableSpec(CONTROL_TABLE, KeyAttribute(CONTROL_KEY, "S"), None, None, None, None)


def dashboard_name(app: AppConfig) -> str:
    return f"kinesis-cdc-{app.name}"


def alarm_names(app: AppConfig) -> dict[str, str]:
    """The app's alarms: logical id suffix -> AlarmName."""
    names = {
        "LagAlarm": f"kinesis-cdc-{app.name}-lag",
        "DeadLettersAlarm": f"kinesis-cdc-{app.name}-dead-letters",
        "TasksPendingAlarm": f"kinesis-cdc-{app.name}-tasks-pending",
    }
    if app.alarms.latency_p99_ms is not None:
        names["LatencyAlarm"] = f"kinesis-cdc-{app.name}-latency"
    return names


def _emf_metric(app: AppConfig, name: str) -> Json:
    assert name in METRICS, name  # consumers.runtime.metrics publishes it
    return {"Namespace": NAMESPACE, "MetricName": name, "Dimensions": [{"Name": "App", "Value": app.name}]}


def _scaling_resources(app: AppConfig, base: str) -> Json:
    """Target tracking on the app's lag, between ``[scaling]`` min and max workers. No RoleARN:
    Application Auto Scaling uses its service-linked role for ECS (created at the first
    registration in the account)."""
    scaling, target = app.scaling, f"{base}ScalableTarget"
    return {
        target: {
            "Type": "AWS::ApplicationAutoScaling::ScalableTarget",
            "Properties": {
                "ServiceNamespace": "ecs",
                "ScalableDimension": SCALABLE_DIMENSION,
                "ResourceId": {"Fn::Join": ["/", ["service", _ref("Cluster"), _arn(f"{base}Service", "Name")]]},
                "MinCapacity": scaling.min_workers,
                "MaxCapacity": scaling.max_workers,
            },
        },
        f"{base}ScalingPolicy": {
            "Type": "AWS::ApplicationAutoScaling::ScalingPolicy",
            "Properties": {
                "PolicyName": f"kinesis-cdc-{app.name}-lag",
                "PolicyType": "TargetTrackingScaling",
                "ScalingTargetId": _ref(target),
                "TargetTrackingScalingPolicyConfiguration": {
                    "TargetValue": scaling.target_lag_ms,
                    "ScaleOutCooldown": scaling.scale_out_cooldown_s,
                    "ScaleInCooldown": scaling.scale_in_cooldown_s,
                    # the slowest shard's lag: one shard left behind is the app behind
                    "CustomizedMetricSpecification": {**_emf_metric(app, "MillisBehindLatest"), "Statistic": "Maximum"},
                },
            },
        },
    }


def _alarm(app: AppConfig, name: str, description: str, metric: Json, **settings: Any) -> Json:
    actions = {"Fn::If": [ALARM_TOPIC_CONDITION, [_ref("AlarmTopicArn")], []]}
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmName": name,
            "AlarmDescription": description,
            "ActionsEnabled": True,
            "AlarmActions": actions,
            "OKActions": actions,
            **metric,
            "Period": PERIOD_S,
            **settings,
            "Tags": _tags(app=app.name),
        },
    }


def _alarm_resources(app: AppConfig, base: str) -> Json:
    names, alarms = alarm_names(app), app.alarms
    service = {
        "Namespace": CONTAINER_INSIGHTS,
        "Dimensions": [{"Name": "ClusterName", "Value": CLUSTER_NAME}, {"Name": "ServiceName", "Value": app.name}],
    }
    latency = {}
    if alarms.latency_p99_ms is not None:
        latency[f"{base}LatencyAlarm"] = _alarm(
            app,
            names["LatencyAlarm"],
            f"{app.name}: the p99 of its changes' change-to-apply latency above {alarms.latency_p99_ms} ms for "
            f"{alarms.evaluation_periods} min (after a replay: the age of the replayed changes). "
            f"Look at the dashboard {dashboard_name(app)}",
            _emf_metric(app, "ChangeToApplyLatency"),
            ExtendedStatistic="p99",
            EvaluationPeriods=alarms.evaluation_periods,
            Threshold=alarms.latency_p99_ms,
            ComparisonOperator="GreaterThanThreshold",
            TreatMissingData="notBreaching",  # nothing applied: no latency (stopped workers: the tasks alarm)
        )
    return {
        **latency,
        f"{base}LagAlarm": _alarm(
            app,
            names["LagAlarm"],
            f"{app.name}: a shard's MillisBehindLatest above {alarms.lag_ms} ms for "
            f"{alarms.evaluation_periods} min, beyond what autoscaling (target {app.scaling.target_lag_ms} ms, "
            f"at most {app.scaling.max_workers} workers) absorbs. Look at the dashboard {dashboard_name(app)}",
            _emf_metric(app, "MillisBehindLatest"),
            Statistic="Maximum",
            EvaluationPeriods=alarms.evaluation_periods,
            Threshold=alarms.lag_ms,
            ComparisonOperator="GreaterThanThreshold",
            # the processors publish only batches that hold records: an idle app publishes
            # nothing and is not late (stopped workers: the tasks alarm)
            TreatMissingData="notBreaching",
        ),
        f"{base}DeadLettersAlarm": _alarm(
            app,
            names["DeadLettersAlarm"],
            f"{app.name}: records went to the dead-letter table {app.dead_letter_table}. "
            f"See them with: cdc dlq list {app.package}",
            _emf_metric(app, "DeadLettered"),
            Statistic="Sum",
            EvaluationPeriods=1,
            Threshold=0,
            ComparisonOperator="GreaterThanThreshold",
            TreatMissingData="notBreaching",  # no batch, no dead letter
        ),
        # Container Insights has no restart count for a Fargate service without restart policy;
        # its PendingTaskCount is what a task that cannot start (image, IAM, subnets) or that
        # keeps stopping and being replaced leaves, minute after minute
        f"{base}TasksPendingAlarm": _alarm(
            app,
            names["TasksPendingAlarm"],
            f"{app.name}: a task of ECS service {CLUSTER_NAME}/{app.name} PENDING for {TASKS_PENDING_PERIODS} min "
            "in a row: tasks fail to start or keep stopping. The service's events say why (cdc apps)",
            {**service, "MetricName": "PendingTaskCount"},
            Statistic="Maximum",
            EvaluationPeriods=TASKS_PENDING_PERIODS,
            Threshold=0,
            ComparisonOperator="GreaterThanThreshold",
            TreatMissingData="notBreaching",  # no task at all (desired 0): nothing is failing
        ),
    }


def _dashboard(app: AppConfig, base: str) -> Json:
    """The app's dashboard: lag, throughput, batch duration, tasks, alarms. The body is JSON in
    a Fn::Sub (for the region and the alarms' ARNs)."""
    region = "${AWS::Region}"

    def emf(name: str, **options: str) -> list[Any]:
        assert name in METRICS, name
        return [NAMESPACE, name, "App", app.name, *([options] if options else [])]

    def tasks(name: str) -> list[Any]:
        return [CONTAINER_INSIGHTS, name, "ClusterName", CLUSTER_NAME, "ServiceName", app.name]

    def graph(x: int, y: int, title: str, stat: str, metrics: list[list[Any]], **extra: Any) -> Json:
        properties = {"title": title, "view": "timeSeries", "region": region, "period": PERIOD_S, "stat": stat}
        return {
            "type": "metric",
            "x": x,
            "y": y,
            "width": 12,
            "height": 6,
            "properties": {**properties, "metrics": metrics, **extra},
        }

    alarm_arn = "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:"
    body = {
        "widgets": [
            graph(
                0,
                0,
                "Lag: MillisBehindLatest, the slowest shard",
                "Maximum",
                [emf("MillisBehindLatest")],
                annotations={
                    "horizontal": [
                        {"label": "alarm", "value": app.alarms.lag_ms},
                        {"label": "scaling target", "value": app.scaling.target_lag_ms},
                    ]
                },
                yAxis={"left": {"min": 0}},
            ),
            graph(
                12,
                0,
                "Records per minute",
                "Sum",
                [emf(name) for name in ("Received", "Applied", "Stale", "DeadLettered")],
            ),
            graph(
                0,
                6,
                "Batch duration and change-to-apply latency (ms)",
                "Average",
                [
                    emf("BatchDuration", stat="Average"),
                    emf("BatchDuration", stat="Maximum"),
                    emf("ChangeToApplyLatency", stat="p50"),
                    emf("ChangeToApplyLatency", stat="p99"),
                ],
            ),
            graph(
                12,
                6,
                f"ECS tasks ({app.scaling.min_workers} to {app.scaling.max_workers} workers)",
                "Maximum",
                [tasks(name) for name in ("DesiredTaskCount", "RunningTaskCount", "PendingTaskCount")],
            ),
            {
                "type": "alarm",
                "x": 0,
                "y": 12,
                "width": 24,
                "height": 3,
                "properties": {"title": "Alarms", "alarms": [alarm_arn + name for name in alarm_names(app).values()]},
            },
        ]
    }
    return {
        "Type": "AWS::CloudWatch::Dashboard",
        # its alarm widget names the alarms: they exist first
        "DependsOn": [f"{base}{suffix}" for suffix in alarm_names(app)],
        "Properties": {"DashboardName": dashboard_name(app), "DashboardBody": _sub(json.dumps(body))},
    }


def _security_groups() -> Json:
    return {
        "WorkerSecurityGroup": {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {
                "GroupDescription": "kinesis-cdc workers: no inbound; HTTPS out to AWS APIs and OpenSearch",
                "VpcId": _ref("VpcId"),
                "SecurityGroupEgress": [
                    {
                        "Description": "HTTPS to AWS APIs (Kinesis, DynamoDB, CloudWatch, ECR) and OpenSearch",
                        "IpProtocol": "tcp",
                        "FromPort": 443,
                        "ToPort": 443,
                        "CidrIp": "0.0.0.0/0",
                    }
                ],
                "Tags": _tags(),
            },
        },
    }


def _app_resources(app: AppConfig, pipeline: PipelineConfig, streams: Mapping[str, str]) -> Json:
    base = logical_id(app.name)
    log_group, task_role, execution_role = f"{base}LogGroup", f"{base}TaskRole", f"{base}ExecutionRole"
    task_definition = f"{base}TaskDefinition"
    kind = kind_of(app.sink.type)
    environment = {
        "CDC_APP": app.package,
        "CDC_TARGET": "aws",
        "AWS_REGION": pipeline.region,
        "CDC_STATE_DIR": "/tmp/cdc-state",
        "CDC_METRICS": "emf",
        "CDC_METRICS_PATH": METRICS_PATH,
    }
    env_list: list[Json] = [{"Name": k, "Value": v} for k, v in environment.items()]
    env_list += kind.task_environment(app.sink, CFN)
    assume = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {
                    "ArnLike": {"aws:SourceArn": _sub("arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:*")}
                },
            }
        ],
    }
    repository = _sub("arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/${ImageRepositoryName}")
    return {
        f"{base}DeadLetterTable": _table(_dead_letter_spec(app.dead_letter_table), streams),
        log_group: {
            "Type": "AWS::Logs::LogGroup",
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Metadata": _skips("log_group"),
            "Properties": {"LogGroupName": f"/kinesis-cdc/{app.name}", "RetentionInDays": LOG_RETENTION_DAYS},
        },
        task_role: {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "Description": f"kinesis-cdc {app.name}: its stream, its KCL tables, its sink, its dead letters",
                "AssumeRolePolicyDocument": assume,
                "Policies": [
                    {
                        "PolicyName": "app",
                        "PolicyDocument": iam.task_policy(
                            app, _arn(streams[app.stream_name]), kind.iam_statements(app.sink, pipeline, CFN)
                        ),
                    }
                ],
                "Tags": _tags(app=app.name),
            },
        },
        execution_role: {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "Description": f"kinesis-cdc {app.name}: ECS pulls the worker image and writes the app's logs",
                "AssumeRolePolicyDocument": assume,
                "Policies": [
                    {"PolicyName": "ecs-agent", "PolicyDocument": iam.execution_policy(repository, _arn(log_group))}
                ],
                "Tags": _tags(app=app.name),
            },
        },
        task_definition: {
            "Type": "AWS::ECS::TaskDefinition",
            "Properties": {
                "Family": f"kinesis-cdc-{app.name}",
                "Cpu": TASK_CPU,
                "Memory": TASK_MEMORY,
                "NetworkMode": "awsvpc",
                "RequiresCompatibilities": ["FARGATE"],
                "RuntimePlatform": {"OperatingSystemFamily": "LINUX", "CpuArchitecture": "X86_64"},
                "TaskRoleArn": _arn(task_role),
                "ExecutionRoleArn": _arn(execution_role),
                "Volumes": [{"Name": "tmp"}],
                "ContainerDefinitions": [
                    {
                        "Name": CONTAINER_NAME,
                        "Image": _sub(
                            "${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/${ImageRepositoryName}:${ImageTag}"
                        ),
                        "Essential": True,
                        "Environment": env_list,
                        "ReadonlyRootFilesystem": True,
                        "MountPoints": [{"SourceVolume": "tmp", "ContainerPath": "/tmp", "ReadOnly": False}],
                        # the supervisor's SIGTERM lets each processor checkpoint (shutdownGraceMillis 30 s)
                        "StopTimeout": 60,
                        "LogConfiguration": {
                            "LogDriver": "awslogs",
                            "Options": {
                                "awslogs-group": _ref(log_group),
                                "awslogs-region": _ref("AWS::Region"),
                                "awslogs-stream-prefix": app.name,
                            },
                        },
                    }
                ],
                "Tags": _tags(app=app.name),
            },
        },
        f"{base}Service": {
            "Type": "AWS::ECS::Service",
            "Properties": {
                "ServiceName": app.name,
                "Cluster": _ref("Cluster"),
                "TaskDefinition": _ref(task_definition),
                # autoscaling moves it within [scaling]; a stack update of the service resets it
                "DesiredCount": app.workers,
                "LaunchType": "FARGATE",
                "DeploymentConfiguration": {
                    "MinimumHealthyPercent": 100,
                    "MaximumPercent": 200,
                    "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True},
                },
                "NetworkConfiguration": {
                    "AwsvpcConfiguration": {
                        "AssignPublicIp": _ref("AssignPublicIp"),
                        "SecurityGroups": [_ref("WorkerSecurityGroup")],
                        "Subnets": _ref("SubnetIds"),
                    }
                },
                "PropagateTags": "SERVICE",
                "Tags": _tags(app=app.name),
            },
        },
        **_scaling_resources(app, base),
        **_alarm_resources(app, base),
        f"{base}Dashboard": _dashboard(app, base),
    }


def build_template(pipeline: PipelineConfig, apps: Sequence[AppConfig]) -> Json:
    """The whole template as a dict (deterministic: the config's order, sorted apps)."""
    streams = {name: logical_id("Stream", name) for name in pipeline.streams}
    resources: Json = {}
    for spec in pipeline.streams.values():
        resources[streams[spec.name]] = {
            "Type": "AWS::Kinesis::Stream",
            "Properties": {
                "Name": spec.name,
                "ShardCount": spec.shards,
                "RetentionPeriodHours": spec.retention_hours,
                "StreamModeDetails": {"StreamMode": "PROVISIONED"},
                "StreamEncryption": {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"},
                "Tags": _tags(),
            },
        }
    for table in pipeline.tables.values():
        resources[logical_id("Table", table.name)] = _table(table, streams)
    resources["ControlTable"] = _table(_control_spec(), streams)
    for table in pipeline.tables.values():
        if table.change_stream:
            spec = resources[logical_id("Table", table.name)]["Properties"]["KinesisStreamSpecification"]
            spec["ApproximateCreationDateTimePrecision"] = pipeline.creation_time_precision
    resources.update(_security_groups())
    # what each sink kind in use adds (its apps' task roles given): e.g. the OpenSearch domain
    roles: dict[str, list[str]] = {}
    specs: dict[str, list[Any]] = {}
    for app in apps:
        roles.setdefault(app.sink.type, []).append(f"{logical_id(app.name)}TaskRole")
        specs.setdefault(app.sink.type, []).append(app.sink)
    parts = [kind_of(name).deployment(pipeline, specs[name], kind_roles, CFN) for name, kind_roles in roles.items()]
    for part in parts:
        resources.update(part.resources)
    resources["Cluster"] = {
        "Type": "AWS::ECS::Cluster",
        "Properties": {
            "ClusterName": CLUSTER_NAME,
            "ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}],
            "Tags": _tags(),
        },
    }
    for app in apps:
        resources.update(_app_resources(app, pipeline, streams))
    outputs: Json = {
        "WorkerSecurityGroupId": {
            "Description": "Allow HTTPS from this group on an existing OpenSearch domain's security group",
            "Value": _ref("WorkerSecurityGroup"),
        },
        "ClusterName": {"Value": _ref("Cluster")},
    }
    for part in parts:
        outputs.update(part.outputs)
    for app in apps:
        outputs[f"{logical_id(app.name)}ServiceName"] = {
            "Value": {"Fn::GetAtt": [f"{logical_id(app.name)}Service", "Name"]}
        }
        outputs[f"{logical_id(app.name)}DashboardName"] = {"Value": _ref(f"{logical_id(app.name)}Dashboard")}
    parameters = dict(_PARAMETERS)
    conditions: Json = dict(_CONDITIONS)
    for part in parts:
        parameters.update(part.parameters)
        conditions.update(part.conditions)
    template: Json = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "kinesis-cdc: DynamoDB change data capture over Kinesis to KCL consumer apps on ECS Fargate "
        "(generated by infra/deploy/aws/template.py from producer_config/ and consumers/*/app.toml; do not edit)",
        "Parameters": parameters,
    }
    template["Conditions"] = conditions
    template["Resources"] = resources
    template["Outputs"] = outputs
    return template


def render(template: Mapping[str, Any], as_json: bool = False) -> str:
    return json.dumps(template, indent=2) + "\n" if as_json else to_yaml(template)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.deploy.aws.template",
        description="Write the pipeline's CloudFormation template, generated from producer_config/ and "
        "consumers/*/app.toml (YAML unless --json).",
    )
    parser.add_argument("--out", type=Path, help="file to write (default: stdout)")
    parser.add_argument("--json", action="store_true", help="JSON instead of YAML")
    args = parser.parse_args(argv)
    pipeline = load_pipeline()
    text = render(build_template(pipeline, discover_apps(pipeline)), args.json)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
