"""The generated template's resources, created on AWS API emulators through their APIs.

moto's CloudFormation skips ``AWS::ApplicationAutoScaling::*`` and ``AWS::CloudWatch::Alarm``
(with a warning), answers 500 to a GetAtt on a skipped resource, and drops a task definition's
Fargate settings and a service's network configuration; LocalStack's free edition has no ECS.
So this walks the template `infra.deploy.aws.template` generates and creates, with the same
properties (intrinsic functions resolved here), what the emulators lack in CloudFormation:

  * on moto: the ECS cluster, task definitions and services; the scalable targets and scaling
    policies; the alarms and dashboards; the webhook subscribers' secrets (Secrets Manager);
  * on LocalStack, by `cdc provision` from the same producer_config/ and app.toml: the tables,
    the streams, their streaming destinations, the control table, the dead-letter tables.

Not created here: the IAM roles (moto does not enforce them; `tests/unit` walks every
statement), the log groups, the security groups, the OpenSearch domain (the project's node
stands in, CDC_OPENSEARCH_URL).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["ACCOUNT", "apply"]

ACCOUNT = "123456789012"  # moto's default account
Json = dict[str, Any]

#: property maps whose keys are data (kept as they are), not property names
_DATA_KEYS = {"Options", "DockerLabels"}


class _Resolver:
    def __init__(self, template: Json, parameters: Mapping[str, Any], region: str) -> None:
        self.template, self.region = template, region
        self.parameters = {
            name: parameters.get(name, spec.get("Default")) for name, spec in template.get("Parameters", {}).items()
        }
        self.physical: dict[str, Any] = {}

    def pseudo(self, name: str) -> Any:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "kinesis-cdc",
        }.get(name)

    def ref(self, name: str) -> Any:
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.parameters:
            return self.parameters[name]
        if name in self.physical:
            return self.physical[name]
        return f"{name}-emulated"  # a resource this deployment does not create (IAM, logs, SG)

    def condition(self, name: str) -> bool:
        return bool(self(self.template["Conditions"][name]))

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(item) for item in value if not _is_no_value(item)]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                if logical in self.physical and attribute == "Name":
                    return self.physical[logical]
                return f"arn:aws:emulated:{self.region}:{ACCOUNT}:{logical}/{attribute}"
            if key == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self(arg[1]))
                return re.sub(r"\$\{([^}]+)\}", lambda m: str(extra[m[1]] if m[1] in extra else self.ref(m[1])), text)
            if key == "Fn::Join":
                return arg[0].join(str(self(part)) for part in self(arg[1]))
            if key == "Fn::If":
                return self(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Equals":
                return self(arg[0]) == self(arg[1])
            if key == "Fn::Not":
                return not self(arg[0])
            if key == "Fn::And":
                return all(self(a) for a in arg)
            if key == "Fn::Or":
                return any(self(a) for a in arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::Select":
                return self(arg[1])[int(arg[0])]
        return {k: self(v) for k, v in value.items() if not _is_no_value(v)}


def _is_no_value(value: Any) -> bool:
    return value == {"Ref": "AWS::NoValue"}


def _api(value: Any) -> Any:
    """CloudFormation's PascalCase property names as the ECS API's camelCase."""
    if isinstance(value, list):
        return [_api(item) for item in value]
    if not isinstance(value, dict):
        return value
    return {k[:1].lower() + k[1:]: (v if k in _DATA_KEYS else _api(v)) for k, v in value.items()}


def _of_type(template: Json, kind: str) -> list[tuple[str, Json]]:
    return [(name, r) for name, r in template["Resources"].items() if r["Type"] == kind]


def apply(
    template: Json,
    clients: Mapping[str, Any],
    parameters: Mapping[str, Any],
    region: str,
    existing: Mapping[str, str] = {},
    secret_values: Mapping[str, str] = {},
) -> list[str]:
    """Create the template's ECS, Application Auto Scaling and CloudWatch resources through
    ``clients`` (``ecs``, ``application-autoscaling``, ``cloudwatch``, ``secretsmanager``);
    ``existing``: the physical ids of resources made otherwise (logical id -> id, e.g. the
    security group); ``secret_values``: each webhook subscriber's secret; returns what it created."""
    resolve = _Resolver(template, parameters, region)
    resolve.physical.update(existing)
    ecs, scaling, cloudwatch = clients["ecs"], clients["application-autoscaling"], clients["cloudwatch"]
    created: list[str] = []
    for name, resource in _of_type(template, "AWS::ECS::Cluster"):
        props = resolve(resource["Properties"])
        ecs.create_cluster(clusterName=props["ClusterName"], settings=_api(props.get("ClusterSettings", [])))
        resolve.physical[name] = props["ClusterName"]
        created.append(f"ECS cluster {props['ClusterName']}")
    for name, resource in _of_type(template, "AWS::SecretsManager::Secret"):
        # a webhook subscriber's signing secret: the value the local receiver verifies with
        # (``secret_values`` by the resource's subscriber tag), where AWS would generate one
        props = resolve(resource["Properties"])
        subscriber = next(tag["Value"] for tag in props["Tags"] if tag["Key"] == "subscriber")
        arn = clients["secretsmanager"].create_secret(Name=name, SecretString=secret_values[subscriber])["ARN"]
        resolve.physical[name] = arn
        created.append(f"secret {name}")
    for name, resource in _of_type(template, "AWS::ECS::TaskDefinition"):
        props = _api(resolve(resource["Properties"]))
        props.pop("tags", None)
        for container in props["containerDefinitions"]:
            # moto 5.2.5 answers RunTask with HTTP 500 without a container-level memory, which
            # Fargate does not need (the task's is enough): the task's, given to its container
            container.setdefault("memory", int(props["memory"]))
        arn = ecs.register_task_definition(**props)["taskDefinition"]["taskDefinitionArn"]
        resolve.physical[name] = arn
        created.append(f"task definition {arn.rsplit('/', 1)[-1]}")
    for name, resource in _of_type(template, "AWS::ECS::Service"):
        props = resolve(resource["Properties"])
        network = _api(props["NetworkConfiguration"])
        ecs.create_service(
            cluster=props["Cluster"],
            serviceName=props["ServiceName"],
            taskDefinition=props["TaskDefinition"],
            desiredCount=props["DesiredCount"],
            launchType=props["LaunchType"],
            networkConfiguration=network,
            deploymentConfiguration=_api(props["DeploymentConfiguration"]),
        )
        resolve.physical[name] = props["ServiceName"]
        created.append(f"ECS service {props['ServiceName']}")
    for name, resource in _of_type(template, "AWS::ApplicationAutoScaling::ScalableTarget"):
        props = resolve(resource["Properties"])
        props.pop("RoleARN", None)
        scaling.register_scalable_target(**props)
        resolve.physical[name] = f"{props['ServiceNamespace']}|{props['ResourceId']}|{props['ScalableDimension']}"
        created.append(f"scalable target {props['ResourceId']}")
    for _, resource in _of_type(template, "AWS::ApplicationAutoScaling::ScalingPolicy"):
        props = resolve(resource["Properties"])
        target = props.pop("ScalingTargetId", None)
        if target:
            namespace, resource_id, dimension = target.split("|")
            props.update(ServiceNamespace=namespace, ResourceId=resource_id, ScalableDimension=dimension)
        scaling.put_scaling_policy(**props)
        created.append(f"scaling policy {props['PolicyName']}")
    for _, resource in _of_type(template, "AWS::CloudWatch::Alarm"):
        props = resolve(resource["Properties"])
        cloudwatch.put_metric_alarm(**props)
        created.append(f"alarm {props['AlarmName']}")
    for _, resource in _of_type(template, "AWS::CloudWatch::Dashboard"):
        props = resolve(resource["Properties"])
        body = props["DashboardBody"]
        cloudwatch.put_dashboard(
            DashboardName=props["DashboardName"], DashboardBody=body if isinstance(body, str) else json.dumps(body)
        )
        created.append(f"dashboard {props['DashboardName']}")
    return created
