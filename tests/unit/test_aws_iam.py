"""The generated template's IAM, read as AWS would: each app's task role grants exactly the
(action, resource) pairs the app needs and nothing else.

The intrinsic functions of the template are evaluated for a fixed account and region, in both
OpenSearch modes (the stack creates the domain; an existing domain is given), and the grants
are compared with what the test derives on its own from app.toml and producer_config."""

from __future__ import annotations

import re
from itertools import product
from typing import Any

import pytest

from consumers.runtime.config import AppConfig, discover_apps
from consumers.runtime.control import CONTROL_KEY, CONTROL_TABLE
from infra.deploy.aws.template import build_template, logical_id
from producer_config import load_pipeline

PIPELINE = load_pipeline()
APPS = discover_apps(PIPELINE)
TEMPLATE = build_template(PIPELINE, APPS)
RESOURCES = TEMPLATE["Resources"]
ACCOUNT, REGION = "123456789012", PIPELINE.region
CREATED = {"OpenSearchDomainName": "kinesis-cdc", "ExistingOpenSearchEndpoint": "", "ExistingOpenSearchDomainArn": ""}
EXISTING_ARN = f"arn:aws:es:{REGION}:{ACCOUNT}:domain/existing"
EXISTING = {**CREATED, "ExistingOpenSearchEndpoint": "vpc-existing.es.amazonaws.com"}
EXISTING["ExistingOpenSearchDomainArn"] = EXISTING_ARN
COMMON = {"ImageRepositoryName": "kinesis-cdc-worker", "ImageTag": "abc"}

STREAM_READ = {
    "kinesis:DescribeStream",
    "kinesis:DescribeStreamSummary",
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:ListShards",
}
KCL_TABLE_ACTIONS = {
    "dynamodb:CreateTable",
    "dynamodb:DescribeTable",
    "dynamodb:UpdateTable",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Scan",
    "dynamodb:Query",
}


class Evaluator:
    """Resolves the template's intrinsic functions for one set of parameters."""

    def __init__(self, parameters: dict[str, str]) -> None:
        self.parameters = {**COMMON, **parameters}
        self.pseudo = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}
        self.pseudo["AWS::URLSuffix"] = "amazonaws.com"
        self.create_domain = parameters["ExistingOpenSearchEndpoint"] == ""

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict):
            return value
        if "Fn::Sub" in value:
            return re.sub(r"\$\{([^}]+)\}", lambda m: self._name(m.group(1)), value["Fn::Sub"])
        if "Fn::Join" in value:
            sep, parts = value["Fn::Join"]
            return sep.join(self(p) for p in parts)
        if "Fn::If" in value:
            condition, then, otherwise = value["Fn::If"]
            assert condition == "CreateOpenSearchDomain"
            return self(then if self.create_domain else otherwise)
        if "Fn::GetAtt" in value:
            return self._attribute(*value["Fn::GetAtt"])
        if "Ref" in value:
            return self._name(value["Ref"])
        return {k: self(v) for k, v in value.items()}

    def _name(self, name: str) -> str:
        if RESOURCES.get(name, {}).get("Type") == "AWS::SecretsManager::Secret":  # Ref: the secret's ARN
            return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}"
        return self.pseudo.get(name) or self.parameters[name]

    def _attribute(self, resource: str, attribute: str) -> str:
        kind, props = RESOURCES[resource]["Type"], RESOURCES[resource]["Properties"]
        assert attribute == "Arn", (resource, attribute)
        if kind == "AWS::Kinesis::Stream":
            return f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{props['Name']}"
        if kind == "AWS::Logs::LogGroup":
            return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{props['LogGroupName']}:*"
        if kind == "AWS::IAM::Role":
            return f"arn:aws:iam::{ACCOUNT}:role/{resource}"
        raise AssertionError(f"unexpected GetAtt {resource}.{attribute}")


def grants(policy: dict, evaluate: Evaluator) -> set[tuple[str, str]]:
    pairs = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert not {"NotAction", "NotResource", "NotPrincipal"} & set(statement)
        actions, resources = statement["Action"], evaluate(statement["Resource"])
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        pairs |= set(product(actions, resources))
    return pairs


def table(name: str) -> str:
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"


def expected_task_grants(app: AppConfig, domain_arn: str) -> set[tuple[str, str]]:
    stream = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{app.source.change_stream}"
    kcl = [table(app.name), table(f"{app.name}-CoordinatorState"), table(f"{app.name}-WorkerMetricStats")]
    kcl.append(table(f"{app.name}/index/*"))
    expected = set(product(STREAM_READ, [stream])) | set(product(KCL_TABLE_ACTIONS, kcl))
    expected |= {("dynamodb:PutItem", table(app.dead_letter_table)), ("cloudwatch:PutMetricData", "*")}
    expected.add(("dynamodb:GetItem", table(CONTROL_TABLE)))  # its own item only: see below
    if app.sink.type == "dynamodb":
        expected.add(("dynamodb:PutItem", table(app.sink.target)))
    elif app.sink.type == "webhook":  # its ledger; its subscribers' secrets, no others
        expected |= set(
            product(("dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"), [table(app.sink.target)])
        )
        secrets = [
            f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{s.secret_logical_id()}" for s in app.sink.subscribers
        ]
        expected |= set(product(["secretsmanager:GetSecretValue"], secrets))
    else:
        index = [f"{domain_arn}/{app.sink.target}", f"{domain_arn}/{app.sink.target}/*"]
        expected |= set(product({"es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost", "es:ESHttpPut"}, index))
    return expected


MODES = [
    pytest.param(CREATED, f"arn:aws:es:{REGION}:{ACCOUNT}:domain/kinesis-cdc", id="domain-created"),
    pytest.param(EXISTING, EXISTING_ARN, id="existing-domain"),
]


def role(app: AppConfig, kind: str) -> dict:
    return RESOURCES[f"{logical_id(app.name)}{kind}"]["Properties"]


@pytest.mark.parametrize(("parameters", "domain_arn"), MODES)
@pytest.mark.parametrize("app", APPS, ids=lambda a: a.name)
def test_each_task_role_grants_exactly_what_its_app_needs(app, parameters, domain_arn):
    [policy] = role(app, "TaskRole")["Policies"]
    assert grants(policy["PolicyDocument"], Evaluator(parameters)) == expected_task_grants(app, domain_arn)


@pytest.mark.parametrize("app", APPS, ids=lambda a: a.name)
def test_a_task_role_cannot_touch_another_apps_resources(app):
    evaluate = Evaluator(CREATED)
    [policy] = role(app, "TaskRole")["Policies"]
    resources = {resource for _, resource in grants(policy["PolicyDocument"], evaluate)}
    for other in APPS:
        if other is app:
            continue
        owned_by_other = {table(other.name), table(other.dead_letter_table)}
        if other.sink.target != app.sink.target:
            owned_by_other.add(table(other.sink.target))
        assert not resources & owned_by_other, f"{app.name} reaches {other.name}'s tables"
    if app.sink.type != "opensearch":
        assert not any(r.startswith("arn:aws:es:") for r in resources), f"{app.name} reaches the OpenSearch domain"
    streams = {r for r in resources if ":kinesis:" in r}
    assert streams == {f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{app.stream_name}"}


@pytest.mark.parametrize("app", APPS, ids=lambda a: a.name)
def test_the_only_wildcard_of_a_task_role_is_its_own_metrics_namespace(app):
    [policy] = role(app, "TaskRole")["Policies"]
    for statement in policy["PolicyDocument"]["Statement"]:
        if "*" in statement["Resource"]:
            # PutMetricData has no resource types: "*" is the only possible resource
            assert statement["Action"] == ["cloudwatch:PutMetricData"] and statement["Resource"] == ["*"]
            assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": app.name}}
        elif statement.get("Sid") != "ReadOwnControlItem":  # narrowed to its item (the next test)
            assert "Condition" not in statement
        assert not any("*" in action for action in statement["Action"])


@pytest.mark.parametrize("app", APPS, ids=lambda a: a.name)
def test_a_task_role_reads_the_control_table_only_at_its_own_apps_item(app):
    [policy] = role(app, "TaskRole")["Policies"]
    evaluate = Evaluator(CREATED)
    control = table(CONTROL_TABLE)
    touching = [s for s in policy["PolicyDocument"]["Statement"] if control in evaluate(s["Resource"])]
    assert touching == [
        {
            "Sid": "ReadOwnControlItem",
            "Effect": "Allow",
            "Action": ["dynamodb:GetItem"],
            "Resource": [
                {
                    "Fn::Sub": f"arn:${{AWS::Partition}}:dynamodb:${{AWS::Region}}:${{AWS::AccountId}}:table/{CONTROL_TABLE}"
                }
            ],
            # ForAllValues: every leading key of the request is the app's name (GetItem names one)
            "Condition": {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [app.name]}},
        }
    ]
    # the hash key is the app's KCL name, the value the condition compares
    table_resource = RESOURCES["ControlTable"]["Properties"]
    assert table_resource["TableName"] == CONTROL_TABLE
    assert table_resource["KeySchema"] == [{"AttributeName": CONTROL_KEY, "KeyType": "HASH"}]
    others = {other.name for other in APPS if other is not app}
    assert not others & set(touching[0]["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"])


@pytest.mark.parametrize("app", APPS, ids=lambda a: a.name)
def test_each_execution_role_pulls_the_image_and_writes_its_own_log_group(app):
    [policy] = role(app, "ExecutionRole")["Policies"]
    repository = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/kinesis-cdc-worker"
    log_group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/kinesis-cdc/{app.name}:*"
    assert grants(policy["PolicyDocument"], Evaluator(CREATED)) == {
        ("ecr:GetAuthorizationToken", "*"),  # no resource types: the token alone reaches no repository
        ("ecr:BatchCheckLayerAvailability", repository),
        ("ecr:BatchGetImage", repository),
        ("ecr:GetDownloadUrlForLayer", repository),
        ("logs:CreateLogStream", log_group),
        ("logs:PutLogEvents", log_group),
    }


def test_roles_have_no_other_policies_and_only_ecs_tasks_assume_them():
    policy_kinds = {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::User", "AWS::IAM::Group"}
    assert not [name for name, r in RESOURCES.items() if r["Type"] in policy_kinds]
    roles = [r["Properties"] for r in RESOURCES.values() if r["Type"] == "AWS::IAM::Role"]
    assert len(roles) == 2 * len(APPS)
    for properties in roles:
        assert set(properties) == {"Description", "AssumeRolePolicyDocument", "Policies", "Tags"}
        [statement] = properties["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
        assert statement["Action"] == "sts:AssumeRole"


def test_the_domain_admits_only_the_opensearch_apps_roles():
    policy = RESOURCES["OpenSearchDomain"]["Properties"]["AccessPolicies"]
    [statement] = policy["Statement"]
    principals = {p["Fn::GetAtt"][0] for p in statement["Principal"]["AWS"]}
    assert principals == {f"{logical_id(a.name)}TaskRole" for a in APPS if a.sink.type == "opensearch"}
    assert not any("*" in action for action in statement["Action"])


def test_each_task_uses_its_own_roles():
    for app in APPS:
        properties = RESOURCES[f"{logical_id(app.name)}TaskDefinition"]["Properties"]
        assert properties["TaskRoleArn"] == {"Fn::GetAtt": [f"{logical_id(app.name)}TaskRole", "Arn"]}
        assert properties["ExecutionRoleArn"] == {"Fn::GetAtt": [f"{logical_id(app.name)}ExecutionRole", "Arn"]}
