"""LocalStack without a server: its record format as the consumers see it, where the stack
comes from (mode), the endpoints it is reached at, and the install-time patch checks."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import orjson
import pytest

from consumers.shared.records import ChangeRecord, EventName
from infra.local import localstack
from infra.local.localstack import Mode, apply_patches, choose_mode
from services.config import REPO_ROOT, StackConfig, StackError, Target
from tests.unit.conftest import load_fixture


@pytest.fixture
def localstack_record() -> dict:
    """A record written by LocalStack 4.9.2's streaming destination (MICROSECOND asked)."""
    record = load_fixture("localstack-kinesis-change-record.json")
    del record["_comment"]
    return record


def test_localstack_record_decodes_with_its_whole_second_timestamp_in_microseconds(localstack_record):
    data = localstack_record["Data"]
    record = ChangeRecord.from_kinesis(
        orjson.dumps(data),
        sequence_number="1",
        partition_key=localstack_record["PartitionKey"],
        version_attribute="v",
    )
    assert record.event_name is EventName.INSERT and record.table == data["tableName"]
    assert record.keys == {"UserId": "user-0"} and record.old_image is None
    assert record.created_at_us == data["dynamodb"]["ApproximateCreationDateTime"] * 1_000_000
    assert record.version == 1  # the item's own version attribute orders changes
    assert len(data["eventID"]) == 8  # AWS: 32 hex characters; the consumers never use it


def test_without_a_version_attribute_localstack_changes_order_by_the_second_only(localstack_record):
    """The fallback version is the creation time: on LocalStack two changes of an item within
    one second tie (AWS: distinct microseconds). Our tables carry `Version`; this pins why."""
    data = localstack_record["Data"]
    first = ChangeRecord.from_kinesis(orjson.dumps(data), sequence_number="1", partition_key="p")
    data["dynamodb"]["NewImage"]["v"] = {"N": "2"}  # a later change, same second
    second = ChangeRecord.from_kinesis(orjson.dumps(data), sequence_number="2", partition_key="p")
    assert first.version == second.version == data["dynamodb"]["ApproximateCreationDateTime"] * 1_000_000


def test_localstack_partition_key_is_the_same_for_every_item_of_a_table(localstack_record):
    data = localstack_record["Data"]
    expected = hashlib.md5((data["tableName"] + "UserId").encode()).hexdigest()
    assert localstack_record["PartitionKey"] == expected


# ------------------------------------------------------------------------------ modes
@pytest.mark.parametrize(
    ("ours", "answers", "docker", "recorded", "expected"),
    [
        (True, True, True, None, Mode.HOST),  # ours keeps running as it is
        (False, True, True, None, Mode.EXTERNAL),  # the user's own LocalStack answers
        (False, True, False, "docker", Mode.DOCKER),  # the one we started with compose
        (False, False, True, None, Mode.DOCKER),
        (False, False, False, None, Mode.HOST),
        (False, False, False, "docker", Mode.HOST),  # compose recorded, but no engine now
    ],
)
def test_mode_order_external_then_docker_then_host(tmp_path, ours, answers, docker, recorded, expected):
    stack = StackConfig.from_env({"CDC_TARGET": "localstack", "CDC_STATE_DIR": str(tmp_path)})
    if recorded:
        (tmp_path / "localstack-mode").write_text(recorded)
    got = choose_mode(stack, ours_running=ours, answers=lambda: answers, docker=lambda: docker)
    assert got is expected


def test_a_mode_can_be_forced_and_a_wrong_one_is_refused(tmp_path):
    env = {"CDC_TARGET": "localstack", "CDC_STATE_DIR": str(tmp_path), "CDC_LOCALSTACK_MODE": "host"}
    forced = StackConfig.from_env(env)
    assert choose_mode(forced, ours_running=False, answers=lambda: True, docker=lambda: True) is Mode.HOST
    with pytest.raises(StackError, match="CDC_LOCALSTACK_MODE='podman': expected auto, external, docker or host"):
        StackConfig.from_env({**env, "CDC_LOCALSTACK_MODE": "podman"})


# -------------------------------------------------------------------------- endpoints
def test_every_service_is_reached_at_localstack_host(tmp_path):
    stack = StackConfig.from_env({"CDC_TARGET": "localstack", "LOCALSTACK_HOST": "127.0.0.1:4777"})
    assert stack.target is Target.LOCALSTACK
    assert stack.dynamodb_endpoint == stack.kinesis_endpoint == "http://127.0.0.1:4777"
    assert stack.state_dir == REPO_ROOT / ".state-localstack"
    assert stack.kinesis_snapshot.is_relative_to(stack.localstack_root)
    assert stack.opensearch_url == "http://127.0.0.1:9200"  # the project's own node


def test_default_localstack_host_and_a_malformed_one():
    assert StackConfig.from_env({"CDC_TARGET": "localstack"}).localstack_endpoint == "http://127.0.0.1:4566"
    with pytest.raises(StackError, match="LOCALSTACK_HOST='http://x:1': expected host:port"):
        StackConfig.from_env({"CDC_TARGET": "localstack", "LOCALSTACK_HOST": "http://x:1"})


# ---------------------------------------------------------------------------- patches
def test_each_patch_names_a_file_and_has_both_checksums():
    sums = localstack.PATCHES.checksums()
    assert sorted(sums) == sorted(p.name for p in localstack.PATCHES.folder.glob("*.patch"))
    for name, (before, after) in sums.items():
        assert len(before) == len(after) == 64 and before != after, name
        assert localstack.PATCHES.patched_file(name).startswith("localstack/")


def _site_with(tmp_path: Path, contents: dict[str, bytes]) -> Path:
    for relative, data in contents.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(data)
    return tmp_path


def test_a_patch_refuses_a_file_it_was_not_written_for(tmp_path):
    files = {localstack.PATCHES.patched_file(name): b"# another version\n" for name in localstack.PATCHES.checksums()}
    site = _site_with(tmp_path, files)
    with pytest.raises(StackError, match=r"was written for localstack-core 4\.9\.2, whose .* has sha256 .*"):
        apply_patches(site, say=lambda _: None)
    assert all((site / f).read_bytes() == b"# another version\n" for f in files)  # nothing touched


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(StackError, match="does not exist; is localstack-core 4.9.2 installed"):
        apply_patches(tmp_path, say=lambda _: None)


# ------------------------------------------------------------------------ docker path
def test_docker_compose_runs_the_same_localstack_and_kinesis_mock_as_host_mode():
    """infra/local/docker-compose.yml (not runnable here) is kept on host mode's versions: checked as
    text, the way compose reads these lines."""
    compose = (REPO_ROOT / "infra" / "local" / "docker-compose.yml").read_text()
    pinned_mock = json.loads((REPO_ROOT / "infra" / "local" / "package.json").read_text())["dependencies"][
        "kinesis-local"
    ]
    requirements = (REPO_ROOT / "infra" / "local" / "localstack" / "requirements.txt").read_text()
    assert f"localstack-core[runtime]=={localstack.LOCALSTACK_VERSION}" in requirements
    assert f"image: localstack/localstack:{localstack.LOCALSTACK_VERSION}\n" in compose
    assert f'KINESIS_MOCK_VERSION: "{pinned_mock}"' in compose
    assert f"/var/lib/localstack/lib/kinesis-local/{pinned_mock}/node_modules/kinesis-local:ro" in compose
    assert f"SERVICES: {localstack.SERVICES}\n" in compose
    ports = re.findall(r'^\s+- "([^"]+):4566"$', compose, re.MULTILINE)
    assert ports and all(p.startswith("127.0.0.1:") for p in ports)


class _Destinations:
    def __init__(self, *destinations):
        self.destinations = list(destinations)

    def describe_kinesis_streaming_destination(self, TableName):
        return {"TableName": TableName, "KinesisDataStreamDestinations": self.destinations}


def test_provisioning_tells_a_destination_that_reports_its_precision_from_one_that_does_not():
    """AWS and the patched LocalStack report the precision (and honour it); an unpatched
    LocalStack does not, and stamps whole seconds: `make up` then says so."""
    from infra.local.provision import _precision_reported
    from producer_config import load_pipeline

    sources = load_pipeline().source_tables
    active = {"StreamArn": "arn:aws:kinesis:us-east-1:000000000000:stream/s", "DestinationStatus": "ACTIVE"}
    assert _precision_reported(
        _Destinations({**active, "ApproximateCreationDateTimePrecision": "MICROSECOND"}), sources
    )
    assert not _precision_reported(_Destinations(active), sources)
