"""The ``opensearch`` sink kind: an app indexes documents into one index of producer_config.

    [sink]
    type = "opensearch"
    target = "workplace-users-v2"             # an index of producer_config/pipeline.toml
    document_id = "{WorkplaceId}#{UserId}"    # optional: a template over the key

Everything the project knows of the kind: its options, its builder, how ``make verify`` reads
the index back, and on AWS the task role's grant (its index's paths only), the task's endpoint
variables and the domain (created by the stack, or an existing one named by parameters).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from consumers.sinks.deploy import Cfn, Contribution, Json
from consumers.sinks.opensearch.sink import (
    OpenSearchSink,
    OpenSearchSinkConfig,
    default_document_id,
    serialise_document,
    template_document_id,
)
from consumers.sinks.registry import Clients, SinkConfigError, SinkView
from producer_config import PipelineConfig

__all__ = ["ENGINE", "INDEX_ACTIONS", "KIND", "OpenSearchSinkSpec"]

ENGINE = "OpenSearch_2.19"
INDEX_ACTIONS = ("es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost", "es:ESHttpPut")
_CREATE_DOMAIN = "CreateOpenSearchDomain"
_DOMAIN = "OpenSearchDomain"
_DOMAIN_ARN = "arn:${AWS::Partition}:es:${AWS::Region}:${AWS::AccountId}:domain/${OpenSearchDomainName}"
#: checkov findings on the domain left as they are, each with its reason
DOMAIN_SKIPS = (
    (
        "CKV_AWS_317",
        "Audit logs need fine-grained access control with an internal user database; access is IAM only "
        "(the domain policy names the OpenSearch apps' task roles) and CloudTrail records the configuration API",
    ),
    (
        "CKV_AWS_84",
        "Slow and error logs need a resource policy for the service on a log group; left off to keep the "
        "stack's IAM surface to the apps' roles. Enable them from the console when diagnosing",
    ),
)
_PARAMETERS: Json = {
    "OpenSearchDomainName": {
        "Type": "String",
        "Default": "kinesis-cdc",
        "AllowedPattern": "[a-z][a-z0-9-]{2,27}",
        "Description": "Name of the OpenSearch domain this stack creates (ignored with ExistingOpenSearchEndpoint)",
    },
    "OpenSearchInstanceType": {
        "Type": "String",
        "Default": "t3.medium.search",
        "Description": "Data node type (t3.small does not support encryption at rest)",
    },
    "ExistingOpenSearchEndpoint": {
        "Type": "String",
        "Default": "",
        "Description": "Host name of an existing domain's endpoint (no https://); empty: create one",
    },
    "ExistingOpenSearchDomainArn": {
        "Type": "String",
        "Default": "",
        "Description": "ARN of that existing domain (arn:aws:es:REGION:ACCOUNT:domain/NAME)",
    },
}


@dataclass(frozen=True, slots=True)
class OpenSearchSinkSpec:
    target: str  # the index
    document_id: str | None = None  # a template over the key, e.g. "{WorkplaceId}#{UserId}"

    type = "opensearch"

    def document_ids(self) -> Any:
        return template_document_id(self.document_id) if self.document_id else default_document_id


class _OpenSearchKind:
    name = OpenSearchSinkSpec.type
    options = ("document_id",)

    def parse(self, target: str, options: Mapping[str, Any], pipeline: PipelineConfig) -> OpenSearchSinkSpec:
        if target not in pipeline.indexes:
            raise SinkConfigError("sink.target", f"{target!r} is not an index of producer_config")
        template = options.get("document_id")
        if template is not None:
            try:
                template_document_id(template)
            except (ValueError, TypeError) as exc:
                raise SinkConfigError("sink.document_id", str(exc)) from None
        return OpenSearchSinkSpec(target, template)

    def build(self, spec: OpenSearchSinkSpec, pipeline: PipelineConfig, clients: Clients) -> OpenSearchSink:
        return OpenSearchSink(
            clients.opensearch(), OpenSearchSinkConfig(index=spec.target, document_id=spec.document_ids())
        )

    def read_back(self, spec: OpenSearchSinkSpec, pipeline: PipelineConfig, clients: Clients) -> SinkView:
        from opensearchpy import helpers

        document_id = spec.document_ids()
        search = clients.opensearch()

        def stored(write: Any) -> tuple[Any, dict[str, Any]]:
            return document_id(write.key), orjson.loads(serialise_document({**write.document, **write.key}))

        def actual() -> dict[Any, dict[str, Any]]:
            search.indices.refresh(index=spec.target)
            hits = helpers.scan(search, index=spec.target, query={"query": {"match_all": {}}})
            return {hit["_id"]: hit["_source"] for hit in hits}

        return SinkView(f"{self.name}:{spec.target}", stored, actual)

    def iam_statements(self, spec: OpenSearchSinkSpec, pipeline: PipelineConfig, cfn: Cfn) -> list[Json]:
        """Its index's paths only. The sink sends ``POST /<index>/_bulk`` with no index in the
        action lines, and the domain refuses explicit indexes in bulk bodies
        (``rest.action.multi.allow_explicit_index = false``), so a grant on the index path is
        all it takes, and all it allows."""
        domain_arn = _domain_arn(cfn)

        def path(suffix: str) -> Json:
            return {"Fn::Join": ["", [domain_arn, suffix]]}

        return [
            {
                "Sid": "WriteOwnIndex",
                "Effect": "Allow",
                "Action": list(INDEX_ACTIONS),
                "Resource": [path(f"/{spec.target}"), path(f"/{spec.target}/*")],
            }
        ]

    def task_environment(self, spec: OpenSearchSinkSpec, cfn: Cfn) -> list[Json]:
        return [
            {"Name": "CDC_OPENSEARCH_URL", "Value": {"Fn::Join": ["", ["https://", _endpoint(cfn)]]}},
            {"Name": "CDC_OPENSEARCH_AUTH", "Value": "sigv4"},
        ]

    def deployment(
        self, pipeline: PipelineConfig, specs: Sequence[Any], roles: Sequence[str], cfn: Cfn
    ) -> Contribution:
        """The domain and its security group (unless ``ExistingOpenSearchEndpoint`` names one)."""
        return Contribution(
            parameters=_PARAMETERS,
            conditions={_CREATE_DOMAIN: {"Fn::Equals": [cfn.ref("ExistingOpenSearchEndpoint"), ""]}},
            resources={"OpenSearchSecurityGroup": _security_group(cfn), _DOMAIN: _domain(roles, cfn)},
            outputs={
                "OpenSearchEndpoint": {
                    "Description": "CDC_OPENSEARCH_URL is https:// and this",
                    "Value": _endpoint(cfn),
                }
            },
        )


def _domain_arn(cfn: Cfn) -> Json:
    return {"Fn::If": [_CREATE_DOMAIN, cfn.sub(_DOMAIN_ARN), cfn.ref("ExistingOpenSearchDomainArn")]}


def _endpoint(cfn: Cfn) -> Json:
    return {"Fn::If": [_CREATE_DOMAIN, cfn.get_att(_DOMAIN, "DomainEndpoint"), cfn.ref("ExistingOpenSearchEndpoint")]}


def _domain(roles: Sequence[str], cfn: Cfn) -> Json:
    subnets = [{"Fn::Select": [i, cfn.ref("SubnetIds")]} for i in range(2)]
    return {
        "Type": "AWS::OpenSearchService::Domain",
        "Condition": _CREATE_DOMAIN,
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Metadata": {"checkov": {"skip": [{"id": check, "comment": why} for check, why in DOMAIN_SKIPS]}},
        "Properties": {
            "DomainName": cfn.ref("OpenSearchDomainName"),
            "EngineVersion": ENGINE,
            "ClusterConfig": {
                "InstanceType": cfn.ref("OpenSearchInstanceType"),
                "InstanceCount": 2,
                "ZoneAwarenessEnabled": True,
                "ZoneAwarenessConfig": {"AvailabilityZoneCount": 2},
            },
            "EBSOptions": {"EBSEnabled": True, "VolumeType": "gp3", "VolumeSize": 10},
            "EncryptionAtRestOptions": {"Enabled": True},
            "NodeToNodeEncryptionOptions": {"Enabled": True},
            "DomainEndpointOptions": {"EnforceHTTPS": True, "TLSSecurityPolicy": "Policy-Min-TLS-1-2-2019-07"},
            # the sink posts to /<index>/_bulk: a bulk body naming another index is refused, so
            # the task role's grant on the index path bounds what it can write
            "AdvancedOptions": {"rest.action.multi.allow_explicit_index": "false"},
            "VPCOptions": {"SubnetIds": subnets, "SecurityGroupIds": [cfn.ref("OpenSearchSecurityGroup")]},
            "AccessPolicies": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": [cfn.get_att(role) for role in roles]},
                        "Action": list(INDEX_ACTIONS),
                        "Resource": {"Fn::Join": ["", [cfn.sub(_DOMAIN_ARN), "/*"]]},
                    }
                ],
            },
            "Tags": cfn.tags(),
        },
    }


def _security_group(cfn: Cfn) -> Json:
    return {
        "Type": "AWS::EC2::SecurityGroup",
        "Condition": _CREATE_DOMAIN,
        "Properties": {
            "GroupDescription": "kinesis-cdc OpenSearch domain: HTTPS from the workers only",
            "VpcId": cfn.ref("VpcId"),
            "SecurityGroupIngress": [
                {
                    "Description": "HTTPS from the worker tasks",
                    "IpProtocol": "tcp",
                    "FromPort": 443,
                    "ToPort": 443,
                    "SourceSecurityGroupId": cfn.ref("WorkerSecurityGroup"),
                }
            ],
            "SecurityGroupEgress": [
                {
                    "Description": "no outbound traffic (a rule that matches nothing: loopback only)",
                    "IpProtocol": "-1",
                    "CidrIp": "127.0.0.1/32",
                }
            ],
            "Tags": cfn.tags(),
        },
    }


KIND = _OpenSearchKind()
