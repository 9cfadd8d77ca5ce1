"""Thin factories for the service clients, pointed at the configured target."""

from __future__ import annotations

import os

import boto3
import localstack_client.session
from botocore.config import Config
from botocore.exceptions import ClientError
from opensearchpy import OpenSearch

from targets.config import StackConfig, Target

__all__ = ["aws_client", "aws_resource", "error_code", "lease_client", "opensearch_client", "LOCAL_CREDENTIALS"]

# Emulators accept any credentials; fixed ones keep every client (boto3, the Java KCL) on the
# same DynamoDB Local database even without -sharedDb.
LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}

_BOTO_CONFIG = Config(
    retries={"max_attempts": 5, "mode": "standard"},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=32,
)


def _session_and_kwargs(service: str, stack: StackConfig, region: str, endpoint: str | None = None):
    if stack.target is Target.AWS:
        return boto3.session.Session(), {"region_name": os.environ.get("AWS_REGION", region)}
    if stack.target is Target.LOCALSTACK and not stack.aws_endpoint:
        # every service on LocalStack's one gateway (stack.localstack_endpoint)
        session = localstack_client.session.Session(
            region_name=region, localstack_host=stack.localstack_host, **LOCAL_CREDENTIALS
        )
        return session, {}
    endpoint = endpoint or (stack.kinesis_endpoint if service == "kinesis" else stack.dynamodb_endpoint)
    return boto3.session.Session(), {"endpoint_url": endpoint, "region_name": region, **LOCAL_CREDENTIALS}


def aws_client(service: str, stack: StackConfig, region: str):
    """A boto3 client for ``dynamodb``, ``dynamodbstreams`` or ``kinesis`` on the stack's target."""
    session, kwargs = _session_and_kwargs(service, stack, region)
    return session.client(service, config=_BOTO_CONFIG, **kwargs)


def lease_client(stack: StackConfig, region: str):
    """A boto3 DynamoDB client for the KCL's lease tables (``StackConfig.leases_endpoint``)."""
    session, kwargs = _session_and_kwargs("dynamodb", stack, region, stack.leases_endpoint)
    return session.client("dynamodb", config=_BOTO_CONFIG, **kwargs)


def aws_resource(service: str, stack: StackConfig, region: str):
    """A boto3 resource (``dynamodb``) on the stack's target."""
    session, kwargs = _session_and_kwargs(service, stack, region)
    return session.resource(service, config=_BOTO_CONFIG, **kwargs)


def opensearch_client(stack: StackConfig, timeout: float = 30) -> OpenSearch:
    return OpenSearch(hosts=[stack.opensearch_url], timeout=timeout, http_compress=False)


def error_code(exc: ClientError) -> str:
    """The AWS error code of a botocore ClientError (e.g. ResourceNotFoundException)."""
    return exc.response.get("Error", {}).get("Code", "")
