"""OpenSearch client security from CDC_OPENSEARCH_*: TLS verification, basic auth, SigV4
(services.config.OpenSearchSecurity, services.clients.opensearch_client_kwargs). No server: the
kwargs the client gets, the client built from them, and a SigV4 signature computed offline."""

from __future__ import annotations

import re
import warnings

import boto3
import certifi
import pytest
from opensearchpy import OpenSearch, Urllib3AWSV4SignerAuth

from services.clients import opensearch_client, opensearch_client_kwargs
from services.config import OpenSearchAuth, StackConfig, StackError

PASSWORD = "s3cr3t-opensearch-password"
HTTPS = "https://search-users.example.com:443"


def stack(**env: str) -> StackConfig:
    return StackConfig.from_env(env)


@pytest.fixture
def ca_bundle(tmp_path):
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    return path


# -------------------------------------------------------------------------------- kwargs
def test_the_local_node_gets_plain_http_without_auth_as_before():
    assert opensearch_client_kwargs(stack(), timeout=7) == {
        "hosts": ["http://127.0.0.1:9200"],
        "timeout": 7,
        "http_compress": False,
    }


def test_https_verifies_certificates_by_default():
    kwargs = opensearch_client_kwargs(stack(CDC_OPENSEARCH_URL=HTTPS))
    assert kwargs["use_ssl"] is True and kwargs["verify_certs"] is True
    assert "ca_certs" not in kwargs and "http_auth" not in kwargs


def test_https_with_a_ca_bundle(ca_bundle):
    kwargs = opensearch_client_kwargs(stack(CDC_OPENSEARCH_URL=HTTPS, CDC_OPENSEARCH_CA_CERTS=str(ca_bundle)))
    assert kwargs["verify_certs"] is True and kwargs["ca_certs"] == str(ca_bundle)


def test_https_without_verification_only_when_asked():
    kwargs = opensearch_client_kwargs(stack(CDC_OPENSEARCH_URL=HTTPS, CDC_OPENSEARCH_VERIFY_CERTS="false"))
    assert kwargs["verify_certs"] is False and kwargs["ssl_assert_hostname"] is False and kwargs["ssl_show_warn"]


def test_basic_auth_over_https():
    kwargs = opensearch_client_kwargs(
        stack(
            CDC_OPENSEARCH_URL=HTTPS,
            CDC_OPENSEARCH_AUTH="basic",
            CDC_OPENSEARCH_USERNAME="cdc-writer",
            CDC_OPENSEARCH_PASSWORD=PASSWORD,
        )
    )
    assert kwargs["http_auth"] == ("cdc-writer", PASSWORD) and kwargs["verify_certs"] is True


def test_basic_auth_password_from_a_file(tmp_path):
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    security = stack(
        CDC_OPENSEARCH_URL=HTTPS,
        CDC_OPENSEARCH_AUTH="basic",
        CDC_OPENSEARCH_USERNAME="cdc-writer",
        CDC_OPENSEARCH_PASSWORD_FILE=str(secret),
    ).opensearch_security
    assert security.password == PASSWORD


def test_the_client_is_built_with_basic_auth_and_tls(ca_bundle):
    client = opensearch_client(
        stack(
            CDC_OPENSEARCH_URL=HTTPS,
            CDC_OPENSEARCH_AUTH="basic",
            CDC_OPENSEARCH_USERNAME="cdc-writer",
            CDC_OPENSEARCH_PASSWORD=PASSWORD,
        )
    )
    assert isinstance(client, OpenSearch)
    [connection] = client.transport.connection_pool.connections
    assert connection.host == "https://search-users.example.com:443"
    assert connection.headers["authorization"].startswith("Basic ")
    assert connection.pool.cert_reqs == "CERT_REQUIRED"


# --------------------------------------------------------------------------------- SigV4
@pytest.fixture
def aws_credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.mark.parametrize("service", ["es", "aoss"])
def test_sigv4_signs_each_request_with_the_region_and_service(aws_credentials, service):
    kwargs = opensearch_client_kwargs(
        stack(
            CDC_TARGET="aws",
            CDC_OPENSEARCH_URL=HTTPS,
            CDC_OPENSEARCH_AUTH="sigv4",
            CDC_OPENSEARCH_REGION="eu-west-1",
            CDC_OPENSEARCH_SERVICE=service,
        )
    )
    signer = kwargs["http_auth"]
    assert isinstance(signer, Urllib3AWSV4SignerAuth)
    body = b'{"index":{"_id":"w1#u1"}}\n{"Email":"a@example.com"}\n'
    headers = signer("POST", f"{HTTPS}/_bulk", body)
    assert re.fullmatch(
        rf"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{{8}}/eu-west-1/{service}/aws4_request, "
        r"SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}",
        headers["Authorization"],
    )
    assert "x-amz-date" in {h.lower() for h in headers}
    assert "x-amz-content-sha256" in {h.lower() for h in headers}  # the body is signed too (aoss needs it)


def test_sigv4_region_falls_back_to_aws_region():
    security = stack(CDC_OPENSEARCH_URL=HTTPS, CDC_OPENSEARCH_AUTH="sigv4", AWS_REGION="us-east-2").opensearch_security
    assert (security.auth, security.region, security.service) == (OpenSearchAuth.SIGV4, "us-east-2", "es")


def test_sigv4_without_credentials_fails_at_start(monkeypatch):
    monkeypatch.setattr(boto3.session.Session, "get_credentials", lambda self: None)  # the chain found nothing
    config = stack(CDC_OPENSEARCH_URL=HTTPS, CDC_OPENSEARCH_AUTH="sigv4", CDC_OPENSEARCH_REGION="eu-west-1")
    with pytest.raises(StackError, match="sigv4: boto3 found no AWS credentials"):
        opensearch_client_kwargs(config)


# ---------------------------------------------------------------------- bad combinations
@pytest.mark.parametrize(
    "env, message",
    [
        ({"CDC_OPENSEARCH_AUTH": "kerberos"}, "CDC_OPENSEARCH_AUTH='kerberos': expected one of"),
        (
            {"CDC_OPENSEARCH_AUTH": "basic", "CDC_OPENSEARCH_USERNAME": "u", "CDC_OPENSEARCH_PASSWORD": PASSWORD},
            "basic auth would send the password in clear; use an https:// CDC_OPENSEARCH_URL",
        ),
        (
            {"CDC_OPENSEARCH_URL": HTTPS, "CDC_OPENSEARCH_AUTH": "basic", "CDC_OPENSEARCH_USERNAME": "u"},
            "CDC_OPENSEARCH_AUTH=basic needs CDC_OPENSEARCH_USERNAME and CDC_OPENSEARCH_PASSWORD",
        ),
        (
            {"CDC_OPENSEARCH_URL": HTTPS, "CDC_OPENSEARCH_PASSWORD": PASSWORD},
            "CDC_OPENSEARCH_AUTH=none: set CDC_OPENSEARCH_AUTH=basic, or unset them",
        ),
        (
            {"CDC_OPENSEARCH_URL": HTTPS, "CDC_OPENSEARCH_AUTH": "sigv4"},
            "sigv4 needs the domain's region: set CDC_OPENSEARCH_REGION",
        ),
        (
            {
                "CDC_OPENSEARCH_URL": HTTPS,
                "CDC_OPENSEARCH_AUTH": "sigv4",
                "AWS_REGION": "x",
                "CDC_OPENSEARCH_SERVICE": "s3",
            },
            "CDC_OPENSEARCH_SERVICE='s3': expected es",
        ),
        ({"CDC_OPENSEARCH_VERIFY_CERTS": "false"}, "apply to https only"),
        ({"CDC_OPENSEARCH_URL": HTTPS, "CDC_OPENSEARCH_VERIFY_CERTS": "no"}, "expected true or false"),
        ({"CDC_OPENSEARCH_URL": HTTPS, "CDC_OPENSEARCH_CA_CERTS": "/nonexistent/ca.pem"}, "no such file"),
        (
            {"CDC_OPENSEARCH_URL": f"https://admin:{PASSWORD}@search.example.com"},
            "CDC_OPENSEARCH_URL holds credentials",
        ),
        (
            {"CDC_OPENSEARCH_URL": HTTPS, "CDC_OPENSEARCH_PASSWORD": "a", "CDC_OPENSEARCH_PASSWORD_FILE": "/x"},
            "both set: keep one",
        ),
        (
            {
                "CDC_OPENSEARCH_URL": HTTPS,
                "CDC_OPENSEARCH_AUTH": "basic",
                "CDC_OPENSEARCH_USERNAME": "u",
                "CDC_OPENSEARCH_PASSWORD_FILE": "/nonexistent/password",
            },
            "CDC_OPENSEARCH_PASSWORD_FILE=/nonexistent/password: cannot read it",
        ),
    ],
)
def test_a_bad_combination_fails_at_start_naming_the_variable(env, message):
    with pytest.raises(StackError, match=re.escape(message)) as raised:
        StackConfig.from_env(env)
    assert PASSWORD not in str(raised.value)


def test_ca_bundle_with_verification_off_is_refused(ca_bundle):
    with pytest.raises(StackError, match="CDC_OPENSEARCH_CA_CERTS is set but CDC_OPENSEARCH_VERIFY_CERTS=false"):
        stack(CDC_OPENSEARCH_URL=HTTPS, CDC_OPENSEARCH_CA_CERTS=str(ca_bundle), CDC_OPENSEARCH_VERIFY_CERTS="false")


# ------------------------------------------------------------------------ secret hiding
def test_the_password_never_shows_in_repr_or_str_of_the_config():
    config = stack(
        CDC_OPENSEARCH_URL=HTTPS,
        CDC_OPENSEARCH_AUTH="basic",
        CDC_OPENSEARCH_USERNAME="cdc-writer",
        CDC_OPENSEARCH_PASSWORD=PASSWORD,
    )
    assert config.opensearch_security.password == PASSWORD
    for text in (repr(config), str(config), repr(config.opensearch_security), f"{config}"):
        assert PASSWORD not in text
        assert "cdc-writer" in text  # the rest of the config still shows


@pytest.mark.parametrize(
    "env, cert_reqs, ca_certs, auth",
    [
        ({"CDC_OPENSEARCH_VERIFY_CERTS": "false"}, "CERT_NONE", None, None),
        ({"CDC_OPENSEARCH_CA_CERTS": certifi.where()}, "CERT_REQUIRED", certifi.where(), None),
        (
            {"CDC_TARGET": "aws", "CDC_OPENSEARCH_AUTH": "sigv4", "CDC_OPENSEARCH_REGION": "eu-west-1"},
            "CERT_REQUIRED",
            None,
            Urllib3AWSV4SignerAuth,
        ),
    ],
)
def test_the_client_connection_gets_the_tls_settings_and_the_signer(aws_credentials, env, cert_reqs, ca_certs, auth):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # opensearch-py warns about verify_certs=False, as it should
        client = opensearch_client(stack(CDC_OPENSEARCH_URL=HTTPS, **env))
    [connection] = client.transport.connection_pool.connections
    assert connection.pool.cert_reqs == cert_reqs
    if ca_certs:
        assert connection.pool.ca_certs == ca_certs
    assert (type(connection.http_auth) if connection.http_auth else None) is auth
