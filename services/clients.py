"""Thin factories for the service clients, pointed at the configured target."""

from __future__ import annotations

import os
from typing import Any

import boto3
import localstack_client.session
from botocore.config import Config
from botocore.exceptions import ClientError
from opensearchpy import OpenSearch, Urllib3AWSV4SignerAuth

from services.config import OpenSearchAuth, StackConfig, StackError, Target

__all__ = [
    "aws_client",
    "aws_resource",
    "error_code",
    "lease_client",
    "opensearch_client",
    "opensearch_client_kwargs",
    "LOCAL_CREDENTIALS",
    "LOCAL_SECRET_ACCESS_KEY",
]

#: The emulators' fake secret key, the one place it is written (boto3 clients here, the KCL's
#: environment in consumers.runtime.daemon). Emulators accept any credentials; this one is
#: recognisable on purpose: tests/integration/test_secrets_not_logged.py fails if it shows up in
#: a log or state file, as a real secret would. The fixed access key id keeps every client
#: (boto3, the Java KCL) on the same DynamoDB Local database even without -sharedDb, and
#: LocalStack on its default account.
LOCAL_SECRET_ACCESS_KEY = "cdc-local-fake-secret-not-a-real-key"
LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": LOCAL_SECRET_ACCESS_KEY}

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
    """The OpenSearch client of every caller (sink, provisioning, verify, tests, bench), with the
    TLS checks and authentication of ``stack.opensearch_security`` (CDC_OPENSEARCH_*)."""
    return OpenSearch(**opensearch_client_kwargs(stack, timeout))


def opensearch_client_kwargs(stack: StackConfig, timeout: float = 30) -> dict[str, Any]:
    """What `opensearch_client` passes to ``OpenSearch(...)``."""
    security, url = stack.opensearch_security, stack.opensearch_url
    kwargs: dict[str, Any] = {"hosts": [url], "timeout": timeout, "http_compress": False}
    if url.lower().startswith("https://"):
        kwargs.update(use_ssl=True, verify_certs=security.verify_certs)
        if security.ca_certs is not None:
            kwargs["ca_certs"] = str(security.ca_certs)
        if not security.verify_certs:
            kwargs.update(ssl_assert_hostname=False, ssl_show_warn=True)
    if security.auth is OpenSearchAuth.BASIC:
        kwargs["http_auth"] = (security.username, security.password)
    elif security.auth is OpenSearchAuth.SIGV4:
        credentials = boto3.session.Session().get_credentials()  # the default chain, as on AWS
        if credentials is None:
            raise StackError(
                "CDC_OPENSEARCH_AUTH=sigv4: boto3 found no AWS credentials (environment, profile, role); configure them"
            )
        # signs each request (method, URL, body) in the connection; credentials that expire are refreshed by boto3
        kwargs["http_auth"] = Urllib3AWSV4SignerAuth(credentials, security.region, security.service)
    return kwargs


def error_code(exc: ClientError) -> str:
    """The AWS error code of a botocore ClientError (e.g. ResourceNotFoundException)."""
    return exc.response.get("Error", {}).get("Code", "")
