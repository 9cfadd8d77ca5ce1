"""tests/secret_scan.py finds a planted secret (so test_secrets_not_logged passing means
something), and the one local fake secret is the recognisable one every client uses."""

from __future__ import annotations

from services.clients import LOCAL_CREDENTIALS, LOCAL_SECRET_ACCESS_KEY
from services.config import StackConfig
from tests import secret_scan

SECRET = "cdc-local-fake-secret-not-a-real-key"


def stack_in(tmp_path, **env: str) -> StackConfig:
    return StackConfig.from_env({"CDC_STATE_DIR": str(tmp_path / "state"), **env})


def write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_the_local_fake_secret_is_recognisable_and_the_one_every_client_uses():
    assert LOCAL_SECRET_ACCESS_KEY == SECRET
    assert LOCAL_CREDENTIALS["aws_secret_access_key"] is LOCAL_SECRET_ACCESS_KEY


def test_a_planted_secret_is_found_in_a_log_a_properties_file_and_a_state_file(tmp_path):
    stack = stack_in(tmp_path)
    clean = write(stack.log_dir / "relay.log", b"started\n" * 1000)
    log = write(stack.log_dir / "worker-app-1.log", b"x" * 100 + f"AWS_SECRET_ACCESS_KEY={SECRET}\n".encode())
    props = write(stack.state_dir / "apps" / "app" / "worker-1.properties", f"secretKey = {SECRET}\n".encode())
    stats = write(stack.state_dir / "apps" / "app" / "stats" / "s-1.json", f'{{"k": "{SECRET}"}}'.encode())
    leaks = list(secret_scan.find_secrets(secret_scan.files_to_scan(stack), secret_scan.secrets_of(stack)))
    assert sorted(leak.path for leak in leaks) == sorted([log, props, stats])
    assert clean not in {leak.path for leak in leaks}
    [in_log] = [leak for leak in leaks if leak.path == log]
    assert in_log.offset == 100 + len("AWS_SECRET_ACCESS_KEY=")
    assert SECRET not in str(in_log)  # the report names the secret, never shows it


def test_a_secret_across_a_chunk_boundary_is_found(tmp_path, monkeypatch):
    monkeypatch.setattr(secret_scan, "_CHUNK", 16)
    path = write(tmp_path / "big.log", b"." * 30 + SECRET.encode() + b"." * 50)
    [leak] = secret_scan.find_secrets([path], {"fake": SECRET})
    assert leak.offset == 30


def test_the_opensearch_password_is_scanned_for_when_configured(tmp_path):
    stack = stack_in(
        tmp_path,
        CDC_OPENSEARCH_URL="https://search.example.com",
        CDC_OPENSEARCH_AUTH="basic",
        CDC_OPENSEARCH_USERNAME="cdc",
        CDC_OPENSEARCH_PASSWORD="planted-password-123",
    )
    write(stack.log_dir / "provision.log", b"PUT /index as cdc:planted-password-123\n")
    [leak] = secret_scan.find_secrets(secret_scan.files_to_scan(stack), secret_scan.secrets_of(stack))
    assert "OpenSearch password" in leak.secret_name


def test_the_services_databases_are_not_scanned(tmp_path):
    stack = stack_in(tmp_path)
    write(stack.data_dir / "dynamodb" / "shared-local-instance.db", SECRET.encode())
    assert secret_scan.files_to_scan(stack) == []
