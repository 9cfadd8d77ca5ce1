"""Each app's IAM policies, least privilege, derived from its `app.toml` and `producer_config/`.

The task role (what the worker's code and its KCL do) may:
  * read the app's own stream: the polling calls of the KCL (the apps use
    ``retrievalMode = POLLING``, so no enhanced fan-out calls are granted) and ListShards of the
    shard-end check (``services.durability``);
  * create and use the app's own KCL tables: ``<app.name>`` (leases, and its ``leaseOwner``
    index), ``<app.name>-CoordinatorState``, ``<app.name>-WorkerMetricStats``; the KCL creates
    them at its first start (the actions of the KCL's documented minimum);
  * write its sink: the statements of the app's sink kind (``consumers.sinks.<kind>.kind``:
    PutItem on its DynamoDB table, conditional puts and tombstones, a transactional put being
    authorised as PutItem too; or its index's paths on the OpenSearch domain);
  * PutItem on its dead-letter table;
  * GetItem on the control table (``consumers.runtime.control``: ``kinesis-cdc-control``), its
    own app's item only (``dynamodb:LeadingKeys`` = the app's name): a worker reads there at
    start where a replay begins; only the operator's `cdc` writes the items;
  * cloudwatch:PutMetricData, only in the KCL's namespace (the application name). The EMF
    metrics of the processors go through the log driver and need no grant.
The execution role (what ECS does for the task): pull the image from its ECR repository and
write the app's log group.

Conditions narrow two statements: the control item's (``ForAllValues:StringEquals`` on
``dynamodb:LeadingKeys``) and the metrics' (below).

``*`` appears twice, where AWS allows nothing narrower: cloudwatch:PutMetricData (no resource
types; narrowed by the ``cloudwatch:namespace`` condition) and ecr:GetAuthorizationToken (no
resource types; the token alone gives no access to a repository).
"""

from __future__ import annotations

from typing import Any

from consumers.runtime.config import AppConfig
from consumers.runtime.control import CONTROL_TABLE

__all__ = [
    "CONTROL_ACTIONS",
    "KCL_TABLE_SUFFIXES",
    "LEASE_TABLE_ACTIONS",
    "STREAM_READ_ACTIONS",
    "execution_policy",
    "kcl_tables",
    "table_arn",
    "task_policy",
]

Json = dict[str, Any]

STREAM_READ_ACTIONS = (
    "kinesis:DescribeStream",
    "kinesis:DescribeStreamSummary",
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:ListShards",
)
LEASE_TABLE_ACTIONS = (
    "dynamodb:CreateTable",
    "dynamodb:DeleteItem",
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:UpdateItem",
    "dynamodb:UpdateTable",
)
#: the KCL 3.x tables of an application, by the suffix added to its name
KCL_TABLE_SUFFIXES = ("", "-CoordinatorState", "-WorkerMetricStats")
DEAD_LETTER_ACTIONS = ("dynamodb:PutItem",)
CONTROL_ACTIONS = ("dynamodb:GetItem",)


def kcl_tables(app: AppConfig) -> tuple[str, ...]:
    """The DynamoDB tables the KCL creates for the app (its applicationName is ``app.name``)."""
    return tuple(app.name + suffix for suffix in KCL_TABLE_SUFFIXES)


def table_arn(name: str) -> Json:
    return {"Fn::Sub": f"arn:${{AWS::Partition}}:dynamodb:${{AWS::Region}}:${{AWS::AccountId}}:table/{name}"}


def _document(*statements: Json) -> Json:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def task_policy(app: AppConfig, stream_arn: Json, sink_statements: list[Json]) -> Json:
    """The task role's one policy document; ``sink_statements``: the grants of the app's sink
    kind (``SinkKind.iam_statements``)."""
    lease_resources: list[Json] = []
    for table in kcl_tables(app):
        lease_resources.append(table_arn(table))
    lease_resources.append(table_arn(f"{app.name}/index/*"))
    statements: list[Json] = [
        {"Sid": "ReadOwnStream", "Effect": "Allow", "Action": list(STREAM_READ_ACTIONS), "Resource": [stream_arn]},
        {"Sid": "OwnKclTables", "Effect": "Allow", "Action": list(LEASE_TABLE_ACTIONS), "Resource": lease_resources},
        {
            "Sid": "WriteDeadLetters",
            "Effect": "Allow",
            "Action": list(DEAD_LETTER_ACTIONS),
            "Resource": [table_arn(app.dead_letter_table)],
        },
        {
            "Sid": "ReadOwnControlItem",
            "Effect": "Allow",
            "Action": list(CONTROL_ACTIONS),
            "Resource": [table_arn(CONTROL_TABLE)],
            # every key the request names leads with the app's own name: its item, no other
            "Condition": {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [app.name]}},
        },
    ]
    statements.extend(sink_statements)
    statements.append(
        {
            "Sid": "KclMetrics",
            "Effect": "Allow",
            "Action": ["cloudwatch:PutMetricData"],
            "Resource": ["*"],
            "Condition": {"StringEquals": {"cloudwatch:namespace": app.name}},
        }
    )
    return _document(*statements)


def execution_policy(repository_arn: Json, log_group_arn: Json) -> Json:
    """What ECS needs to start the app's task: its image, its log group."""
    return _document(
        {"Sid": "EcrLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": ["*"]},
        {
            "Sid": "PullImage",
            "Effect": "Allow",
            "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            "Resource": [repository_arn],
        },
        {
            "Sid": "WriteLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [log_group_arn],
        },
    )
