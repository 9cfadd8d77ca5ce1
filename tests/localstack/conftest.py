"""The LocalStack stack for tests/localstack: LocalStack in host mode (the path CI can run),
the project's OpenSearch node and the three apps' workers, on ports and a state folder of its
own. `make test` runs this package in a second pytest session, after the local stack's, so the
two stacks never compete for the two cores.

The environment is set for the whole session (os.environ), so every `cdc` command and worker a
test starts reaches this stack, exactly as `make ... STACK=localstack` would.
"""

from __future__ import annotations

import pytest

from infra.local.preflight import free_opensearch_port, free_port
from producer_config import PipelineConfig, load_pipeline
from services.config import Target
from tests.environment import session_stack


@pytest.fixture(scope="session")
def pipeline() -> PipelineConfig:
    return load_pipeline()


@pytest.fixture(scope="session")
def stack(pipeline: PipelineConfig, tmp_path_factory):
    env = {
        "CDC_TARGET": "localstack",
        "CDC_LOCALSTACK_MODE": "host",
        "LOCALSTACK_HOST": f"127.0.0.1:{free_port()}",
        "CDC_STATE_DIR": str(tmp_path_factory.mktemp("localstack-stack")),
        "CDC_OPENSEARCH_PORT": str(free_opensearch_port()),
        "CDC_OPENSEARCH_TRANSPORT_PORT": str(free_port()),
        "CDC_WEBHOOK_PORT": str(free_port()),
        "CDC_SUPERVISE": "0",  # its tests stop components on purpose
    }
    with session_stack(env, pipeline) as config:
        assert config.target is Target.LOCALSTACK
        yield config


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The AWS target's tests (tests/localstack/aws) last: they stop this stack's own workers
    for their ECS stand-ins and reshard a stream, which the LocalStack tests must not meet."""
    items.sort(key=lambda item: "/localstack/aws/" in str(item.path))
